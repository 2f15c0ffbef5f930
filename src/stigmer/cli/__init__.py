"""The ``stigmer`` command line.

Each command group has its own module (``server``, ``config``); heavy libraries
(docker, temporalio, fastapi, sqlalchemy) are imported only inside the commands
that need them. Errors are printed in one place, :func:`main`.
"""

from __future__ import annotations

import os
import sys

import typer

from stigmer import __version__
from stigmer.cli import agents as agents_cmd
from stigmer.cli import config as config_cmd
from stigmer.cli import image as image_cmd
from stigmer.cli import server as server_cmd
from stigmer.cli._output import print_error

app = typer.Typer(
    name="stigmer",
    help="Run AI agents durably, on your laptop or a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("apply")(agents_cmd.apply)
app.command("run")(agents_cmd.run)
app.add_typer(agents_cmd.agent_app, name="agent")
app.add_typer(agents_cmd.execution_app, name="execution")
app.add_typer(server_cmd.app, name="server")
app.add_typer(config_cmd.app, name="config")
app.add_typer(image_cmd.app, name="image")


def _version(value: bool) -> None:
    if value:
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


def main() -> None:
    """Console-script entry point: run the app, turn errors into output and an exit code.

    Exit codes: 0 success; a StigmerError's own code (1-11, see stigmer.errors);
    2 a usage error; 130 interrupted (Ctrl-C, SIGTERM, SIGHUP).
    """
    if sys.argv[1:] in (["--version"], ["-V"]):  # fast path: no CLI framework needed
        print(__version__)
        return
    import signal

    from stigmer.errors import StigmerError

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM and SIGHUP take the same road as Ctrl-C, so a start that is
    # interrupted tears down what it began
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        rc = app(standalone_mode=False)
    except StigmerError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as exc:  # a home that is a file, a read-only disk, ...
        where = f" {exc.filename}" if exc.filename else ""
        print(f"Error:{where}: {exc.strerror or exc}", file=sys.stderr)
        print(
            "Fix: check that STIGMER_HOME (or --home) is a folder you can write to, "
            "and that the disk has space.",
            file=sys.stderr,
        )
        sys.exit(1)
    except Exception as exc:
        # usage errors: typer raises its bundled click's classes, so match by shape
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise
    if isinstance(rc, int) and rc:
        if rc == 130:
            print("Interrupted.", file=sys.stderr)
        sys.exit(rc)
