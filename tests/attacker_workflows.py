"""Workflows an attacker without the stack's key runs on a task queue of their own (tests only).

Module level, as Temporal requires of workflow classes.
"""

from __future__ import annotations

import base64
from datetime import timedelta

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy


@workflow.defn(name="AgentExecutionWorkflow", sandboxed=False)
class FakeCompletion:
    """Completes at once with an output of its choosing."""

    @workflow.run
    async def run(self) -> dict[str, str]:
        return {"output": "FORGED"}


@workflow.defn(name="AgentExecutionWorkflow", sandboxed=False)
class ReplayActivity:
    """Schedules any of the runner's activities with copied (sealed) payloads, base64 each."""

    @workflow.run
    async def run(self, activity: str, payloads: list[str]) -> str:
        args = [RawValue(Payload.FromString(base64.b64decode(p))) for p in payloads]
        out = await workflow.execute_activity(
            activity,
            args=args,
            task_queue="agent_execution_runner",
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
        return str(out)
