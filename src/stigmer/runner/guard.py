"""A model activity runs only for the workflow run that owns its execution.

Tool calls prove it with their ``started`` event (:mod:`stigmer.runner.publish`).
A model request has no event of its own before it is sent, and one scheduled
by someone else's workflow with arguments copied from a real history (sealed,
so its answer stays unreadable to them) would still spend the provider's
credit: :func:`stigmer.runner.publish.ensure_claimed` is checked first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from stigmer.runner.publish import ensure_claimed

#: What the names of pydantic-ai's model activities contain (request, stream, compaction).
MODEL_ACTIVITY = "__model_"


class ClaimedRunInterceptor(Interceptor):
    """Worker interceptor: see the module doc."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)


#: How often (s) the activity heartbeats while the check waits for the API.
HEARTBEAT_S = 5.0


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if MODEL_ACTIVITY in info.activity_type and not info.is_local:
            # the API may be restarting: the check waits for it (publish's patience),
            # heartbeating, so the attempt is not timed out meanwhile
            check = asyncio.ensure_future(ensure_claimed(info.workflow_id, info.workflow_run_id))
            try:
                while not check.done():
                    await asyncio.wait({check}, timeout=HEARTBEAT_S)
                    if not check.done() and info.heartbeat_timeout:
                        activity.heartbeat()
            finally:
                check.cancel()
            check.result()
        return await super().execute_activity(input)
