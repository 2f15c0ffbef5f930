"""Deterministic workflow code only: no I/O, no side effects at import time.

This module imports temporalio and stigmer's contract, not pydantic-ai: the
worker registers these workflows and polls before the agent's code has loaded
(:mod:`stigmer.runner.loader`). What needs pydantic-ai imports it inside the
method that uses it, passed through the workflow sandbox when there is one;
by then it is loaded (a workflow instance is created only once it is).
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from stigmer.contract.events import (
        ApprovalDecidedPayload,
        ApprovalRequestedPayload,
        ErrorPayload,
        MessagePayload,
        Payload,
        PhasePayload,
        UsagePayload,
        claim_event_id,
        format_timestamp,
        jsonable,
        new_event,
    )
    from stigmer.contract.workflow import (
        APPROVAL_SIGNAL,
        WORKFLOW_NAME,
        ApprovalDecision,
        ExecutionInput,
    )
    from stigmer.runner.activities import ping, publish_events, workspace_probe
    from stigmer.spec.models import SecretRef

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults

    from stigmer.runner.tools import RunDeps

#: A tool call id a person may decide a call by as it is (else the workflow makes one).
TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: One line when an execution starts and one when it ends (the worker's log).
log = logging.getLogger("stigmer.runner")

#: The key of the RUNNING event that claims the execution for this run
#: (its id: :func:`stigmer.contract.events.claim_event_id`).
CLAIM = "claim"

PUBLISH_OPTS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10)),
}


def secret_refs(inp: ExecutionInput) -> list[str]:
    """The names of the secrets the run refers to (``spec.env``, ``spec.api_key``): masked."""
    refs = {v.secret for v in inp.spec.env.values() if isinstance(v, SecretRef)}
    if inp.spec.api_key:
        refs.add(inp.spec.api_key.secret)
    return sorted(refs)


def deps_for(inp: ExecutionInput) -> RunDeps:
    """The run's deps from the spec snapshot: no secret values, only the names they live under."""
    with workflow.unsafe.imports_passed_through():
        from stigmer.runner.tools import RunDeps

    spec = inp.spec
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    for name, value in spec.env.items():
        if isinstance(value, SecretRef):
            secret_env[name] = value.secret
        else:
            env[name] = value
    env.update(inp.env)
    return RunDeps(
        execution_id=inp.execution_id,
        agent_name=inp.agent_name,
        instructions=spec.instructions,
        tools=list(spec.tools),
        env=env,
        secret_env=secret_env,
        test_script=[step.model_dump(exclude_none=True) for step in spec.test_script]
        if spec.test_script is not None
        else None,
        base_url=spec.base_url,
        api_key_env=spec.api_key.secret if spec.api_key else None,
        local_shell=spec.local_shell,
        approval_tools=list(spec.approval.tools) if spec.approval else [],
    )


def the_agent() -> Any:
    """The one durable agent (:mod:`stigmer.runner.agent`): pydantic-ai, loaded by now."""
    with workflow.unsafe.imports_passed_through():
        from stigmer.runner.agent import agent
    return agent


