"""The CLI's side of the stack: ask the supervisor, start it, stop it.

The CLI never guesses component state from files: it asks the supervisor over
its control socket (:func:`rpc`). Files are used only to clean up after a
supervisor that was killed, and then only pids whose identity is proven
(:mod:`stigmer.stack.pidfile`).

``start`` and ``stop`` serialize on ``run/stack.lock``, so two ``start`` at once
give one stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, cast

from stigmer.contract.registry import API_SERVER, COMPONENTS, RUNNER, TEMPORAL
from stigmer.contract.status import ComponentStatus, StackStatus, component_status, stack_status
from stigmer.credentials import ensure_stack_key, ensure_token, read_stack_keys
from stigmer.errors import (
    ConfigError,
    StackBusyError,
    StackStartError,
    SupervisorError,
    TemporalError,
)
from stigmer.files import make_private, write_private
from stigmer.settings import Paths, Settings, ensure_config_file
from stigmer.stack.rpc import rpc

#: how often `server start` asks the supervisor whether the stack is ready (s)
READY_POLL = 0.05
ORPHANED = "left running by a supervisor that died; `stigmer server stop` cleans up"


def supervisor_holds_lock(paths: Paths) -> bool:
    """True while a live supervisor holds ``run/supervisor.lock`` (a kernel flock)."""
    import fcntl

    try:
        fd = os.open(paths.supervisor_lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def stopped_status(settings: Settings) -> StackStatus:
    """What ``status`` reports when no supervisor runs (orphans shown as such)."""
    from stigmer import __version__
    from stigmer.stack.pidfile import read_pid_file
    from stigmer.stack.supervisor import docker_mode_recorded, leftovers_without_pid_file

    # a pid file that names a live process, else a process found by identity (no pid file)
    found = {i.name: i for i in leftovers_without_pid_file(settings.paths)}
    comps = []
    for name in settings.components:
        ident = read_pid_file(settings.paths.pid_file(name))
        if ident is None or not ident.alive():
            ident = found.get(name)
        if ident is not None and ident.alive():
            comps.append(component_status(name, "orphaned", pid=ident.pid, last_error=ORPHANED))
        else:
            comps.append(component_status(name))
    if docker_mode_recorded(settings.paths):
        container = _leftover_container(settings)
        runner = next((c for c in comps if c["name"] == RUNNER), None)
        if container is not None and runner is not None:
            runner["state"], runner["container_id"] = "orphaned", container
            runner["last_error"] = ORPHANED
    return stack_status(str(settings.home), __version__, comps)


def _leftover_container(settings: Settings) -> str | None:
    """Short id of a running container labelled with this home, if the engine answers."""
    try:
        from stigmer.images.engine import connect
        from stigmer.stack.agent_runner_docker import LABEL_HOME

        client = connect(timeout=2)
    except Exception:
        return None
    try:
        found = client.containers.list(filters={"label": f"{LABEL_HOME}={settings.home}"})
        return found[0].short_id if found else None
    except Exception:
        return None
    finally:
        client.close()


def supervisor_status(paths: Paths, timeout: float = 5.0) -> StackStatus | None:
    """The running supervisor's status, or None if none answers."""
    return cast("StackStatus | None", rpc(paths, "status", timeout))


def status(settings: Settings) -> StackStatus:
    """The supervisor's status, or :func:`stopped_status` when it is not running.

    Raises:
        SupervisorError: a supervisor holds the lock but does not answer (stopped
            with SIGSTOP, or wedged).
    """
    answer = supervisor_status(settings.paths)
    if answer is not None:
        return answer
    if supervisor_holds_lock(settings.paths):
        raise SupervisorError(
            f"The stigmer supervisor of {settings.home} runs but does not answer.",
            "It may be stopped (SIGSTOP) or wedged: `stigmer server stop` stops it for good.",
        )
    return stopped_status(settings)


@contextmanager
def stack_lock(paths: Paths, timeout: float, waiting: Callable[[], None] | None = None):  # type: ignore[no-untyped-def]
    """Hold ``run/stack.lock`` (serializes start/stop/restart across processes)."""
    from filelock import FileLock, Timeout

    paths.ensure()
    lock = FileLock(str(paths.start_lock))
    try:
        lock.acquire(timeout=0.2)
    except Timeout:
        if waiting:
            waiting()
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise StackBusyError(
                f"Another stigmer command is starting or stopping the stack in {paths.home}.",
                "Wait for it to finish, then retry.",
            ) from None
    try:
        yield
    finally:
        lock.release()


