"""The one durable agent every execution runs, configured per run from the spec snapshot.

Agents are data (applied from YAML at run time) but Temporal registers durable
agents by name when the worker starts. So there is one agent named
``stigmer_agent`` whose instructions, tools and model come from the run's deps:

* instructions: a function of ``ctx.deps``;
* tools: the built-in workspace toolset (id ``workspace``), narrowed to
  ``spec.tools`` by a ``PrepareTools`` capability;
* model: chosen per run and built on the worker by ``ResolveModelId``.

Each model request and each tool call is its own activity, and each publishes
its own events: the model-request activity streams into ``handle_stream``
(``ai`` messages), a tool activity sends its ``tool_call`` and ``tool``
message events around the call (:class:`WorkspaceToolset`). The workflow does
not schedule an extra event-handler activity per tool event
(:class:`StigmerDurability`): that used to double the activities of a run.

Tool activities heartbeat on a timer (pydantic-ai beats in the background at a
fraction of ``heartbeat_timeout``), so a long shell command is not mistaken for
a dead worker, while a worker that really dies is noticed within that timeout.
A tool call also beats every :data:`CANCEL_BEAT_S` while it runs, and the
worker sends a heartbeat at most every second (``max_heartbeat_throttle_interval``):
a cancel reaches the activity as the answer to a heartbeat, so a cancelled
execution's running tool is stopped (its process group killed) within about a
second, without a short heartbeat timeout that a busy machine would trip.

Approvals: the :class:`ApprovalGate` capability defers a call of a tool listed
in ``spec.approval`` before it runs (in the workflow, so nothing is scheduled),
and hands the deferred calls to the workflow, which waits durably for a
decision (:meth:`AgentExecutionWorkflow.decide`).

The agent name and toolset id are part of activity names in workflow history:
renaming them breaks replay of running executions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic_ai import Agent, ModelRetry, RunContext, ToolsetTool
from pydantic_ai.capabilities import AbstractCapability, PrepareTools, ResolveModelId
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.exceptions import ApprovalRequired, ToolFailed
from pydantic_ai.messages import AgentStreamEvent, FunctionToolResultEvent, ToolCallPart
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolDefinition
from pydantic_ai.toolsets import FunctionToolset
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType, ActivityConfig

from stigmer.runner import runtime
from stigmer.runner.attempts import TOOL_ATTEMPTS_WITH_SHUTDOWNS
from stigmer.runner.models import resolve_model
from stigmer.runner.publish import ToolCallEvents, handle_stream, tool_ran
from stigmer.runner.tools import ALL_TOOLS, RunDeps

AGENT_NAME = "stigmer_agent"
TOOLSET_ID = "workspace"

#: A dead worker's tool call is retried elsewhere after this long without a heartbeat.
TOOL_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
#: How often (s) a running tool call heartbeats, so that a cancel reaches it at once.
CANCEL_BEAT_S = 0.5


async def _beat_often() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(CANCEL_BEAT_S)


class WorkspaceToolset(FunctionToolset[RunDeps]):
    """The built-in tools; inside a tool activity each call publishes its own events.

    ``tool_call`` started, sent before the tool runs (the server accepts it
    only from the execution's own workflow run: a call replayed from another
    run never reaches the tool), then ``tool_call`` completed or failed
    (``ModelRetry``/``ToolFailed``: the model sees the error; or the execution
    was cancelled) and the ``tool`` message. Any other exception, a worker
    shutdown or a timeout ends the attempt with only ``started`` sent: Temporal
    retries it, and the retry reports the result under the same event ids.
    Outside an activity (an agent run without Temporal) nothing is published.
    """

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[RunDeps],
        tool: ToolsetTool[RunDeps],
    ) -> Any:
        if not activity.in_activity():
            return await super().call_tool(name, tool_args, ctx, tool)
        # what the tool returns or says goes to the model, the history and the
        # event log: every secret the run can see is masked before it leaves
        refs = list(ctx.deps.secret_env.values())
        mask = runtime.current().mask
        events = ToolCallEvents(ctx.deps.execution_id, ctx.tool_call_id, name, refs)
        await events.started(tool_args)  # refused for a run that is not the execution's
        beats = asyncio.create_task(_beat_often())
        try:
            result = mask(await super().call_tool(name, tool_args, ctx, tool), refs)
        except ModelRetry as exc:
            message = mask(exc.message, refs)
            await events.finished(failed=True, result=message)
            raise ModelRetry(message) from None
        except ToolFailed as exc:
            message = mask(exc.message, refs)
            await events.finished(failed=True, result=message)
            raise ToolFailed(message) from None
        except OSError as exc:
            # the workspace refused (permissions, a full disk, a name too long): the
            # model sees it and may act on it; another attempt would meet the same
            what = exc.strerror or type(exc).__name__
            where = f": {exc.filename}" if exc.filename else ""
            message = mask(f"{what}{where}", refs)
            await events.finished(failed=True, result=message)
            raise ModelRetry(message) from None
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is not None and details.cancel_requested:
                # the execution was cancelled: this call ends here, for good
                await events.finished(failed=True, result="cancelled with the execution")
            # else a worker shutdown or a timeout: another attempt reports the result
            raise
        finally:
            beats.cancel()
        await events.finished(failed=False, result=result)
        return result


@dataclass
class ApprovalGate(AbstractCapability[RunDeps]):
    """Calls of the tools in ``spec.approval`` wait for a person's decision before they run.

    ``before_tool_execute`` runs in the workflow, before the tool's activity is
    scheduled: a listed tool's call is deferred (``ApprovalRequired``) unless it
    was approved. The deferred calls of a model turn come to
    ``handle_deferred_tool_calls``, which the workflow answers once they are
    decided (:meth:`AgentExecutionWorkflow.decide`); the run then goes on in
    the same ``agent.run``: an approved call runs, a denied one returns the
    denial to the model.
    """

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None

    async def before_tool_execute(
        self,
        ctx: RunContext[RunDeps],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
    ) -> Any:
        if call.tool_name in ctx.deps.approval_tools and not ctx.tool_call_approved:
            raise ApprovalRequired()
        return args

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[RunDeps], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        if not workflow.in_workflow() or not requests.approvals:
            return None
        decide = getattr(workflow.instance(), "decide", None)
        if decide is None:
            return None
        results: DeferredToolResults = await decide(requests)
        return results


class StigmerDurability(TemporalDurability[RunDeps]):
    """``TemporalDurability`` without an event-handler activity for each tool event.

    The base class hands every tool event the workflow sees to the event stream
    handler in an activity of its own (two per tool call). Our tool activities
    publish those events themselves, so only a result no tool activity saw (the
    model called an unknown tool or passed invalid arguments) still goes to
    the handler that way.
    """

    async def wrap_run_event_stream(
        self,
        ctx: RunContext[RunDeps],
        *,
        stream: AsyncIterable[AgentStreamEvent],
    ) -> AsyncIterable[AgentStreamEvent]:
        if not self.in_durable_context:
            async for ev in super().wrap_run_event_stream(ctx, stream=stream):
                yield ev
            return
        try:
            async for ev in stream:
                if isinstance(ev, FunctionToolResultEvent) and not tool_ran(ev.part):
                    await self._dispatch_event_stream_event(ctx, ev)
                yield ev
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


workspace_tools: WorkspaceToolset = WorkspaceToolset(id=TOOLSET_ID, max_retries=2)
for _fn in ALL_TOOLS.values():
    workspace_tools.add_function(_fn)


def instructions(ctx: RunContext[RunDeps]) -> str:
    return ctx.deps.instructions


async def only_spec_tools(
    ctx: RunContext[RunDeps], tool_defs: list[ToolDefinition]
) -> list[ToolDefinition]:
    allowed = set(ctx.deps.tools)
    return [t for t in tool_defs if t.name in allowed]


agent: Agent[RunDeps, str] = Agent(
    "test",  # a placeholder: every run passes the model its ExecutionInput names
    name=AGENT_NAME,
    deps_type=RunDeps,
    instructions=instructions,
    toolsets=[workspace_tools],
    capabilities=[
        ResolveModelId(resolve_model),
        PrepareTools(only_spec_tools),
        ApprovalGate(),
        StigmerDurability(
            event_stream_handler=handle_stream,
            activity_config=ActivityConfig(
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
            ),
            model_activity_config=ActivityConfig(
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
            ),
            toolset_activity_config={
                TOOLSET_ID: ActivityConfig(
                    start_to_close_timeout=timedelta(minutes=16),
                    heartbeat_timeout=TOOL_HEARTBEAT_TIMEOUT,
                    # a cancelled execution ends after its running tool stopped: its
                    # process group is killed when the cancel reaches the activity, at
                    # its next heartbeat (the SDK sends one every 0.8 x the timeout: 8 s)
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    # TOOL_ATTEMPTS failed attempts, not counting worker shutdowns
                    # (a `server restart` while the call runs): runner/lost.py
                    retry_policy=RetryPolicy(
                        maximum_attempts=TOOL_ATTEMPTS_WITH_SHUTDOWNS,
                        initial_interval=timedelta(seconds=1),
                        maximum_interval=timedelta(seconds=10),
                    ),
                )
            },
            event_stream_handler_activity_config=ActivityConfig(
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(
                    maximum_attempts=0, maximum_interval=timedelta(seconds=10)
                ),
            ),
        ),
    ],
)