@workflow.defn(name=WORKFLOW_NAME)
class AgentExecutionWorkflow:
    """Run one agent execution; phases and results go to the event log.

    Ends COMPLETED (returns ``{"output", "usage"}``), FAILED (the workflow fails
    with the error), or CANCELLED (the workflow is cancelled).
    """

    #: the agents pydantic-ai's plugin registers activities for: set by :func:`name_agent`
    #: once the agent is loaded (temporalio's ``workflow.defn`` reads every class
    #: attribute, so it cannot be one that imports the agent)
    __pydantic_ai_agents__: tuple[Any, ...] = ()

    @workflow.init
    def __init__(self, inp: ExecutionInput) -> None:
        # the input, before any signal is handled: a decision names its execution
        self._inp: ExecutionInput | None = inp
        #: decisions by tool call id; the first one for a call counts
        self._decisions: dict[str, ApprovalDecision] = {}
        #: a decision that approved every later call of the run
        self._approve_all: ApprovalDecision | None = None
        self._rounds = 0
        #: every id a call was asked under in this run, and the ones waiting now
        self._call_ids: set[str] = set()
        self._waiting: set[str] = set()

    @workflow.signal(name=APPROVAL_SIGNAL)
    def approval(self, decision: ApprovalDecision) -> None:
        """A person's decision on a call that waits (the API checked that it waits)."""
        if self._inp is None or decision.execution_id != self._inp.execution_id:
            log.warning(
                "execution %s: ignored a decision made for execution %s",
                self._inp.execution_id if self._inp else "?",
                decision.execution_id,
            )
            return
        if decision.call_id in self._decisions or decision.call_id not in self._waiting:
            return  # the first decision counts; one for a call that does not wait is dropped
        self._decisions[decision.call_id] = decision
        if decision.scope == "run" and decision.decision == "approve":
            self._approve_all = decision

    def _call_id(self, tool_call_id: str) -> str:
        """The id a person decides a call by: the model's own when it is plain and new.

        A model chooses its tool call ids, and some number them per response
        (``call_0`` in every turn): keyed on those, a later call would take an
        earlier call's approval. So an id that was seen before in this run, or
        that is not a plain short token (URL-safe, at most 64 characters), is
        replaced by ``approval-N``; either way each call waits for its own decision.
        """
        if TOKEN.fullmatch(tool_call_id) and tool_call_id not in self._call_ids:
            key = tool_call_id
        else:
            key = f"approval-{len(self._call_ids) + 1}"
            while key in self._call_ids:
                key += "x"
        self._call_ids.add(key)
        return key

    async def decide(self, requests: DeferredToolRequests) -> DeferredToolResults:
        """Wait, durably, for a decision on each call of ``requests.approvals``.

        Each call gets an ``approval_requested`` event (under the id a person
        decides it by, :meth:`_call_id`) and the execution goes to
        AWAITING_APPROVAL; the wait is a condition with a timer (no activity, no
        worker slot), so it outlives restarts of runners, the API and Temporal.
        Each decision is recorded (``approval_decided``) as it arrives, so the
        API can tell whoever decides next that the call is decided already.
        When the spec's ``timeout`` passes, ``on_timeout`` decides what is left.
        The run then goes on: RUNNING again, approved calls run, denied ones
        return the denial to the model. A cancel while waiting ends the run.
        """
        with workflow.unsafe.imports_passed_through():
            from pydantic_ai.tools import DeferredToolResults, ToolDenied

        inp = self._inp
        assert inp is not None and inp.spec.approval is not None
        spec = inp.spec.approval
        self._rounds += 1
        rnd = self._rounds
        deadline = workflow.now() + timedelta(seconds=spec.timeout_s)
        keyed = [(self._call_id(c.tool_call_id), c) for c in requests.approvals]
        self._waiting = {key for key, _ in keyed}
        asked = [
            (
                f"approval/{key}/requested",
                ApprovalRequestedPayload(
                    call_id=key,
                    tool_call_id=c.tool_call_id,
                    name=c.tool_name,
                    args=jsonable(c.args_as_dict()),
                    deadline=format_timestamp(deadline),
                    on_timeout=spec.on_timeout,
                ),
            )
            for key, c in keyed
        ]
        approvals: dict[str, bool | ToolDenied] = {}
        left = dict(keyed)

        def answered() -> list[str]:
            if self._approve_all is not None:
                return list(left)
            return [key for key in left if key in self._decisions]

        def decide_now(keys: list[str], timed_out: bool) -> list[tuple[str, Payload]]:
            told: list[tuple[str, Payload]] = []
            for key in keys:
                c = left.pop(key)
                d = self._decisions.get(key)
                if d is not None:
                    approve, reason, by = d.decision == "approve", d.reason, d.by
                elif self._approve_all is not None and not timed_out:
                    a = self._approve_all
                    approve, by = True, a.by
                    reason = "approved for the rest of the run" + (
                        f" ({a.reason})" if a.reason else ""
                    )
                else:
                    approve, by = spec.on_timeout == "approve", "timeout"
                    reason = f"no decision within {spec.timeout} (on_timeout: {spec.on_timeout})"
                approvals[c.tool_call_id] = True if approve else ToolDenied(denial(by, reason))
                told.append(
                    (
                        f"approval/{key}/decided",
                        ApprovalDecidedPayload(
                            call_id=key,
                            tool_call_id=c.tool_call_id,
                            name=c.tool_name,
                            decision="approved" if approve else "denied",
                            reason=reason,
                            by=by,
                        ),
                    )
                )
            return told

        now = decide_now(answered(), False)  # approved for the rest of the run already
        waited = bool(left)
        await self._publish(
            inp,
            *asked,
            *now,
            *(
                [(f"approval/{rnd}/awaiting", PhasePayload(phase="AWAITING_APPROVAL"))]
                if waited
                else []
            ),
        )
        while left:
            try:
                await workflow.wait_condition(
                    lambda: bool(answered()), timeout=deadline - workflow.now()
                )
                told = decide_now(answered(), False)
            except TimeoutError:
                told = decide_now(list(left), True)
            resumed = [] if left else [(f"approval/{rnd}/resumed", PhasePayload(phase="RUNNING"))]
            await self._publish(inp, *told, *resumed)
        self._waiting = set()
        return DeferredToolResults(approvals=approvals)  # type: ignore[arg-type]

    async def _publish(self, inp: ExecutionInput, *events: tuple[str, Payload]) -> None:
        """Append ``(key, payload)`` events in one local activity; ids are stable per key.

        A local activity runs in this worker within the workflow task: no round
        trip through the Temporal server to schedule it, and it is retried (same
        ids, so the server drops repeats) if the worker dies before it is recorded.
        """
        at, run = workflow.now(), workflow.info().run_id
        await workflow.execute_local_activity(
            publish_events,
            args=[
                inp.execution_id,
                [
                    new_event(
                        claim_event_id(inp.execution_id, run)
                        if key == CLAIM
                        else f"{inp.execution_id}/wf/{key}",
                        p,
                        at,
                        run,
                    )
                    for key, p in events
                ],
                secret_refs(inp),
            ],
            **PUBLISH_OPTS,
        )

    def _log(self, inp: ExecutionInput, phase: str) -> None:
        """Log the execution's start or end, once: not again when its history is replayed.

        The duration is workflow time since the run started: the same on every replay.
        """
        if workflow.unsafe.is_replaying():
            return
        info = workflow.info()
        if phase == "RUNNING":
            log.info(
                "execution %s started: agent %s, model %s",
                inp.execution_id,
                inp.agent_name,
                inp.model,
            )
            return
        took = (workflow.now() - info.start_time).total_seconds()
        log.info(
            "execution %s ended: agent %s, %s in %.1fs",
            inp.execution_id,
            inp.agent_name,
            phase,
            took,
        )

    @workflow.run
    async def run(self, inp: ExecutionInput) -> dict[str, Any]:
        self._inp = inp
        # The RUNNING event claims the execution for this run (its id holds the run
        # id; the server takes PENDING -> RUNNING once): a sealed input replayed
        # into another workflow run is refused here, before any tool runs.
        await self._publish(
            inp,
            (CLAIM, PhasePayload(phase="RUNNING")),
            ("human", MessagePayload(role="human", content=inp.message)),
        )
        self._log(inp, "RUNNING")
        settings = inp.spec.model_settings.model_dump(exclude_none=True)
        try:
            result = await the_agent().run(
                inp.message,
                deps=deps_for(inp),
                model=inp.model,
                model_settings=settings or None,
            )
        except asyncio.CancelledError:
            await self._publish(inp, ("cancelled", PhasePayload(phase="CANCELLED")))
            self._log(inp, "CANCELLED")
            raise
        except Exception as exc:
            message = _hint(inp, exc) or _describe(exc)
            kind = _kind(exc)
            await self._publish(
                inp,
                ("error", ErrorPayload(message=message, kind=kind)),
                ("failed", PhasePayload(phase="FAILED", error=message)),
            )
            self._log(inp, "FAILED")
            raise ApplicationError(message, type=kind, non_retryable=True) from exc
        u = result.usage
        usage = UsagePayload(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            requests=u.requests,
            tool_calls=tool_calls_made(result.all_messages()),
        )
        output = str(result.output)
        await self._publish(
            inp,
            ("usage", usage),
            ("completed", PhasePayload(phase="COMPLETED", output=output)),
        )
        self._log(inp, "COMPLETED")
        return {"output": output, "usage": usage.model_dump()}


