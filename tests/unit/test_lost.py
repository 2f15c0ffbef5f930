"""The pieces that name a runner lost out of memory (the real thing: tests/docker/test_engine_faults.py)."""

from __future__ import annotations

from stigmer.runner.lost import (
    ACTIVITY_KEY,
    SHUTDOWNS_KEY,
    WORKER_KEY,
    attempts_allowed,
    previous_shutdowns,
    previous_worker,
)
from stigmer.stack.agent_runner_docker import _more_memory


def test_previous_worker_from_heartbeat_details() -> None:
    assert previous_worker([{WORKER_KEY: "w1"}, "other"]) == "w1"
    assert previous_worker([]) is None and previous_worker(None) is None
    assert previous_worker(["x", {"other": 1}]) is None


def test_previous_shutdowns_from_heartbeat_details() -> None:
    assert previous_shutdowns([{WORKER_KEY: "w1", SHUTDOWNS_KEY: 2}]) == 2
    assert previous_shutdowns([]) == 0 and previous_shutdowns(None) == 0
    assert previous_shutdowns([{SHUTDOWNS_KEY: "2"}, {SHUTDOWNS_KEY: -1}]) == 0
    # a record copied from another activity of the workflow is not this one's
    mine = {WORKER_KEY: "w1", ACTIVITY_KEY: "7", SHUTDOWNS_KEY: 2}
    assert previous_shutdowns([mine], "7") == 2
    assert previous_shutdowns([mine], "8") == 0


def test_only_tool_calls_have_stigmers_attempt_count() -> None:
    assert attempts_allowed("agent__stigmer_agent__toolset__workspace__call_tool") == 3
    assert attempts_allowed("agent__stigmer_agent__model_request") is None
    assert attempts_allowed("agent__stigmer_agent__toolset__mcp__get_tools") is None


def test_more_memory_doubles_in_docker_syntax() -> None:
    assert _more_memory("160m") == "320m"
    assert _more_memory("512m") == "1g"
    assert _more_memory("2g") == "4g"
    assert _more_memory("1048576") == "2m"
