"""Process hardening shared by the stack's long-lived processes (standard library only)."""

from __future__ import annotations

import sys


def not_dumpable() -> bool:
    """Mark this process non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``; Linux only).

    Other processes of the same user, an agent's tools among them, can then
    read neither its memory nor its ``/proc/PID/environ``: the keys and tokens
    it holds stay its own. Its children are dumpable again once they exec.
    Returns False where that cannot be done.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_dumpable = 4
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(pr_set_dumpable, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def exit_now(code: int) -> None:
    """End the process with ``code`` once its work is done, skipping interpreter teardown.

    temporalio's Rust bridge keeps threads that can call into Python while the
    interpreter finalizes; the process then aborts ("PyGILState_Release: thread
    state ... must be current when releasing", SIGABRT) after it did its work
    (temporalio/sdk-python#300). Output is flushed, logs closed, then ``os._exit``.
    """
    import contextlib
    import logging
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)
