"""Publishing execution events to the API server, from inside activities.

``POST {api url}/v1/executions/{id}/events`` with the runner's bearer token
(both from the runner's configuration, :mod:`stigmer.runner.runtime`).
Each event's ``event_id`` is derived from the activity's identity (workflow
run id, activity id, position in the activity), which is the same on every
attempt of that activity, so the server drops what a retry sends again.

An API server that is down or restarting delays events, it does not fail the
activity: a publish is retried (connection errors, 5xx, 429) with backoff for
up to :data:`PUBLISH_PATIENCE_S`, so a tool with side effects is not run again
because the API was restarted. Only then does the publish raise, and the
activity retries: events are not lost.

The client is httpx2, the one pydantic-ai and the provider SDKs use, so the
runner loads one HTTP stack, not two.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, Iterable
from typing import Any

import httpx2
from temporalio.exceptions import ApplicationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from stigmer.contract.events import (
    MessagePayload,
    Payload,
    ToolCallPayload,
    clip,
    jsonable,
    new_event,
)
from stigmer.contract.registry import TOOLS
from stigmer.runner import runtime

#: How long (s) a publish keeps retrying an API that does not answer before it raises.
PUBLISH_PATIENCE_S = 300.0
#: A tool call that ends within this long (s) publishes ``started`` with its result,
#: in one request (once its run is known to be the execution's: :func:`claimed`).
QUICK_CALL_S = 0.25
#: How many (execution, workflow run) claims a worker remembers.
CLAIMS_KEPT = 4096

_client: httpx2.AsyncClient | None = None
#: (execution id, workflow run id): the API took events of that run for that execution
_claims: OrderedDict[tuple[str, str], None] = OrderedDict()


def claimed(execution_id: str, run_id: str | None) -> bool:
    """Whether the API took events of ``run_id`` for the execution: the run is the execution's.

    The API takes an execution's events only from the workflow run that claimed
    it (its first events, RUNNING), and no run ever takes over that claim: once
    taken from this worker, a later event of the same run needs no proof first.
    """
    return run_id is not None and (execution_id, run_id) in _claims


async def ensure_claimed(workflow_id: str | None, run_id: str | None) -> None:
    """Go on only if workflow run ``run_id`` is the one that claimed its execution.

    For what costs or leaks even when its result cannot be read: a model
    request replayed with copied (sealed) arguments in a workflow of someone
    else's would spend the provider's credit. Known claims cost nothing; else
    the run's claim (its RUNNING event) is sent again, which the API takes only
    from the run that made it.

    Raises:
        ApplicationError: not an execution's workflow, or another run's
            (non-retryable: the activity fails, nothing is sent).
    """
    import re

    from stigmer.contract.events import PhasePayload, claim_event_id
    from stigmer.contract.ids import EXECUTION_ID_PATTERN
    from stigmer.contract.workflow import WORKFLOW_ID_PREFIX

    execution_id = (workflow_id or "").removeprefix(WORKFLOW_ID_PREFIX)
    if (
        not workflow_id
        or not run_id
        or not workflow_id.startswith(WORKFLOW_ID_PREFIX)
        # fullmatch: the pattern's "$" would take a trailing newline
        or not re.fullmatch(EXECUTION_ID_PATTERN.strip("^$"), execution_id)
    ):
        raise ApplicationError(
            f"workflow {workflow_id!r} is not an execution's: its model requests are refused",
            type="EventsRefused",
            non_retryable=True,
        )
    if claimed(execution_id, run_id):
        return
    claim = new_event(
        claim_event_id(execution_id, run_id), PhasePayload(phase="RUNNING"), run_id=run_id
    )
    if not await post_events(execution_id, [claim]):
        raise ApplicationError(
            f"the API did not take run {run_id}'s claim of execution {execution_id}",
            type="EventsRefused",
            non_retryable=True,
        )


def _remember_claims(execution_id: str, events: list[dict[str, Any]]) -> None:
    for run_id in {e["run_id"] for e in events if isinstance(e.get("run_id"), str)}:
        _claims.pop((execution_id, run_id), None)
        _claims[(execution_id, run_id)] = None
    while len(_claims) > CLAIMS_KEPT:
        _claims.popitem(last=False)


def activity_run_id() -> str | None:
    """The workflow run of the current activity (None outside Temporal)."""
    try:
        from temporalio import activity

        return activity.info().workflow_run_id
    except RuntimeError:
        return None


def activity_event_prefix(execution_id: str) -> str:
    """An id prefix stable across retries of the current activity (random outside Temporal).

    It starts with the execution's id, as the server requires of the events of
    an execution.
    """
    try:
        from temporalio import activity

        info = activity.info()
        return f"{execution_id}/{info.workflow_run_id}/{info.activity_id}"
    except RuntimeError:
        return f"{execution_id}/{uuid.uuid4().hex}"


async def post_events(
    execution_id: str, events: list[dict[str, Any]], refs: Iterable[str] = ()
) -> list[int]:
    """Append ``events`` (dicts with event_id, type, payload, at) to the execution's log.

    Every secret the run can see (the values of its secret references ``refs``,
    the keys and tokens of this worker) is masked first, in every string.
    ``POST {api url}/v1/executions/{execution_id}/events``, retried with
    backoff (0.2 s doubling to 5 s) while the API is unreachable or answers
    5xx/429, for up to :data:`PUBLISH_PATIENCE_S` seconds.

    Returns the seq of each event stored; none for events the store dropped
    because the execution had ended.

    Raises:
        httpx2.HTTPError: the server refused them (4xx) or stayed unreachable (the
            activity then retries).
    """
    if not events:
        return []
    rt = runtime.current()
    if not rt.api_url:
        raise RuntimeError("the runner has no API URL: it cannot publish events")
    events = _storable(rt.mask(events, refs))
    client, url, headers = _api()
    async for attempt in _patiently():
        with attempt:
            resp = await client.post(
                f"{url}/v1/executions/{execution_id}/events",
                json={"events": events},
                headers=headers,
            )
            if resp.status_code == 409:  # not this run's to publish, or past that phase: final
                raise ApplicationError(
                    f"the API refused this run's events: {resp.text[:300]}",
                    type="EventsRefused",
                    non_retryable=True,
                )
            if resp.status_code in (400, 413, 422):  # malformed for the API: no retry helps
                raise ApplicationError(
                    f"the API rejected these events ({resp.status_code}): {resp.text[:300]}",
                    type="EventsRejected",
                    non_retryable=True,
                )
            resp.raise_for_status()
    seqs = resp.json().get("seqs")
    stored = [int(n) for n in seqs] if isinstance(seqs, list) else []
    if stored:
        _remember_claims(execution_id, events)
    return stored


def _patiently() -> AsyncRetrying:
    """Retries while the API is unreachable or answers 5xx/429: 0.2 s doubling to 5 s,
    for up to :data:`PUBLISH_PATIENCE_S`."""
    return AsyncRetrying(
        retry=retry_if_exception(_transient),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        stop=stop_after_delay(PUBLISH_PATIENCE_S),
        reraise=True,
    )


def _api() -> tuple[httpx2.AsyncClient, str, dict[str, str]]:
    """The runner's client of the API, the API's URL and the auth header."""
    global _client
    rt = runtime.current()
    if not rt.api_url:
        raise RuntimeError("the runner has no API URL")
    if _client is None:
        _client = httpx2.AsyncClient(timeout=15.0, verify=rt.api_verify)
    return _client, rt.api_url, {"Authorization": f"Bearer {rt.api_token}"} if rt.api_token else {}


async def _blob_call(method: str, sha256: str, data: bytes | None = None) -> httpx2.Response:
    client, url, headers = _api()
    async for attempt in _patiently():
        with attempt:
            resp = await client.request(
                method, f"{url}/v1/blobs/{sha256}", content=data, headers=headers
            )
            resp.raise_for_status()
    return resp


async def put_blob(sha256: str, data: bytes) -> None:
    """Store a payload kept out of Temporal's history (``PUT /v1/blobs/SHA256``)."""
    await _blob_call("PUT", sha256, data)


