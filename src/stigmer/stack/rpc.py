"""The supervisor's control socket, client side (standard library only: the CLI's hot path).

``run/supervisor.sock`` (AF_UNIX, mode 0600 in a 0700 folder): one JSON request
per connection, ``{"op": "status" | "api" | "shutdown"}``, one JSON answer.
Only the home's owner can connect, so an answer is the stack's own.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from stigmer.settings import Paths


def rpc(paths: Paths, op: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """Send ``{"op": op}`` to the supervisor; its JSON answer, or None if none is listening."""
    sock_path = str(paths.control_socket)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(json.dumps({"op": op}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (TimeoutError, FileNotFoundError, ConnectionRefusedError, OSError):
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
