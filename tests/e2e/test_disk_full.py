"""A full disk is named as such, with the path, and nothing is lost (issue 13, case 5).

The home is a small tmpfs of its own (root only: `mount`), filled to the last byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import STIGMER, Stack, new_stack, tear_down
from tests.fixtures_docker import in_ci

SPEC = {
    "apiVersion": "stigmer.ai/v1",
    "kind": "Agent",
    "metadata": {"name": "disk"},
    "spec": {"instructions": "test", "model": "test", "test_script": [{"answer": "done"}]},
}


SLOW = {
    "apiVersion": "stigmer.ai/v1",
    "kind": "Agent",
    "metadata": {"name": "slow"},
    "spec": {
        "instructions": "test",
        "model": "test",
        "tools": ["shell"],
        "local_shell": True,
        "test_script": [
            {"tool": "shell", "args": {"command": "touch slow-started; sleep 6; echo done"}},
            {"answer": "{{ last }}"},
        ],
    },
}


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("CI runs as root: the disk-full test needs to mount a tmpfs")
        pytest.skip("needs root, to mount a small tmpfs as the home")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160m,mode=0700", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of ``folder``'s disk."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_named_and_nothing_is_lost(small_home: Path) -> None:
    st: Stack = new_stack(small_home / "home", "local")
    try:
        st.start()
        f = small_home / "agent.yaml"
        f.write_text(json.dumps(SPEC))
        st.cli("apply", "-f", str(f), check=True)
        f.write_text(json.dumps(SLOW))
        st.cli("apply", "-f", str(f), check=True)
        token = (st.home / "credentials" / "api-token").read_text().strip()
        # a run in flight while the disk fills: it waits, and ends once space is back
        inflight = subprocess.Popen(
            [STIGMER, "run", "slow", "go", "--output", "json"],
            env=st.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not (st.home / "data" / "workspace" / "slow-started").exists():
            assert time.monotonic() < deadline, "the slow tool never started"
            time.sleep(0.1)
        tool_started = time.monotonic()
        filler = fill(small_home)

        run = st.cli("run", "disk", "while full", timeout=120)
        assert run.returncode != 0, run.stdout
        assert "disk is full" in run.stderr, run.stderr
        assert str(st.home / "data") in run.stderr, run.stderr
        assert "Internal Server Error" not in run.stderr
        health = httpx.get(f"http://127.0.0.1:{st.ports['server']}/healthz", timeout=10)
        assert health.status_code == 503, health.text
        assert health.json()["database"] == "disk full", health.json()
        assert "free space" in health.json()["database_error"]
        posted = httpx.post(
            f"http://127.0.0.1:{st.ports['server']}/v1/executions",
            json={"agent": "disk", "message": "over http"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert posted.status_code == 507, posted.text

        # the tool ends (and its result is published) while the disk is still full
        time.sleep(max(0.0, tool_started + 9 - time.monotonic()))
        filler.unlink()
        out, err = inflight.communicate(timeout=300)
        assert inflight.returncode == 0, out + err
        done = json.loads(out)
        assert done["phase"] == "COMPLETED" and "done" in done["output"], done
        logs = st.cli("execution", "logs", done["id"], "--output", "json", check=True).stdout
        seqs = [json.loads(line)["seq"] for line in logs.splitlines() if line.strip()]
        assert seqs == list(range(1, len(seqs) + 1)), seqs  # nothing lost, nothing repeated
        deadline = time.monotonic() + 180
        while True:
            again = st.cli("run", "disk", "after freeing", "--output", "json", timeout=200)
            if again.returncode == 0:
                break
            assert time.monotonic() < deadline, again.stderr
            time.sleep(2)
        assert json.loads(again.stdout)["phase"] == "COMPLETED"
    finally:
        tear_down(st)
