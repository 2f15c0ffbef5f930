"""The floor of the runner's idle memory: a bare temporalio worker, nothing else.

Run in the runner image (same base, same Python, same temporalio) as
``python /opt/bench/bare_worker.py`` (bind-mounted read-only: the workflow sandbox
needs a module file); configured by the runner's own configuration file
(on its stdin, ``STIGMER_CONFIG=-``: Temporal's address and namespace, the task
queue and the worker identity), read as plain JSON. One trivial workflow and
one trivial activity, the default (sandboxed) workflow runner: what any worker
needs at the least.
"""

import asyncio
import json
import signal
import sys

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
    cfg = json.load(sys.stdin)  # STIGMER_CONFIG=-: the configuration comes on stdin
    client = await Client.connect(
        cfg["temporal"]["address"],
        namespace=cfg["temporal"]["namespace"],
        identity=cfg["runner"]["identity"],
    )
    worker = Worker(
        client,
        task_queue=cfg["runner"]["task_queue"],
        workflows=[BenchNoopWorkflow],
        activities=[bench_noop_activity],
        identity=cfg["runner"]["identity"],
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
