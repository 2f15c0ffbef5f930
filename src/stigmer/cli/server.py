"""``stigmer server start|stop|restart|status|logs|restore|reset``: the local stack."""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

import typer

from stigmer.cli._output import JSON_MODE, human_duration, print_json
from stigmer.contract.registry import COMPONENTS, PROVIDERS, RUNNER, parse_model, runner_replica
from stigmer.contract.status import StackStatus, find_component
from stigmer.errors import EXIT_NOT_READY, EXIT_OK, StackNotRunningError
from stigmer.settings import KEYS_BY_NAME, RUNNER_MODES, Settings, resolve

app = typer.Typer(help="Bring up, inspect and stop the local stack.", no_args_is_help=True)

LOG_SOURCES = (*COMPONENTS, "supervisor")


def _replica_logs(settings: Any) -> list[str]:
    """agent-runner-2, ... that have logs in this home (runner_replicas, now or before)."""
    logs = settings.paths.logs
    found = (
        {p.name.split(".")[0] for p in logs.glob("agent-runner-*.log")} if logs.is_dir() else set()
    )
    return sorted((n for n in found if runner_replica(n)), key=lambda n: runner_replica(n) or 0)


def _settings(**flags: Any) -> Settings:
    return resolve(flags=flags)


def _home_settings(command: str) -> Settings:
    """Settings for `stop`, `status` and `logs`, which work whatever the config says.

    They need the home and a few timings only. When config.yaml (or an env var)
    is invalid, the problem is a warning, and the settings of the running (or
    last) stack are used, from run/stack.json, else the defaults.

    Raises:
        ConfigError: STIGMER_HOME is a file (there is no stack to find).
    """
    import json

    from stigmer.errors import ConfigError
    from stigmer.settings import Paths, home_dir

    try:
        return _settings()
    except ConfigError as exc:
        home = home_dir()
        if home.exists() and not home.is_dir():
            raise
        stack_file = Paths(home).stack_file
        try:
            data = json.loads(stack_file.read_text())
            if data["home"] != str(home):
                raise ValueError("another home")
            settings = Settings.from_json(data)
            used = f"the last start's settings ({stack_file})"
        except (OSError, ValueError, KeyError, TypeError):
            settings = Settings(home=home, sources=dict.fromkeys(KEYS_BY_NAME, "default"))
            used = "the default settings"
        print(
            f"warning: {exc.message} `server {command}` goes on with {used}; "
            f"fix it before the next start: {exc.fix or ''}".rstrip(),
            file=sys.stderr,
        )
        return settings


def _flag(key: str, flag: str | None = None, what: str | None = None) -> Any:
    """A `server start`/`restart` option for setting ``key``; its help names the env var and default."""
    k = KEYS_BY_NAME[key]
    default = "" if k.default is None else f", default {k.default}"
    text = (what or k.help).rstrip(".")
    # parentheses, not brackets: the help is rich markup
    return typer.Option(
        None, flag or "--" + key.replace("_", "-"), help=f"{text} (env {k.env}{default})."
    )


