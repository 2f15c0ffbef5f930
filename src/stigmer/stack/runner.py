"""The agent-runner component: one interface, a host process or (``docker`` mode) a container.

Every implementation gets the same environment (:func:`runner_environment`) and
the same readiness test: Temporal shows a poller with this launch's worker
identity on the ``agent_execution_runner`` task queue.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from stigmer.settings import TASK_QUEUE, Settings, read_api_token
from stigmer.stack.component import Component, ProcessComponent, python_module_command
from stigmer.stack.temporal import TemporalProbe

#: Settings keys of model provider API keys, and the env var each provider reads.
PROVIDER_KEY_SETTINGS = {
    "anthropic_api_key": "ANTHROPIC_API_KEY",
    "openai_api_key": "OPENAI_API_KEY",
}


def runner_environment(settings: Settings, identity: str, workspace: str) -> dict[str, str]:
    """The runner's configuration, passed by env vars (never baked into an image).

    Holds the API token and, when set, the Temporal API key: callers must not log it.
    """
    s = settings
    env = {
        "STIGMER_TEMPORAL_ADDRESS": s.temporal_target,
        "STIGMER_TEMPORAL_NAMESPACE": s.temporal_namespace,
        "STIGMER_TASK_QUEUE": TASK_QUEUE,
        "STIGMER_RUNNER_IDENTITY": identity,
        "STIGMER_API_URL": s.api_url,
        "STIGMER_WORKSPACE": workspace,
        "STIGMER_STOP_GRACE": str(s.stop_grace),
        "STIGMER_TEMPORAL_TLS": "1" if s.temporal_tls else "0",
        "STIGMER_WORKFLOW_SANDBOX": "1" if s.values.get("workflow_sandbox") else "0",
    }
    token = read_api_token(s.paths)
    if token:
        env["STIGMER_API_TOKEN"] = token
    if s.temporal_api_key:
        env["STIGMER_TEMPORAL_API_KEY"] = s.temporal_api_key
    for key, var in PROVIDER_KEY_SETTINGS.items():
        value = s.values.get(key) or os.environ.get(var)
        if value:
            env[var] = value
    if os.environ.get("OLLAMA_BASE_URL"):
        env["OLLAMA_BASE_URL"] = os.environ["OLLAMA_BASE_URL"]
    for key in ("temporal_tls_ca_path", "temporal_tls_cert_path", "temporal_tls_key_path"):
        if s.values.get(key):
            env["STIGMER_" + key.upper()] = s.values[key]
    return env


class RunnerReadiness:
    """Readiness shared by every runner implementation."""

    probe: TemporalProbe
    identity: str

    def new_identity(self) -> str:
        """A fresh worker identity per launch, so a stale poller never counts."""
        self.identity = f"stigmer-runner@{socket.gethostname()}/{secrets.token_hex(4)}"
        return self.identity

    async def ready(self) -> bool:
        return await self.probe.has_poller(TASK_QUEUE, self.identity)


class LocalRunner(RunnerReadiness, ProcessComponent):
    """``python -m stigmer.runner`` as a host process (``runner_mode: local``)."""

    name = "agent-runner"

    def __init__(self, settings: Settings, probe: TemporalProbe) -> None:
        ProcessComponent.__init__(self, settings)
        self.probe = probe
        self.identity = ""

    @property
    def endpoint(self) -> str:
        return TASK_QUEUE

    def extra_status(self) -> dict[str, Any]:
        return {"mode": "local", "task_queue": TASK_QUEUE, "identity": self.identity}

    def command(self) -> list[str]:
        return python_module_command("stigmer.runner")

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update(
            runner_environment(self.settings, self.new_identity(), str(self.settings.workspace_dir))
        )
        env["STIGMER_RUNNER_HEARTBEAT_FILE"] = str(self.paths.run / "agent-runner.heartbeat")
        return env


def make_runner(settings: Settings, probe: TemporalProbe) -> Component:
    """The runner for ``runner_mode``: ``docker`` (a container) or ``local`` (a host process).

    ``auto`` is resolved to one of them by the CLI before the supervisor starts.
    """
    if settings.runner_mode == "docker":
        from stigmer.stack.runner_docker import DockerRunner

        return DockerRunner(settings, probe)
    return LocalRunner(settings, probe)
