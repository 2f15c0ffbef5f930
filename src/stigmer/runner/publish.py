"""Publishing execution events to the API server, from inside activities.

``POST {STIGMER_API_URL}/v1/executions/{id}/events`` with the bearer token.
Each event's ``event_id`` is derived from the activity's identity (workflow
run id, activity id, position in the activity), which is the same on every
attempt of that activity, so the server drops what a retry sends again.
A failed publish raises, so the activity retries: events are not lost.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from typing import Any

import httpx

from stigmer.events import clip

_config: dict[str, str | None] = {"url": None, "token": None}
_client: httpx.AsyncClient | None = None


def configure(api_url: str | None, token: str | None) -> None:
    """Set where events go (the worker calls this once at start-up)."""
    _config["url"] = api_url
    _config["token"] = token


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def activity_event_prefix() -> str:
    """A prefix stable across retries of the current activity (random outside Temporal)."""
    try:
        from temporalio import activity

        info = activity.info()
        return f"{info.workflow_run_id}/{info.activity_id}"
    except RuntimeError:
        return uuid.uuid4().hex


async def post_events(execution_id: str, events: list[dict[str, Any]]) -> None:
    """Append ``events`` (dicts with event_id, type, payload, at) to the execution's log.

    Raises:
        httpx.HTTPError: the server did not take them (the activity then retries).
    """
    global _client
    if not events:
        return
    url = _config["url"] or os.environ.get("STIGMER_API_URL")
    token = _config["token"] or os.environ.get("STIGMER_API_TOKEN")
    if not url:
        raise RuntimeError("STIGMER_API_URL is not set: the runner cannot publish events")
    if _client is None:
        _client = httpx.AsyncClient(timeout=15.0)
    resp = await _client.post(
        f"{url}/v1/executions/{execution_id}/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    resp.raise_for_status()


def event(event_id: str, type_: str, **payload: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "payload": payload, "at": _now()}


def _args(part: Any) -> Any:
    try:
        return part.args_as_dict()
    except Exception:
        return {"raw": clip(str(part.args), 2000)}


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    import json

    try:
        return json.dumps(content, default=str)
    except (TypeError, ValueError):
        return str(content)


async def handle_stream(ctx: Any, events: AsyncIterable[Any]) -> None:
    """The agent's event stream handler: turn pydantic-ai events into execution events.

    Model responses become ``message`` (role ``ai``) events when a text part ends;
    tool calls become ``tool_call`` events (started, then completed or failed) and
    their returns ``message`` (role ``tool``) events.
    """
    from pydantic_ai.messages import (
        FunctionToolCallEvent,
        FunctionToolResultEvent,
        PartEndEvent,
        TextPart,
    )

    prefix = activity_event_prefix()
    execution_id = ctx.deps.execution_id
    out: list[dict[str, Any]] = []
    n = 0

    def add(type_: str, **payload: Any) -> None:
        nonlocal n
        out.append(event(f"{prefix}/{n}", type_, **payload))
        n += 1

    async for ev in events:
        if (
            isinstance(ev, PartEndEvent)
            and isinstance(ev.part, TextPart)
            and ev.part.content.strip()
        ):
            add("message", role="ai", content=clip(ev.part.content))
        elif isinstance(ev, FunctionToolCallEvent):
            add(
                "tool_call",
                tool_call_id=ev.part.tool_call_id,
                name=ev.part.tool_name,
                status="started",
                args=_args(ev.part),
            )
        elif isinstance(ev, FunctionToolResultEvent):
            part = ev.part
            failed = (
                getattr(part, "outcome", "success") not in ("success",)
                or type(part).__name__ == "RetryPromptPart"
            )
            text = clip(_content(part.content))
            add(
                "tool_call",
                tool_call_id=part.tool_call_id,
                name=part.tool_name,
                status="failed" if failed else "completed",
                result=text,
            )
            add(
                "message",
                role="tool",
                content=text,
                tool_name=part.tool_name,
                tool_call_id=part.tool_call_id,
            )
    await post_events(execution_id, out)
