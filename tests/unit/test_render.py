"""The text output of `stigmer run` and `execution logs`."""

from __future__ import annotations

import pytest

from stigmer.cli.render import Renderer


def test_a_retried_calls_duration_says_it_spans_its_attempts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = Renderer()
    call = {"tool_call_id": "t0", "name": "shell"}
    r.event({"seq": 4, "type": "tool_call", "payload": call | {"status": "started", "args": {}}})
    r.event({"seq": 5, "type": "retry", "payload": call | {"attempt": 2, "reason": "shut down"}})
    r.event(
        {
            "seq": 6,
            "type": "tool_call",
            "payload": call | {"status": "completed", "duration_ms": 92961, "result": "done"},
        }
    )
    r.event(
        {
            "seq": 7,
            "type": "tool_call",
            "payload": {"tool_call_id": "t1", "name": "shell", "status": "completed"}
            | {"duration_ms": 12, "result": "ok"},
        }
    )
    out = capsys.readouterr().out
    assert "92961 ms over 2 attempts" in out, out
    assert "12 ms:" in out and "12 ms over" not in out, out
