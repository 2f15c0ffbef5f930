"""The worker process: connect with retry, poll, heartbeat, shut down gracefully.

Configuration comes from env vars set by the supervisor
(:func:`stigmer.stack.runner.runner_environment`):

* ``STIGMER_TEMPORAL_ADDRESS`` (host:port), ``STIGMER_TEMPORAL_NAMESPACE``,
  ``STIGMER_TEMPORAL_TLS``, ``STIGMER_TEMPORAL_API_KEY``, ``STIGMER_TEMPORAL_TLS_*_PATH``;
* ``STIGMER_TASK_QUEUE`` (default ``agent_execution_runner``);
* ``STIGMER_RUNNER_IDENTITY``: the worker identity Temporal shows for its pollers;
* ``STIGMER_STOP_GRACE``: seconds in-flight activities get on SIGTERM;
* ``STIGMER_RUNNER_HEARTBEAT_FILE``: touched every few seconds while Temporal
  answers (the container health check reads its age).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from stigmer import __version__

log = logging.getLogger("stigmer.runner")

HEARTBEAT_INTERVAL = 5.0


@dataclass(frozen=True)
class RunnerConfig:
    address: str
    namespace: str
    task_queue: str
    identity: str
    grace: float
    tls: bool
    api_key: str | None
    ca_path: str | None
    cert_path: str | None
    key_path: str | None
    heartbeat_file: Path | None
    api_url: str | None = None
    api_token: str | None = None
    sandbox: bool = False

    @classmethod
    def from_env(cls, env: Any = None) -> RunnerConfig:
        env = load_env(os.environ if env is None else env)
        hb = env.get("STIGMER_RUNNER_HEARTBEAT_FILE")
        return cls(
            address=env.get("STIGMER_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            namespace=env.get("STIGMER_TEMPORAL_NAMESPACE", "default"),
            task_queue=env.get("STIGMER_TASK_QUEUE", "agent_execution_runner"),
            identity=env.get("STIGMER_RUNNER_IDENTITY")
            or f"stigmer-runner@{socket.gethostname()}/{os.getpid()}",
            grace=float(env.get("STIGMER_STOP_GRACE", "10")),
            tls=env.get("STIGMER_TEMPORAL_TLS", "0") in ("1", "true"),
            api_key=env.get("STIGMER_TEMPORAL_API_KEY") or None,
            ca_path=env.get("STIGMER_TEMPORAL_TLS_CA_PATH") or None,
            cert_path=env.get("STIGMER_TEMPORAL_TLS_CERT_PATH") or None,
            key_path=env.get("STIGMER_TEMPORAL_TLS_KEY_PATH") or None,
            heartbeat_file=Path(hb) if hb else None,
            api_url=env.get("STIGMER_API_URL"),
            api_token=env.get("STIGMER_API_TOKEN"),
            sandbox=env.get("STIGMER_WORKFLOW_SANDBOX", "0") in ("1", "true"),
        )

    def tls_arg(self) -> Any:
        if not (self.tls or self.api_key or self.ca_path):
            return False
        if not (self.ca_path or self.cert_path):
            return True
        from temporalio.service import TLSConfig

        def read(p: str | None) -> bytes | None:
            return Path(p).read_bytes() if p else None

        return TLSConfig(
            server_root_ca_cert=read(self.ca_path),
            client_cert=read(self.cert_path),
            client_private_key=read(self.key_path),
        )


def load_env(env: Any) -> dict[str, str]:
    """``env`` plus the ``KEY=VALUE`` lines of ``STIGMER_SECRETS_FILE`` (the container's
    secrets, mounted read-only so that ``docker inspect`` does not show them)."""
    merged = dict(env)
    path = merged.get("STIGMER_SECRETS_FILE")
    if path:
        try:
            for line in Path(path).read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip():
                    merged[key.strip()] = value
        except OSError as exc:
            log.warning("cannot read secrets file %s: %s", path, exc)
    return merged


async def connect(cfg: RunnerConfig, stop: asyncio.Event) -> Any:
    """Connect to Temporal, retrying with exponential backoff (0.2 s up to 5 s) until stopped."""
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
    from temporalio.client import Client

    delay = 0.2
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            client = await Client.connect(
                cfg.address,
                namespace=cfg.namespace,
                tls=cfg.tls_arg(),
                api_key=cfg.api_key,
                identity=cfg.identity,
                connect_timeout=timedelta(seconds=3),
                plugins=[PydanticAIPlugin()],
            )
            log.info(
                "Connected to Temporal server at %s (namespace %s, task queue %s, identity %s)",
                cfg.address,
                cfg.namespace,
                cfg.task_queue,
                cfg.identity,
            )
            return client
        except Exception as exc:
            if attempt == 1 or attempt % 10 == 0:
                log.warning(
                    "Temporal at %s not reachable yet (attempt %d): %s; retrying",
                    cfg.address,
                    attempt,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 5.0)
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


async def run(cfg: RunnerConfig) -> int:
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from stigmer.runner import publish
    from stigmer.runner.activities import ping, publish_events, workspace_probe
    from stigmer.runner.workflows import (
        AgentExecutionWorkflow,
        PingWorkflow,
        WorkspaceProbeWorkflow,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    log.info("stigmer agent-runner %s starting (pid %d)", __version__, os.getpid())
    publish.configure(cfg.api_url, cfg.api_token)
    client = await connect(cfg, stop)
    if client is None:
        log.info("stopped before connecting")
        return 0
    # Workflows run unsandboxed by default. The sandbox re-imports the workflow
    # module for every execution and hops into it for every payload it
    # converts: ~40 ms of a 300 ms run (docs/performance.md). pydantic-ai
    # supports both runners; tests run the agents with the sandbox on in local
    # mode and replay docker-mode histories in it, so a non-deterministic call
    # in workflow code still fails a test. STIGMER_WORKFLOW_SANDBOX=1 turns it on.
    runner: Any
    if cfg.sandbox:
        # stigmer._version may look at the checkout on import (a development run);
        # the host's module is used as is inside the workflow sandbox.
        runner = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("stigmer._version")
        )
    else:
        runner = UnsandboxedWorkflowRunner()
    worker = Worker(
        client,
        workflow_runner=runner,
        task_queue=cfg.task_queue,
        workflows=[AgentExecutionWorkflow, PingWorkflow, WorkspaceProbeWorkflow],
        activities=[publish_events, ping, workspace_probe],
        identity=cfg.identity,
        graceful_shutdown_timeout=timedelta(seconds=cfg.grace),
    )
    tasks = [asyncio.create_task(worker.run(), name="worker")]
    if cfg.heartbeat_file:
        tasks.append(asyncio.create_task(heartbeat(client, cfg.heartbeat_file), name="heartbeat"))
    stopper = asyncio.create_task(stop.wait(), name="stop")
    log.info(
        "Polling task queue %s (workflow sandbox %s)",
        cfg.task_queue,
        "on" if cfg.sandbox else "off",
    )
    done, _ = await asyncio.wait([tasks[0], stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stopper in done:
        log.info("SIGTERM received: shutting down (in-flight activities get %.0fs)", cfg.grace)
        await worker.shutdown()
    else:
        exc = tasks[0].exception()
        if exc is not None:
            log.error("worker stopped with an error: %s", exc)
            code = 1
    for t in [*tasks[1:], stopper]:
        t.cancel()
    if cfg.heartbeat_file:
        cfg.heartbeat_file.unlink(missing_ok=True)
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
    env = load_env(os.environ)
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):  # providers read these from os.environ
        if env.get(var) and not os.environ.get(var):
            os.environ[var] = env[var]
    return asyncio.run(run(RunnerConfig.from_env(env)))
