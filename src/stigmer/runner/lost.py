"""An activity whose worker died of a known cause fails with that cause, not "Heartbeat timeout".

The supervisor knows why a runner it supervised ended (a container killed at its
memory limit) and hands the next launch that knowledge in its configuration
(``runner.lost_workers``: worker identity -> what happened). Each activity
attempt records the identity of the worker running it in its heartbeat details,
with every heartbeat, and (an activity with a heartbeat timeout) at once. A retried attempt reads them: if the previous
attempt's worker is one the supervisor lost for a known cause, the attempt fails
at once, without retrying, with that cause; retrying a tool that killed its
runner out of memory would only kill the next one.

Any other retried attempt of a tool call or a model request first publishes a
``retry`` event (which call, which attempt, and why the last one ended, as
Temporal recorded it), so the stream shows that the call runs again.

A worker shutdown (`server stop` or `restart` while a call runs past the
runner's ``stop_grace``) ends an attempt too, and Temporal counts it like any
failure. A tool call gets ``TOOL_ATTEMPTS`` attempts that failed or timed out,
and as many more as shutdowns ended: every heartbeat also records how many
attempts so far a shutdown ended (one more once this worker is shutting down),
and an attempt that starts with its failures used up fails at once, for good,
with the last failure. (Temporal's own limit, ``TOOL_ATTEMPTS_WITH_SHUTDOWNS``,
only bounds the whole.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from stigmer.runner.attempts import TOOL_ATTEMPTS

#: the key of our entry in an activity's heartbeat details
WORKER_KEY = "stigmer_worker"
#: the key, in the same entry, of how many attempts so far a worker shutdown ended
SHUTDOWNS_KEY = "stigmer_shutdowns"
#: ... and of the activity that count is of
ACTIVITY_KEY = "stigmer_activity"
#: How long (s) a retried attempt waits for its ``retry`` event to be taken before it goes on.
#: After a `server restart` the runner may poll before the API server is up (on a
#: busy machine, 10 s later and more): a tool call's ``started`` event waits for the
#: API in any case (publish.PUBLISH_PATIENCE_S), so waiting here costs it nothing.
RETRY_EVENT_PATIENCE_S = 60.0

log = logging.getLogger("stigmer.runner")


def previous_worker(details: Any) -> str | None:
    """The worker identity the previous attempt recorded, if any."""
    for d in details or ():
        if isinstance(d, dict) and isinstance(d.get(WORKER_KEY), str):
            return str(d[WORKER_KEY])
    return None


def previous_shutdowns(details: Any, activity_id: str | None = None) -> int:
    """How many attempts before this one a worker shutdown ended, as the last one recorded.

    With ``activity_id``, only a record of that activity counts (a sealed record
    copied from another activity of the workflow is not this one's).
    """
    for d in details or ():
        if isinstance(d, dict) and isinstance(d.get(SHUTDOWNS_KEY), int):
            if activity_id is not None and d.get(ACTIVITY_KEY) != activity_id:
                return 0
            return max(0, int(d[SHUTDOWNS_KEY]))
    return 0


def failed_attempts(info: activity.Info) -> int:
    """Attempts before this one that failed or timed out, not counting worker shutdowns."""
    shutdowns = min(previous_shutdowns(info.heartbeat_details, info.activity_id), info.attempt - 1)
    return max(0, info.attempt - 1 - shutdowns)


def attempts_allowed(activity_type: str) -> int | None:
    """How many failed attempts an activity gets, when stigmer counts them (tool calls)."""
    call = "__toolset__" in activity_type and activity_type.endswith("__call_tool")
    return TOOL_ATTEMPTS if call else None


class LostWorkerInterceptor(Interceptor):
    """Worker interceptor: see the module doc."""

    def __init__(self, identity: str, lost: dict[str, str]) -> None:
        self.identity = identity
        self.lost = lost

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: LostWorkerInterceptor) -> None:
        super().__init__(next)
        self.owner = owner

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        super().init(_Outbound(outbound, self.owner))

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if not info.is_local:
            if info.attempt > 1:
                before = previous_worker(info.heartbeat_details)
                cause = self.owner.lost.get(before or "")
                if cause:
                    raise ApplicationError(
                        f"{cause} (worker {before} ran attempt {info.attempt - 1} of "
                        f"{info.activity_type}; not retried)",
                        type="RunnerLost",
                        non_retryable=True,
                    )
                allowed = attempts_allowed(info.activity_type)
                failed = failed_attempts(info)
                if allowed is not None and failed >= allowed:
                    raise ApplicationError(
                        f"the tool call failed {failed} times (not counting worker "
                        f"shutdowns); the last time: {await _last_failure(info)}",
                        type="AttemptsExhausted",
                        non_retryable=True,
                    )
                await publish_retry(info, input.args)
            if info.heartbeat_timeout:  # at once: a worker killed within a second is known too
                activity.heartbeat()
        try:
            return await super().execute_activity(input)
        except asyncio.CancelledError:
            if not info.is_local and activity.is_worker_shutdown():
                with contextlib.suppress(Exception):
                    activity.heartbeat()  # records this shutdown for the next attempt
            raise


def _call_of(activity_type: str, args: Any) -> tuple[str, str | None] | None:
    """(tool name or ``model``, tool call id) of an agent's activity; None for others."""
    if "__toolset__" in activity_type:
        params = args[0] if args else None
        ctx = getattr(params, "serialized_run_context", None)
        call_id = ctx.get("tool_call_id") if isinstance(ctx, dict) else None
        return str(getattr(params, "name", "tool")), call_id
    if "__model_request" in activity_type:
        return "model", None
    return None


async def _last_failure(info: activity.Info) -> str:
    """Why the previous attempt of this activity ended, as Temporal recorded it."""
    try:
        client = activity.client()
        handle = client.get_workflow_handle(info.workflow_id or "", run_id=info.workflow_run_id)
        desc = await handle.describe(rpc_timeout=timedelta(seconds=3))
        for pending in desc.raw_description.pending_activities:
            if pending.activity_id != info.activity_id or not pending.HasField("last_failure"):
                continue
            failure = pending.last_failure
            message = failure.message
            if failure.HasField("encoded_attributes"):  # sealed: decode it
                message = str(await client.data_converter.decode_failure(failure)) or message
            worker = pending.last_worker_identity
            return message + (f" (attempt {info.attempt - 1} ran on {worker})" if worker else "")
    except Exception as exc:  # a note in the stream must not stop the call
        log.debug("could not read the last failure of %s: %s", info.activity_id, exc)
    before = previous_worker(info.heartbeat_details)
    return f"attempt {info.attempt - 1} did not finish" + (f" (on {before})" if before else "")


async def publish_retry(info: activity.Info, args: Any) -> None:
    """A ``retry`` event for this attempt of a tool call or model request (best effort)."""
    from stigmer.contract.events import RetryPayload, new_event
    from stigmer.contract.workflow import WORKFLOW_NAME, execution_of
    from stigmer.runner.loader import agent_activity_args, raw_args
    from stigmer.runner.publish import activity_event_prefix, post_events

    execution_id = execution_of(info.workflow_id or "")
    if info.workflow_type != WORKFLOW_NAME or execution_id is None:
        return
    raw = raw_args(args)
    if raw is not None:  # an agent activity, called through the loader's dynamic activity
        try:
            _, args = await agent_activity_args(raw)
        except Exception:
            return  # the activity itself reports it
    call = _call_of(info.activity_type, args)
    if call is None:
        return
    name, call_id = call
    reason = await _last_failure(info)
    payload = RetryPayload(tool_call_id=call_id, name=name, attempt=info.attempt, reason=reason)
    event = new_event(
        f"{activity_event_prefix(execution_id)}/retry/{info.attempt}",
        payload,
        run_id=info.workflow_run_id,
    )
    deps = args[1] if len(args) > 1 else None
    refs = list(getattr(deps, "secret_env", {}).values())
    log.info("execution %s: %s retried (attempt %d): %s", execution_id, name, info.attempt, reason)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(RETRY_EVENT_PATIENCE_S):
            await post_events(execution_id, [event], refs)


class _Outbound(ActivityOutboundInterceptor):
    def __init__(self, next: ActivityOutboundInterceptor, owner: LostWorkerInterceptor) -> None:
        super().__init__(next)
        self.owner = owner

    def heartbeat(self, *details: Any) -> None:
        info = activity.info()
        # once the worker is shutting down, this attempt counts as ended by it (even if
        # it then fails for another reason within stop_grace: bounded by Temporal's limit)
        before = previous_shutdowns(info.heartbeat_details, info.activity_id)
        entry = {
            WORKER_KEY: self.owner.identity,
            ACTIVITY_KEY: info.activity_id,
            SHUTDOWNS_KEY: min(before, info.attempt - 1) + activity.is_worker_shutdown(),
        }
        super().heartbeat(entry, *details)
