"""``stigmer run`` and following an execution, without the CLI framework.

:func:`run_agent` is the whole of ``stigmer run``; the Typer command in
:mod:`stigmer.cli.agents` and the fast path in :func:`stigmer.cli.main` (plain
``stigmer run AGENT MESSAGE [-o json] [-d]``, which does not need to load Typer)
both call it. Functions return the process exit status instead of raising.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, TypedDict

from stigmer.cli._output import output_json, print_json
from stigmer.contract.registry import parse_model
from stigmer.errors import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    ConflictError,
    StackNotRunningError,
)

#: Exit status of `run` and `execution logs -f` by final phase.
EXIT_BY_PHASE = {"COMPLETED": EXIT_OK, "FAILED": EXIT_FAILED, "CANCELLED": EXIT_CANCELLED}
ON_INTERRUPT = ("ask", "detach", "cancel")


class RunArgs(TypedDict):
    """The arguments of :func:`run_agent` (``stigmer run``'s parameters)."""

    agent: str
    message: str
    env: list[str]
    model: str | None
    detach: bool
    on_interrupt: str
    output: str


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {pair!r} is not KEY=VALUE.", "Write it as --env NAME=value.")
        env[key] = value
    return env


def run_agent(
    agent: str,
    message: str,
    env: list[str],
    model: str | None,
    detach: bool,
    on_interrupt: str,
    output: str,
) -> int:
    """Start an execution of ``agent`` with ``message`` and follow it; returns the exit status.

    ``env``: ``KEY=VALUE`` strings; ``message`` ``-`` reads stdin. Exit status:
    0 COMPLETED (or detached), 1 FAILED, 3 CANCELLED. Raises StigmerError
    (bad input, unknown agent, API not running).
    """
    as_json = output_json(output)
    if on_interrupt not in ON_INTERRUPT:
        raise ConfigError(f"--on-interrupt {on_interrupt!r}", "Use ask, detach or cancel.")
    from_stdin = message == "-"
    if from_stdin:
        message = sys.stdin.read().rstrip("\n")
    if not message.strip():
        # a model is sent an empty request (a provider refuses it, after the start)
        import shlex

        raise ConfigError(
            "The message for the agent is empty" + (" (stdin was)." if from_stdin else "."),
            f'Say what it should do: `stigmer run {shlex.quote(agent)} "Summarize the notes '
            f'folder"`, or `stigmer run {shlex.quote(agent)} - < FILE` to read it from a file.',
        )
    for what, text in (("agent name", agent), ("message", message), *(("--env", e) for e in env)):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                f"The {what} is not valid UTF-8 text.",
                "Check the terminal's encoding (LANG/LC_ALL) or pass the text from a UTF-8 file "
                "with `stigmer run AGENT - < FILE`.",
            ) from None
    from stigmer.client import Client

    if model is not None:
        try:
            parse_model(model)
        except ValueError as exc:
            raise ConfigError(f"--model: {exc}.", "Write it as provider:model, or test.") from None
    with Client.resolved() as api:
        ex = api.run(agent, message, parse_env(env), model)
        if ex.get("phase") == "PENDING" and not ex.get("run_id"):
            print(
                f"stigmer: Temporal is not answering; execution {ex['id']} is kept PENDING "
                "and starts when Temporal is back",
                file=sys.stderr,
            )
        if detach:
            print_detached(ex, as_json)
            return 0
        return follow(
            api,
            ex["id"],
            as_json,
            on_interrupt,
            header=f"execution {ex['id']} of agent {agent}",
            ask_approvals=True,
        )


def print_detached(ex: dict[str, Any], as_json: bool) -> None:
    """What a detached start prints: the execution (JSON), or its id and how to follow it."""
    if as_json:
        print_json(ex)
    else:
        print(ex["id"])
        print(f"follow it: stigmer execution logs -f {ex['id']}", file=sys.stderr)


