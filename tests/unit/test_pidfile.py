from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from stigmer.stack.pidfile import (
    ProcessIdentity,
    find_by_identity,
    read_pid_file,
    terminate,
    write_pid_file,
)


def test_identity_mismatch_is_never_signalled(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        wrong = ProcessIdentity(proc.pid, 1.0, "x", str(tmp_path))
        assert not wrong.alive()
        assert terminate(wrong, 0.1) is False
        assert proc.poll() is None
        right = ProcessIdentity.of(proc.pid, "x", tmp_path)
        write_pid_file(tmp_path / "x.pid", right)
        assert read_pid_file(tmp_path / "x.pid") == right
        assert terminate(right, 2) is True
        assert proc.wait(5) is not None
    finally:
        proc.kill()


def test_garbage_pid_files_prove_nothing(tmp_path: Path) -> None:
    for text in ("123\n", "", "{not json", '{"pid": "x"}'):
        (tmp_path / "p.pid").write_text(text)
        assert read_pid_file(tmp_path / "p.pid") is None
    assert read_pid_file(tmp_path / "missing.pid") is None


def test_find_by_identity_needs_home_env_cwd_and_command(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    home.mkdir()
    other.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    sleep = [sys.executable, "-c", "import time; time.sleep(30)", "stigmer.server"]

    def spawn(env_home: Path, cwd: Path, argv: list[str] = sleep) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env={**base, "STIGMER_HOME": str(env_home)}, cwd=cwd)

    ours = spawn(home, home)
    elsewhere = spawn(home, other)  # the home's env, another working directory
    foreign = spawn(other, home)  # another home's env
    plain = spawn(home, home, [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        found = find_by_identity(home, {"stigmer.server": "stigmer-server"})
        assert [(i.pid, i.name) for i in found] == [(ours.pid, "stigmer-server")]
        assert found[0].alive()
    finally:
        for p in (ours, elsewhere, foreign, plain):
            p.kill()
            p.wait()
