"""The agent-runner as a Docker container (``runner_mode: docker``).

Same interface and readiness as the local runner (:mod:`stigmer.stack.agent_runner`);
what differs is how it is launched:

* name ``runner_container`` (``STIGMER_RUNNER_CONTAINER``, default
  ``stigmer-agent-runner``), labelled with the owning ``STIGMER_HOME``; a
  leftover of ours is replaced, a running one of another home is never touched;
* the workspace (``workspace`` setting, default ``STIGMER_HOME/data/workspace``)
  bind-mounted at ``/workspace``; the container runs as the invoking uid:gid so
  files come out owned by the user; when the user is root, as a uid that no
  account of this host has (:func:`container_user`: no host user can signal its
  processes or read their ``/proc`` files), and the workspace is handed to it;
* host networking on Linux, ``host.docker.internal`` elsewhere, so Temporal and
  the API keep listening on loopback only;
* its runtime configuration, secrets included, on its stdin (``STIGMER_CONFIG=-``):
  never in a file, a mount or its environment, so neither ``docker inspect`` nor
  a tool can find it;
* ``--cap-drop ALL``, ``no-new-privileges``, read-only root filesystem with a
  tmpfs ``/tmp``, pids and memory limits, no restart policy (the supervisor
  restarts it), never the Docker socket;
* its stdout/stderr copied into ``logs/agent-runner*.log``; a crashed container
  is kept until the next launch replaces it, so its logs stay readable;
* in dev mode (``server start --dev``, :mod:`stigmer.stack.dev`), the dev
  sources' ``stigmer`` package bind-mounted read-only and first on its
  ``PYTHONPATH``, over the image's own; the hardening is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import threading
import time
from pathlib import Path
from typing import Any

from stigmer.contract.config import CONFIG_ENV
from stigmer.contract.status import ComponentDetails
from stigmer.errors import ConfigError, DockerNotRunningError
from stigmer.settings import Paths, Settings
from stigmer.stack import dev
from stigmer.stack.agent_runner import LOST_WORKERS, RunnerReadiness, remember_lost
from stigmer.stack.component import ComponentUnavailable, FatalComponentError
from stigmer.stack.handover import runner_config
from stigmer.stack.logs import RotatingLog
from stigmer.stack.temporal import TemporalProbe

LABEL_HOME = "io.stigmer.home"
LABEL_COMPONENT = "io.stigmer.component"
#: The image's heartbeat file (its health check reads it).
HEARTBEAT_IN_CONTAINER = "/tmp/stigmer-runner.heartbeat"
#: Where :func:`container_user` looks for a uid no account has (root only).
UNUSED_UIDS = range(61000, 65000)


def container_user() -> tuple[int, int]:
    """The uid:gid the runner container runs as.

    The invoking user's, so that workspace files are theirs. As root, the first
    uid and gid of :data:`UNUSED_UIDS` that no account or group of this host has:
    the image's own uid 1000 is often a real account on the host, and that user
    could then signal the tools and read their ``/proc`` files.
    """
    uid = os.getuid()
    if uid != 0:
        return uid, os.getgid()
    import grp
    import pwd

    for n in UNUSED_UIDS:
        try:
            pwd.getpwuid(n)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(n)
            continue
        except KeyError:
            return n, n
    raise FatalComponentError(
        f"no uid in {UNUSED_UIDS.start}-{UNUSED_UIDS.stop} is free for the runner container",
        "Run the stack as an ordinary user instead of root.",
    )


def run_with_config(client: Any, config_json: str, **kwargs: Any) -> Any:
    """Create and start a container, handing it ``config_json`` on stdin; the container.

    The container reads its stdin to the end (``STIGMER_CONFIG=-``): the
    configuration, secrets included, exists only in the worker's memory.
    """
    container = client.containers.create(stdin_open=True, **kwargs)
    try:
        sock = container.attach_socket(params={"stdin": 1, "stream": 1})
        try:
            container.start()
            raw = getattr(sock, "_sock", sock)
            raw.sendall(config_json.encode())
            raw.shutdown(socket.SHUT_WR)
        finally:
            sock.close()
    except BaseException:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        raise
    return container


class ContainerConflictError(FatalComponentError):
    """A running container with our name belongs to another stigmer home."""


def claim_container_name(client: Any, settings: Settings, name: str | None = None) -> str | None:
    """Free a runner container name (default ``runner_container``) for this home.

    A container of ours (same ``io.stigmer.home`` label) is removed, running or
    not; an exited one without our label is removed too. A running one that is
    not provably ours is left alone.

    Returns a note on what was removed, or None.

    Raises:
        ContainerConflictError: the name is held by a running container of another home.
    """
    import docker

    name = name or settings.runner_container
    try:
        existing = client.containers.get(name)
    except docker.errors.NotFound:
        return None
    owner = (existing.labels or {}).get(LABEL_HOME)
    ours = owner == str(settings.home)
    if not ours and existing.status in ("running", "restarting", "paused"):
        whose = f"the stigmer home {owner}" if owner else "something that is not stigmer"
        fix_stop = (
            f"Stop that stack (`STIGMER_HOME={owner} stigmer server stop`)"
            if owner
            else f"Stop it yourself if it is not needed (`docker rm -f {name}`)"
        )
        raise ContainerConflictError(
            f"container name {name!r} is taken by a running container of {whose} "
            f"(id {existing.short_id}); it was left alone.",
            f"{fix_stop}, or give this stack another container name: "
            f"STIGMER_RUNNER_CONTAINER={settings.runner_container}-b (setting runner_container).",
        )
    existing.remove(force=True)
    return f"replaced leftover container {name} ({existing.short_id}, {existing.status})"


def reap_containers(paths: Paths) -> list[str]:
    """Remove every container labelled with this home (after a supervisor died)."""
    from stigmer.images.engine import connect

    try:
        client = connect(timeout=3)
    except (DockerNotRunningError, ConfigError):  # no engine, or DOCKER_CONTEXT names none
        return []
    removed = []
    try:
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_HOME}={paths.home}"}):
            with contextlib.suppress(Exception):
                c.remove(force=True)
                removed.append(f"container {c.name} ({c.short_id})")
    finally:
        client.close()
    return removed


def _more_memory(limit: str) -> str:
    """Twice ``limit`` (docker syntax), as a suggestion: ``512m`` -> ``1g``."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = limit.strip().lower()
    unit = text[-1] if text[-1] in units else "b"
    try:
        size = int(text.rstrip("bkmg")) * units[unit] * 2
    except ValueError:
        return "4g"
    if size >= 1 << 30 and size % (1 << 30) == 0:
        return f"{size >> 30}g"
    return f"{max(size >> 20, 1)}m"


