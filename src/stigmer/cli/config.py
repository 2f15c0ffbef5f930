"""``stigmer config get|set|unset|list|path``: the settings in ``$STIGMER_HOME/config.yaml``."""

from __future__ import annotations

import sys

import typer

from stigmer.cli._output import JSON_MODE, print_json
from stigmer.errors import ConfigError
from stigmer.settings import (
    KEYS,
    KEYS_BY_NAME,
    Paths,
    home_dir,
    read_config_file,
    resolve,
    write_config_file,
)

app = typer.Typer(
    help="Read and change settings. Precedence: flag > env (STIGMER_<KEY>) > config file > default.",
    no_args_is_help=True,
)


def _key(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key.startswith("stigmer_"):
        key = key[len("stigmer_") :]
    if key not in KEYS_BY_NAME:
        import difflib

        close = difflib.get_close_matches(key, list(KEYS_BY_NAME), n=1)
        words = {w for w in key.split("_") if len(w) > 2}
        related = [k for k in KEYS_BY_NAME if words & set(k.split("_"))][:8]
        raise ConfigError(
            f"Unknown config key {name!r}" + (f" (did you mean `{close[0]}`?)." if close else "."),
            (f"Keys like it: {', '.join(related)}. " if related and not close else "")
            + f"`stigmer config list` shows all {len(KEYS_BY_NAME)} with their values.",
        )
    return key


def _note_if_running(paths: Paths) -> None:
    """A changed setting waits for a restart: say so when the stack runs."""
    from stigmer.stack.control import supervisor_holds_lock

    if supervisor_holds_lock(paths):
        print("note: the stack is running; this applies from `stigmer server restart`")


@app.command("path")
def path_cmd() -> None:
    """Print the path of the config file."""
    print(Paths(home_dir()).config)


@app.command("get")
def get_cmd(key: str = typer.Argument(..., metavar="KEY", help="A key, e.g. server_port.")) -> None:
    """Print the effective value of KEY (secrets masked)."""
    name = _key(key)
    value = resolve().public(effective=True)[name]
    print("" if value is None else value)


@app.command("set")
def set_cmd(
    key: str = typer.Argument(..., metavar="KEY", help="A key, e.g. server_port."),
    value: str = typer.Argument(..., metavar="VALUE", help="The new value."),
) -> None:
    """Write KEY: VALUE to the config file (mode 0600). Applies at the next `server start`."""
    name = _key(key)
    spec = KEYS_BY_NAME[name]
    parsed = spec.parse(value, "the command line")
    paths = Paths(home_dir())
    paths.home.mkdir(parents=True, exist_ok=True)
    data = read_config_file(paths.config)
    data[name] = parsed
    write_config_file(paths.config, data)
    shown = "****" if spec.secret else parsed
    print(f"{name} = {shown}  ({paths.config})")
    import os

    for var in spec.envs:
        if os.environ.get(var):
            print(f"note: {var} is set in the environment and overrides this value")
            break
    _note_if_running(paths)


@app.command("unset")
def unset_cmd(
    key: str = typer.Argument(..., metavar="KEY", help="A key, e.g. server_port."),
) -> None:
    """Remove KEY from the config file (back to env or default)."""
    paths = Paths(home_dir())
    data = read_config_file(paths.config, unknown_keys=True)
    # a key stigmer does not know (misspelt) that is in the file goes as written
    name = key if key in data and key not in KEYS_BY_NAME else _key(key)
    if name not in data:
        print(f"{name} is not set in {paths.config}")
        return
    del data[name]
    write_config_file(paths.config, data)
    print(f"{name} removed from {paths.config}")
    _note_if_running(paths)


@app.command("list")
def list_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every key with its effective value, where it comes from, and the env vars that set it.

    A key that is not set shows what it defaults to (``runner_tag``: the tag of
    this CLI's version), with the source ``default``.
    """
    JSON_MODE["on"] = json_out
    settings = resolve()
    values = settings.public(effective=True)
    if json_out:
        print_json(
            {
                "home": str(settings.home),
                "config_file": str(settings.paths.config),
                "settings": [
                    {
                        "key": k.name,
                        "value": values[k.name],
                        "source": settings.sources[k.name],
                        "env": k.env,
                        "envs": list(k.envs),
                        "default": k.default,
                        "help": k.help,
                    }
                    for k in KEYS
                ],
            }
        )
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    piped = not sys.stdout.isatty()
    if piped:  # plain columns, as the other listings (box lines get in the way of grep and cut)
        print(f"stigmer settings ({settings.paths.config})")
    table = Table(
        title=None if piped else f"stigmer settings ({settings.paths.config})",
        title_justify="left",
        box=None if piped else box.HEAVY_HEAD,
        pad_edge=not piped,
    )
    for col in ("KEY", "VALUE", "SOURCE", "ENV"):
        table.add_column(col, overflow="fold")  # whole values, wrapped: never cut with "…"
    for k in KEYS:
        v = values[k.name]
        table.add_row(
            k.name, "" if v is None else str(v), settings.sources[k.name], ", ".join(k.envs)
        )
    # piped (not a terminal): as wide as print_listing, not Rich's 80 columns
    Console(width=160 if piped else None).print(table)


@app.command("rotate-key")
def rotate_key_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Add a new key to seal Temporal payloads with; payloads sealed before stay readable.

    The stack's keys are in credentials/stack-key.json (mode 0600; setting
    stack_key_path). The new key seals from the next `stigmer server start` (or
    `restart`); the older keys stay in the file to open what they sealed. With no
    file yet, this makes the first key. On several hosts, copy the file to each
    of them before restarting any.
    """
    from stigmer.credentials import rotate_stack_key

    JSON_MODE["on"] = json_out
    settings = resolve()
    settings.paths.ensure()
    key_file = settings.stack_key_file  # stack_key_path, default credentials/stack-key.json
    new = rotate_stack_key(key_file)
    if json_out:
        print_json({"active": new, "file": str(key_file)})
        return
    print(f"key {new} added to {key_file}; it seals from the next start.")
    print("Apply it: stigmer server restart (payloads sealed with older keys stay readable)")
