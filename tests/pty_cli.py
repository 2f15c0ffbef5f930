"""The CLI on a pseudo-terminal, answering its questions (as tests/unit/test_key_prompt.py does)."""

from __future__ import annotations

import os
import pty
import select
import signal
import time

from tests.conftest import STIGMER


def run_on_pty(
    args: list[str],
    env: dict[str, str],
    answers: list[tuple[bytes, bytes]],
    timeout: float = 120,
) -> tuple[int, str]:
    """``stigmer ARGS`` with a terminal for stdin, stdout and stderr; (exit code, what it printed).

    ``answers``: (text to wait for, what to type then), in order; each is sent
    once, after its text has appeared.
    """
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        # Ctrl-C as on a user's terminal, even under a runner started in the
        # background (which ignores SIGINT, and a child inherits that)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execve(STIGMER, [STIGMER, *args], env)
    out, todo = b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal: it ended
                break
            if not chunk:
                break
            out += chunk
            if todo and todo[0][0] in out:
                os.write(fd, todo.pop(0)[1])
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")
