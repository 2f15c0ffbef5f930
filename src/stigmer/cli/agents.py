"""``stigmer apply``, ``stigmer agent list|get|delete``, ``stigmer run``, ``stigmer execution ...``."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from stigmer.cli import running
from stigmer.cli._output import output_json, print_json, print_listing
from stigmer.client import Client

agent_app = typer.Typer(
    help="List, show and delete agents; print the schema of their YAML.", no_args_is_help=True
)
execution_app = typer.Typer(
    help="List, inspect, follow, cancel, approve and rerun executions.", no_args_is_help=True
)


def apply(
    file: list[str] = typer.Option(
        ..., "-f", "--file", help="An agent YAML file, or a folder of them (repeatable)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Say what would be created, updated or unchanged; store nothing."
    ),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
    json_out: bool = typer.Option(False, "--json", help="The same as --output json."),
) -> None:
    """Create or update agents from YAML. Everything is validated before anything is stored.

    The files are checked here first, then by the server (which knows its own
    rules, such as reserved secret names) for every agent; only when all pass
    is any stored. With --dry-run, each agent is compared with what the
    server holds: created, updated or unchanged; nothing is stored.
    """
    from stigmer.errors import RequestRejectedError, SpecError, StackNotRunningError
    from stigmer.spec.loader import load_paths

    as_json = output_json("json" if json_out else output)
    agents = load_paths(file)
    try:
        client = Client.resolved()
        if dry_run:
            client.list_agents()
    except StackNotRunningError:
        if not dry_run:
            raise
        _offline_dry_run(agents, as_json)
        return
    planned, problems = [], []
    for loaded in agents:
        spec = loaded.doc.spec.model_dump(mode="json", exclude_none=True)
        try:
            planned.append((loaded, spec, client.put_agent(loaded.doc.name, spec, dry_run=True)))
        except RequestRejectedError as exc:
            problems.append(f"{loaded.source}: agent {loaded.doc.name}: {exc.message}")
    if problems:
        raise SpecError(
            f"The server refused {len(problems)} of {len(agents)} agent(s); nothing was stored.",
            "Fix them and apply again.",
            details="\n".join(problems),
        )
    results = []
    for loaded, spec, preview in planned:
        res = preview if dry_run else client.put_agent(loaded.doc.name, spec)
        results.append({"name": loaded.doc.name, "status": res["status"], "source": loaded.source})
    if as_json:
        print_json({"agents": results, "dry_run": dry_run})
        return
    for r in results:
        verb = {"created": "would be created", "updated": "would be updated"}.get(
            r["status"], r["status"]
        )
        print(f"agent/{r['name']} {verb if dry_run else r['status']}")
    if dry_run:
        print("(dry run: nothing was stored)")


def _offline_dry_run(agents: list[Any], as_json: bool) -> None:
    """``apply --dry-run`` with the stack stopped: the files as checked here, nothing compared."""
    note = (
        "the stack is not running: the files were checked here only, not compared with "
        "stored agents nor checked by the server (reserved secret names); "
        "`stigmer server start`, then apply --dry-run again for that"
    )
    results = [{"name": a.doc.name, "status": "valid", "source": a.source} for a in agents]
    if as_json:
        print_json({"agents": results, "dry_run": True, "server_checked": False, "note": note})
        return
    for r in results:
        print(f"agent/{r['name']} valid")
    print(f"(dry run: {note})")


@agent_app.command("list")
def agent_list(output: str = typer.Option("text", "--output", "-o", help="text or json.")) -> None:
    """All agents, with the model their runs use."""
    as_json = output_json(output)
    agents = Client.resolved().list_agents()
    print_listing(
        "agents",
        agents,
        as_json,
        "No agents. Create one: stigmer apply -f examples/",
        ("NAME", "MODEL", "TOOLS", "GENERATION", "UPDATED", "DESCRIPTION"),
        lambda a: (
            a["name"],
            a["model"],
            ",".join(a["spec"].get("tools", [])) or "-",
            str(a["generation"]),
            a["updated_at"][:19],
            (a["spec"].get("description") or "")[:60],
        ),
    )


@agent_app.command("get")
def agent_get(
    name: str = typer.Argument(
        ..., metavar="AGENT", help="The agent's name (see `stigmer agent list`)."
    ),
    output: str = typer.Option("text", "--output", "-o", help="text (YAML), yaml or json."),
) -> None:
    """One agent, as YAML that `stigmer apply -f` takes back unchanged (or JSON)."""
    as_json = output_json("text" if output == "yaml" else output)
    agent = Client.resolved().get_agent(name)
    if as_json:
        print_json(agent)
        return
    from stigmer.spec.loader import dump_agent

    sys.stdout.write(dump_agent(agent["name"], agent["spec"]))


@agent_app.command("schema")
def agent_schema() -> None:
    """The JSON Schema of the agent YAML, for editors and validators.

    Save it and point the YAML language server at it with a first line
    `# yaml-language-server: $schema=agent.schema.json`.
    """
    from stigmer.spec.schema import schema_text

    sys.stdout.write(schema_text())


@agent_app.command("delete")
def agent_delete(
    name: str = typer.Argument(
        ..., metavar="AGENT", help="The agent's name (see `stigmer agent list`)."
    ),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
) -> None:
    """Delete an agent (its executions stay)."""
    as_json = output_json(output)
    Client.resolved().delete_agent(name)
    if as_json:
        print_json({"deleted": name})
    else:
        print(f"agent/{name} deleted")


def run(
    agent: str = typer.Argument(
        ..., metavar="AGENT", help="The agent's name (see `stigmer agent list`)."
    ),
    message: str = typer.Argument(
        ...,
        metavar="MESSAGE",
        help="What the agent should do; read from stdin when '-'.",
        show_default=False,
    ),
    env: list[str] = typer.Option(
        [], "--env", "-e", help="KEY=VALUE for the agent's tools (repeatable)."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="provider:model for this run only."
    ),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Start it and print its id; do not follow."
    ),
    on_interrupt: str = typer.Option(
        "ask", "--on-interrupt", help="What Ctrl-C does while following: ask, detach or cancel."
    ),
    output: str = typer.Option(
        "text", "--output", "-o", help="text (live) or json (one object at the end)."
    ),
) -> None:
    """Run an agent with a message and follow what it does until it ends.

    Exit status: 0 COMPLETED, 1 FAILED, 3 CANCELLED.
    """
    code = running.run_agent(agent, message, env, model, detach, on_interrupt, output)
    if code:
        raise typer.Exit(code)


@execution_app.command("list")
def execution_list(
    agent: str | None = typer.Option(None, "--agent", help="Only this agent's executions."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="How many, newest first."),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
) -> None:
    """Recent executions, newest first."""
    as_json = output_json(output)
    client = Client.resolved()
    items = client.list_executions(agent, limit)
    empty = 'No executions yet. Start one: stigmer run AGENT "message"'
    if agent is not None and not items:
        client.get_agent(agent)  # a misspelled name is not "no executions" (did you mean)
        empty = f'No executions of {agent} yet. Start one: stigmer run {agent} "message"'
    print_listing(
        "executions",
        items,
        as_json,
        empty,
        ("ID", "AGENT", "PHASE", "CREATED", "MESSAGE"),
        lambda e: (
            e["id"],
            e["agent"],
            e["phase"],
            e["created_at"][:19],
            (e.get("message") or "")[:50],
        ),
    )


@execution_app.command("get")
def execution_get(
    execution_id: str = typer.Argument(
        ..., metavar="EXECUTION_ID", help="The execution's id (see `stigmer execution list`)."
    ),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
) -> None:
    """One execution: phase, output, error."""
    as_json = output_json(output)
    ex = Client.resolved().get_execution(execution_id)
    if as_json:
        print_json(ex)
        return
    for key in ("id", "agent", "phase", "model", "message", "created_at", "updated_at", "error"):
        if ex.get(key) is not None:
            print(f"{key + ':':<12}{ex[key]}")
    if ex.get("output") is not None:
        print("output:")
        print(ex["output"])


@execution_app.command("logs")
def execution_logs(
    execution_id: str = typer.Argument(
        ..., metavar="EXECUTION_ID", help="The execution's id (see `stigmer execution list`)."
    ),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep following until it ends."),
    after: int = typer.Option(0, "--after", help="Only events after this sequence number."),
    output: str = typer.Option("text", "--output", "-o", help="text or json (one event per line)."),
) -> None:
    """The execution's events; with -f, live until it ends (exit status by final phase)."""
    as_json = output_json(output)
    with Client.resolved() as client:
        client.get_execution(execution_id)
        if follow and not as_json:
            code = running.follow(client, execution_id, False, "detach", after=after)
            if code:
                raise typer.Exit(code)
            return
        events = (
            list(client.stream(execution_id, after=after))
            if follow
            else client.events(execution_id, after)
        )
        if as_json:
            for e in events:
                sys.stdout.write(json.dumps(e) + "\n")
            return
        from stigmer.cli.render import Renderer

        r = Renderer()
        for e in events:
            r.event(e)


