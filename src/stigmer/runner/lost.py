"""An activity whose worker died of a known cause fails with that cause, not "Heartbeat timeout".

The supervisor knows why a runner it supervised ended (a container killed at its
memory limit) and hands the next launch that knowledge in its configuration
(``runner.lost_workers``: worker identity -> what happened). Each activity
attempt records the identity of the worker running it in its heartbeat details,
with every heartbeat, and (an activity with a heartbeat timeout) at once. A retried attempt reads them: if the previous
attempt's worker is one the supervisor lost for a known cause, the attempt fails
at once, without retrying, with that cause; retrying a tool that killed its
runner out of memory would only kill the next one.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

#: the key of our entry in an activity's heartbeat details
WORKER_KEY = "stigmer_worker"


def previous_worker(details: Any) -> str | None:
    """The worker identity the previous attempt recorded, if any."""
    for d in details or ():
        if isinstance(d, dict) and isinstance(d.get(WORKER_KEY), str):
            return str(d[WORKER_KEY])
    return None


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
            if info.heartbeat_timeout:  # at once: a worker killed within a second is known too
                activity.heartbeat()
        return await super().execute_activity(input)


class _Outbound(ActivityOutboundInterceptor):
    def __init__(self, next: ActivityOutboundInterceptor, owner: LostWorkerInterceptor) -> None:
        super().__init__(next)
        self.owner = owner

    def heartbeat(self, *details: Any) -> None:
        super().heartbeat({WORKER_KEY: self.owner.identity}, *details)
