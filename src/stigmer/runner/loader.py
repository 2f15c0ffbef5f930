"""The agent's code loads in the background while the worker already polls.

pydantic-ai and the agent built on it (:mod:`stigmer.runner.agent`) are most of
the runner's start-up: about 1.2 s of imports on the machine of
``docs/performance.md``, against about 0.5 s for temporalio. So the worker does
not wait for them: it connects and polls its task queue with what temporalio
alone needs (the workflow classes of :mod:`stigmer.runner.workflows` import
pydantic-ai only inside their methods), while a thread of its own imports the
agent (:meth:`AgentLoader.start`). The runner is ready, and counted as such,
once Temporal sees it poll. A load that fails ends the worker with
``RUNNER_EXIT_BROKEN`` (:func:`stigmer.runner.worker.watch_load`): the
supervisor marks the runner failed, with the cause, instead of restarting it.

Nothing runs before the code it needs is there:

* a new workflow instance is created only once the agent is loaded
  (:class:`LoadedWorkflowRunner`); the wait blocks the worker's event loop for
  at most what is left of the load, once per process, outside the workflow's
  deadlock detection; the SDK of the model's provider (the workflow's memo
  names it) is imported there too, once per provider;
* every activity pydantic-ai registers for the agent (a model request, a tool
  call) goes through :func:`agent_activity`, a dynamic activity that waits for
  the agent, then calls pydantic-ai's own activity function with its arguments
  converted to the types that function declares;
* payloads are converted by pydantic-ai's converter (:class:`AgentPayloadConverter`,
  one shared instance, loaded on first use).

What the agent registers is what ``PydanticAIPlugin`` would register (its
``configure_worker``), workflow failure types included. With the workflow
sandbox on (``workflow_sandbox``, a debugging aid) the worker is built after a
plain load, with the plugin itself (see :mod:`stigmer.runner.worker`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.common import RawValue
from temporalio.converter import PayloadConverter, SerializationContext, WithSerializationContext
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)

log = logging.getLogger("stigmer.runner")


@dataclass(frozen=True)
class AgentCode:
    """What loading the agent gives the worker."""

    #: pydantic-ai's activities for the agent, by activity name
    activities: dict[str, Any]
    #: workflow failure exception types the plugin sets for the worker
    failure_types: tuple[type[BaseException], ...]
    #: pydantic-ai's payload converter (stateless: one instance serves every context)
    payload_converter: PayloadConverter
    #: how long the load took (s)
    took_s: float


def load_agent_code() -> AgentCode:
    """Import pydantic-ai and the agent; collect what the plugin registers for it.

    Raises:
        RuntimeError: the plugin would register something this worker cannot
            (a child workflow: none of the agent's toolsets asks for one).
    """
    t0 = time.monotonic()
    from pydantic_ai.durable_exec.temporal import PydanticAIPayloadConverter, PydanticAIPlugin

    from stigmer.runner.workflows import name_agent

    agent_workflow = name_agent()
    config = PydanticAIPlugin().configure_worker(
        {
            "workflows": [agent_workflow],
            "activities": [],
            "workflow_runner": UnsandboxedWorkflowRunner(),
        }
    )
    extra = [w for w in config.get("workflows", []) if w is not agent_workflow]
    if extra:
        raise RuntimeError(
            f"the agent needs child workflows this worker does not register: {extra}"
        )
    activities: dict[str, Any] = {}
    for fn in config.get("activities", []):
        defn = activity._Definition.must_from_callable(fn)
        if defn.name:
            activities[defn.name] = defn
    return AgentCode(
        activities=activities,
        failure_types=tuple(config.get("workflow_failure_exception_types") or ()),
        payload_converter=PydanticAIPayloadConverter(),
        took_s=time.monotonic() - t0,
    )


class AgentLoader:
    """Loads :class:`AgentCode` once, in a thread of its own; waits for it, blocking or not."""

    def __init__(self, load: Callable[[], AgentCode] = load_agent_code) -> None:
        self._load = load
        self._future: concurrent.futures.Future[AgentCode] = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        """Start loading (once) in a daemon thread.

        At the worker's own priority: a lower one (a nice value) cannot be
        raised again without privileges, and on a busy host a first run would
        wait for the load as long as the host stays busy.
        """
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._run, name="agent-loader", daemon=True).start()

    def _run(self) -> None:
        if not self._future.set_running_or_notify_cancel():
            return
        try:
            code = self._load()
        except BaseException as exc:
            self._future.set_exception(exc)
        else:
            self._future.set_result(code)

    @property
    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> AgentCode:
        """The loaded code, blocking until it is there (starting the load if nobody did)."""
        self.start()
        return self._future.result(timeout)

    async def wait_async(self) -> AgentCode:
        """The loaded code, without blocking the event loop."""
        self.start()
        if self._future.done():
            return self._future.result()
        return await asyncio.wrap_future(self._future)


#: The worker process's loader (one agent per process).
loader = AgentLoader()


class AgentPayloadConverter(PayloadConverter, WithSerializationContext):
    """pydantic-ai's payload converter, taken from the loaded agent code on first use.

    The worker's client is made before pydantic-ai is imported, so its data
    converter names this class. Every instance hands its work to the one
    converter of :class:`AgentCode` (no converter of pydantic-ai's uses the
    serialization context, and it keeps no state per instance): a payload
    converted before the load ends waits for it.
    """

    def _inner(self) -> PayloadConverter:
        return loader.wait().payload_converter

    def to_payloads(self, values: Sequence[Any]) -> list[Any]:
        return self._inner().to_payloads(values)

    def from_payloads(
        self, payloads: Sequence[Any], type_hints: list[Any] | None = None
    ) -> list[Any]:
        if type_hints and all(hint is RawValue for hint in type_hints):
            # a dynamic activity's arguments: nothing to convert, nothing to wait for
            return [RawValue(p) for p in payloads]
        return self._inner().from_payloads(payloads, type_hints)

    def with_context(self, context: SerializationContext) -> AgentPayloadConverter:
        return self


def memo_provider(raw_memo: Mapping[str, Any]) -> str | None:
    """The provider the workflow's memo names (``PROVIDER_MEMO``); None if none or unreadable."""
    from stigmer.contract.workflow import PROVIDER_MEMO  # loaded with the agent by now

    payload = raw_memo.get(PROVIDER_MEMO)
    if payload is None:  # a workflow started by an API server older than the memo
        return None
    try:
        value = PayloadConverter.default.from_payload(payload, str)
    except Exception:
        return None
    return value if isinstance(value, str) else None


class LoadedWorkflowRunner(WorkflowRunner):
    """Creates workflow instances once the agent is loaded (see the module doc).

    ``create_instance`` runs on the worker's event loop before the activation
    is handed to the workflow's thread, so this one wait is not mistaken for a
    deadlocked workflow. It adds the workflow failure types the plugin sets.
    """

    def __init__(self, inner: WorkflowRunner | None = None) -> None:
        self.inner = inner or UnsandboxedWorkflowRunner()

    def prepare_workflow(self, defn: Any) -> None:
        self.inner.prepare_workflow(defn)

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self.inner.set_worker_level_failure_exception_types(types)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        if not loader.done:
            log.info("workflow %s waits for the agent's code to load", det.info.workflow_id)
        code = loader.wait()
        provider = memo_provider(det.info.raw_memo)
        if provider:
            from stigmer.runner.models import import_provider

            t0 = time.monotonic()
            if import_provider(provider):  # here, not in the workflow's first task (its doc)
                log.info(
                    "workflow %s: imported the %s provider's SDK before its first task (%.1fs)",
                    det.info.workflow_id,
                    provider,
                    time.monotonic() - t0,
                )
        known = tuple(det.worker_level_failure_exception_types)
        more = tuple(t for t in code.failure_types if t not in known)
        if more:
            det = dataclasses.replace(det, worker_level_failure_exception_types=[*known, *more])
        return self.inner.create_instance(det)


async def agent_activity_args(args: Sequence[RawValue]) -> tuple[Any, list[Any]]:
    """The current agent activity's definition and its arguments, converted (waits for the load).

    Converted to the types the activity function declares, as the worker would
    have done had the function been registered by name.
    """
    code = await loader.wait_async()
    name = activity.info().activity_type
    defn = code.activities.get(name)
    if defn is None:
        raise ApplicationError(
            f"Activity {name} is not registered on this worker; the agent's activities are: "
            + ", ".join(sorted(code.activities)),
            type="NotFoundError",
        )
    types: list[Any] = list(defn.arg_types or ())
    if len(types) != len(args):
        types = [None] * len(args)
    converter = activity.payload_converter()
    try:
        values = [
            converter.from_payload(raw.payload, hint) for raw, hint in zip(args, types, strict=True)
        ]
    except Exception as exc:
        raise ApplicationError("Failed decoding arguments") from exc
    return defn, values


def raw_args(args: Sequence[Any]) -> Sequence[RawValue] | None:
    """The raw arguments of a call of :func:`agent_activity` (None for another activity's)."""
    if (
        len(args) == 1
        and isinstance(args[0], list | tuple)
        and args[0]
        and all(isinstance(a, RawValue) for a in args[0])
    ):
        return args[0]
    return None


@activity.defn(dynamic=True)
async def agent_activity(args: Sequence[RawValue]) -> Any:
    """Every activity of the agent's (model requests, tool calls): pydantic-ai's own, once loaded."""
    defn, values = await agent_activity_args(args)
    result = defn.fn(*values)
    if inspect.isawaitable(result):
        result = await result
    return result