SERVER_PORT = _flag("server_port", what="API port")
TEMPORAL_PORT = _flag("temporal_port", what="Temporal gRPC port")
TEMPORAL_UI_PORT = _flag("temporal_ui_port", what="Temporal UI port")
TEMPORAL_ADDRESS = _flag(
    "temporal_address", what="Use an external Temporal at host:port instead of starting one"
)
NAMESPACE = _flag("temporal_namespace", "--namespace", "Temporal namespace")
RUNNER_FLAG = _flag("runner_mode", "--runner", f"Runner mode: {'|'.join(RUNNER_MODES)}")
TIMEOUT = _flag("start_timeout", "--timeout", "Seconds to wait for readiness")
WORKSPACE = _flag(
    "workspace", what="Folder the agents work in (default $STIGMER_HOME/data/workspace)"
)
OFFLINE = typer.Option(
    False, "--offline", help="Never pull the runner image (env STIGMER_OFFLINE)."
)
ONLY = _flag(
    "only",
    what="Run only these components here, comma-separated: temporal, stigmer-server, agent-runner",
)
INSECURE_BIND = typer.Option(
    False,
    "--insecure-bind",
    help="Allow listening beyond loopback without TLS (server_bind, temporal_bind): not advised.",
)
REBUILD = typer.Option(
    False, "--rebuild", help="Rebuild the runner image from this checkout first."
)
DEV = typer.Option(
    None,
    "--dev/--no-dev",
    help="Development mode, from a checkout: the runner runs the checkout's src/ (dev_source, "
    "env STIGMER_DEV_SOURCE) and restarts when a runner source changes, with no image rebuild "
    "(env STIGMER_DEV).",
    show_default=False,
)
JSON_STATUS = typer.Option(False, "--json", help="Print the final status as JSON.")
#: parameters of `server start`/`restart` that set a key of another name
_PARAM_KEYS = {
    "namespace": "temporal_namespace",
    "runner": "runner_mode",
    "timeout": "start_timeout",
}


def _start_settings(params: dict[str, Any], carried: dict[str, Any] | None = None) -> Settings:
    """The settings for `server start`/`restart`, from their parameters (``locals()``).

    ``carried``: flags of the last start, used where these parameters give none.
    """
    flags = {
        _PARAM_KEYS.get(k, k): v for k, v in params.items() if k not in ("rebuild", "json_out")
    }
    flags["offline"] = True if params["offline"] else None
    flags["insecure_bind"] = True if params["insecure_bind"] else None
    for key, value in (carried or {}).items():
        if flags.get(key) is None:
            flags[key] = value
    return _settings(**flags)


def _last_start_flags() -> dict[str, Any]:
    """The settings the running (or last) stack of this home got from `server start` flags."""
    import json

    from stigmer.settings import Paths, home_dir

    try:
        data = json.loads(Paths(home_dir()).stack_file.read_text())
        values, sources = data["values"], data["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {
        k: values[k]
        for k, src in sources.items()
        if src == "flag" and k in KEYS_BY_NAME and k in values and not KEYS_BY_NAME[k].secret
    }


@app.command()
def start(
    server_port: int | None = SERVER_PORT,
    temporal_port: int | None = TEMPORAL_PORT,
    temporal_ui_port: int | None = TEMPORAL_UI_PORT,
    temporal_address: str | None = TEMPORAL_ADDRESS,
    namespace: str | None = NAMESPACE,
    runner: str | None = RUNNER_FLAG,
    timeout: float | None = TIMEOUT,
    offline: bool = OFFLINE,
    workspace: str | None = WORKSPACE,
    only: str | None = ONLY,
    insecure_bind: bool = INSECURE_BIND,
    rebuild: bool = REBUILD,
    dev: bool | None = DEV,
    json_out: bool = JSON_STATUS,
) -> None:
    """Start the stack and wait until every component does real work.

    Ready means: Temporal answers for the namespace, the API answers /healthz
    with its database open and Temporal reached by the server itself, and the
    runner polls its task queue. Starting a running stack with the same
    settings is a no-op (exit 0); with other settings (a flag, env var or
    config value that differs from what it runs with), it names each, its
    running and its new value, changes nothing and exits 16: `stigmer server
    restart` applies them. Flags the running stack got count as given again.

    --dev (from a checkout): the runner runs the checkout's src/ (mounted
    read-only in docker mode) and restarts within seconds of a change to a
    runner source file, with no image rebuild; `server status` shows it.
    """
    params = dict(locals())  # first: locals() is the parameters only
    settings = _start_settings(params)
    JSON_MODE["on"] = json_out
    _start(settings, json_out, rebuild, on_running=lambda _st: _refuse_other_settings(params))


#: keys that do not shape the running stack: a start may give another value
_NOT_COMPARED = ("start_timeout",)


