"""Deterministic workflow code only: no I/O, no side effects at import time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from stigmer.runner.activities import ping, workspace_probe


@workflow.defn(name="StigmerPing")
class PingWorkflow:
    """Round trip through a runner: one activity, used to prove the worker executes work."""

    @workflow.run
    async def run(self, message: str) -> str:
        return await workflow.execute_activity(
            ping, message, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="StigmerWorkspaceProbe")
class WorkspaceProbeWorkflow:
    """Write one file in the runner's workspace; returns path, owner uid/gid and the runner's euid."""

    @workflow.run
    async def run(self, name: str) -> dict[str, Any]:
        return await workflow.execute_activity(
            workspace_probe, name, start_to_close_timeout=timedelta(seconds=30)
        )
