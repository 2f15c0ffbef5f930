"""A quick read-only call of a run the worker knows publishes started with its result, in one request.

Every other call is on record (its started event stored) before it runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stigmer.runner import publish


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    sent: list[list[str]] = []

    async def fake_post(
        execution_id: str, events: list[dict[str, Any]], refs: Any = ()
    ) -> list[int]:
        await asyncio.sleep(0.01)
        sent.append([e["payload"].get("status") or e["type"] for e in events])
        publish._remember_claims(execution_id, events)
        return list(range(len(events)))

    monkeypatch.setattr(publish, "post_events", fake_post)
    monkeypatch.setattr(publish, "_claims", type(publish._claims)())
    return sent


def call(run: str, seconds: float, tool: str = "read_file") -> None:
    async def go() -> None:
        ev = publish.ToolCallEvents("ex-1", "t0", tool)
        ev._run = run
        await ev.started({"path": "x"})
        await asyncio.sleep(seconds)
        await ev.finished(failed=False, result="ok")

    asyncio.run(go())


def test_a_run_not_known_yet_waits_for_started_to_be_taken(posts: list[list[str]]) -> None:
    call("run-a", 0)
    assert posts == [["started"], ["completed", "message"]]


def test_a_quick_call_of_a_known_run_is_one_request(posts: list[list[str]]) -> None:
    publish._remember_claims("ex-1", [{"run_id": "run-a"}])
    call("run-a", 0)
    assert posts == [["started", "completed", "message"]]


def test_a_slow_call_of_a_known_run_says_started_while_it_runs(posts: list[list[str]]) -> None:
    publish._remember_claims("ex-1", [{"run_id": "run-a"}])
    call("run-a", publish.QUICK_CALL_S + 0.2)
    assert posts == [["started"], ["completed", "message"]]


def test_another_run_of_the_same_execution_is_not_known(posts: list[list[str]]) -> None:
    publish._remember_claims("ex-1", [{"run_id": "run-a"}])
    assert not publish.claimed("ex-1", "run-b") and not publish.claimed("ex-2", "run-a")
    call("run-b", 0)
    assert posts == [["started"], ["completed", "message"]]


@pytest.mark.parametrize("tool", ["shell", "write_file", "edit_file"])
def test_a_call_that_changes_something_is_on_record_before_it_runs(
    posts: list[list[str]], tool: str
) -> None:
    publish._remember_claims("ex-1", [{"run_id": "run-a"}])
    call("run-a", 0, tool)
    assert posts == [["started"], ["completed", "message"]]
