"""The worker process: read the configuration, connect with retry, poll, heartbeat, stop gracefully.

Configured by its runtime configuration only (``STIGMER_CONFIG``, written by
the supervisor; :mod:`stigmer.contract.config`), which holds its secrets and
is deleted as soon as it is read. Temporal is reached through
``connect_temporal``, like every other process; a TLS or authentication
failure ends the worker with the cause, since retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from stigmer import __version__
from stigmer.contract.config import RuntimeConfig, load_runtime_config
from stigmer.contract.registry import RUNNER_BROKEN_MARK, RUNNER_EXIT_BROKEN
from stigmer.contract.temporal import connect_temporal
from stigmer.errors import StigmerError, TemporalError
from stigmer.hardening import exit_now, not_dumpable

log = logging.getLogger("stigmer.runner")

HEARTBEAT_INTERVAL = 5.0


async def connect(cfg: RuntimeConfig, stop: asyncio.Event) -> Any:
    """Connect to Temporal, retrying with exponential backoff (0.2 s up to 5 s) until stopped.

    Payloads are converted by pydantic-ai's converter once the agent's code
    has loaded (:class:`~stigmer.runner.loader.AgentPayloadConverter`): the
    client does not wait for it.

    Raises:
        TemporalError: a permanent failure (TLS, authentication, the namespace).
    """
    from stigmer.codec import BlobDriver
    from stigmer.runner.loader import AgentPayloadConverter
    from stigmer.runner.publish import get_blob, put_blob

    assert cfg.runner is not None
    target = cfg.temporal
    delay = 0.2
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            client = await connect_temporal(
                target,
                identity=cfg.runner.identity,
                keys=cfg.stack_keys,
                blobs=BlobDriver(put_blob, get_blob),
                payload_converter=AgentPayloadConverter,
                timeout=3,
                check_namespace=False,
            )
        except TemporalError as exc:
            if exc.permanent:
                raise
            if attempt == 1 or attempt % 10 == 0:
                log.warning("%s (attempt %d); retrying", exc.message, attempt)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, 5.0)
            continue
        log.info(
            "Connected to Temporal server at %s (namespace %s, task queue %s, identity %s)",
            target.address,
            target.namespace,
            cfg.runner.task_queue,
            cfg.runner.identity,
        )
        return client
    return None


async def heartbeat(client: Any, path: Path) -> None:
    """Touch ``path`` every few seconds while Temporal answers ``GetSystemInfo``."""
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    while True:
        try:
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=3)
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{time.time():.0f}\n")
        except Exception as exc:
            log.debug("heartbeat check failed: %s", exc)
        await asyncio.sleep(HEARTBEAT_INTERVAL)


async def watch_load(stop: asyncio.Event) -> None:
    """Log when the agent's code has loaded; stop the worker if it cannot load.

    A load that fails is said on stderr after ``RUNNER_BROKEN_MARK`` (what failed,
    and where), and the worker exits with ``RUNNER_EXIT_BROKEN``: the supervisor
    then marks the runner failed with that line instead of restarting it.
    """
    import traceback

    from stigmer.runner.loader import loader

    try:
        code = await loader.wait_async()
    except Exception as exc:
        where = ""
        if isinstance(exc, SyntaxError) and exc.filename:
            where = f" ({exc.filename}:{exc.lineno})"
        else:
            frames = traceback.extract_tb(exc.__traceback__)
            if frames:
                where = f" ({frames[-1].filename}:{frames[-1].lineno})"
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.error("the agent's code failed to load: this runner cannot run agents")
        print(f"{RUNNER_BROKEN_MARK}{text}{where}", file=sys.stderr, flush=True)
        stop.set()
        raise
    log.info("agent code loaded in %.2fs (%d activities)", code.took_s, len(code.activities))


async def run(cfg: RuntimeConfig) -> int:
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from stigmer.runner import runtime
    from stigmer.runner.activities import ping, publish_events, workspace_probe
    from stigmer.runner.guard import ClaimedRunInterceptor
    from stigmer.runner.loader import LoadedWorkflowRunner, agent_activity
    from stigmer.runner.lost import LostWorkerInterceptor
    from stigmer.runner.workflows import (
        AgentExecutionWorkflow,
        PingWorkflow,
        WorkspaceProbeWorkflow,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    assert cfg.runner is not None
    rc = cfg.runner
    runtime.configure(cfg)
    # pydantic-ai and the agent load in a thread (stigmer.runner.loader) once the
    # worker polls: the worker does not wait for them, and they do not hold up
    # its start (the load's imports would share the GIL with connecting)
    loading: asyncio.Task[None] | None = None
    if rc.sandbox:  # the worker is built with what the load brings
        loading = asyncio.create_task(watch_load(stop), name="load")
    client = await connect(cfg, stop)
    if client is None:
        if loading is not None:
            if loading.done() and not loading.cancelled() and loading.exception() is not None:
                return RUNNER_EXIT_BROKEN  # it stopped the connecting
            loading.cancel()
        log.info("stopped before connecting")
        return 0
    # Workflows run unsandboxed by default. The sandbox re-imports the workflow
    # module for every execution and hops into it for every payload it
    # converts: ~40 ms of a 300 ms run (docs/performance.md). pydantic-ai
    # supports both runners; tests run the agents with the sandbox on in local
    # mode and replay docker-mode histories in it, so a non-deterministic call
    # in workflow code still fails a test. STIGMER_WORKFLOW_SANDBOX=1 turns it on.
    # With the sandbox, pydantic-ai's plugin configures it and registers the
    # agent's activities: the worker is built once the agent has loaded.
    options: dict[str, Any] = {}
    if rc.sandbox:
        assert loading is not None
        await asyncio.wait([loading])
        if loading.exception() is not None:
            return RUNNER_EXIT_BROKEN
        from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

        from stigmer.runner.models import preload_providers

        # before any workflow task (see preload_providers); a debugging mode: its
        # memory does not count
        await asyncio.to_thread(preload_providers)

        # stigmer._version may look at the checkout on import (a development run);
        # the host's module is used as is inside the workflow sandbox.
        options["workflow_runner"] = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("stigmer._version")
        )
        options["plugins"] = [PydanticAIPlugin()]
        activities: list[Any] = [publish_events, ping, workspace_probe]
    else:
        options["workflow_runner"] = LoadedWorkflowRunner()
        activities = [publish_events, ping, workspace_probe, agent_activity]
    worker = Worker(
        client,
        task_queue=rc.task_queue,
        workflows=[AgentExecutionWorkflow, PingWorkflow, WorkspaceProbeWorkflow],
        activities=activities,
        identity=rc.identity,
        # the worker's identity is recorded (lost.py) before the claim is checked
        interceptors=[LostWorkerInterceptor(rc.identity, rc.lost_workers), ClaimedRunInterceptor()],
        graceful_shutdown_timeout=timedelta(seconds=rc.stop_grace),
        # a cancel reaches an activity as the answer to a heartbeat: send them at
        # least every second, so a cancelled tool stops at once (stigmer.runner.agent)
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        **options,
    )
    heartbeat_file = Path(rc.heartbeat_file) if rc.heartbeat_file else None
    tasks = [asyncio.create_task(worker.run(), name="worker")]
    if heartbeat_file:
        tasks.append(asyncio.create_task(heartbeat(client, heartbeat_file), name="heartbeat"))
    stopper = asyncio.create_task(stop.wait(), name="stop")
    log.info(
        "Polling task queue %s (workflow sandbox %s)",
        rc.task_queue,
        "on" if rc.sandbox else "off",
    )
    if loading is None:
        loading = asyncio.create_task(watch_load(stop), name="load")
    done, _ = await asyncio.wait([tasks[0], stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if loading.done() and not loading.cancelled() and loading.exception() is not None:
        await worker.shutdown()
        code = RUNNER_EXIT_BROKEN
    elif stopper in done:
        log.info("SIGTERM received: shutting down (in-flight activities get %.0fs)", rc.stop_grace)
        await worker.shutdown()
    else:
        exc = tasks[0].exception()
        if exc is not None:
            log.error("worker stopped with an error: %s", exc)
            code = 1
    for t in [*tasks[1:], loading, stopper]:
        t.cancel()
    if heartbeat_file:
        heartbeat_file.unlink(missing_ok=True)
    log.info("agent-runner stopped")
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("--version", "version"):
        print(__version__)
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    # one line per event published ("POST .../events 200 OK") is noise; failures still show
    for noisy in ("httpx2", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import stigmer

    # first, before the slow imports; and which code runs: the installed package, or
    # the dev sources (`server start --dev`)
    log.info(
        "stigmer agent-runner %s starting (pid %d), code from %s",
        __version__,
        os.getpid(),
        Path(stigmer.__file__).parent,
    )
    # before the secrets are read
    if not not_dumpable():
        log.warning("could not mark the worker non-dumpable: its tools may read its memory")
    try:
        # it holds the runner's secrets: read once, then gone from the filesystem
        cfg = load_runtime_config(role="agent-runner", consume=True)
        return asyncio.run(run(cfg))
    except StigmerError as exc:
        log.error("%s %s", exc.message, exc.fix or "")
        return exc.exit_code


if __name__ == "__main__":
    exit_now(main())
