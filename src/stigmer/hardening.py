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