@execution_app.command("cancel")
def execution_cancel(
    execution_id: str = typer.Argument(
        ..., metavar="EXECUTION_ID", help="The execution's id (see `stigmer execution list`)."
    ),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
) -> None:
    """Ask a running execution to stop; it ends CANCELLED."""
    as_json = output_json(output)
    res = Client.resolved().cancel(execution_id)
    if as_json:
        print_json(res)
    else:
        print(
            f"cancel requested for {execution_id}; `stigmer execution get {execution_id}` shows the phase"
        )


def _decided(res: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(res)
        return
    verb = "approval" if res["decision"] == "approve" else "denial"
    rest = " (and every later call of the run)" if res.get("scope") == "run" else ""
    from stigmer.cli._output import terminal_safe

    state = "recorded" if res.get("recorded") else "sent (recorded once a runner is up)"
    print(
        terminal_safe(
            f"{verb} of call {res['call_id']}{rest} of execution {res['execution_id']} {state}; "
            f"follow it: stigmer execution logs -f {res['execution_id']}"
        )
    )


@execution_app.command("approve")
def execution_approve(
    execution_id: str = typer.Argument(
        ..., metavar="EXECUTION_ID", help="The execution's id (see `stigmer execution list`)."
    ),
    call_id: str | None = typer.Argument(
        None,
        metavar="[CALL_ID]",
        help="The call to approve; left out: the one call that waits.",
        show_default=False,
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the event log)."),
    rest_of_run: bool = typer.Option(
        False, "--rest-of-run", help="Also approve every later call of this run, without asking."
    ),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
) -> None:
    """Approve a tool call that waits for a decision; it then runs."""
    as_json = output_json(output)
    with Client.resolved() as client:
        res = running.decide_pending(
            client, execution_id, call_id, "approve", reason, "run" if rest_of_run else "call"
        )
    _decided(res, as_json)


@execution_app.command("deny")
def execution_deny(
    execution_id: str = typer.Argument(
        ..., metavar="EXECUTION_ID", help="The execution's id (see `stigmer execution list`)."
    ),
    call_id: str | None = typer.Argument(
        None,
        metavar="[CALL_ID]",
        help="The call to deny; left out: the one call that waits.",
        show_default=False,
    ),
    reason: str | None = typer.Option(
        None, "--reason", metavar="TEXT", help="Why: the agent gets it as the call's result."
    ),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
) -> None:
    """Deny a tool call that waits for a decision; it never runs, and the agent goes on."""
    as_json = output_json(output)
    with Client.resolved() as client:
        res = running.decide_pending(client, execution_id, call_id, "deny", reason)
    _decided(res, as_json)


@execution_app.command("rerun")
def execution_rerun(
    execution_id: str = typer.Argument(
        ...,
        metavar="EXECUTION_ID",
        help="The execution to run again (see `stigmer execution list`).",
    ),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Start it and print its id; do not follow."
    ),
    on_interrupt: str = typer.Option(
        "ask", "--on-interrupt", help="What Ctrl-C does while following: ask, detach or cancel."
    ),
    output: str = typer.Option(
        "text", "--output", "-o", help="text (live) or json (one object at the end)."
    ),
) -> None:
    """Run an execution again: a new one, with the same agent snapshot, message, env and model.

    Exit status as for `stigmer run`: 0 COMPLETED, 1 FAILED, 3 CANCELLED.
    """
    as_json = output_json(output)
    if on_interrupt not in running.ON_INTERRUPT:
        from stigmer.errors import ConfigError

        raise ConfigError(f"--on-interrupt {on_interrupt!r}", "Use ask, detach or cancel.")
    with Client.resolved() as client:
        ex = client.rerun(execution_id)
        if detach:
            running.print_detached(ex, as_json)
            return
        code = running.follow(
            client,
            ex["id"],
            as_json,
            on_interrupt,
            header=f"execution {ex['id']} of agent {ex['agent']} (a rerun of {execution_id})",
            ask_approvals=True,
        )
    if code:
        raise typer.Exit(code)