def port_needs(settings: Settings) -> list[Any]:
    from stigmer.stack.ports import PortNeed

    needs = []
    here = settings.components
    if TEMPORAL in here and settings.temporal_managed:
        host = settings.temporal_bind
        needs += [
            PortNeed(settings.temporal_port, "the Temporal gRPC API", "temporal_port", host),
            PortNeed(settings.temporal_ui_port, "the Temporal Web UI", "temporal_ui_port", host),
        ]
    if API_SERVER in here:
        needs.append(
            PortNeed(
                settings.server_port, "the stigmer API server", "server_port", settings.server_bind
            )
        )
    return needs


def start(
    settings: Settings,
    on_progress: Callable[[StackStatus], None] | None = None,
    on_wait_lock: Callable[[], None] | None = None,
    before_spawn: Callable[[], dict[str, Any] | None] | None = None,
    on_running: Callable[[StackStatus], None] | None = None,
) -> tuple[StackStatus, bool]:
    """Bring the stack up and wait for real readiness.

    ``before_spawn`` runs under the stack lock once we know the stack is not
    running, before anything starts (the runner image is resolved there); what
    it returns is added to the status as ``runner_image``. ``on_running`` runs,
    under the lock, when the stack already runs (it may refuse by raising).

    Returns ``(status, started)``; ``started`` is False when it was already running.

    Raises:
        PortInUseError: a needed port is taken (checked before anything starts).
        StackStartError: not ready within ``start_timeout``, or a component failed;
            everything started is stopped again before this is raised.
    """
    paths = settings.paths
    # The supervisor is spawned first: it imports what it needs, on the machine's other
    # CPU, while this process checks; it starts nothing until it has its settings
    # (_hand_over), and ends if it never gets them. (A home never started has no logs
    # folder for it yet: then it is spawned once the folders are made.)
    early = _spawn_early(settings) if paths.logs.is_dir() else None
    try:
        from stigmer.stack.handover import check

        check(settings)  # what the children's configurations need (TLS files) is there
        if settings.database_url:
            from stigmer.server.db import reachable

            reachable(settings.database_url)  # a wrong password or a down database: said now
        # everything the stack writes is the owner's alone: 0600 files in 0700 folders
        os.umask(0o077)
        paths.ensure()
        make_private(paths.home, skip=(settings.workspace_dir,))
        settings.workspace_dir.mkdir(parents=True, exist_ok=True)  # as the invoking user
        if early is None:
            early = _spawn_early(settings)
        return _start_locked(settings, early, on_progress, on_wait_lock, before_spawn, on_running)
    finally:
        if early is not None:
            _dismiss(early)  # unless it was handed the settings: then it is the stack's


def _start_locked(
    settings: Settings,
    early: subprocess.Popen[bytes] | None,
    on_progress: Callable[[StackStatus], None] | None,
    on_wait_lock: Callable[[], None] | None,
    before_spawn: Callable[[], dict[str, Any] | None] | None,
    on_running: Callable[[StackStatus], None] | None,
) -> tuple[StackStatus, bool]:
    """:func:`start`, from the stack key on; ``early``: the supervisor it spawned, waiting."""
    from stigmer.stack.ports import check_ports
    from stigmer.stack.supervisor import reap_leftovers

    paths = settings.paths
    here = settings.components
    ensure_config_file(paths)
    ensure_token(paths.api_token)
    ensure_token(paths.runner_token)
    if API_SERVER in here or RUNNER in here:
        key_file = settings.stack_key_file
        if settings.only and read_stack_keys(key_file) is None:
            # a key made here would seal what no other host can open
            raise ConfigError(
                f"stack_key_path {key_file}: there is no stack key. Every host of a stack "
                "seals and opens Temporal payloads with the same key.",
                "Copy the stack's key file from a host of this stack (credentials/stack-key.json) "
                "and point stack_key_path at it; for a new stack, make it once with "
                "`stigmer config rotate-key` and copy it to every host.",
            )
        ensure_stack_key(key_file)
    with stack_lock(paths, settings.start_timeout + 60, on_wait_lock):
        current = supervisor_status(paths)
        if current is None and supervisor_holds_lock(paths):
            current = _wait_for_answer(paths, 10)
            if current is None:
                raise SupervisorError(
                    f"A stigmer supervisor holds {paths.supervisor_lock} but does not answer.",
                    "Run `stigmer server stop` (it stops it), then start again.",
                )
        if current is not None:
            if on_running:
                on_running(current)
            return _already_running(settings, current, on_progress), False
        reap_leftovers(paths, settings.stop_grace, spare={early.pid} if early else None)
        store = settings.sqlite_store
        if API_SERVER in here and store is not None:
            from stigmer.server.backup import check as check_store

            check_store(store)  # damaged: said now, with the way back (the API server backs it up)
        check_ports(port_needs(settings))
        image = before_spawn() if before_spawn else None
        write_private(paths.stack_file, json.dumps(settings.to_json(secrets=False), indent=2))
        # One spawned early that died before it was handed the stack (killed, or it could not
        # import) is reported as it is (_wait_ready), not quietly replaced by another.
        proc = early if early is not None else _spawn_supervisor(settings)
        try:
            _hand_over(proc, settings)
            st = _wait_ready(settings, proc, on_progress)
            if image:
                st["runner_image"] = image
            return st, True
        except BaseException:
            _shutdown(paths, settings, proc)
            raise


