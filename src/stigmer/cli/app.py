"""The ``stigmer`` Typer app: the root options and the command groups.

Each command group has its own module (``server``, ``config``, ...); heavy
libraries (docker, temporalio, fastapi, sqlalchemy) are imported only inside
the commands that need them.
"""

from __future__ import annotations

import os
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup

from stigmer.cli import agents as agents_cmd
from stigmer.cli import config as config_cmd
from stigmer.cli import image as image_cmd
from stigmer.cli import init as init_cmd
from stigmer.cli import server as server_cmd
from stigmer.cli import token as token_cmd
from stigmer.cli import ui as ui_cmd
from stigmer.cli._output import exit_141_on_broken_pipe

exit_141_on_broken_pipe()  # help and tables are printed by Rich


def _argument_metavar(self: TyperArgument, ctx: Any, *, usage: bool = False) -> str:
    """``AGENT`` and ``[OPTIONAL]`` in usage lines, as the docs write them (Typer: ``{agent}``)."""
    var = self.metavar or (self.name or "").upper()
    if self.nargs != 1:
        var += "..."
    return f"[{var}]" if usage and not self.required else var


TyperArgument.make_metavar = _argument_metavar  # type: ignore[method-assign]


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM, SIGHUP) in a command: main() says "Interrupted." and exits 130.

    Typer would turn the KeyboardInterrupt into a silent exit status 130.
    """


class _Root(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted() from exc


app = typer.Typer(
    name="stigmer",
    cls=_Root,
    help="Run AI agents durably, on your laptop or a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("init")(init_cmd.init)
app.command("apply")(agents_cmd.apply)
app.command("run")(agents_cmd.run)
app.add_typer(agents_cmd.agent_app, name="agent")
app.add_typer(agents_cmd.execution_app, name="execution")
app.add_typer(server_cmd.app, name="server")
app.add_typer(config_cmd.app, name="config")
app.add_typer(image_cmd.app, name="image")
app.add_typer(token_cmd.app, name="token")
app.command("ui")(ui_cmd.ui)


def _version(value: bool) -> None:
    if value:
        from stigmer import __version__

        print(__version__)
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        help="Print the version and exit.",
        callback=_version,
        is_eager=True,
    ),
    home: str | None = typer.Option(
        None,
        "--home",
        help="Stack home (config, data, logs). Default: $STIGMER_HOME or ~/.stigmer.",
        show_default=False,
    ),
) -> None:
    if home:
        os.environ["STIGMER_HOME"] = os.path.abspath(os.path.expanduser(home))
