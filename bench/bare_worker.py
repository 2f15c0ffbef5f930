"""The floor of the runner's idle memory: a bare temporalio worker, nothing else.

Run in the runner image (same base, same Python, same temporalio) as
``python /opt/bench/bare_worker.py`` (bind-mounted read-only: the workflow sandbox
needs a module file); configured by the runner's own env
vars (``STIGMER_TEMPORAL_ADDRESS``, ``STIGMER_TEMPORAL_NAMESPACE``,
``STIGMER_TASK_QUEUE``, ``STIGMER_RUNNER_IDENTITY``). One trivial workflow and
one trivial activity, the default (sandboxed) workflow runner: what any worker
needs at the least.
"""

import asyncio
import os
import signal

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn
async def bench_noop_activity(x: str) -> str:
    return x


@workflow.defn
class BenchNoopWorkflow:
    @workflow.run
    async def run(self, x: str) -> str:
        return x


async def main() -> None:
    client = await Client.connect(
        os.environ["STIGMER_TEMPORAL_ADDRESS"],
        namespace=os.environ.get("STIGMER_TEMPORAL_NAMESPACE", "default"),
        identity=os.environ["STIGMER_RUNNER_IDENTITY"],
    )
    worker = Worker(
        client,
        task_queue=os.environ["STIGMER_TASK_QUEUE"],
        workflows=[BenchNoopWorkflow],
        activities=[bench_noop_activity],
        identity=os.environ["STIGMER_RUNNER_IDENTITY"],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(worker.run())
    await stop.wait()
    await worker.shutdown()
    await task


if __name__ == "__main__":  # the workflow sandbox re-imports this module
    asyncio.run(main())
