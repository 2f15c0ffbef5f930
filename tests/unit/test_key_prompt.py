"""`server start` asks for a missing provider key on a terminal, hidden, and saves it 0600."""

from __future__ import annotations

import os
import pty
import select
import socket
import time
from pathlib import Path

import yaml

from tests.conftest import STIGMER

KEY = "sk-typed-secret-999"


def test_missing_key_is_asked_for_hidden_and_saved(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as taken:  # start then stops at the port check: no stack needed
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STIGMER_", "OPENAI", "ANTHROPIC"))
        }
        env |= {
            "STIGMER_HOME": str(home),
            "STIGMER_DEFAULT_MODEL": "openai:gpt-4o-mini",
            "STIGMER_TEMPORAL_PORT": str(taken.getsockname()[1]),
            "STIGMER_RUNNER_MODE": "local",
        }
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            os.execve(STIGMER, [STIGMER, "server", "start"], env)
        out, sent = b"", False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if b"input hidden" in out and not sent:
                os.write(fd, KEY.encode() + b"\n")
                sent = True
        os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert sent, text
    assert KEY not in text
    config = home / "config.yaml"
    assert yaml.safe_load(config.read_text())["openai_api_key"] == KEY
    assert config.stat().st_mode & 0o777 == 0o600
