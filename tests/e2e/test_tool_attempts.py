"""A tool call's attempts: failures count, worker shutdowns do not (runner/lost.py).

A real ``temporal server start-dev`` and a worker with the runner's
interceptor, running an activity named as pydantic-ai names tool calls.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from stigmer.runner.attempts import TOOL_ATTEMPTS, TOOL_ATTEMPTS_WITH_SHUTDOWNS
from stigmer.runner.lost import LostWorkerInterceptor
from tests.conftest import free_ports
from tests.tls_front import temporal_dev_server

TOOL_ACTIVITY = "agent__test__toolset__workspace__call_tool"
attempts_seen: list[int] = []
running = asyncio.Event()


@activity.defn(name=TOOL_ACTIVITY)
async def tool_call(behaviour: str) -> str:
    attempts_seen.append(activity.info().attempt)
    if behaviour == "fail":
        raise RuntimeError("the tool broke")
    if activity.info().attempt <= TOOL_ATTEMPTS:  # "shutdown": run until the worker stops
        running.set()
        await asyncio.sleep(3600)
    return "done"


@workflow.defn(sandboxed=False)
class OneToolCall:
    @workflow.run
    async def run(self, behaviour: str) -> str:
        result: str = await workflow.execute_activity(
            TOOL_ACTIVITY,
            behaviour,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                maximum_attempts=TOOL_ATTEMPTS_WITH_SHUTDOWNS,
                initial_interval=timedelta(milliseconds=100),
            ),
        )
        return result


@pytest.fixture(scope="module")
def temporal() -> Iterator[str]:
    port, ui = free_ports(2)
    proc = temporal_dev_server(port, ui)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[OneToolCall],
        activities=[tool_call],
        interceptors=[LostWorkerInterceptor("test-worker", {})],
        workflow_runner=UnsandboxedWorkflowRunner(),
        graceful_shutdown_timeout=timedelta(milliseconds=200),
    )


def test_failures_use_up_a_tool_calls_attempts(temporal: str) -> None:
    async def go() -> BaseException:
        client = await Client.connect(temporal)
        tq = f"tq-{uuid.uuid4().hex[:8]}"
        async with worker(client, tq):
            with pytest.raises(WorkflowFailureError) as failed:
                await client.execute_workflow(OneToolCall.run, "fail", id=tq, task_queue=tq)
        return failed.value.cause

    attempts_seen.clear()
    cause = asyncio.run(go())
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "AttemptsExhausted", cause.cause
    assert "failed 3 times" in cause.cause.message and "the tool broke" in cause.cause.message
    # three that ran and failed, a fourth that refused to run
    assert attempts_seen == [1, 2, 3], attempts_seen


def test_worker_shutdowns_do_not_use_up_a_tool_calls_attempts(temporal: str) -> None:
    async def go() -> str:
        client = await Client.connect(temporal)
        tq = f"tq-{uuid.uuid4().hex[:8]}"
        handle = None
        for _ in range(TOOL_ATTEMPTS):  # each attempt ends as its worker shuts down
            running.clear()
            w = worker(client, tq)
            task = asyncio.create_task(w.run())
            if handle is None:
                handle = await client.start_workflow(
                    OneToolCall.run, "shutdown", id=tq, task_queue=tq
                )
            async with asyncio.timeout(60):
                await running.wait()
            await w.shutdown()
            await task
        async with worker(client, tq):
            assert handle is not None
            return await handle.result()

    attempts_seen.clear()
    assert asyncio.run(go()) == "done"
    assert attempts_seen == [1, 2, 3, 4], attempts_seen