def denial(by: str, reason: str | None) -> str:
    """What the model gets as the result of a denied call."""
    why = f": {reason.rstrip('.')}." if reason else "."
    return f"The call was denied by {by}{why} It did not run."


def tool_calls_made(messages: list[ModelMessage]) -> int:
    """Every tool call the model made, failed and refused ones too.

    pydantic-ai's own ``usage.tool_calls`` counts only the calls that succeeded.
    """
    with workflow.unsafe.imports_passed_through():
        from pydantic_ai.messages import ModelResponse, ToolCallPart

    return sum(
        isinstance(part, ToolCallPart)
        for m in messages
        if isinstance(m, ModelResponse)
        for part in m.parts
    )


def _hint(inp: ExecutionInput, exc: BaseException) -> str | None:
    """A model failure in stigmer's terms (:func:`stigmer.runner.models.failure_hint`).

    Only words for a failure the run already has: any error of its own gives
    None (the plain message), so the workflow still ends FAILED.
    """
    try:
        with workflow.unsafe.imports_passed_through():
            from stigmer.runner.models import failure_hint

        key = inp.spec.api_key.secret if inp.spec.api_key else None
        return failure_hint(inp.model, inp.spec.base_url, key, exc)
    except Exception:
        return None


def _typed(exc: BaseException) -> ApplicationError | None:
    """The application error that says what failed, when ``exc`` is only Temporal's wrapper.

    The first one with a type in the chain of an ``ActivityError`` or
    ``ApplicationError`` (``TestScriptStopped`` inside the activity's error);
    None for any other error, such as one pydantic-ai rebuilt in the workflow
    (``ModelConnectionError``), whose own class says more than its encoding's type.
    """
    if not isinstance(exc, ActivityError | ApplicationError):
        return None
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, ApplicationError) and cur.type:
            return cur
        cur = cur.__cause__
    return None


