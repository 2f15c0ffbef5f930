"""When no Docker engine can be used, the error says why: no socket, nothing listening, or no permission."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stigmer.errors import ConfigError, DockerNotRunningError
from stigmer.images import engine


def test_no_socket_where_docker_host_points_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(DockerNotRunningError) as err:
        engine.connect(timeout=2)
    assert err.value.message == (
        f"No Docker engine answered at unix://{tmp_path}/docker.sock (from DOCKER_HOST): "
        f"there is no socket at {tmp_path}/docker.sock."
    )
    assert err.value.why == f"there is no socket at {tmp_path}/docker.sock"  # server status
    fix = err.value.fix or ""
    assert "unset DOCKER_HOST" in fix and "--runner local" in fix
    assert "apt-get" not in fix  # Docker may well be installed: DOCKER_HOST is what to fix


def test_the_default_socket_missing_says_docker_is_not_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ep = engine.Endpoint(f"unix://{tmp_path}/docker.sock", engine.DEFAULT_SOURCE)
    monkeypatch.setattr(engine, "resolve_endpoint", lambda: ep)
    with pytest.raises(DockerNotRunningError) as err:
        engine.connect(timeout=2)
    assert err.value.message.startswith("Docker is not running: no engine answered")
    assert "there is no socket at" in err.value.message
    assert "--runner local" in (err.value.fix or "")


def test_a_docker_host_that_is_no_address_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"{tmp_path}/docker.sock")  # unix:// forgotten
    with pytest.raises(ConfigError) as err:
        engine.connect(timeout=2)
    assert "is not an address of a Docker engine" in err.value.message
    assert "unix:///path/to/docker.sock" in (err.value.fix or "")


def test_a_file_that_is_no_socket_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "docker.sock").write_text("not a socket")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(DockerNotRunningError) as err:
        engine.connect(timeout=2)
    assert f"{tmp_path}/docker.sock is not a socket" in err.value.message


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
    assert "the connection was refused" in err.value.message


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
            "except DockerNotRunningError as e:\n    print(e.message); print(e.fix); print(e.why)\n"
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
    assert "refuses this user (permission denied)" in out  # what `server status` shows


@pytest.mark.parametrize("host", ["tcp://127.0.0.1:abc", "tcp://127.0.0.1:99999", "ssh://u@h"])
def test_an_address_the_sdk_cannot_use_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(ConfigError) as err:
        engine.connect(timeout=2)
    assert host in err.value.message and "unset DOCKER_HOST" in (err.value.fix or "")


def test_tls_files_that_are_not_there_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "nonexistent"))
    with pytest.raises(ConfigError) as err:
        engine.connect(timeout=2)
    assert str(tmp_path / "nonexistent") in err.value.message
    assert "DOCKER_CERT_PATH" in (err.value.fix or "")


def _context(config: Path, name: str, host: str) -> None:
    import hashlib
    import json

    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Endpoints": {"docker": {"Host": host}}}))


def test_an_engine_is_named_on_purpose_by_docker_host_or_docker_context_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`auto` mode falls back to a local runner only from an engine nobody named."""
    import json

    config = tmp_path / "docker-config"
    _context(config, "desktop-linux", f"unix://{tmp_path}/desktop.sock")
    (config / "config.json").write_text(json.dumps({"currentContext": "desktop-linux"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    current = engine.resolve_endpoint()  # what Docker Desktop left current
    assert current.host == f"unix://{tmp_path}/desktop.sock" and not current.named
    monkeypatch.setenv("DOCKER_CONTEXT", "desktop-linux")
    assert engine.resolve_endpoint().named
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/x.sock")
    assert engine.resolve_endpoint().named