#: The limits rootful Podman gives a container unless told otherwise (see podman_ulimits).
PODMAN_DEFAULT_LIMITS = {"nofile": 1048576, "nproc": 4194304}


def podman_ulimits() -> list[Any]:
    """The runner container's ``nofile`` and ``nproc`` limits under Podman (Docker needs none).

    Rootful Podman raises both in every container (to :data:`PODMAN_DEFAULT_LIMITS`)
    unless told otherwise, and the OCI runtime cannot raise a limit above its
    own hard limit without CAP_SYS_RESOURCE (a root in a container, say): the
    container would not start ("error setting rlimit type 7"). Docker hands
    down dockerd's own limits. This hands down ours; ``nproc`` at most the
    kernel's ``pid_max`` (Podman's own is no higher; the container's processes
    are limited by ``runner_pids_limit`` anyway).
    """
    import resource

    from docker.types import Ulimit

    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = PODMAN_DEFAULT_LIMITS["nproc"]
    cap = {"nofile": PODMAN_DEFAULT_LIMITS["nofile"], "nproc": pid_max}
    out = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        n = cap[name] if hard == resource.RLIM_INFINITY else min(hard, cap[name])
        out.append(Ulimit(name=name, soft=n, hard=n))
    return out


#: Names of this host as a container outside Linux reaches it (Linux uses the host network).
HOST_FROM_CONTAINER = {"127.0.0.1": "host.docker.internal", "localhost": "host.docker.internal"}