def _kind(exc: BaseException) -> str:
    """What failed: an application error's own type (``TestScriptStopped``, ...), else the class."""
    typed = _typed(exc)
    return typed.type if typed is not None and typed.type else type(exc).__name__


def _describe(exc: BaseException) -> str:
    """The innermost useful message of an exception chain (activity errors wrap the cause)."""
    parts: list[str] = []
    typed = _typed(exc)
    cur: BaseException | None = exc
    while cur is not None and len(parts) < 5:
        # the first typed application error's type is the event's kind (:func:`_kind`)
        text = (typed.message if typed is not None and cur is typed else str(cur)).strip()
        if isinstance(cur, ActivityError) and cur.__cause__ is not None:
            text = ""  # "Activity task failed": its cause says what failed
        if text and not any(text in p for p in parts):
            parts.append(text)
        cur = cur.__cause__
    last = parts[-2:]
    if len(last) == 2 and last[1] in last[0]:  # "X: msg" wrapping "msg"
        last = last[:1]
    return ": ".join(last) if last else type(exc).__name__


def name_agent() -> type[AgentExecutionWorkflow]:
    """The workflow class, with its agent named for pydantic-ai's plugin (imports the agent)."""
    AgentExecutionWorkflow.__pydantic_ai_agents__ = (the_agent(),)
    return AgentExecutionWorkflow


@workflow.defn(name="StigmerPing")
class PingWorkflow:
    """Round trip through a runner: one activity, used to prove the worker executes work."""

    @workflow.run
    async def run(self, message: str) -> str:
        return await workflow.execute_activity(
            ping, message, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="StigmerWorkspaceProbe")
class WorkspaceProbeWorkflow:
    """Write one file in the runner's workspace; returns path, owner uid/gid and the runner's euid."""

    @workflow.run
    async def run(self, name: str) -> dict[str, Any]:
        return await workflow.execute_activity(
            workspace_probe, name, start_to_close_timeout=timedelta(seconds=30)
        )
