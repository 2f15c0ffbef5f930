"""Execution events: the records the runner appends and the API server stores and streams.

Every event has a per-execution sequence number ``seq`` (assigned by the
store, strictly increasing, no gaps) and an ``event_id`` chosen by the
publisher that is stable across retries, so a retried activity cannot append
the same event twice. Each type has one payload model:

* ``phase``: :class:`PhasePayload`
* ``message``: :class:`MessagePayload` (role ``human``, ``ai`` or ``tool``)
* ``tool_call``: :class:`ToolCallPayload` (status ``started``, ``completed`` or ``failed``)
* ``usage``: :class:`UsagePayload`
* ``error``: :class:`ErrorPayload`
* ``approval_requested``: :class:`ApprovalRequestedPayload` (a tool call waits for a person)
* ``approval_decided``: :class:`ApprovalDecidedPayload` (approved or denied, why, by whom)
* ``retry``: :class:`RetryPayload` (a tool call or model request runs again, and why)

Timestamps are ISO-8601 UTC with microseconds and a ``Z``
(:func:`format_timestamp`), everywhere.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stigmer.contract.phases import PHASES

EventType = Literal[
    "phase",
    "message",
    "tool_call",
    "usage",
    "error",
    "approval_requested",
    "approval_decided",
    "retry",
]
Phase = Literal["PENDING", "RUNNING", "AWAITING_APPROVAL", "COMPLETED", "FAILED", "CANCELLED"]
assert set(Phase.__args__) == set(PHASES)  # type: ignore[attr-defined]

#: Longest text kept in one event (characters); the rest is cut with a note.
MAX_EVENT_TEXT = 16 * 1024
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_timestamp(dt: datetime | None = None) -> str:
    """``dt`` (default: now) as ``2026-12-01T20:35:16.123456Z``."""
    dt = dt or datetime.now(UTC)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str | None) -> datetime | None:
    """The datetime of a timestamp in the format above (None if empty or malformed)."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def clip(text: str, limit: int = MAX_EVENT_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{len(text) - limit} more characters not shown]"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhasePayload(_Payload):
    phase: Phase
    output: str | None = None
    error: str | None = None


class MessagePayload(_Payload):
    role: Literal["human", "ai", "tool"]
    content: str
    tool_name: str | None = None
    tool_call_id: str | None = None


class ToolCallPayload(_Payload):
    tool_call_id: str | None = None
    name: str
    status: Literal["started", "completed", "failed"]
    args: dict[str, Any] | None = None
    result: str | None = None
    #: set by the store from the call's ``started`` event
    duration_ms: int | None = None


class UsagePayload(_Payload):
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0


class ErrorPayload(_Payload):
    message: str
    kind: str


class ApprovalRequestedPayload(_Payload):
    """A call of a tool the agent's ``spec.approval`` lists waits for a decision.

    ``call_id`` is the id a person decides it by (``stigmer execution approve
    ID CALL_ID``, ``POST .../approvals/CALL_ID``): the model's ``tool_call_id``
    when that is a plain token not used before in the run, else one the
    workflow makes (``approval-N``). ``args`` are the call's arguments with
    every secret masked; ``deadline`` (a timestamp) is when ``on_timeout``
    decides it.
    """

    call_id: str
    tool_call_id: str
    name: str
    args: dict[str, Any] | None = None
    deadline: str
    on_timeout: Literal["approve", "deny"]


class ApprovalDecidedPayload(_Payload):
    """What was decided for a call that waited: it runs (``approved``) or never does."""

    call_id: str
    tool_call_id: str
    name: str
    decision: Literal["approved", "denied"]
    reason: str | None = None
    #: who decided: the token's label (``admin``, a user token's label) or ``timeout``
    by: str


class RetryPayload(_Payload):
    """A tool call or model request runs again: which, its attempt (2 and up), and why."""

    tool_call_id: str | None = None
    #: the tool's name, or ``model`` for a model request
    name: str
    attempt: int = Field(ge=2)
    reason: str


Payload = (
    PhasePayload
    | MessagePayload
    | ToolCallPayload
    | UsagePayload
    | ErrorPayload
    | ApprovalRequestedPayload
    | ApprovalDecidedPayload
    | RetryPayload
)
PAYLOAD_TYPES: dict[str, type[_Payload]] = {
    "phase": PhasePayload,
    "message": MessagePayload,
    "tool_call": ToolCallPayload,
    "usage": UsagePayload,
    "error": ErrorPayload,
    "approval_requested": ApprovalRequestedPayload,
    "approval_decided": ApprovalDecidedPayload,
    "retry": RetryPayload,
}
_TYPE_OF = {cls: name for name, cls in PAYLOAD_TYPES.items()}


class _EventBody(BaseModel):
    """What every event has; the payload is checked against its type's model."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=200)
    type: EventType
    payload: dict[str, Any]
    at: str | None = None  # the publisher's clock, format_timestamp()

    @model_validator(mode="after")
    def _payload_fits_type(self) -> _EventBody:
        model = PAYLOAD_TYPES[self.type].model_validate(self.payload)
        self.payload = model.model_dump(mode="json", exclude_none=True)
        return self

    def typed(self) -> Payload:
        return PAYLOAD_TYPES[self.type].model_validate(self.payload)  # type: ignore[return-value]


class NewEvent(_EventBody):
    """An event as a publisher sends it (``POST /v1/executions/{id}/events``)."""

    #: the workflow run that publishes it: an execution takes events from its own run only
    run_id: str | None = Field(default=None, max_length=64)


class Event(_EventBody):
    """An event as the store keeps and streams it (the run is the execution's ``run_id``)."""

    execution_id: str
    seq: int


def claim_event_id(execution_id: str, run_id: str) -> str:
    """The id of the RUNNING event by which workflow run ``run_id`` claims the execution.

    The workflow publishes it first; a worker that has not seen the claim sends
    it again to prove a run is the execution's (the API takes a repeat from the
    run that claimed it and refuses it from any other).
    """
    return f"{execution_id}/wf/{run_id}/running"


def new_event(
    event_id: str,
    payload: Payload,
    at: datetime | str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The JSON form of an event: ``{"event_id", "type", "payload", "at", "run_id"?}``."""
    out = {
        "event_id": event_id,
        "type": _TYPE_OF[type(payload)],
        "payload": payload.model_dump(mode="json", exclude_none=True),
        "at": at if isinstance(at, str) else format_timestamp(at),
    }
    if run_id is not None:
        out["run_id"] = run_id
    return out


def jsonable(value: Any, limit: int = 2000) -> Any:
    """``value`` as plain JSON data (anything else becomes ``{"raw": str(value)}``)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {"raw": clip(str(value), limit)}