def follow(
    client: Any,
    execution_id: str,
    as_json: bool,
    on_interrupt: str,
    header: str | None = None,
    after: int = 0,
    ask_approvals: bool = False,
) -> int:
    """Print the execution's events until it ends; returns the exit status by final phase.

    A call that waits for approval: with ``ask_approvals`` and a terminal, the
    user is asked (approve, deny with a reason, approve the rest of the run, or
    decide later); else the commands that decide it are printed (on stderr
    with ``as_json``), and following goes on.
    """
    renderer = None
    if not as_json:
        from stigmer.cli.render import Renderer

        renderer = Renderer()
    if renderer and header:
        renderer.header(header)
    last = after
    final: dict[str, Any] | None = None
    hint = _pending_hint(client, renderer)
    while True:
        try:
            for event in client.stream(execution_id, after=last):
                if hint is not None and event["payload"].get("phase") != "PENDING":
                    hint.cancel()  # it runs (or ran): no need to look for why it waits
                    hint = None
                last = event["seq"]
                if renderer:
                    renderer.event(event)
                if event["type"] == "approval_requested":
                    _on_approval(client, execution_id, event["payload"], renderer, ask_approvals)
            break
        except StackNotRunningError as exc:
            # the stream was lost for good: the execution is kept, and can be followed again
            from stigmer.settings import command_for

            again = command_for(client.settings.home, f"execution logs -f {execution_id}")
            fix = (exc.fix or "").rstrip(".")
            raise StackNotRunningError(
                exc.message, f"{fix}; then follow the execution again: `{again}`.".lstrip("; ")
            ) from None
        except KeyboardInterrupt:
            action = on_interrupt
            if action == "ask":
                action = _ask() if sys.stdin.isatty() else "detach"
            if action == "detach":
                if renderer:
                    renderer.note(
                        f"detached; the execution goes on. Follow it: stigmer execution logs -f {execution_id}"
                    )
                if as_json:
                    print_json(client.get_execution(execution_id) | {"detached": True})
                # interrupted, not finished: 0 would read as COMPLETED
                return EXIT_INTERRUPTED
            client.cancel(execution_id)
            if renderer:
                renderer.note("cancel requested; waiting for the execution to stop...")
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if hint is not None:
        hint.cancel()
    # the stream ends with the execution as it ended (else: ask for it)
    ended = getattr(client, "ended", None)
    final = (
        ended
        if isinstance(ended, dict) and ended.get("phase") in EXIT_BY_PHASE
        else client.get_execution(execution_id)
    )
    if as_json:
        print_json(
            {
                k: final.get(k)
                for k in (
                    "id",
                    "agent",
                    "workflow_id",
                    "phase",
                    "output",
                    "error",
                    "created_at",
                    "updated_at",
                    "last_seq",
                )
            }
        )
    elif renderer:
        renderer.done(final)
    return EXIT_BY_PHASE.get(final["phase"], 1)


#: Seconds an execution may stay PENDING before `run` looks for why.
PENDING_HINT_AFTER = 5.0


def _pending_hint(client: Any, renderer: Any) -> Any:
    """A timer that says why an execution stays PENDING, if this host's runner is not ready.

    Only for this host's stack (its supervisor says how its runners are); a
    remote API's runners are on other hosts. Cancel it once the execution runs.
    """
    settings = getattr(client, "settings", None)
    if settings is None or settings.api_url:
        return None
    import threading

    def look() -> None:
        from stigmer.contract.registry import runner_replica
        from stigmer.stack.control import supervisor_status

        status = supervisor_status(settings.paths, timeout=2)
        if status is None:
            return
        runners = [c for c in status["components"] if runner_replica(c["name"])]
        if runners and any(c["ready"] for c in runners):
            return  # a runner polls: the execution waits for it, or for Temporal
        if not runners:
            why = "no agent-runner runs on this host (`--only`)"
        else:
            c = runners[0]
            error = (c.get("last_error") or "").splitlines()
            why = f"{c['name']} is {c['state']}" + (f": {error[0]}" if error else "")
        text = (
            f"still PENDING after {PENDING_HINT_AFTER:.0f}s: no runner of this host can run it; "
            f"{why}. See `stigmer server status`; the execution starts once a runner polls."
        )
        if renderer is not None:
            renderer.note(text)
        else:
            print(f"stigmer: {text}", file=sys.stderr)

    timer = threading.Timer(PENDING_HINT_AFTER, look)
    timer.daemon = True
    timer.start()
    return timer


