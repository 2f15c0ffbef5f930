from __future__ import annotations

import subprocess
from pathlib import Path

from stigmer.stack.pidfile import ProcessIdentity, read_pid_file, terminate, write_pid_file


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
