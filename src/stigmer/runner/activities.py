"""Activities: the side effects of the runner's workflows."""

from __future__ import annotations

import os

from temporalio import activity


@activity.defn(name="stigmer_ping")
async def ping(message: str) -> str:
    """Echo ``message`` with the identity of the worker that ran it."""
    return f"pong: {message} from {os.environ.get('STIGMER_RUNNER_IDENTITY', 'unknown')}"
