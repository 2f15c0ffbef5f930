"""Deterministic workflow code only: no I/O, no side effects at import time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow

    from stigmer.runner.activities import ping, publish_events, workspace_probe
    from stigmer.runner.agent import agent
    from stigmer.runner.tools import RunDeps

PUBLISH_OPTS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10)),
}


@dataclass
class ExecutionInput:
    """The workflow input: a snapshot of the agent spec, so the runner never fetches it."""

    execution_id: str
    agent_name: str
    spec: dict[str, Any]
    message: str
    env: dict[str, str] = field(default_factory=dict)
    model: str | None = None


def deps_for(inp: ExecutionInput) -> RunDeps:
    spec = inp.spec
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    for name, value in (spec.get("env") or {}).items():
        if isinstance(value, dict):
            secret_env[name] = value["secret"]
        else:
            env[name] = str(value)
    env.update(inp.env)
    return RunDeps(
        execution_id=inp.execution_id,
        agent_name=inp.agent_name,
        instructions=spec["instructions"],
        tools=list(spec.get("tools") or []),
        env=env,
        secret_env=secret_env,
        test_script=spec.get("test_script"),
        base_url=spec.get("base_url"),
        api_key_env=(spec.get("api_key") or {}).get("secret"),
    )


def model_settings(spec: dict[str, Any]) -> dict[str, Any]:
    ms = spec.get("model_settings") or {}
    return {k: v for k, v in ms.items() if v is not None}


@workflow.defn(name="AgentExecutionWorkflow")
class AgentExecutionWorkflow(PydanticAIWorkflow):
    """Run one agent execution; phases and results go to the event log.

    Ends COMPLETED (returns ``{"output", "usage"}``), FAILED (the workflow fails
    with the error), or CANCELLED (the workflow is cancelled).
    """

    __pydantic_ai_agents__ = (agent,)

    async def _publish(self, inp: ExecutionInput, *events: tuple[str, str, dict[str, Any]]) -> None:
        """Append ``(key, type, payload)`` events in one local activity; ids are stable per key.

        A local activity runs in this worker within the workflow task: no round
        trip through the Temporal server to schedule it, and it is retried (same
        ids, so the server drops repeats) if the worker dies before it is recorded.
        """
        at = workflow.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await workflow.execute_local_activity(
            publish_events,
            args=[
                inp.execution_id,
                [
                    {
                        "event_id": f"{inp.execution_id}/wf/{key}",
                        "type": type_,
                        "payload": payload,
                        "at": at,
                    }
                    for key, type_, payload in events
                ],
            ],
            **PUBLISH_OPTS,
        )

    @workflow.run
    async def run(self, inp: ExecutionInput) -> dict[str, Any]:
        await self._publish(
            inp,
            ("running", "phase", {"phase": "RUNNING"}),
            ("human", "message", {"role": "human", "content": inp.message}),
        )
        model = inp.model or inp.spec.get("model") or "test"
        try:
            result = await agent.run(
                inp.message,
                deps=deps_for(inp),
                model=model,
                model_settings=model_settings(inp.spec) or None,  # type: ignore[arg-type]
            )
        except asyncio.CancelledError:
            await self._publish(inp, ("cancelled", "phase", {"phase": "CANCELLED"}))
            raise
        except Exception as exc:
            message = _describe(exc)
            await self._publish(
                inp,
                ("error", "error", {"message": message, "kind": type(exc).__name__}),
                ("failed", "phase", {"phase": "FAILED", "error": message}),
            )
            raise ApplicationError(message, type=type(exc).__name__, non_retryable=True) from exc
        usage = result.usage
        usage_payload = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "requests": usage.requests,
            "tool_calls": usage.tool_calls,
        }
        output = str(result.output)
        await self._publish(
            inp,
            ("usage", "usage", usage_payload),
            ("completed", "phase", {"phase": "COMPLETED", "output": output}),
        )
        return {"output": output, "usage": usage_payload}


def _describe(exc: BaseException) -> str:
    """The innermost useful message of an exception chain (activity errors wrap the cause)."""
    parts: list[str] = []
    cur: BaseException | None = exc
    while cur is not None and len(parts) < 5:
        text = str(cur).strip()
        if text and text not in parts:
            parts.append(text)
        cur = cur.__cause__
    return ": ".join(parts[-2:]) if parts else type(exc).__name__


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
