"""``scripts/demo.sh`` as a new user runs it: a real stack in a throwaway home (local runner)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def _processes_under(folder: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("STIGMER_HOME", "").startswith(str(folder)):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def test_demo_is_tidy_and_runs_the_prompt_it_prints(tmp_path: Path) -> None:
    """Issue 13 case 17: no uv noise, no fixed /tmp path, the prompt echoed is the one run.

    A home and ports of the user's own in the environment are not used (the demo
    stopped a stack the user ran there).
    """
    script = (ROOT / "scripts" / "demo.sh").read_text()
    assert "/tmp/" not in script  # temporary files come from mktemp (under TMPDIR)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "VIRTUAL_ENV"))}
    users_home = tmp_path / "users-home"
    users_home.mkdir()
    env |= {"TMPDIR": str(tmp_path), "STIGMER_RUNNER_MODE": "local"}
    env |= {"STIGMER_HOME": str(users_home), "STIGMER_SERVER_PORT": "1"}
    try:
        proc = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert "Bytecode compiled" not in out
        assert not re.search(r"^(Resolved|Installed|Audited|Prepared) \d+ package", out, re.M)
        echoed = re.search(r'^==> stigmer run summarize-folder "(.+)"$', out, re.M)
        assert echoed, out
        # the run shows the message it got: the same text
        assert re.search(rf"^\s*\d+ you\s+{re.escape(echoed.group(1))}$", out, re.M), out
        assert "COMPLETED" in out
        # the throwaway home is gone; nothing but uv's own lock files is left in TMPDIR
        left = [p.name for p in tmp_path.iterdir() if not p.name.startswith("uv-")]
        assert left == [users_home.name], left
        assert list(users_home.iterdir()) == [], "the user's own home was used"
        assert _processes_under(tmp_path) == []
    finally:
        for p in _processes_under(tmp_path):
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
