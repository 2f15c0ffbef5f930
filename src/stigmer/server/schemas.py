"""The API's request and response bodies, as the OpenAPI document (``/openapi.json``) shows them.

Every error has the same body, ``{"detail": ...}``: a sentence, or for a
request that does not fit its schema (422) a list of ``{loc, msg}`` that names
each field and the reason, never the value sent (it may be a secret).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stigmer.contract.events import Event, NewEvent
from stigmer.contract.ids import EXECUTION_ID_PATTERN
from stigmer.contract.limits import shape_problem
from stigmer.contract.phases import PHASES


def utf8(value: Any) -> Any:
    """``value`` unchanged if every string in it is valid UTF-8 text without NUL; else ValueError.

    JSON can carry lone surrogates (``\\udcff``, what Python makes of bytes that
    are not UTF-8) and NUL characters; neither can be stored or sent to Temporal
    everywhere, so they are refused with a 422 before anything is stored.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid UTF-8 text") from None
        if "\x00" in value:
            raise ValueError("text may not contain NUL characters")
    elif isinstance(value, dict):
        for k, v in value.items():
            utf8(k)
            utf8(v)
    elif isinstance(value, list):
        for v in value:
            utf8(v)
    return value


Text = Annotated[str, AfterValidator(utf8)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str | list[ErrorItem]


def spec_shape(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` unchanged if it is shallow enough to run (:mod:`stigmer.contract.limits`).

    Checked before anything else walks the spec; its size is the endpoint's
    to check (an answer 413, as for a body over the API's limit).
    """
    problem = shape_problem(spec)
    if problem:
        raise ValueError(problem)
    return spec


class AgentPut(_Body):
    spec: Annotated[dict[str, Any], AfterValidator(spec_shape), AfterValidator(utf8)]


class Agent(BaseModel):
    name: str
    spec: dict[str, Any]
    spec_hash: str
    generation: int
    created_at: str | None
    updated_at: str | None
    #: the model its runs use when a run names none: the spec's, else default_model
    model: str


class AgentPutResult(BaseModel):
    status: str = Field(description="created, updated or unchanged")
    agent: Agent


class AgentList(BaseModel):
    agents: list[Agent]


class Deleted(BaseModel):
    deleted: str


#: The longest message a run takes (its workflow input must stay far below Temporal's 2 MB).
MAX_MESSAGE = 256 * 1024


class ExecutionCreate(_Body):
    #: chosen by the client (``ex-`` + time + random hex), so that a submission it
    #: retries is one execution; the server makes one when it is left out
    id: Annotated[str | None, Field(pattern=EXECUTION_ID_PATTERN)] = None
    agent: Text
    message: Annotated[Text, Field(max_length=MAX_MESSAGE)] = ""
    env: Annotated[dict[str, str], AfterValidator(utf8)] = Field(default_factory=dict)
    model: Text | None = None


class Execution(BaseModel):
    id: str
    agent: str
    phase: str = Field(description=" | ".join(PHASES))
    workflow_id: str
    #: the workflow run that runs it (events from any other run are refused)
    run_id: str | None = None
    message: str | None
    model: str | None
    output: str | None
    error: str | None
    created_at: str | None
    updated_at: str | None
    last_seq: int | None = None


class ExecutionList(BaseModel):
    executions: list[Execution]


class CancelResult(BaseModel):
    id: str
    cancel_requested: bool


#: What a tool call id may look like (the ids models give: ``toolu_...``, ``call_...``, ``t0``).
TOOL_CALL_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"


class ApprovalDecide(_Body):
    """``{"decision": "approve"|"deny", "reason"?}``; ``scope: run`` with approve also
    approves every later call of the run."""

    decision: Literal["approve", "deny"]
    reason: Annotated[Text | None, Field(max_length=2000)] = None
    scope: Literal["call", "run"] = "call"


class PendingApproval(BaseModel):
    """A tool call that waits for a decision (its ``approval_requested`` event)."""

    #: the id to decide it by
    call_id: str
    tool_call_id: str
    name: str
    args: dict[str, Any] | None = None
    deadline: str
    on_timeout: str
    seq: int


class ApprovalList(BaseModel):
    execution_id: str
    phase: str
    pending: list[PendingApproval]


class ApprovalResult(BaseModel):
    """The decision was sent to the workflow; its ``approval_decided`` event records it.

    ``recorded`` is that event's payload once the workflow took the decision (the
    API waits a few seconds for it); null while no runner is up to take it.
    """

    execution_id: str
    call_id: str
    decision: str
    scope: str
    by: str
    recorded: dict[str, Any] | None = None


class RerunCreate(_Body):
    #: as in ``POST /v1/executions``: chosen by the client so a retried request is one execution
    id: Annotated[str | None, Field(pattern=EXECUTION_ID_PATTERN)] = None


def _event_text(events: list[NewEvent]) -> list[NewEvent]:
    for e in events:
        utf8(e.event_id)
        utf8(e.payload)
    return events


class EventsPost(_Body):
    events: Annotated[list[NewEvent], AfterValidator(_event_text)] = Field(max_length=1000)


class Seqs(BaseModel):
    seqs: list[int]


class EventList(BaseModel):
    events: list[Event]


class TokenCreate(_Body):
    role: Literal["admin", "runner"]
    label: Annotated[Text, Field(max_length=200)] = ""


class TokenCreated(BaseModel):
    """A new token: shown once, kept by the store only as its SHA-256."""

    token: str
    role: str
    label: str


class LoginCode(BaseModel):
    """A one-time login code of the web console: ``path`` on this server signs a browser in."""

    code: str
    expires_at: str
    #: ``/ui/login?code=...``: valid once, until ``expires_at``
    path: str


class Info(BaseModel):
    version: str
    database: str
    role: str


class CodecPayload(BaseModel):
    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = ""


class CodecBody(BaseModel):
    """Temporal's remote codec protocol: payloads with base64 metadata values and data."""

    payloads: list[CodecPayload]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries for these error codes (all with :class:`ErrorBody`)."""
    what = {
        400: "the body is not JSON",
        413: "the body, or the agent spec in it, is larger than the API takes",
        401: "no bearer token, or one this stack does not know",
        403: "the token's role may not do this",
        404: "no such agent or execution",
        409: "the request does not fit the current state",
        422: "the request does not fit its schema",
        503: "Temporal or the store is not available now",
    }
    return {c: {"model": ErrorBody, "description": what[c]} for c in codes}