async def get_blob(sha256: str) -> bytes:
    """A payload stored by :func:`put_blob` (from any host of the stack).

    Raises:
        LookupError: the API has no such payload, or refuses it (4xx): never retried.
    """
    try:
        return (await _blob_call("GET", sha256)).content
    except httpx2.HTTPStatusError as exc:
        if exc.response.status_code < 500:
            raise LookupError(sha256) from None
        raise


#: What a NUL character (which the store and the API refuse) is shown as in events.
NUL_SHOWN = "\u2400"


def _storable(value: Any) -> Any:
    """``value`` with NUL characters (a tool's binary output) shown as ``␀``, in every string."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_SHOWN) if "\x00" in value else value
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _transient(exc: BaseException) -> bool:
    """An error worth retrying: the API is unreachable, restarting or overloaded."""
    if isinstance(exc, httpx2.TransportError):
        return True
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return False


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    try:
        return json.dumps(content, default=str)
    except (TypeError, ValueError):
        return str(content)


def tool_result_events(
    tool_call_id: str | None, name: str, *, failed: bool, text: str
) -> list[Payload]:
    """The two events of a finished tool call: ``tool_call`` (completed or failed), then its ``message``."""
    return [
        ToolCallPayload(
            tool_call_id=tool_call_id,
            name=name,
            status="failed" if failed else "completed",
            result=text,
        ),
        MessagePayload(role="tool", content=text, tool_name=name, tool_call_id=tool_call_id),
    ]


class ToolCallEvents:
    """Events of one tool call, published from inside its tool activity.

    The server takes events of an execution only from its own workflow run, so
    a call replayed from another run (someone who copied sealed payloads into a
    workflow of their own) is refused there, and must never run. So
    ``started`` is sent before the tool runs and must be accepted first: every
    call that can change something is on record, with its arguments, before it
    runs, whatever happens to the worker next. One exception: a read-only tool
    (``Tool.read_only``: it changes nothing, and what it reads reaches nobody
    unless its result is published) of a run this worker has already seen the
    server take events of, for this execution (:func:`claimed`: the run is the
    execution's) runs at once, and its ``started`` goes out with the result
    when the call ends within :data:`QUICK_CALL_S` (one request), or then on
    its own. ``finished`` sends the result and the tool message. Event ids are
    ``<execution id>/<workflow run id>/<activity id>/<n>``: a retried attempt,
    or an event sent twice, has the same id and the server drops the repeat.
    """

    def __init__(
        self, execution_id: str, tool_call_id: str | None, name: str, refs: Iterable[str] = ()
    ) -> None:
        self.execution_id = execution_id
        self.tool_call_id = tool_call_id
        self.name = name
        self.refs = list(refs)
        self._prefix = activity_event_prefix(execution_id)
        self._run = activity_run_id()
        #: ``started``, until it is known to be stored
        self._started: dict[str, Any] | None = None
        self._send_started: asyncio.Task[None] | None = None

    async def started(self, args: dict[str, Any]) -> None:
        """Send ``started`` (or have it sent: see the class doc).

        Raises (non-retryable) if the server refuses this run's events.
        """
        payload = ToolCallPayload(
            tool_call_id=self.tool_call_id, name=self.name, status="started", args=jsonable(args)
        )
        event = new_event(f"{self._prefix}/0", payload, run_id=self._run)
        tool = TOOLS.get(self.name)
        if tool is not None and tool.read_only and claimed(self.execution_id, self._run):
            self._started = event
            self._send_started = asyncio.create_task(self._started_later(event))
            # a call cut short (a worker shutdown) leaves it to run on: its outcome is not awaited
            self._send_started.add_done_callback(lambda t: t.cancelled() or t.exception())
            return
        if not await post_events(self.execution_id, [event], self.refs):
            # the store took no seq: the execution ended (cancelled) before this tool
            raise ApplicationError(
                f"execution {self.execution_id} has ended: the tool is not run",
                type="ExecutionEnded",
                non_retryable=True,
            )

    async def _started_later(self, event: dict[str, Any]) -> None:
        await asyncio.sleep(QUICK_CALL_S)
        await post_events(self.execution_id, [event], self.refs)
        self._started = None

    async def finished(self, *, failed: bool, result: Any) -> None:
        """Send the result, with ``started`` if it is not known to be stored.

        Raises what ``post_events`` raises.
        """
        payloads = tool_result_events(
            self.tool_call_id, self.name, failed=failed, text=clip(_content(result))
        )
        # ids 1 and 2 (0 is started)
        events = [
            new_event(f"{self._prefix}/{i}", p, run_id=self._run) for i, p in enumerate(payloads, 1)
        ]
        if self._send_started is not None:
            task, self._send_started = self._send_started, None
            task.cancel()
            await asyncio.wait([task])
            if self._started is not None:
                # not known to be stored: it goes first (a repeat is dropped)
                events.insert(0, self._started)
        await post_events(self.execution_id, events, self.refs)


async def handle_stream(ctx: Any, events: AsyncIterable[Any]) -> None:
    """The agent's event stream handler: turn pydantic-ai events into execution events.

    It runs inside the model-request activity, where model responses become
    ``message`` (role ``ai``) events when a text part ends. Tool calls publish
    their own events from their activities (:class:`ToolCallEvents`); the
    workflow sends this handler only the tool results no tool activity saw (a
    call the model got wrong: unknown tool, invalid arguments).
    """
    from pydantic_ai.messages import (
        FunctionToolResultEvent,
        PartEndEvent,
        TextPart,
    )

    deps = ctx.deps
    prefix = activity_event_prefix(deps.execution_id)
    payloads: list[Payload] = []
    async for ev in events:
        if (
            isinstance(ev, PartEndEvent)
            and isinstance(ev.part, TextPart)
            and ev.part.content.strip()
        ):
            payloads.append(MessagePayload(role="ai", content=clip(ev.part.content)))
        elif isinstance(ev, FunctionToolResultEvent):
            part = ev.part
            payloads += tool_result_events(
                part.tool_call_id,
                part.tool_name,
                failed=not tool_succeeded(part),
                text=clip(_content(part.content)),
            )
    run = activity_run_id()
    out = [new_event(f"{prefix}/{i}", p, run_id=run) for i, p in enumerate(payloads)]
    await post_events(deps.execution_id, out, deps.secret_env.values())


def tool_succeeded(part: Any) -> bool:
    """Whether a tool result part is a success (not a retry prompt, failure or denial)."""
    return (
        getattr(part, "outcome", "success") == "success"
        and type(part).__name__ != "RetryPromptPart"
    )


def tool_ran(part: Any) -> bool:
    """Whether the tool itself ran for this result, so its activity published the events.

    False for calls refused before any tool ran: unknown or unavailable tool,
    arguments that failed validation, a denied or interrupted call.
    """
    outcome = getattr(part, "outcome", None)
    if outcome in ("success", "failed"):
        return True
    retry = getattr(part, "retry", None)
    return outcome == "retried" and getattr(retry, "cause", None) == "model_retry"
