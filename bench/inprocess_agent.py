"""The floor of ``stigmer run``: the same pydantic-ai agent, in-process, without Temporal.

``python bench/inprocess_agent.py SCRIPT_JSON --runs N --workspace DIR`` prints one
JSON object: ``{"import_s": ..., "first_s": ..., "runs_s": [...]}``.

The agent is the runner's, minus durability: the same ``test`` model
(``stigmer.runner.models.script_model`` playing the same ``test_script``), the same
workspace tools (``stigmer.runner.tools.ALL_TOOLS``), the same instructions and
``PrepareTools`` filter, and an event stream handler that consumes the events
(so model requests are streamed, as in the runner) but publishes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("script")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--tools", default="list_files,read_file")
    parser.add_argument("--message", default="bench")
    args = parser.parse_args()

    t0 = time.perf_counter()
    from pydantic_ai import Agent
    from pydantic_ai.capabilities import PrepareTools

    # the runner's own tools, instructions and tool filter; only Temporal is left out
    from stigmer.runner.agent import instructions, only_spec_tools, workspace_tools
    from stigmer.runner.models import script_model
    from stigmer.runner.runtime import configure_local
    from stigmer.runner.tools import RunDeps

    import_s = time.perf_counter() - t0
    configure_local(args.workspace)
    script = json.loads(args.script)
    tools = args.tools.split(",")

    async def consume(ctx: Any, events: Any) -> None:
        async for _ in events:
            pass

    agent: Agent[RunDeps, str] = Agent(
        script_model(script),
        deps_type=RunDeps,
        instructions=instructions,
        toolsets=[workspace_tools],
        capabilities=[PrepareTools(only_spec_tools)],
    )

    async def run_once(i: int) -> Any:
        return await agent.run(args.message, deps=deps(i), event_stream_handler=consume)

    def deps(i: int) -> RunDeps:
        return RunDeps(
            execution_id=f"inprocess-{i}",
            agent_name="bench-two-tools",
            instructions="Benchmark agent: list the bench folder, read its input file, answer.",
            tools=tools,
            test_script=script,
        )

    t0 = time.perf_counter()
    result = await run_once(0)
    first_s = time.perf_counter() - t0
    usage = result.usage
    for i in range(args.warmup):
        await run_once(i + 1)
    runs = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        await run_once(i + 100)
        runs.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "import_s": import_s,
                "first_s": first_s,
                "runs_s": runs,
                "output": str(result.output),
                "tool_calls": usage.tool_calls,
                "requests": usage.requests,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
