"""The agent-runner component: one interface, a host process or (``docker`` mode) a container.

Every implementation is handed the same runtime configuration
(:func:`~stigmer.stack.handover.runner_config`, secrets included; the worker
deletes it once read) and has the same readiness test: Temporal shows a poller
with this launch's worker identity on the runner's task queue. The container
implementation is :mod:`stigmer.stack.agent_runner_docker`.
"""

from __future__ import annotations

import secrets
import socket

from stigmer.contract.config import RuntimeConfig
from stigmer.contract.registry import RUNNER_BROKEN_MARK, RUNNER_EXIT_BROKEN, runner_name
from stigmer.contract.status import ComponentDetails
from stigmer.contract.workflow import TASK_QUEUE
from stigmer.errors import ConfigError
from stigmer.settings import Settings
from stigmer.stack.component import (
    Component,
    FatalComponentError,
    ProcessComponent,
    python_module_command,
)
from stigmer.stack.dev import source_dir
from stigmer.stack.handover import runner_config
from stigmer.stack.temporal import TemporalProbe

#: Workers this supervisor lost for a known cause (identity -> cause), newest last; every
#: runner launched later is told (``runner.lost_workers``: stigmer.runner.lost).
LOST_WORKERS: dict[str, str] = {}
LOST_KEPT = 50


def remember_lost(identity: str, cause: str) -> None:
    LOST_WORKERS[identity] = cause
    while len(LOST_WORKERS) > LOST_KEPT:
        del LOST_WORKERS[next(iter(LOST_WORKERS))]


class RunnerReadiness(Component):
    """Name, identity and readiness shared by every runner implementation."""

    identity: str = ""
    task_queue: str = TASK_QUEUE

    def __init__(
        self,
        settings: Settings,
        probe: TemporalProbe,
        secrets: dict[str, str],
        replica: int = 1,
    ) -> None:
        # agent-runner, agent-runner-2, ...: named first, as the component's logs are
        self.name = runner_name(replica)
        self.probe = probe
        self.secrets = secrets
        super().__init__(settings)

    def new_identity(self) -> str:
        """A fresh worker identity per launch, so a stale poller never counts."""
        self.identity = f"stigmer-runner@{socket.gethostname()}/{secrets.token_hex(4)}"
        return self.identity

    async def ready(self) -> bool:
        return await self.probe.has_poller(self.task_queue, self.identity)

    def final_exit(self, code: int | None) -> bool:
        return code == RUNNER_EXIT_BROKEN

    def exit_cause(self, code: int | None) -> tuple[str, str | None] | None:
        if code != RUNNER_EXIT_BROKEN:
            return None
        said = [e for e in self.recent_errors if e.startswith(RUNNER_BROKEN_MARK)]
        what = said[-1][len(RUNNER_BROKEN_MARK) :] if said else "see its log"
        message = f"its agent code does not load, so it cannot run agents: {what}"
        if self.settings.dev:
            return message, (
                "Fix the source it names: in dev mode the runner starts again when you save "
                f"(`stigmer server logs -c {self.name}` has the traceback)."
            )
        return message, (
            "The runner image or the install is broken: rebuild the image "
            "(`stigmer server start --rebuild`) or reinstall stigmer; "
            f"`stigmer server logs -c {self.name}` has the traceback."
        )


class LocalRunner(RunnerReadiness, ProcessComponent):
    """``python -m stigmer.runner`` as a host process (``runner_mode: local``).

    Its tools run as the user who started the stack, with that user's power
    over the machine (the README says so).
    """

    @property
    def endpoint(self) -> str:
        return self.task_queue

    def extra_status(self) -> ComponentDetails:
        out: ComponentDetails = {
            "mode": "local",
            "task_queue": self.task_queue,
            "identity": self.identity,
        }
        if self.settings.dev:
            out["dev_source"] = str(self.settings.dev_source_dir)
        return out

    def preflight(self) -> None:
        if self.settings.dev:  # the dev sources are still there
            try:
                source_dir(self.settings)
            except ConfigError as exc:
                raise FatalComponentError(exc.message, exc.fix) from None

    def environment(self, configured: bool) -> dict[str, str]:
        """With ``dev``: the dev sources come first on ``PYTHONPATH``, before the installed package."""
        env = super().environment(configured)
        if self.settings.dev:
            env["PYTHONPATH"] = str(source_dir(self.settings))
        return env

    def runtime_config(self) -> RuntimeConfig:
        return runner_config(
            self.settings,
            identity=self.new_identity(),
            task_queue=self.task_queue,
            workspace=str(self.settings.workspace_dir),
            heartbeat_file=str(self.paths.run / f"{self.name}.heartbeat"),
            secrets=self.secrets,
        )

    def command(self) -> list[str]:
        return python_module_command("stigmer.runner")
