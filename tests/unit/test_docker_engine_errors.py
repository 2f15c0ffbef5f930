"""When no Docker engine can be used, the error says why: no socket, nothing listening, or no permission."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stigmer.errors import DockerNotRunningError
from stigmer.images import engine


def test_no_socket_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(DockerNotRunningError) as err:
        engine.connect(timeout=2)
    assert "Docker is not running" in err.value.message
    assert err.value.details == f"there is no socket at {tmp_path}/docker.sock"
    assert "--runner local" in (err.value.fix or "")


def test_a_socket_nobody_listens_on_is_a_refused_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nothing listens (an engine that died)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    with pytest.raises(DockerNotRunningError) as err:
        engine.connect(timeout=2)
    assert err.value.details and "refused" in err.value.details


def test_a_socket_this_user_may_not_use_says_so_not_that_docker_is_down(tmp_path: Path) -> None:
    """The common first-run case on Linux: the user is not in the docker group."""
    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv (to drop the capability that bypasses file modes)")
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    try:
        os.chown(
            path, 65534, 65534
        )  # another user's socket, as /var/run/docker.sock is root:docker
        path.chmod(0o600)
        code = (
            "from stigmer.images.engine import connect\n"
            "from stigmer.errors import DockerNotRunningError\n"
            "try:\n    connect(timeout=2)\n"
            "except DockerNotRunningError as e:\n    print(e.message); print(e.fix)\n"
        )
        drop = "-dac_override,-dac_read_search"
        proc = subprocess.run(
            ["setpriv", f"--bounding-set={drop}", "--", sys.executable, "-c", code],
            env={**os.environ, "DOCKER_HOST": f"unix://{path}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "permission denied" in out and str(path) in out, out
    assert "not running" not in out
    assert "usermod -aG docker" in out and "--runner local" in out
