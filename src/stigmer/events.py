"""Execution events: typed records the runner appends and the server streams.

Every event has a per-execution sequence number ``seq`` (assigned by the
server, strictly increasing, no gaps) and an ``event_id`` chosen by the
publisher that is stable across retries, so a retried activity cannot append
the same event twice.

Types and payloads (``payload`` is a JSON object):

* ``phase``: ``{"phase": PENDING|RUNNING|COMPLETED|FAILED|CANCELLED, "output"?, "error"?}``
* ``message``: ``{"role": human|ai|tool, "content": str, "tool_name"?, "tool_call_id"?}``
* ``tool_call``: ``{"tool_call_id", "name", "status": started|completed|failed,
  "args"?: object, "result"?: str, "duration_ms"?: int}``
* ``usage``: ``{"input_tokens", "output_tokens", "requests", "tool_calls"}``
* ``error``: ``{"message": str, "kind": str}``
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from stigmer.phases import PHASES, TERMINAL_PHASES

__all__ = ["PHASES", "TERMINAL_PHASES", "Event", "EventType", "NewEvent", "clip"]
EventType = Literal["phase", "message", "tool_call", "usage", "error"]

#: Longest text kept in one event (bytes of UTF-8, roughly); the rest is cut with a note.
MAX_EVENT_TEXT = 16 * 1024


class NewEvent(BaseModel):
    """An event as the runner publishes it (``POST /v1/executions/{id}/events``)."""

    event_id: str = Field(min_length=1, max_length=200)
    type: EventType
    payload: dict[str, Any]
    at: str | None = None  # ISO-8601 UTC, the publisher's clock


class Event(NewEvent):
    """An event as the server stores and streams it."""

    execution_id: str
    seq: int


def clip(text: str, limit: int = MAX_EVENT_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{len(text) - limit} more characters not shown]"
