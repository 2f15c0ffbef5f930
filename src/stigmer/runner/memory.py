"""The runner's memory limit as the kernel sees it: how many processes it killed, and the limit.

In a container the memory cgroup is at ``/sys/fs/cgroup``: v1 counts OOM kills
in ``memory/memory.oom_control`` (``oom_kill N``), v2 in ``memory.events``. A
command that ran while the count went up had a process killed out of memory
(its own, unless another run's command ran at the same time and was the one). Outside a container these files describe a wider cgroup,
so the runner asks only in docker mode.
"""

from __future__ import annotations

from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
_COUNTERS = (CGROUP / "memory" / "memory.oom_control", CGROUP / "memory.events")
_LIMITS = (CGROUP / "memory" / "memory.limit_in_bytes", CGROUP / "memory.max")


def oom_kills() -> int | None:
    """Processes of this cgroup the kernel killed at its memory limit so far, if known."""
    for path in _COUNTERS:
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def limit_mib() -> int | None:
    """The cgroup's memory limit in MiB, if it has one."""
    for path in _LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text) >> 20
    return None


def killed_note(before: int | None) -> str | None:
    """What to tell the model after a command during which the OOM count rose from ``before``."""
    after = oom_kills()
    if before is None or after is None or after <= before:
        return None
    limit = limit_mib()
    at = f" ({limit} MiB)" if limit else ""
    return (
        f"[stigmer] out of memory: while this command ran, the kernel killed "
        f"{after - before} process(es) at the runner's memory limit{at}, setting "
        "runner_memory; use less memory, or ask the stack's owner to raise runner_memory"
    )
