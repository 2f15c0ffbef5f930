"""The Component interface the supervisor drives, and its host-process implementation.

A component is one piece of the stack (Temporal, the API server, the
agent-runner). The supervisor only ever calls the methods of :class:`Component`;
a host process (:class:`ProcessComponent`) and a Docker container (the runner's
docker mode) are two implementations of the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable

from stigmer.contract.config import RuntimeConfig
from stigmer.contract.status import ComponentDetails
from stigmer.settings import Paths, Settings
from stigmer.stack.handover import child_environment
from stigmer.stack.logs import RotatingLog
from stigmer.stack.pidfile import ProcessIdentity, write_pid_file


class FatalComponentError(Exception):
    """A failure that restarting cannot fix (a port taken, a missing binary, TLS refused).

    The supervisor marks the component ``failed`` at once instead of retrying,
    and shows ``fix`` (a command or the setting to change) in its status.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class ComponentUnavailable(Exception):
    """What the component runs on (the Docker engine) does not answer: not a crash.

    Raised by :meth:`Component.launch` when it cannot even try, and by
    :meth:`Component.wait` when it loses sight of a running component. The
    supervisor shows the component ``waiting`` with ``reason``, keeps trying,
    and does not count it against ``restart_limit``; the next ``launch``
    re-derives from the engine what still runs.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Component(ABC):
    """One supervised piece of the stack."""

    #: ``temporal``, ``stigmer-server`` or ``agent-runner``.
    name: str
    #: False for an external Temporal: watched, never started or stopped.
    managed: bool = True
    #: set by ``launch``: it found its own instance still running and took it over
    adopted: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths: Paths = settings.paths
        #: the last lines the component wrote to stderr, for ``status`` errors
        self.recent_errors: deque[str] = deque(maxlen=20)

    @property
    def endpoint(self) -> str | None:
        """Where clients reach it (``host:port`` or URL), if anywhere."""
        return None

    @property
    def pid(self) -> int | None:
        return None

    @property
    def container_id(self) -> str | None:
        return None

    def extra_status(self) -> ComponentDetails:
        """Component-specific fields merged into its ``status`` entry."""
        return {}

    def exit_cause(self, code: int | None) -> tuple[str, str | None] | None:
        """Why the launched component ended, if it knows better than its exit code.

        Returns ``(message, fix)``, e.g. a container killed at its memory limit.
        """
        return None

    def final_exit(self, code: int | None) -> bool:
        """True when it ended in a way that starting it again cannot fix: it is failed at once."""
        return False

    def runtime_config(self) -> RuntimeConfig | None:
        """The configuration this component's process is handed, if it takes one."""
        return None

    def waiting_for(self) -> str | None:
        """Why it is not ready yet, if known (shown while it starts)."""
        return None

    def unresponsive(self) -> bool:
        """True if its failed readiness is its own fault, so that a restart can help.

        The supervisor restarts a component that stays so for
        ``restart_unready_after`` seconds while its process runs.
        """
        return False

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """Checks before each launch. Raises FatalComponentError to stop retrying."""

    def note(self, text: str) -> None:  # noqa: B027 - optional hook
        """Write a line of the supervisor's own (``[stigmer] text``) into the component's log."""

    @abstractmethod
    async def launch(self) -> None:
        """Start the component and return once it is launched (not yet ready).

        Raises:
            FatalComponentError: it cannot start and retrying will not help.
        """

    @abstractmethod
    async def wait(self) -> int | None:
        """Wait until the launched component ends; return its exit code if known."""

    @abstractmethod
    async def terminate(self, grace: float) -> None:
        """Stop it: a graceful signal, ``grace`` seconds, then force. Idempotent."""

    @abstractmethod
    async def ready(self) -> bool:
        """True when it does real work now (not merely "the process exists").

        Raises:
            FatalComponentError: it cannot work with this configuration (the
                supervisor stops it and marks it failed).
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and files after the final stop."""


