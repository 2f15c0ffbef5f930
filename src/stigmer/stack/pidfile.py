"""Pid files that prove identity, and killing only what is provably ours.

A pid file holds JSON: the pid, the process create time (from psutil, seconds
since the epoch) and the ``STIGMER_HOME`` it belongs to. A pid is signalled only
when a live process with that pid has the same create time, so a dead process or
a reused pid (an unrelated program) is never touched. A pid file in any other
shape (a bare number, garbage) proves nothing and is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from stigmer.files import write_private


@dataclass(frozen=True)
class ProcessIdentity:
    """A process we started: pid plus create time (``psutil.Process.create_time()``)."""

    pid: int
    create_time: float
    name: str
    home: str

    @classmethod
    def of(cls, pid: int, name: str, home: str | Path) -> ProcessIdentity:
        """Identity of a live process. Raises ``psutil.Error`` if it is gone."""
        return cls(pid, psutil.Process(pid).create_time(), name, str(home))

    def process(self) -> psutil.Process | None:
        """The live process this identity names, or ``None`` (dead, or pid reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.05:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def write_pid_file(path: Path, ident: ProcessIdentity) -> None:
    write_private(path, json.dumps(asdict(ident)) + "\n")


def read_pid_file(path: Path) -> ProcessIdentity | None:
    """The identity recorded in ``path``; ``None`` if missing or not ours in shape."""
    try:
        data = json.loads(path.read_text())
        return ProcessIdentity(
            int(data["pid"]), float(data["create_time"]), str(data["name"]), str(data["home"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def terminate(ident: ProcessIdentity, grace: float) -> bool:
    """Stop a process we own and its process group: SIGTERM, wait ``grace`` s, SIGKILL.

    Our components run in their own session, so the group holds whatever they
    spawned. Returns True if something was signalled. A process whose identity
    does not match is never signalled.
    """
    proc = ident.process()
    if proc is None:
        return False
    members = _group_members(proc)
    _signal_group(proc.pid, signal.SIGTERM, members)
    _, alive = psutil.wait_procs(members, timeout=max(grace, 0))
    if alive:
        _signal_group(proc.pid, signal.SIGKILL, alive)
        psutil.wait_procs(alive, timeout=5)
    return True


def _group_members(leader: psutil.Process) -> list[psutil.Process]:
    members = [leader]
    with contextlib.suppress(psutil.Error):
        members += leader.children(recursive=True)
    return members


def _signal_group(pgid: int, sig: signal.Signals, procs: list[psutil.Process]) -> None:
    try:
        if os.getpgid(pgid) == pgid:
            os.killpg(pgid, sig)
            return
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


def wait_gone(ident: ProcessIdentity, timeout: float) -> bool:
    """Wait up to ``timeout`` s for the process to exit. True if it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ident.alive():
            return True
        time.sleep(0.05)
    return not ident.alive()


def find_by_identity(
    home: str | Path, marks: dict[str, str], exclude: set[int] | None = None
) -> list[ProcessIdentity]:
    """Live processes of this home found without a pid file, by identity.

    A process is ours when all three hold: its environment names ``home``
    (``STIGMER_HOME``, which every child gets), its working directory is
    ``home``, and its command line holds one of ``marks`` (a mark maps to the
    component's name). Each is returned with its create time, so that
    :func:`terminate` signals it only if it is still that process. A process
    whose environment cannot be read (another user's) is never ours.
    """
    home = str(Path(home))
    real = os.path.realpath(home)
    skip = {os.getpid(), *(exclude or set())}
    with contextlib.suppress(psutil.Error):
        skip |= {p.pid for p in psutil.Process().parents()}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        if proc.pid in skip:
            continue
        argv = proc.info["cmdline"] or []
        name = next((n for mark, n in marks.items() if mark in argv), None)
        if name is None:
            continue
        try:
            if proc.environ().get("STIGMER_HOME") != home or proc.cwd() != real:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.Error, OSError):
            continue
        found.append(ProcessIdentity(proc.pid, proc.info["create_time"], name, home))
    return found