class DockerRunner(RunnerReadiness):
    """``stigmer-agent-runner:local`` as a hardened container."""

    def __init__(
        self, settings: Settings, probe: TemporalProbe, secrets: dict[str, str], replica: int = 1
    ) -> None:
        super().__init__(settings, probe, secrets, replica)
        #: runner_container, then runner_container-2, ... for the other replicas
        self.container_name = (
            settings.runner_container if replica == 1 else f"{settings.runner_container}-{replica}"
        )
        self.client: Any = None
        self.container: Any = None
        #: the launch under way (the engine's create and start, in a thread)
        self._launching: asyncio.Future[None] | None = None
        self._pid: int | None = None
        self._out = RotatingLog(
            self.paths.log_file(self.name, "out"), settings.log_max_bytes, settings.log_backups
        )
        self._err = RotatingLog(
            self.paths.log_file(self.name, "err"), settings.log_max_bytes, settings.log_backups
        )
        self._threads: list[threading.Thread] = []
        #: when the engine stopped answering (None while it answers)
        self._engine_lost_at: float | None = None
        #: the last container ended killed at its memory limit (State.OOMKilled)
        self._oom = False
        #: (client, whether its engine is Podman)
        self._is_podman: tuple[Any, bool] | None = None
        self.linux = platform.system() == "Linux"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def container_id(self) -> str | None:
        return self.container.short_id if self.container is not None else None

    @property
    def endpoint(self) -> str:
        return self.task_queue

    def extra_status(self) -> ComponentDetails:
        out: ComponentDetails = {
            "mode": "docker",
            "task_queue": self.task_queue,
            "identity": self.identity,
            "image": self.settings.runner_image,
            "container": self.container_name,
        }
        if self.settings.dev:
            out["dev_source"] = str(self.settings.dev_source_dir)
        return out

    def note(self, text: str) -> None:
        self._err.write(f"[stigmer] {text}")

    def _dev_mount(self) -> tuple[list[Any], dict[str, str]]:
        """Dev mode: the dev sources' package, read-only, first on PYTHONPATH (mounts, env).

        Raises:
            FatalComponentError: as root, the sources are not readable by the
                container's uid (see :func:`container_user`).
        """
        from docker.types import Mount

        if not self.settings.dev:
            return [], {}
        try:
            pkg = dev.package_dir(self.settings)
        except ConfigError as exc:
            raise FatalComponentError(exc.message, exc.fix) from None
        if os.getuid() == 0:
            closed = dev.unreadable_for_others(pkg)
            if closed is not None:
                raise FatalComponentError(
                    f"dev mode: the runner container cannot read {closed} (it runs as a uid "
                    "of its own, as the stack runs as root), so it cannot run the dev sources.",
                    f"Let others read the sources: `chmod -R o+rX {pkg}`, or run the stack "
                    "as an ordinary user.",
                )
        target = f"{dev.MOUNT_IN_CONTAINER}/stigmer"
        mount = Mount(target, str(pkg), type="bind", read_only=True)
        return [mount], {"PYTHONPATH": dev.MOUNT_IN_CONTAINER}

    def _docker(self) -> Any:
        """The engine client; :class:`ComponentUnavailable` if no engine answers."""
        if self.client is None:
            from stigmer.images.engine import connect

            try:
                self.client = connect(timeout=10)
            except DockerNotRunningError as exc:
                raise ComponentUnavailable(self._waiting_text(exc.why or exc.details)) from None
            except ConfigError as exc:  # a docker context that does not exist, say
                raise RuntimeError(exc.message) from None
        return self.client

    def _waiting_text(self, detail: object = None) -> str:
        from stigmer.images.engine import resolve_endpoint

        ep = resolve_endpoint()
        first = str(detail).splitlines()[0] if detail else ""
        since = time.strftime("%H:%M:%S", time.localtime(self._engine_lost_at or time.time()))
        return (
            f"waiting for Docker: the engine at {ep.host} (from {ep.source}) does not answer "
            f"since {since}" + (f" ({first[:200]})" if first else "") + "; not counted as a crash"
        )

    def _engine_gone(self, exc: object) -> ComponentUnavailable:
        """The engine stopped answering: forget the client (a new one is made once it is back)."""
        if self._engine_lost_at is None:
            self._engine_lost_at = time.time()
        self.client = None  # not closed: the container object still holds it
        return ComponentUnavailable(self._waiting_text(exc))

    def _podman(self, client: Any) -> bool:
        """Is the engine Podman (asked once per client)?"""
        if self._is_podman is None or self._is_podman[0] is not client:
            from stigmer.images.engine import is_podman

            self._is_podman = (client, is_podman(client))
        return self._is_podman[1]

    def _engine_answers(self) -> bool:
        try:
            return bool(self.client is not None and self.client.ping())
        except Exception:
            return False

    def _prepare_workspace(self, uid: int, gid: int) -> Path:
        ws = self.settings.workspace_dir
        ws.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            # root: the container runs as another uid, so hand it the workspace
            for dirpath, dirnames, filenames in os.walk(ws):
                os.chown(dirpath, uid, gid, follow_symlinks=False)
                for f in filenames:
                    with contextlib.suppress(OSError):
                        os.chown(os.path.join(dirpath, f), uid, gid, follow_symlinks=False)
                del dirnames
        return ws

    def _config(self) -> str:
        """The runner's configuration, as the JSON handed to it on stdin."""
        cfg = runner_config(
            self.settings,
            identity=self.new_identity(),
            task_queue=self.task_queue,
            workspace="/workspace",
            heartbeat_file=HEARTBEAT_IN_CONTAINER,
            secrets=self.secrets,
            reachable=None if self.linux else HOST_FROM_CONTAINER,
            lost_workers=LOST_WORKERS,
        )
        return cfg.model_dump_json()

    async def launch(self) -> None:
        lost_at = self._engine_lost_at
        # a thread cannot be cancelled: a stop meanwhile waits for it (terminate)
        self._launching = asyncio.ensure_future(asyncio.to_thread(self._launch_sync))
        await asyncio.shield(self._launching)
        # after an outage, the adopted container's logs go on from when the engine went away
        self._start_log_threads(int(lost_at) if self.adopted and lost_at else None)

    def _launch_sync(self) -> None:
        """Launch, re-deriving from the engine what still runs: adopt our container, or start one."""
        self.adopted = False
        client = self._docker()
        try:
            if not self._adopt(client):
                self._create(client)
        except (FatalComponentError, ComponentUnavailable):
            raise
        except Exception as exc:
            if not self._engine_answers():
                raise self._engine_gone(exc) from None
            raise
        self._engine_lost_at = None

    def _adopt(self, client: Any) -> bool:
        """Take over the container this component launched, if it still runs (after an outage)."""
        import docker

        if self.container is None or self._engine_lost_at is None:
            return False
        try:
            existing = client.containers.get(self.container_name)
        except docker.errors.NotFound:
            self._err.write("[stigmer] the runner container is gone after the Docker outage")
            return False
        if existing.id != self.container.id:
            return False
        state = existing.attrs.get("State", {})
        if existing.status != "running":
            self._err.write(
                "[stigmer] the runner container ended while the Docker engine was away "
                f"(status {existing.status}, exit code {state.get('ExitCode')}); starting a new one"
            )
            return False
        self.container = existing
        self._pid = state.get("Pid") or None
        self.adopted = True
        self._err.write(
            f"[stigmer] the Docker engine is back; took over the runner container "
            f"{existing.short_id}, still running"
        )
        return True

    def _create(self, client: Any) -> None:
        import docker
        from docker.types import Mount

        self._oom = False
        note = claim_container_name(client, self.settings, self.container_name)
        if note:
            self._err.write(f"[stigmer] {note}")
        uid, gid = container_user()
        ws = self._prepare_workspace(uid, gid)
        dev_mounts, dev_env = self._dev_mount()
        kwargs: dict[str, Any] = {}
        if self._podman(client):
            kwargs["ulimits"] = podman_ulimits()
        if self.linux:
            kwargs["network_mode"] = "host"
        else:
            kwargs["extra_hosts"] = {"host.docker.internal": "host-gateway"}
        try:
            self.container = run_with_config(
                client,
                self._config(),
                image=self.settings.runner_image,
                name=self.container_name,
                environment={CONFIG_ENV: "-", **dev_env},
                user=f"{uid}:{gid}",
                labels={LABEL_HOME: str(self.paths.home), LABEL_COMPONENT: self.name},
                mounts=[Mount("/workspace", str(ws), type="bind", read_only=False), *dev_mounts],
                cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"],
                read_only=True,
                tmpfs={"/tmp": "rw,nosuid,nodev,size=256m"},
                pids_limit=self.settings.runner_pids_limit,
                mem_limit=self.settings.runner_memory,
                restart_policy={"Name": "no"},
                auto_remove=False,
                stop_signal="SIGTERM",
                **kwargs,
            )
        except docker.errors.ImageNotFound:
            raise FatalComponentError(
                f"image {self.settings.runner_image} is gone",
                "Rebuild it (`make build-agent-runner-image`) and start again.",
            ) from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # name taken in a race: retried by the supervisor
                raise RuntimeError(str(exc.explanation)) from None
            if exc.status_code == 400:  # a bad setting: retrying will not fix it
                raise FatalComponentError(
                    f"Docker refused the container: {exc.explanation}",
                    "Check runner_memory, runner_pids_limit and runner_container "
                    "(`stigmer config list`).",
                ) from None
            raise
        self.container.reload()
        self._pid = self.container.attrs.get("State", {}).get("Pid") or None

    def _start_log_threads(self, since: int | None = None) -> None:
        container = self.container
        more = {"since": since} if since else {}

        def copy(stdout: bool, log: RotatingLog, is_err: bool) -> None:
            buf = b""
            try:
                for chunk in container.logs(
                    stream=True, follow=True, stdout=stdout, stderr=not stdout, **more
                ):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        text = raw.decode("utf-8", errors="replace").rstrip("\r")
                        log.write(text)
                        if is_err and text.strip():
                            self.recent_errors.append(text)
            except Exception:
                pass
            if buf:
                log.write(buf.decode("utf-8", errors="replace"))

        self._threads = [
            threading.Thread(target=copy, args=(True, self._out, False), daemon=True),
            threading.Thread(target=copy, args=(False, self._err, True), daemon=True),
        ]
        for t in self._threads:
            t.start()

    async def wait(self) -> int | None:
        """The container's exit code; :class:`ComponentUnavailable` if the engine went away.

        An engine that stops answering is not the runner's crash: its container
        may still run work (an engine killed with SIGKILL leaves it running), so
        the supervisor waits, and the next launch adopts it or starts another.
        """
        container = self.container
        try:
            result = await asyncio.to_thread(container.wait)
            code: int | None = result.get("StatusCode")
            await asyncio.to_thread(self._read_end, container, code)
        except Exception as exc:  # the engine went away underneath us
            answers = await asyncio.to_thread(self._engine_answers)
            if not answers:
                raise self._engine_gone(exc) from None
            self.recent_errors.append(f"lost sight of the container: {exc}")
            code = None
        if not await asyncio.to_thread(self._engine_answers):
            # it ended as the engine went down (an engine stop or restart ends it): not a crash
            raise self._engine_gone(f"the container ended with code {code} as the engine went away")
        for t in self._threads:
            await asyncio.to_thread(t.join, 3)
        self._pid = None
        return code

    def _read_end(self, container: Any, code: int | None) -> None:
        """How the container ended, as the engine saw it (``State.OOMKilled``).

        The engine sets ``OOMKilled`` for any process of the container the kernel
        killed at its limit, a tool's too, and keeps it: only an end by SIGKILL
        (137) with it set is the runner itself killed out of memory.
        """
        import docker

        try:
            container.reload()
        except docker.errors.NotFound:  # removed by a stop meanwhile: it was not a crash
            self._oom = False
            return
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        self._oom = oom and code == 128 + 9
        if self._oom:  # what it ran fails with this cause (stigmer.runner.lost)
            limit = self.settings.runner_memory
            remember_lost(
                self.identity,
                f"out of memory: the runner was killed at its memory limit "
                f"runner_memory={limit}; raise it (`stigmer config set runner_memory "
                f"{_more_memory(limit)}`, then `stigmer server restart`) or use less memory",
            )

    def exit_cause(self, code: int | None) -> tuple[str, str | None] | None:
        if not self._oom:
            return super().exit_cause(code)
        limit = self.settings.runner_memory
        return (
            f"out of memory: the kernel killed the runner container at its memory limit "
            f"runner_memory={limit} (exit code {code}); what it was running failed",
            f"Raise the limit: `stigmer config set runner_memory {_more_memory(limit)}` "
            "(or STIGMER_RUNNER_MEMORY), then `stigmer server restart`; or make the agent's "
            "tools use less memory.",
        )

    async def terminate(self, grace: float) -> None:
        launching = self._launching
        if launching is not None and not launching.done():
            # a stop while the container is being created: it would start after
            # this returned, and run on with nothing to stop it
            await asyncio.wait({launching})
        container = self.container
        if container is None:
            return

        def stop() -> None:
            with contextlib.suppress(Exception):
                container.stop(timeout=max(int(grace), 1))
            with contextlib.suppress(Exception):
                container.remove(force=True)

        await asyncio.to_thread(stop)

    async def close(self) -> None:
        self._out.close()
        self._err.close()
        if self.client is not None:
            self.client.close()
