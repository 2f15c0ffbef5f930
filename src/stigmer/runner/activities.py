"""Activities: the side effects of the runner's own workflows."""

from __future__ import annotations

import os
from typing import Any

from temporalio import activity

from stigmer.runner import runtime
from stigmer.runner.publish import post_events


@activity.defn(name="stigmer_publish_events")
async def publish_events(execution_id: str, events: list[dict[str, Any]], refs: list[str]) -> None:
    """Append events the workflow itself produces (phases, the human message, usage, errors).

    ``refs``: the run's secret references, whose values are masked. A refusal
    (409: not this run's execution, or past that phase) is final: the workflow
    fails instead of retrying.
    """
    await post_events(execution_id, events, refs)


@activity.defn(name="stigmer_ping")
async def ping(message: str) -> str:
    """Echo ``message`` with the identity of the worker that ran it."""
    return f"pong: {message} from {runtime.current().identity}"


@activity.defn(name="stigmer_workspace_probe")
async def workspace_probe(name: str) -> dict[str, Any]:
    """Write ``name`` (a bare file name) in the workspace; return its path, uid and gid.

    Proves the runner can write where agents work (``/workspace`` in the container).
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"not a bare file name: {name!r}")
    rt = runtime.current()
    path = rt.workspace / name
    path.write_text(f"written by {rt.identity}\n")
    st = path.stat()
    return {"path": str(path), "uid": st.st_uid, "gid": st.st_gid, "euid": os.geteuid()}