def decide_commands(execution_id: str, call_id: str) -> str:
    return (
        f"stigmer execution approve {execution_id} {call_id}   or   "
        f'stigmer execution deny {execution_id} {call_id} --reason "..."'
    )


def _on_approval(
    client: Any, execution_id: str, p: dict[str, Any], renderer: Any, ask: bool
) -> None:
    """Ask the user about a call that waits (in a terminal), or say how to decide it."""
    from stigmer.cli._output import terminal_safe

    call_id = p.get("call_id", "")
    still = any(a["call_id"] == call_id for a in client.approvals(execution_id)["pending"])
    if not still:
        return  # decided already (a stream replayed from its start)
    if not (ask and renderer is not None and sys.stdin.isatty()):
        text = terminal_safe(
            f"waiting for a decision on {p.get('name')} call {call_id}: "
            + decide_commands(execution_id, call_id)
        )
        if renderer is not None:
            renderer.note(text)
        else:
            print(f"stigmer: {text}", file=sys.stderr)
        return
    question = (
        terminal_safe(f"Run {p.get('name')} call {call_id} (its arguments are above)? ")
        + "[y] approve, [n] deny, [a] approve it and the rest of this run, [l] decide later: "
    )
    choice = ""
    while choice not in ("y", "n", "a", "l"):  # anything else: asked again
        try:
            choice = input(question).strip()[:1].lower()
        except EOFError:
            choice = "l"
        question = "Please answer y, n, a or l: "
    if choice == "l":
        renderer.note("left waiting; " + decide_commands(execution_id, call_id))
        return
    reason = None
    if choice == "n":
        try:
            reason = input("Reason (the agent sees it): ").strip() or None
        except EOFError:
            reason = None
    try:
        client.decide(
            execution_id,
            call_id,
            "deny" if choice == "n" else "approve",
            reason,
            scope="run" if choice == "a" else "call",
        )
    except ConflictError as exc:  # decided meanwhile, elsewhere: the event log says how
        renderer.note(f"not decided here: {exc.message}")


def decide_pending(
    client: Any,
    execution_id: str,
    call_id: str | None,
    decision: str,
    reason: str | None,
    scope: str = "call",
) -> dict[str, Any]:
    """Decide ``call_id``, or the one call that waits when it is None.

    Raises:
        ConflictError: nothing waits, or (without ``call_id``) several calls do.
    """
    if call_id is None:
        listing = client.approvals(execution_id)
        pending = listing["pending"]
        if not pending:
            raise ConflictError(
                f"No call of execution {execution_id} waits for approval "
                f"(phase {listing['phase']}).",
                f"Nothing to decide; `stigmer execution logs {execution_id}` shows what happened.",
            )
        if len(pending) > 1:
            lines = "\n".join(
                f"  {a['call_id']}  {a['name']}({_args_line(a.get('args'))})" for a in pending
            )
            raise ConflictError(
                f"{len(pending)} calls of execution {execution_id} wait for approval:\n{lines}",
                f"Name one: stigmer execution {decision} {execution_id} CALL_ID",
            )
        call_id = pending[0]["call_id"]
    assert call_id is not None
    result: dict[str, Any] = client.decide(execution_id, call_id, decision, reason, scope)
    return result


def _args_line(args: Any) -> str:
    import json

    text = json.dumps(args or {}, ensure_ascii=False)
    return text if len(text) <= 100 else text[:99] + "…"


def _ask() -> str:
    try:
        answer = input("\nDetach (the execution goes on) or cancel it? [D/c] ").strip().lower()
    except (EOFError, KeyboardInterrupt):
        return "detach"
    return "cancel" if answer.startswith("c") else "detach"