class ProcessComponent(Component):
    """A component that runs as a host process in its own session (process group).

    Its stdout and stderr are captured line by line into rotated, timestamped
    logs (:mod:`stigmer.stack.logs`); its identity goes to ``run/<name>.pid`` so
    that a later ``start`` or ``stop`` can clean it up even if the supervisor
    was killed.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.proc: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._out = RotatingLog(
            self.paths.log_file(self.name, "out"), settings.log_max_bytes, settings.log_backups
        )
        self._err = RotatingLog(
            self.paths.log_file(self.name, "err"), settings.log_max_bytes, settings.log_backups
        )

    @abstractmethod
    def command(self) -> list[str]:
        """argv of the process."""

    def environment(self, configured: bool) -> dict[str, str]:
        """Environment of the process: the basics, and ``STIGMER_CONFIG=-`` if it takes one."""
        return child_environment(self.settings, "-" if configured else None)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.returncode is None else None

    async def launch(self) -> None:
        """Start the process; its configuration (made afresh, secrets included) goes on its stdin.

        Never in a file or its environment: nothing but the child ever holds it.
        """
        self.preflight()
        argv = self.command()
        cfg = self.runtime_config()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if cfg else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(cfg is not None),
                cwd=str(self.paths.home),
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise FatalComponentError(f"cannot run {argv[0]}: {exc}") from exc
        if cfg is not None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.proc.stdin.write(cfg.model_dump_json().encode())
                await self.proc.stdin.drain()
            self.proc.stdin.close()
        with contextlib.suppress(Exception):
            write_pid_file(
                self.paths.pid_file(self.name),
                ProcessIdentity.of(self.proc.pid, self.name, self.paths.home),
            )
        assert self.proc.stdout and self.proc.stderr
        self._pumps = [
            asyncio.create_task(self._pump(self.proc.stdout, self._out, False)),
            asyncio.create_task(self._pump(self.proc.stderr, self._err, True)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, log: RotatingLog, is_err: bool) -> None:
        buf = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                self._emit(raw, log, is_err)
        if buf:
            self._emit(buf, log, is_err)

    def _emit(self, raw: bytes, log: RotatingLog, is_err: bool) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        log.write(text)
        if is_err and text.strip():
            self.recent_errors.append(text)

    async def wait(self) -> int | None:
        assert self.proc is not None
        code = await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.gather(*self._pumps)
        self.paths.pid_file(self.name).unlink(missing_ok=True)
        return code

    async def terminate(self, grace: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await proc.wait()
        # anything the component left in its group goes too
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def note(self, text: str) -> None:
        self._err.write(f"[stigmer] {text}")

    async def close(self) -> None:
        self._out.close()
        self._err.close()


#: Imports made off the event loop, one at a time (see :func:`import_off_loop`).
_IMPORT_LOCK = threading.Lock()


def import_all(modules: list[str]) -> None:
    """Import ``modules``, one thread at a time (:func:`import_off_loop` says why)."""
    with _IMPORT_LOCK:
        for m in modules:
            importlib.import_module(m)


async def import_off_loop(*modules: str) -> None:
    """Import ``modules`` in a thread, not on the supervisor's event loop.

    temporalio's client takes up to a second to import on a busy machine, and
    httpx a third of one: imported where a readiness check first needs them,
    they held up the launch of every component still to be started (the API
    server and the runner were launched a second after Temporal).

    One import at a time, and the caller imports nothing of those packages on
    the event loop before this returns: two threads importing the same package
    (temporalio's modules import each other) can deadlock, which leaves the
    package half-initialized for the life of the process.
    """
    missing = [m for m in modules if m not in sys.modules]
    # a module another thread is importing is in sys.modules half-initialized: wait for
    # that thread (it holds the lock) before anything of the package is used
    if missing or _IMPORT_LOCK.locked():
        await asyncio.to_thread(import_all, list(modules))


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when we die.

    ``PR_SET_PDEATHSIG`` (Linux; it survives ``exec``): a supervisor killed with
    SIGKILL takes its components with it, even one whose pid file it never
    wrote. Everything the child runs is looked up here, before the fork, so the
    child only makes two system calls. ``None`` where there is no ``prctl``.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    getppid, exit_now = os.getppid, os._exit

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if getppid() != parent:  # the parent died before the signal was armed
            exit_now(1)

    return arm


def python_module_command(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module`` with the interpreter running us."""
    return [sys.executable, "-m", module, *args]