def _setting_differences(params: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, running value, this start's value) for each setting that differs.

    The running values are the home's run/stack.json (secrets masked, so a
    changed secret is not seen). Flags the running stack got stand where this
    start gives none, as for `restart`; ``runner_mode: auto`` matches what it
    chose (docker or local).
    """
    import json

    from stigmer.settings import Paths, home_dir

    try:
        running = json.loads(Paths(home_dir()).stack_file.read_text())["values"]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # a stack of an older version: nothing to compare with
    wanted = _start_settings(params, _last_start_flags()).public()
    out = []
    for key, value in wanted.items():
        if key in _NOT_COMPARED or key not in running or running[key] == value:
            continue
        if key == "runner_mode" and value == "auto":
            continue
        out.append((key, running[key], value))
    return out


def _flag_for(key: str, value: Any) -> str:
    import shlex

    name = {v: k for k, v in _PARAM_KEYS.items()}.get(key, key).replace("_", "-")
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"--{name} {shlex.quote(str(value))}"


#: boolean settings whose flag has a --no- form (`--dev/--no-dev`)
_NEGATABLE = ("dev",)


def _refuse_other_settings(params: dict[str, Any]) -> None:
    """`start` on a running stack: refuse (exit 16) when this start asks for other settings."""
    import json

    from stigmer.errors import StackSettingsDifferError
    from stigmer.settings import home_dir

    diffs = _setting_differences(params)
    if not diffs:
        return
    given = _start_settings(params).sources
    flags = " ".join(
        _flag_for(k, new)
        for k, _old, new in diffs
        if given.get(k) == "flag" and (new is not False or k in _NEGATABLE)
    )
    shown = "; ".join(
        f"{k}: running {json.dumps(old)}, this start {json.dumps(new)}" for k, old, new in diffs
    )
    raise StackSettingsDifferError(
        f"stigmer is already running (home {home_dir()}) with other settings than this "
        f"start's: {shown}. Nothing was changed.",
        "Apply them with `stigmer server restart" + (f" {flags}" if flags else "") + "` "
        "(it stops the stack and starts it with these settings), or start with the "
        "running values.",
    )


def ensure_provider_key(settings: Settings) -> None:
    """If ``default_model``'s provider needs an API key and none is set, ask for it (masked).

    The key is saved to config.yaml (mode 0600). Without a terminal this fails
    naming the env var to set. Keys are never printed or logged.
    """
    from stigmer.errors import ConfigError
    from stigmer.settings import read_config_file, write_config_file

    provider = PROVIDERS[parse_model(settings.default_model)[0]]
    key, env_var = provider.key_setting, provider.key_env
    if key is None or env_var is None or getattr(settings, key):
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ConfigError(
            f"default_model is {settings.default_model}, and no {provider.name} API key is set.",
            f"Set {env_var} (or `stigmer config set {key} KEY`), or use the offline model: "
            "`stigmer config set default_model test`.",
        )
    import getpass

    value = getpass.getpass(
        f"{provider.name} API key for {settings.default_model} (input hidden): "
    ).strip()
    if not value:
        raise ConfigError(
            "No API key entered.", f"Set {env_var}, or `stigmer config set default_model test`."
        )
    data = read_config_file(settings.paths.config)
    data[key] = value
    write_config_file(settings.paths.config, data)
    settings.set(key, value, "config")
    print(f"saved to {settings.paths.config} (mode 0600)", file=sys.stderr)


def _start(
    settings: Settings,
    json_out: bool,
    rebuild: bool = False,
    on_running: Any = None,
) -> None:
    from stigmer.cli.image import prepare_runner
    from stigmer.stack import control

    ensure_provider_key(settings)
    t0 = time.monotonic()
    progress = _Progress(enabled=not json_out)
    try:
        status, started = control.start(
            settings,
            on_progress=progress.update,
            on_wait_lock=lambda: progress.note("waiting for another stigmer command to finish..."),
            before_spawn=lambda: prepare_runner(settings, rebuild=rebuild, quiet=json_out),
            on_running=on_running,
        )
    finally:
        progress.close()
    elapsed = time.monotonic() - t0
    if settings.runner_mode == "local":
        print(
            "note: the agent-runner is a host process (local mode): agents' tools run as you, "
            "with your access to this machine; `shell` only for agents with `local_shell: true`. "
            "Run agents in a container with `--runner docker`.",
            file=sys.stderr,
        )
    status["took_s"] = round(elapsed, 2)
    status["already_running"] = not started
    if json_out:
        print_json(status)
        return
    if not started:
        print(f"stigmer is already running (home {status['home']}).")
        _summary(status, None)
        return
    _summary(status, elapsed)


class _Progress:
    """A live table of component states on a TTY; plain lines on state changes otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.live: Any = None
        self.seen: dict[str, str] = {}
        self.t0 = time.monotonic()

    def note(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr)

    def update(self, status: StackStatus) -> None:
        if not self.enabled:
            return
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            if self.live is None:
                self.live = Live(
                    console=Console(stderr=True), refresh_per_second=10, transient=True
                )
                self.live.start()
            self.live.update(self._table(status))
            return
        for c in status["components"]:
            label = c["state"] + (" (ready)" if c["ready"] else "")
            if self.seen.get(c["name"]) != label:
                self.seen[c["name"]] = label
                print(f"[{time.monotonic() - self.t0:5.1f}s] {c['name']}: {label}", file=sys.stderr)

    def _table(self, status: StackStatus) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self.t0
        for c in status["components"]:
            if c["ready"]:
                mark: Any = "[green]✓[/]"
                what = "ready"
            elif c["state"] == "failed":
                mark, what = "[red]✗[/]", "failed"
            else:
                mark = Spinner("dots")
                what = c["state"] + ("" if c["state"] != "running" else " (checking)")
            table.add_row(mark, c["name"], what)
        table.add_row("", "", f"[dim]{elapsed:.1f}s[/]")
        return table

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _summary(status: StackStatus, elapsed: float | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if elapsed is not None:
        console.print(f"[bold green]✓ stigmer is ready[/] in {elapsed:.1f}s")
    ep = status.get("endpoints")
    table = Table.grid(padding=(0, 2))
    if ep:
        table.add_row("API", ep["api"])
        table.add_row("Temporal", f"{ep['temporal']}  (namespace {ep['namespace']})")
        if ep["temporal_ui"]:
            table.add_row("Temporal UI", ep["temporal_ui"])
    runner = find_component(status, RUNNER)
    if runner is not None:
        started = f", ready in {runner['ready_in_s']}s" if runner["ready_in_s"] is not None else ""
        table.add_row(
            "Runner", f"{runner.get('mode', '-')} mode, polling {runner.get('task_queue')}{started}"
        )
    dev = status.get("dev")
    if dev:
        table.add_row("Dev mode", f"on: the runner runs {dev['source']}, restarted on change")
    table.add_row("Data", status.get("data_dir") or "-")
    table.add_row("Workspace", status.get("workspace") or "-")
    table.add_row("Logs", "stigmer server logs -f")
    console.print(table)


@app.command()
def stop(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stop the stack (runner, API, Temporal), gracefully then by force. Idempotent.

    It works whatever config.yaml says: an invalid config is a warning, and the
    running stack's own settings are used.
    """
    from stigmer.stack import control

    JSON_MODE["on"] = json_out
    settings = _home_settings("stop")
    t0 = time.monotonic()
    stopped = control.stop(
        settings,
        on_wait_lock=lambda: print("waiting for another stigmer command...", file=sys.stderr),
        on_slow=lambda why: print(why, file=sys.stderr),
    )
    took = time.monotonic() - t0
    if json_out:
        print_json({"stopped": stopped, "took_s": round(took, 2)})
    elif stopped:
        print(f"stigmer stopped in {took:.1f}s.")
    else:
        print("stigmer is not running.")


@app.command()
def restore(
    backup: str | None = typer.Argument(
        None,
        metavar="[BACKUP]",
        help="The backup's name or path (from --list). Default: the newest.",
        show_default=False,
    ),
    list_only: bool = typer.Option(
        False, "--list", help="List the backups, newest first; restore nothing."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Put a backup of the SQLite store in its place (the stack must be stopped).

    A backup is taken at each start of the API server, and the last `backup_keep`
    are kept in data/backups. The store it replaces is kept beside it
    (stigmer.db.replaced-TIME). A PostgreSQL store is not backed up by stigmer:
    use pg_dump and pg_restore.
    """
    from stigmer.errors import ConfigError, StackRunningError
    from stigmer.server import backup as backups
    from stigmer.stack import control

    JSON_MODE["on"] = json_out
    settings = _settings()
    store = settings.sqlite_store
    if store is None:
        raise ConfigError(
            "database_url is a PostgreSQL store: stigmer backs up only its SQLite store.",
            "Back PostgreSQL up and restore it with its own tools: pg_dump and pg_restore.",
        )
    if list_only:
        found = [b.to_dict() for b in backups.list_backups(store)]
        if json_out:
            print_json({"store": str(store), "backups": found})
        elif not found:
            print(f"No backups of {store} yet: one is taken at each start of the API server.")
        else:
            for b in found:
                print(f"{b['name']}  {b['created']}  {b['size']} bytes")
        return
    paths = settings.paths
    with control.stack_lock(paths, 30):
        if control.supervisor_holds_lock(paths) or control.supervisor_status(paths, 2) is not None:
            raise StackRunningError(
                f"the stack of {paths.home} is running: its API server has the store open.",
                "Stop it first: `stigmer server stop`, then `stigmer server restore`.",
            )
        chosen, aside = backups.restore(store, backup)
    if json_out:
        print_json(
            {
                "store": str(store),
                "restored": chosen.to_dict(),
                "set_aside": [str(p) for p in aside],
            }
        )
        return
    print(f"restored {store} from {chosen.name} ({chosen.to_dict()['created']}).")
    for p in aside:
        print(f"the file it replaced is kept as {p}")
    print("Start the stack: stigmer server start")


@app.command()
def reset(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed without a terminal)."),
    workspace: bool = typer.Option(
        False, "--workspace", help="Delete the workspace too (only one inside the home)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Stop the stack and delete its data, so that the next start begins afresh.

    Deleted: the SQLite store (agents, executions, tokens made with `stigmer
    token create`) and its backups, the managed Temporal's state, the logs and
    the run state. Kept: config.yaml, credentials/ (the admin and runner tokens,
    which the next start registers again, and the stack's key), and the
    workspace unless --workspace. A PostgreSQL store and an external Temporal
    are not touched. Asks first; without a terminal it needs --yes.
    """
    from stigmer.cli._output import confirm
    from stigmer.stack import reset as resetting

    JSON_MODE["on"] = json_out
    settings = _settings()  # strict: what to delete is not guessed past a broken config
    chosen = _last_start_flags().get("workspace")
    if chosen and settings.sources.get("workspace") in (None, "default"):
        settings.set("workspace", chosen, "the running stack's --workspace")
    if not settings.home.exists():
        if json_out:
            print_json({"home": str(settings.home), "stopped": [], "deleted": [], "kept": []})
        else:
            print(f"Nothing to reset: {settings.home} does not exist.")
        return
    found = resetting.plan(settings, workspace)
    if not confirm(
        f"Reset {settings.home}?",
        yes=yes,
        what=f"server reset would stop the stack of {settings.home} and delete its data",
        listing=found.listing(),
        dry_run_flag=False,
    ):
        print("Nothing was changed.", file=sys.stderr)
        raise typer.Exit(0)
    stopped, done = resetting.reset(
        settings,
        workspace,
        on_wait_lock=lambda: print("waiting for another stigmer command...", file=sys.stderr),
    )
    if json_out:
        print_json({**done.to_dict(), "stopped": stopped})
        return
    if stopped:
        print("stigmer stopped.")
    for path, what in done.delete:
        print(f"deleted {path} ({what})")
    for kept in done.keep:
        print(f"kept {kept}")
    print("The home starts afresh: stigmer server start")


def _restart(**params: Any) -> None:
    """Stop the stack, then start it again with the current config.

    It keeps the flags the last `server start` was given (--only, --runner, ports,
    ...), as a deployment script expects; give a flag to change one.
    """
    from stigmer.stack import control
    from stigmer.stack.handover import check
    from stigmer.stack.ports import check_port_settings

    JSON_MODE["on"] = params["json_out"]
    carried = _last_start_flags()
    settings = _start_settings(params, carried)
    given = _start_settings(params).sources  # what this command's own flags set
    kept = {k: v for k, v in carried.items() if given.get(k) != "flag"}
    if kept and not params["json_out"]:
        shown = ", ".join(f"{k}={v}" for k, v in kept.items())
        print(f"restart: keeping the last start's flags: {shown}", file=sys.stderr)
    # settings that cannot work are refused before the running stack is stopped
    check_port_settings(control.port_needs(settings))
    check(settings)
    ensure_provider_key(settings)
    quiet = params["json_out"]
    if not quiet:
        print(f"Stopping stigmer (home {settings.home})...", file=sys.stderr)
    t0 = time.monotonic()
    stopped = control.stop(
        settings,
        on_wait_lock=None
        if quiet
        else lambda: print("waiting for another stigmer command...", file=sys.stderr),
        on_slow=None if quiet else lambda why: print(why, file=sys.stderr),
    )
    if stopped and not quiet:  # the start's "ready in" counts from here
        print(f"stopped in {time.monotonic() - t0:.1f}s; starting...", file=sys.stderr)
    _start(settings, params["json_out"], params["rebuild"])


# `restart` takes exactly the options of `start`: Typer reads them from start's
# signature (functools.wraps sets __wrapped__, which inspect.signature follows)
_RESTART_HELP = _restart.__doc__
restart = functools.wraps(start)(_restart)
restart.__doc__ = _RESTART_HELP
app.command("restart")(restart)


@app.command()
def status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each component's state, pid or container, uptime, restarts, endpoint and last error.

    Exit status: 0 when every component is running and ready; 12 when the stack
    runs but is not ready (starting, restarting, a component failed); 5 when
    it is stopped.
    """
    from stigmer.stack import control

    JSON_MODE["on"] = json_out
    st = control.status(_home_settings("status"))
    code = (
        EXIT_OK
        if st.get("ready")
        else (EXIT_NOT_READY if st["running"] else StackNotRunningError.exit_code)
    )
    if json_out:
        print_json(st)
        raise typer.Exit(code)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    head = "running" if st["running"] else "stopped"
    if st["running"] and not st["ready"]:
        head = "running, not ready"
    console.print(f"stigmer: [bold]{head}[/]  (home {st['home']})")
    table = Table(box=None, pad_edge=False)
    for col in ("COMPONENT", "STATE", "READY", "PID/CONTAINER", "UPTIME", "RESTARTS", "ENDPOINT"):
        table.add_column(col, no_wrap=True)
    colors = {"running": "green", "failed": "red", "stopped": "dim", "orphaned": "yellow"}
    problems = []
    for c in st["components"]:
        color = colors.get(c["state"], "yellow")
        ident = c["container_id"] or c["pid"] or "-"
        if c["last_error"]:
            problems.append(c)
        table.add_row(
            c["name"],
            f"[{color}]{c['state']}[/]",
            "yes" if c["ready"] else "no",
            str(ident)[:12],
            human_duration(c["uptime_s"]),
            str(c["restarts"]),
            c["endpoint"] or "-",
        )
    console.print(table)
    for c in problems:
        console.print(
            f"[red]{c['name']}[/]: last error: {escape(c['last_error'] or '')}", soft_wrap=True
        )
        if c["fix"]:
            console.print(f"[bold]Fix:[/] {escape(c['fix'])}", soft_wrap=True)
    for c in st["components"]:
        if c["state"] == "waiting" and c.get("waiting_for"):
            console.print(
                f"[yellow]{c['name']}[/]: {escape(c['waiting_for'] or '')}", soft_wrap=True
            )
        crash = c.get("last_crash")
        if crash and not c["last_error"]:
            ago = human_duration(max(time.time() - crash["at"], 0))
            first = crash["error"].splitlines()[0] if crash["error"] else "crashed"
            console.print(
                f"[dim]{c['name']}: recovered; last crash {ago} ago: {escape(first)}[/]",
                soft_wrap=True,
            )
    endpoints = st.get("endpoints")
    if endpoints and endpoints["temporal_ui"]:
        console.print(f"Temporal UI: {endpoints['temporal_ui']}")
    dev = st.get("dev")
    if dev:
        last = ""
        if dev["last_change"] and dev["last_change_at"]:
            ago = human_duration(max(time.time() - dev["last_change_at"], 0))
            last = f"; last change {ago} ago: {', '.join(dev['last_change'][:3])}"
        console.print(
            f"Dev mode: on: the runner runs {escape(dev['source'])}, restarted on change "
            f"({dev['restarts']} so far{escape(last)})",
            soft_wrap=True,
        )
    if any(c["state"] == "orphaned" for c in st["components"]):
        console.print(
            "[yellow]Processes of a supervisor that died are still running; "
            "`stigmer server stop` cleans them up.[/]"
        )
    raise typer.Exit(code)


@app.command()
def logs(
    component: str | None = typer.Option(
        None,
        "-c",
        "--component",
        help=f"One of: {', '.join(LOG_SOURCES)}, agent-runner-N. Default: all, merged by time.",
    ),
    follow: bool = typer.Option(
        False, "-f", "--follow", help="Keep printing new lines (across restarts and rotation)."
    ),
    tail: int | None = typer.Option(
        None,
        "-n",
        "--tail",
        help="Show the last N lines of each component (0: none, only new lines with -f). Default: all.",
    ),
    stderr: bool = typer.Option(False, "--stderr", help="Only the components' stderr streams."),
) -> None:
    """Show component logs; each line is prefixed with its component and a UTC timestamp."""
    from stigmer.errors import ConfigError
    from stigmer.stack import logs as logmod

    if tail is not None and tail < 0:
        raise ConfigError(
            f"--tail must be 0 or more, not {tail}.", "Use -n 0 for none, -n 50 for the last 50."
        )
    if component and component not in LOG_SOURCES and not runner_replica(component):
        raise ConfigError(
            f"Unknown component {component!r}.",
            f"Use one of: {', '.join(LOG_SOURCES)} (or agent-runner-N, with runner_replicas).",
        )
    settings = _home_settings("logs")
    names = [component] if component else [*LOG_SOURCES, *_replica_logs(settings)]
    if not settings.paths.logs.is_dir() and not follow:
        print(
            f"No logs yet in {settings.paths.logs}: the stack has not run in this home.",
            file=sys.stderr,
        )
        return
    width = max(len(n) for n in names)
    color = sys.stdout.isatty()
    # Ctrl-C ends -f with 130 and a closed pipe (`| head`) with 141, in main()
    for line in logmod.tail(settings.paths, names, tail, stderr):
        logmod.render(line, width, color=color)
    sys.stdout.flush()
    if follow:
        for line in logmod.follow(settings.paths, names, stderr):
            logmod.render(line, width, color=color)
            sys.stdout.flush()
