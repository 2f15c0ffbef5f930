"""The one durable agent every execution runs, configured per run from the spec snapshot.

Agents are data (applied from YAML at run time) but Temporal registers durable
agents by name when the worker starts. So there is one agent named
``stigmer_agent`` whose instructions, tools and model come from the run's deps:

* instructions: a function of ``ctx.deps``;
* tools: the built-in workspace toolset (id ``workspace``), narrowed to
  ``spec.tools`` by a ``PrepareTools`` capability;
* model: chosen per run and built on the worker by ``ResolveModelId``.

Each model request and each tool call is its own activity. Tool activities
heartbeat on a timer (pydantic-ai beats in the background at a fraction of
``heartbeat_timeout``), so a long shell command is not mistaken for a dead
worker, while a worker that really dies is noticed within that timeout.

The agent name and toolset id are part of activity names in workflow history:
renaming them breaks replay of running executions.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import PrepareTools, ResolveModelId
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import FunctionToolset
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

from stigmer.runner.models import resolve_model
from stigmer.runner.publish import handle_stream
from stigmer.runner.tools import ALL_TOOLS, RunDeps

AGENT_NAME = "stigmer_agent"
TOOLSET_ID = "workspace"

#: A dead worker's tool call is retried elsewhere after this long without a heartbeat.
TOOL_HEARTBEAT_TIMEOUT = timedelta(seconds=10)

workspace_tools: FunctionToolset[RunDeps] = FunctionToolset(id=TOOLSET_ID, max_retries=2)
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
    "test",
    name=AGENT_NAME,
    deps_type=RunDeps,
    instructions=instructions,
    toolsets=[workspace_tools],
    capabilities=[
        ResolveModelId(resolve_model),
        PrepareTools(only_spec_tools),
        TemporalDurability(
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
                    retry_policy=RetryPolicy(
                        maximum_attempts=3, initial_interval=timedelta(seconds=1)
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
