"""The supervisor: the one owner of component state (``python -m stigmer.stack.supervisor``).

``stigmer server start`` spawns it detached. It:

* holds ``run/supervisor.lock`` for its whole life (an ``flock``, released by
  the kernel even on SIGKILL), so "is the stack up" never depends on stray files;
* cleans up what a killed predecessor left (pid files whose identity matches);
* starts temporal, stigmer-server and agent-runner, checks their readiness
  continuously, restarts a component that dies with exponential backoff, and
  marks it ``failed`` after ``restart_limit`` crashes within ``restart_window``;
  a component whose engine does not answer (Docker) is ``waiting``, which is no
  crash and is not counted, and is re-derived from the engine once it is back;
  ``last_error`` is cleared once a component is ready again (``last_crash`` keeps it);
* in dev mode (``server start --dev``, :mod:`stigmer.stack.dev`), watches the
  runner's sources and restarts each runner through its restart path when one
  changes: no crash, not counted against ``restart_limit``;
* answers JSON requests on ``run/supervisor.sock`` (mode 0600, never a network
  port): ``{"op": "status"}``, ``{"op": "api"}`` (where this stack's API is) and
  ``{"op": "shutdown"}``;
* on SIGTERM or ``shutdown``, stops components in reverse order (graceful, then
  forced) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from stigmer import __version__
from stigmer.contract.registry import API_SERVER, COMPONENTS, RUNNER, TEMPORAL, runner_replica
from stigmer.contract.status import (
    ComponentStatus,
    CrashInfo,
    DevInfo,
    StackStatus,
    all_ready,
    component_status,
    stack_status,
)
from stigmer.hardening import exit_now, not_dumpable
from stigmer.settings import Paths, Settings
from stigmer.stack.component import Component, ComponentUnavailable, FatalComponentError
from stigmer.stack.handover import Handover
from stigmer.stack.pidfile import (
    ProcessIdentity,
    find_by_identity,
    read_pid_file,
    terminate,
    write_pid_file,
)

log = logging.getLogger("stigmer.supervisor")

BACKOFF_START = 0.5  # seconds before the first restart
BACKOFF_MAX = 30.0
WAIT_RETRY = 1.0  # seconds between launch attempts while the engine does not answer
HEALTHY_RESET = 60.0  # a run this long (s) resets the backoff (not the restart count)
#: readiness is checked every STARTING_POLL s for the first STARTING_FOR s after a launch
STARTING_POLL = 0.05
STARTING_FOR = 10.0
#: seconds a component's supervision may take to end once the component stopped
SUPERVISION_END_S = 5.0
#: seconds past stop_grace before a stopping component is killed: the runner's worker
#: cancels what still runs at stop_grace, and each attempt then reports that a worker
#: shutdown ended it (which does not use up the call's attempts: runner/lost.py);
#: killed first, the attempt would end by heartbeat timeout, 10 s later
WIND_DOWN_S = 2.0


class Supervised:
    """A component plus the state the supervisor keeps about it."""

    def __init__(self, comp: Component, settings: Settings) -> None:
        self.comp = comp
        self.settings = settings
        self.state = "stopped"
        self.ready = False
        self.restarts = 0
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.last_error: str | None = None
        self.last_exit_code: int | None = None
        self.fix: str | None = None
        #: the last real crash (error, fix, exit code, time): kept after it recovered
        self.last_crash: CrashInfo | None = None
        #: while ``waiting``: what for (the Docker engine does not answer)
        self.waiting_reason: str | None = None
        self._fatal: FatalComponentError | None = None
        self._crashes: deque[float] = deque()
        self._stopping = False
        self._wake = asyncio.Event()
        #: dev mode: a restart was asked for (:meth:`reload`), and it is being stopped for it
        self._reload_asked = asyncio.Event()
        self._reloading = False
        #: restarts asked for in dev mode (a source changed): no crash, not counted
        self.dev_restarts = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"supervise-{self.comp.name}")

    async def _run(self) -> None:
        backoff = BACKOFF_START
        #: readiness of what may still run while the engine is away (see ComponentUnavailable)
        watcher: asyncio.Task[None] | None = None
        lost = False  # the last launch was lost from sight, not seen to end
        while not self._stopping:
            if self.state != "waiting":
                self.state = "starting" if self.restarts == 0 else "restarting"
                self.ready = False
            code: int | None = None
            # what a reload asked for until now is what this launch runs
            self._reload_asked.clear()
            reloaded = False
            try:
                await self.comp.launch()
            except FatalComponentError as exc:
                await _cancel(watcher)
                self._fail(exc.message, exc.fix)
                return
            except ComponentUnavailable as exc:
                # not a crash: no restart is counted, and it is tried again soon
                self._wait(exc.reason)
                await self._pause(WAIT_RETRY)
                continue
            except Exception as exc:
                await _cancel(watcher)
                watcher = None
                log.exception("%s failed to launch", self.comp.name)
                self.comp.recent_errors.append(f"failed to launch: {exc}")
            else:
                await _cancel(watcher)
                self.waiting_reason = None
                if self.comp.adopted:
                    log.info("%s: took over its own instance, still running", self.comp.name)
                    self.state = "running" if self.ready else "starting"
                else:
                    if lost:
                        self.restarts += 1
                    self.started_at = time.time()
                    log.info("%s launched (pid %s)", self.comp.name, self.comp.pid)
                    if self.state == "waiting":
                        self.state = "starting" if self.restarts == 0 else "restarting"
                        self.ready = False
                lost = False
                watcher = asyncio.create_task(self._watch_ready())
                try:
                    code, reloaded = await self._wait_or_reload()
                except ComponentUnavailable as exc:
                    # lost from sight: it may still do work, so readiness is still watched
                    lost = True
                    self._wait(exc.reason)
                    await self._pause(WAIT_RETRY)
                    continue
                except BaseException:
                    await _cancel(watcher)
                    raise
                await _cancel(watcher)
                watcher = None
            if self._stopping:
                break
            if self._fatal is not None:
                self._fail(self._fatal.message, self._fatal.fix)
                return
            if reloaded:
                # asked for (a source changed): no crash, no backoff, not counted
                self.dev_restarts += 1
                log.info("%s stopped for a dev restart (exit code %s)", self.comp.name, code)
                self.state = "restarting"
                self.ready = False
                backoff = BACKOFF_START
                continue
            ran_for = time.time() - (self.started_at or time.time())
            self._crashed(code)
            if self.comp.final_exit(code):
                # starting it again cannot help (a dev-mode reload still does)
                assert self.last_error is not None
                self._fail(self.last_error, self.fix)
                return
            log.warning("%s exited with code %s after %.1fs", self.comp.name, code, ran_for)
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.settings.restart_window:
                self._crashes.popleft()
            if len(self._crashes) > self.settings.restart_limit:
                self._fail(
                    f"crashed {len(self._crashes)} times in {self.settings.restart_window:.0f}s; "
                    f"gave up. Last: {self.last_error}",
                    self.fix
                    or f"See `stigmer server logs -c {self.comp.name}`, fix the cause, then "
                    "`stigmer server restart`.",
                )
                return
            if ran_for > HEALTHY_RESET:
                backoff = BACKOFF_START
            self.state = "restarting"
            self.ready = False
            await self._pause(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            if self._stopping:
                break
            self.restarts += 1
        await _cancel(watcher)
        self.state = "stopped"
        self.ready = False

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if ``stop`` (or a dev :meth:`reload`) wakes us."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, self._reload_asked)]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _wait_or_reload(self) -> tuple[int | None, bool]:
        """Wait until the component ends: ``(exit code, ended for a reload)``.

        A :meth:`reload` while it runs stops it (``dev.RESTART_GRACE``, and
        ``WIND_DOWN_S`` for its worker to report the calls it cancelled), and its
        end is then no crash.
        """
        from stigmer.stack.dev import RESTART_GRACE

        ended = asyncio.ensure_future(self.comp.wait())
        reloaded = False
        try:
            while True:
                asked = asyncio.ensure_future(self._reload_asked.wait())
                await asyncio.wait({ended, asked}, return_when=asyncio.FIRST_COMPLETED)
                asked.cancel()
                if ended.done():
                    return ended.result(), reloaded
                self._reload_asked.clear()
                if self._stopping:
                    continue
                reloaded = self._reloading = True
                # the dev runner's worker cancels what still runs after RESTART_GRACE
                # (handover.runner_stop_grace); WIND_DOWN_S lets it report that
                grace = min(RESTART_GRACE, self.settings.stop_grace) + WIND_DOWN_S
                await self.comp.terminate(grace)
        except BaseException:
            ended.cancel()
            raise
        finally:
            self._reloading = False

    def reload(self, reason: str) -> None:
        """Dev mode: restart the component now through its restart path (``reason``: why).

        Not a crash: it is not counted against ``restart_limit``. A component that
        had failed (its sources were broken, say) is started again: its crash
        count starts afresh.
        """
        if self._stopping:
            return
        if self.task is not None and self.task.done():
            log.info("%s: %s; starting it again", self.comp.name, reason)
            self.comp.note(f"dev mode: {reason}; starting {self.comp.name} again")
            self._crashes.clear()
            self._fatal = None
            self.start()
            return
        log.info("%s: %s; restarting it", self.comp.name, reason)
        self.comp.note(f"dev mode: {reason}; restarting {self.comp.name} with the new code")
        self._reload_asked.set()

    def _wait(self, reason: str) -> None:
        """Waiting for what it runs on (the Docker engine): shown as such, not a crash."""
        if self.state != "waiting" or self.waiting_reason != reason:
            log.warning("%s is waiting: %s", self.comp.name, reason)
        self.state = "waiting"
        self.waiting_reason = reason

    def _crashed(self, code: int | None) -> None:
        """Record a real crash: ``last_error`` (until it is ready again) and ``last_crash``."""
        self.last_exit_code = code
        cause = self.comp.exit_cause(code)
        if cause is not None:
            self.last_error, self.fix = cause
        else:
            tail = "\n".join(list(self.comp.recent_errors)[-5:])
            self.last_error = _exit_text(code) + (f":\n{tail}" if tail else "")
            self.fix = None
        self.last_crash = {
            "error": self.last_error,
            "fix": self.fix,
            "exit_code": code,
            "at": time.time(),
        }

    def _recovered(self) -> None:
        """Ready again after a crash: the error is history (``last_crash`` keeps it)."""
        if self.last_error is not None:
            log.info("%s recovered from: %s", self.comp.name, self.last_error.splitlines()[0])
        self.last_error = None
        self.fix = None

    def _fail(self, message: str, fix: str | None) -> None:
        self.state = "failed"
        self.ready = False
        self.last_error = message
        self.fix = fix
        log.error("%s failed: %s", self.comp.name, message)

    async def _watch_ready(self) -> None:
        unready_since: float | None = None  # since when it stopped answering, once ready
        while True:
            try:
                async with asyncio.timeout(5):
                    ok = await self.comp.ready()
            except FatalComponentError as exc:
                # it cannot work with this configuration: stop it; _run marks it failed
                log.error("%s cannot work: %s", self.comp.name, exc.message)
                self._fatal = exc
                await self.comp.terminate(self.settings.stop_grace)
                return
            except Exception:
                ok = False
            if ok and not self.ready:
                log.info("%s is ready", self.comp.name)
                self.ready_at = time.time()
            if ok:
                unready_since = None
            elif self.ready and not self._stopping and not self._reloading:
                unready_since = time.monotonic()
                log.warning("%s stopped answering its readiness check", self.comp.name)
            self.ready = ok
            after = self.settings.restart_unready_after
            if (
                unready_since is not None
                and self.comp.unresponsive()
                and after > 0
                and time.monotonic() - unready_since > after
            ):
                # it runs, but does no work (hung, or wedged by a full disk): restart it
                why = f"stopped answering for {after:.0f}s while running (restart_unready_after)"
                log.error("%s %s: restarting it", self.comp.name, why)
                self.comp.recent_errors.append(why)
                await self.comp.terminate(self.settings.stop_grace)
                return
            if ok and self.state in ("starting", "restarting"):
                self.state = "running"
                self._recovered()
            if ok:
                await asyncio.sleep(2.0)
            elif time.time() - (self.started_at or 0) < STARTING_FOR:
                # just launched: seen ready within tens of ms (`server start` waits for it)
                await asyncio.sleep(STARTING_POLL)
            else:
                await asyncio.sleep(0.25)

    async def stop(self, grace: float) -> None:
        self._stopping = True
        self._wake.set()
        if self.state not in ("stopped", "failed"):
            self.state = "stopping"
        await self.comp.terminate(grace)
        if self.task and not self.task.done():
            # it ends once the component has; bounded all the same, so that no
            # stuck await (a readiness check, a log pump) holds up `server stop`
            done, _ = await asyncio.wait({self.task}, timeout=SUPERVISION_END_S)
            if not done:
                log.error(
                    "%s: its supervision did not end %.0fs after the component stopped; "
                    "cancelling it",
                    self.comp.name,
                    SUPERVISION_END_S,
                )
                self.task.cancel()
                await asyncio.wait({self.task}, timeout=1)
        if self.task and self.task.done() and not self.task.cancelled() and self.task.exception():
            log.error("%s: its supervision failed: %r", self.comp.name, self.task.exception())
        if self.state != "failed":
            self.state = "stopped"
        self.ready = False
        await self.comp.close()

    def status(self) -> ComponentStatus:
        now = time.time()
        running = self.state == "running" and self.started_at
        status = component_status(
            self.comp.name,
            self.state,  # type: ignore[arg-type]
            ready=self.ready,
            managed=self.comp.managed,
            pid=self.comp.pid,
            container_id=self.comp.container_id,
            restarts=self.restarts,
            started_at=self.started_at,
            uptime_s=round(now - self.started_at, 1) if running and self.started_at else None,
            ready_in_s=round(self.ready_at - self.started_at, 2)
            if self.ready_at and self.started_at and self.ready_at >= self.started_at
            else None,
            endpoint=self.comp.endpoint,
            last_error=self.last_error,
            last_exit_code=self.last_exit_code,
            fix=self.fix,
            last_crash=self.last_crash,
            waiting_for=self.waiting_reason
            if self.state == "waiting"
            else None
            if self.ready
            else self.comp.waiting_for(),
        )
        extra = self.comp.extra_status()
        if self.settings.dev and runner_replica(self.comp.name):
            extra = {**extra, "dev_restarts": self.dev_restarts}
        return {**status, **extra}


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _exit_text(code: int | None) -> str:
    """``exited with code 3``, ``killed by SIGKILL``, or ``did not start``."""
    if code is None:
        return "did not start, or its end could not be observed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code > 128 and code - 128 in (9, 15):  # a container's 137, 143
        return f"exited with code {code} ({signal.Signals(code - 128).name})"
    return f"exited with code {code}"


def build_components(settings: Settings, secrets: dict[str, str]) -> list[Component]:
    """The stack's components in start order (``secrets``: what agents' references resolve to)."""
    from stigmer.stack.api_server import ApiServer
    from stigmer.stack.temporal import ExternalTemporal, ManagedTemporal, TemporalProbe

    probe = TemporalProbe(settings)
    here = settings.components
    # a host that runs only some components still watches an external Temporal:
    # its status shows what the others depend on
    temporal: Component = (
        ManagedTemporal(settings, probe)
        if settings.temporal_managed and TEMPORAL in here
        else ExternalTemporal(settings, probe)
    )
    out: list[Component] = [temporal]
    if API_SERVER in here:
        out.append(ApiServer(settings))
    if RUNNER in here:
        # `auto` is resolved to one of these by the CLI before the supervisor starts
        if settings.runner_mode == "docker":
            from stigmer.stack.agent_runner_docker import DockerRunner as Runner
        else:
            from stigmer.stack.agent_runner import LocalRunner as Runner  # type: ignore[assignment]
        out += [
            Runner(settings, probe, secrets, replica)
            for replica in range(1, settings.runner_replicas + 1)
        ]
    return out


class Supervisor:
    def __init__(self, settings: Settings, secrets: dict[str, str]) -> None:
        self.settings = settings
        self.paths: Paths = settings.paths
        self.started_at = time.time()
        self.units = [Supervised(c, settings) for c in build_components(settings, secrets)]
        self._shutdown = asyncio.Event()
        self._stopped = asyncio.Event()
        #: dev mode: the last change of the runner's sources (files, when)
        self._last_change: tuple[list[str], float] | None = None

    def dev_status(self) -> DevInfo | None:
        if not self.settings.dev:
            return None
        files, at = self._last_change or (None, None)
        return {
            # not checked again here: a status must answer even if the folder went away
            "source": str(self.settings.dev_source_dir),
            "restarts": sum(u.dev_restarts for u in self.units),
            "last_change": files,
            "last_change_at": at,
        }

    async def _sources_changed(self, files: list[str]) -> None:
        """Dev mode: runner sources changed; restart each runner here through its restart path."""
        from stigmer.stack.dev import describe

        self._last_change = (files, time.time())
        what = f"{describe(files)} changed"
        log.info("dev mode: %s", what)
        for unit in self.units:
            if runner_replica(unit.comp.name):
                unit.reload(what)

    async def _watch_sources(self) -> None:
        from stigmer.stack.dev import source_dir, watch

        try:
            await watch(source_dir(self.settings), self._sources_changed, self._shutdown)
        except asyncio.CancelledError:
            raise
        except Exception:  # the stack goes on; only the reload is lost, and the log says why
            log.exception("dev mode: watching the sources failed; the runner no longer reloads")

    def status(self) -> StackStatus:
        comps = [u.status() for u in self.units]
        s = self.settings
        return stack_status(
            str(self.paths.home),
            __version__,
            comps,
            running=True,
            ready=all_ready(comps),
            supervisor={"pid": os.getpid(), "started_at": self.started_at},
            endpoints={
                "api": s.api_endpoint,
                "temporal": s.temporal_target,
                "temporal_ui": f"http://{s.temporal_target.rpartition(':')[0]}:{s.temporal_ui_port}"
                if s.temporal_managed and TEMPORAL in s.components
                else None,
                "namespace": s.temporal_namespace,
            },
            data_dir=str(self.paths.data),
            workspace=str(s.workspace_dir),
            dev=self.dev_status(),
        )

    async def _preload(self) -> None:
        from stigmer.stack.component import import_off_loop
        from stigmer.stack.temporal import PROBE_MODULES

        modules = list(PROBE_MODULES)
        if any(u.comp.name == API_SERVER for u in self.units):
            modules += ["http.client", "ssl"]
        with contextlib.suppress(Exception):
            await import_off_loop(*modules)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
            req = json.loads(line or b"{}")
            op = req.get("op")
            resp: Any
            if op == "status":
                resp = self.status()
            elif op == "api":  # where this stack's API is: the CLI sends its token nowhere else
                api = next((u for u in self.units if u.comp.name == API_SERVER), None)
                resp = {
                    "api": self.settings.server_endpoint if api else None,
                    "state": api.state if api else None,
                }
            elif op == "shutdown":
                self._shutdown.set()
                resp = {"ok": True}
            else:
                resp = {"error": f"unknown op {op!r}"}
            writer.write(json.dumps(resp).encode() + b"\n")
            await writer.drain()
        except Exception as exc:  # a bad client must not hurt the supervisor
            log.debug("control request failed: %s", exc)
        finally:
            writer.close()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._shutdown.set)
        sock = self.paths.control_socket
        sock.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._handle, path=str(sock))
        finally:
            os.umask(old)
        log.info("supervisor %s up (pid %d), home %s", __version__, os.getpid(), self.paths.home)
        # what the readiness checks need, imported in a thread while the components start
        preload = asyncio.create_task(self._preload(), name="preload")
        for unit in self.units:
            unit.start()
        watcher = (
            asyncio.create_task(self._watch_sources(), name="dev-watch")
            if self.settings.dev and any(runner_replica(u.comp.name) for u in self.units)
            else None
        )
        await self._shutdown.wait()
        log.info("shutting down")
        await _cancel(preload)
        await _cancel(watcher)
        for unit in reversed(self.units):
            await unit.stop(self.settings.stop_grace + WIND_DOWN_S)
            log.info("%s stopped", unit.comp.name)
        server.close()
        sock.unlink(missing_ok=True)


#: What marks a process of ours in its command line (with its home: pidfile.find_by_identity).
LEFTOVER_MARKS = {
    "stigmer.stack.supervisor": "supervisor",
    "stigmer.server": API_SERVER,
    "stigmer.runner": RUNNER,
    "start-dev": TEMPORAL,
}


def leftovers_without_pid_file(
    paths: Paths, spare: set[int] | None = None
) -> list[ProcessIdentity]:
    """Processes of this home that no pid file names (a supervisor killed before writing it)."""
    return find_by_identity(paths.home, LEFTOVER_MARKS, exclude=spare)


def reap_leftovers(
    paths: Paths,
    grace: float,
    names: tuple[str, ...] | None = None,
    spare: set[int] | None = None,
) -> list[str]:
    """Stop components a dead supervisor left behind; return what was stopped.

    Only processes whose pid file identity (pid and create time) matches are
    signalled; anything else in a pid file is ignored and the file removed.
    Then (unless ``names`` narrows it) the processes of this home that no pid
    file names are found by identity (home, command line, create time) and
    stopped too: a child whose pid file was never written is still ours.
    Call it only while no live supervisor holds the lock. ``spare``: pids that are
    not leftovers (the supervisor this start spawned, waiting for its settings).
    """
    stopped = []
    recorded = {p.stem for p in paths.run.glob("*.pid")} if paths.run.is_dir() else set()
    runners = sorted(n for n in recorded if runner_replica(n) and n != RUNNER)
    for name in names or (*COMPONENTS, *runners):
        pf = paths.pid_file(name)
        ident = read_pid_file(pf)
        if ident is not None and terminate(ident, grace):
            stopped.append(f"{name} (pid {ident.pid})")
        pf.unlink(missing_ok=True)
    if names is None:
        for ident in leftovers_without_pid_file(paths, spare):
            if terminate(ident, grace):
                stopped.append(f"{ident.name} (pid {ident.pid}, no pid file)")
    paths.control_socket.unlink(missing_ok=True)
    if docker_mode_recorded(paths):
        from stigmer.stack.agent_runner_docker import reap_containers

        stopped += reap_containers(paths)
    return stopped


def docker_mode_recorded(paths: Paths) -> bool:
    """True if the last stack of this home ran its runner in a container."""
    try:
        values = json.loads(paths.stack_file.read_text())["values"]
        return bool(values.get("runner_mode") == "docker")
    except (OSError, ValueError, KeyError):
        return False


def _run_to_end(main_coro: Any) -> None:
    """``asyncio.run``, except that threads still blocked at the end are not waited for.

    Python 3.11's ``asyncio.run`` waits for the default executor's threads with
    no limit (and its wait cannot be cut short: it joins a thread): one blocked
    in a Docker call, on a container nobody stopped, kept the supervisor and
    `server stop` waiting (80 s). Every component is stopped by then, and the
    process ends with ``exit_now`` right after.
    """
    with asyncio.Runner() as runner:
        runner.run(main_coro)
        loop = runner.get_loop()
        executor = getattr(loop, "_default_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            loop._default_executor = None  # type: ignore[attr-defined]


def _preload_in_thread() -> None:
    """Import the readiness checks' modules in a thread (one import at a time, as
    :func:`~stigmer.stack.component.import_off_loop`, which then finds them loaded)."""
    import threading

    from stigmer.stack.component import import_all
    from stigmer.stack.temporal import PROBE_MODULES

    def load() -> None:
        with contextlib.suppress(Exception):
            import_all([*PROBE_MODULES, "http.client", "ssl"])

    threading.Thread(target=load, name="preload", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stigmer-supervisor")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    paths = Paths(Path(args.home))
    # its environment is the one `server start` ran in (model keys, secrets): not for tools
    not_dumpable()
    # `server start` spawns the supervisor before its own checks (the image, ports,
    # leftovers, the store) and hands it the settings and secrets on stdin once they
    # pass: meanwhile, on the machine's other CPU, it imports what the readiness
    # checks need. No stdin at all: that start ended before starting a stack.
    _preload_in_thread()
    try:
        handed = sys.stdin.read()
    except (OSError, ValueError):
        handed = ""
    if not handed.strip():
        return 0
    from stigmer.stack.logs import RotatingLog, RotatingLogHandler

    os.umask(0o077)  # what the components write (stores, logs) is the owner's alone
    paths.ensure()
    handler = RotatingLogHandler(RotatingLog(paths.log_file("supervisor"), 10 * 1024 * 1024, 3))
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # What the readiness checks need (temporalio, httpx: 0.2 s) is imported by the
    # first check, once every component is launched, not before
    from filelock import FileLock, Timeout

    lock = FileLock(str(paths.supervisor_lock))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.error("another supervisor holds %s; exiting", paths.supervisor_lock)
        return 3
    try:
        try:  # the settings and secrets, whole, come on stdin from `server start`
            handover = Handover.loads(handed)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("no settings on stdin (%s): the supervisor is started by `server start`", exc)
            return 2
        settings = handover.settings
        write_pid_file(
            paths.pid_file("supervisor"), ProcessIdentity.of(os.getpid(), "supervisor", paths.home)
        )
        # leftovers of an earlier stack were reaped by `server start`, under the stack
        # lock it holds until this stack is ready
        _run_to_end(Supervisor(settings, handover.secrets).run())
        return 0
    finally:
        paths.pid_file("supervisor").unlink(missing_ok=True)
        lock.release()


if __name__ == "__main__":
    exit_now(main())
