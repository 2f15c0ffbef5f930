"""The peer of ``stigmer run``: the same agent, durable, with bare pydantic-ai on Temporal.

``python bench/temporal_peer.py SCRIPT_JSON --address HOST:PORT --runs N --workspace DIR``
prints one JSON object: ``{"runs_s": [...], "cpu_s": ..., "tool_calls": ..., ...}``.

What a pydantic-ai user writes to run an agent durably, and nothing of stigmer's
own: an ``Agent`` with ``TemporalDurability`` (every model request and every tool
call its own activity), a workflow that runs it, a worker and a client in this
process, on the same Temporal dev server as the stack (its own task queue). The
same ``test`` model playing the same script, the same tool functions, the same
instructions. No API server, no store, no events, no payload sealing.

``runs_s`` is each run's wall time as the client sees it (start the workflow,
wait for its result); ``cpu_s`` is this process's CPU (worker and client) over
the timed runs. Temporal's own CPU is read by the caller around this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import uuid
from datetime import timedelta
from typing import Any

from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow
from temporalio import workflow

#: the agent and its settings, made in main() before the worker starts
_STATE: dict[str, Any] = {}


@workflow.defn(name="PeerAgentWorkflow", sandboxed=False)
class PeerAgentWorkflow(PydanticAIWorkflow):
    @workflow.run
    async def run(self, message: str) -> dict[str, Any]:
        from stigmer.runner.tools import RunDeps

        deps = RunDeps(
            execution_id=workflow.info().workflow_id,
            agent_name="bench-two-tools",
            instructions=_STATE["instructions"],
            tools=_STATE["tools"],
            test_script=_STATE["script"],
        )
        result = await _STATE["agent"].run(message, deps=deps)
        return {"output": str(result.output), "tool_calls": result.usage.tool_calls}


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("script")
    parser.add_argument("--address", required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--tools", default="list_files,read_file")
    parser.add_argument("--message", default="bench")
    args = parser.parse_args()

    from pydantic_ai import Agent
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin, TemporalDurability
    from pydantic_ai.toolsets import FunctionToolset
    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker
    from temporalio.workflow import ActivityConfig

    from stigmer.runner.models import script_model
    from stigmer.runner.runtime import configure_local
    from stigmer.runner.tools import ALL_TOOLS, RunDeps

    configure_local(args.workspace)
    script = json.loads(args.script)
    tools = args.tools.split(",")
    toolset: FunctionToolset[RunDeps] = FunctionToolset(id="workspace")
    for name in tools:
        toolset.add_function(ALL_TOOLS[name])
    instructions = "Benchmark agent: list the bench folder, read its input file, answer."
    agent: Agent[RunDeps, str] = Agent(
        script_model(script),
        name="peer_agent",
        deps_type=RunDeps,
        instructions=instructions,
        toolsets=[toolset],
        capabilities=[
            TemporalDurability(
                activity_config=ActivityConfig(start_to_close_timeout=timedelta(minutes=10))
            )
        ],
    )

    _STATE.update(agent=agent, instructions=instructions, tools=tools, script=script)
    PeerAgentWorkflow.__pydantic_ai_agents__ = (agent,)

    client = await Client.connect(args.address, plugins=[PydanticAIPlugin()])
    queue = f"bench-peer-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PeerAgentWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):

        async def run_once() -> dict[str, Any]:
            out: dict[str, Any] = await client.execute_workflow(
                PeerAgentWorkflow.run,
                args.message,
                id=f"bench-peer-{uuid.uuid4().hex}",
                task_queue=queue,
            )
            return out

        first = await run_once()
        for _ in range(args.warmup):
            await run_once()
        runs = []
        cpu0 = _cpu_s()
        for _ in range(args.runs):
            t0 = time.perf_counter()
            await run_once()
            runs.append(time.perf_counter() - t0)
        cpu = _cpu_s() - cpu0
    print(
        json.dumps(
            {
                "runs_s": runs,
                "cpu_s": cpu,
                "output": first["output"],
                "tool_calls": first["tool_calls"],
                "task_queue": queue,
            }
        )
    )


if __name__ == "__main__":
    from stigmer.hardening import exit_now

    asyncio.run(main())
    # the bridge's threads can abort the interpreter as it finalizes (temporalio/sdk-python#300)
    exit_now(0)