def _already_running(
    settings: Settings,
    current: StackStatus,
    on_progress: Callable[[StackStatus], None] | None,
) -> StackStatus:
    """``start`` on a live stack: fine if ready, wait if still starting, fail if a component failed."""
    if current.get("ready"):
        return current
    failed = [c for c in current["components"] if c["state"] == "failed"]
    if failed:
        names = ", ".join(c["name"] for c in failed)
        first = (failed[0].get("last_error") or "").splitlines()
        raise StackStartError(
            f"stigmer is running, but {names} failed" + (f": {first[0]}" if first else "."),
            "Restart the stack: `stigmer server restart` (details: `stigmer server logs -c "
            f"{failed[0]['name']}`).",
            details=failed[0].get("last_error"),
        )
    return _wait_ready(settings, None, on_progress)


def _spawn_early(settings: Settings) -> subprocess.Popen[bytes] | None:
    """A supervisor for :func:`start` to hand its settings to later; None if one answers."""
    if supervisor_status(settings.paths, timeout=1) is not None:
        return None  # the stack runs (or starts): nothing to spawn
    return _spawn_supervisor(settings)


def _spawn_supervisor(settings: Settings) -> subprocess.Popen[bytes]:
    """The supervisor, waiting for its settings and secrets on its stdin (:func:`_hand_over`).

    Its environment holds none of them; until they come it only imports.
    """
    from stigmer.stack.handover import supervisor_environment

    paths = settings.paths
    # 0600 (it may be made before this process set its umask)
    fd = os.open(paths.log_file("supervisor", "err"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    err = os.fdopen(fd, "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stigmer.stack.supervisor", "--home", str(paths.home)],
            stdin=subprocess.PIPE,
            stdout=err,
            stderr=err,
            env=supervisor_environment(settings),
            cwd=str(paths.home),
            start_new_session=True,
            close_fds=True,
        )
    finally:
        err.close()
    return proc


def _hand_over(proc: subprocess.Popen[bytes], settings: Settings) -> None:
    """Give the supervisor its settings and secrets (on its stdin): it starts the stack."""
    from stigmer.stack.handover import Handover, secret_values

    handover = Handover(settings, secret_values(settings)).dumps().encode()
    assert proc.stdin is not None
    try:
        proc.stdin.write(handover)
        proc.stdin.close()
    except BrokenPipeError:  # it died at once; _wait_ready reports why
        pass


def _dismiss(proc: subprocess.Popen[bytes]) -> None:
    """End a supervisor spawned early that was not handed the stack (nothing to start):
    its stdin closes empty, and it exits; one that does not within 5 s is killed."""
    if proc.stdin is None or proc.stdin.closed:
        return  # handed over: it is the stack's
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_for_answer(paths: Paths, timeout: float) -> StackStatus | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = supervisor_status(paths)
        if st is not None:
            return st
        time.sleep(0.1)
    return None


def _wait_ready(
    settings: Settings,
    proc: subprocess.Popen[bytes] | None,
    on_progress: Callable[[StackStatus], None] | None,
) -> StackStatus:
    """Poll the supervisor until the stack is ready; ``proc`` is the supervisor we spawned, if any."""
    paths = settings.paths
    deadline = time.monotonic() + settings.start_timeout
    last: StackStatus | None = None
    silent_since = time.monotonic()
    while time.monotonic() < deadline:
        if proc is None and time.monotonic() - silent_since > 15:
            raise SupervisorError(
                "The stigmer supervisor stopped answering while the stack was starting.",
                "Run `stigmer server stop`, then start again; see `stigmer server logs -c supervisor`.",
            )
        if proc is not None and proc.poll() is not None:
            code = proc.returncode
            how = f"killed by signal {-code}" if code < 0 else f"code {code}"
            raise StackStartError(
                f"The stigmer supervisor exited during start-up ({how}).",
                f"See {paths.log_file('supervisor')} and {paths.log_file('supervisor', 'err')}.",
                details=_tail(paths.log_file("supervisor", "err"), 15)
                or _tail(paths.log_file("supervisor"), 15),
            )
        st = supervisor_status(paths, timeout=2)
        if st is not None:
            silent_since = time.monotonic()
            last = st
            if on_progress:
                on_progress(st)
            failed = [c for c in st["components"] if c["state"] == "failed"]
            if failed:
                c = failed[0]
                first, _, rest = (c["last_error"] or "").partition("\n")
                raise StackStartError(
                    f"{c['name']} failed: {first}",
                    c["fix"] or _see_logs(c["name"], paths),
                    details=rest or None,
                )
            if st.get("ready"):
                return st
        time.sleep(READY_POLL)
    pending = [
        c
        for c in (last or {}).get("components", [])
        if not (c["state"] == "running" and c["ready"])
    ]
    temporal = next((c for c in pending if c["name"] == TEMPORAL and c.get("waiting_for")), None)
    if temporal is not None:  # the cause is known: Temporal does not answer
        raise TemporalError(
            f"{temporal['waiting_for']} (waited {settings.start_timeout:.0f}s).",
            "Check temporal_address (STIGMER_TEMPORAL_ADDRESS) and that Temporal runs there; "
            "a TLS server also needs temporal_tls.",
            kind="unreachable",
            setting="temporal_address",
        )
    raise StackStartError(
        f"The stack was not ready within {settings.start_timeout:.0f}s.",
        "Check `stigmer server logs`; raise the limit with --timeout or "
        "`stigmer config set start_timeout SECONDS`.",
        details="\n".join(_why(c) for c in pending) or None,
    )


def _why(c: ComponentStatus) -> str:
    cause = c.get("waiting_for") or c.get("last_error")
    return f"{c['name']}: {c['state']}" + (f" ({cause})" if cause else "")


def _see_logs(name: str, paths: Paths) -> str:
    return f"See `stigmer server logs -c {name}` (files in {paths.logs})."


def _tail(path: Any, n: int) -> str | None:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return None
    return "\n".join(lines) or None


#: After this long (s) a stop says that it is still at it, and why it may take a while.
SLOW_STOP_S = 5.0


def _shutdown(
    paths: Paths,
    settings: Settings,
    proc: subprocess.Popen[bytes] | None = None,
    on_slow: Callable[[str], None] | None = None,
) -> list[str]:
    """Stop the supervisor (gracefully, then by force) and reap what is left.

    ``proc`` is a supervisor this process just spawned: it is stopped by signal
    even if it never got as far as its control socket or pid file. ``on_slow``
    is told once, after :data:`SLOW_STOP_S`, what the stop waits for.
    """
    from stigmer.stack.pidfile import read_pid_file, terminate, wait_gone
    from stigmer.stack.supervisor import reap_leftovers

    stopped: list[str] = []
    grace = settings.stop_grace
    ident = read_pid_file(paths.pid_file("supervisor"))
    answered = rpc(paths, "shutdown") is not None
    budget = grace * len(COMPONENTS) + 10
    if answered:
        stopped.append("supervisor")
        t0 = time.monotonic()
        deadline = t0 + budget
        said = on_slow is None
        while time.monotonic() < deadline and supervisor_holds_lock(paths):
            if not said and time.monotonic() - t0 > SLOW_STOP_S:
                said = True
                assert on_slow is not None
                on_slow(
                    f"still stopping: running activities get up to stop_grace ({grace:g}s) to "
                    f"finish, each component as long before it is killed (at most "
                    f"{budget:.0f}s in all); `stigmer server logs` shows what it waits for"
                )
            time.sleep(0.05)
    if supervisor_holds_lock(paths) and ident is not None:
        # wedged, or never answered: SIGTERM lets it stop its components
        # (SIGCONT first, in case it was suspended)
        proc_obj = ident.process()
        if proc_obj is not None:
            with contextlib.suppress(Exception):
                proc_obj.resume()
        if terminate(ident, budget):
            stopped.append(f"supervisor (pid {ident.pid}, forced)")
    elif ident is not None and ident.alive():
        wait_gone(ident, 2)
    if proc is not None and proc.poll() is None:
        proc.terminate()  # its SIGTERM handler stops whatever it launched
        try:
            proc.wait(budget)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    stopped += reap_leftovers(paths, grace)
    paths.pid_file("supervisor").unlink(missing_ok=True)
    return stopped


def stop(
    settings: Settings,
    on_wait_lock: Callable[[], None] | None = None,
    then: Callable[[], None] | None = None,
    on_slow: Callable[[str], None] | None = None,
) -> list[str]:
    """Stop the stack in reverse order; leaves no process of ours. Idempotent.

    ``then`` runs once everything is stopped, still under the stack lock, so
    no start comes in between (``server reset`` deletes the data there).

    Returns what was stopped (empty when nothing ran).
    """
    paths = settings.paths
    if not paths.home.exists():
        return []  # nothing was ever started here; do not create the home
    with stack_lock(paths, settings.start_timeout + 60, on_wait_lock):
        stopped = _shutdown(paths, settings, on_slow=on_slow)
        if then is not None:
            then()
        return stopped
