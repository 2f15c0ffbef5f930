"""The ``stigmer`` command line (entry point :func:`main`).

The Typer app is in :mod:`stigmer.cli.app`, one module per command group.
This module stays light so ``stigmer --version`` answers without loading the
CLI framework. Errors are printed in one place, :func:`main`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stigmer.cli.running import RunArgs


def main() -> None:
    """Console-script entry point: run the app, turn errors into output and an exit code.

    Exit codes: the table in :data:`stigmer.errors.EXIT_CODES` (and the README):
    a StigmerError's own code, 2 for a usage error, 70 for a bug, 130 when
    interrupted (Ctrl-C, SIGTERM, SIGHUP), 141 when the output pipe closed.
    """
    argv = sys.argv[1:]
    if argv in (["--version"], ["-V"]):  # fast path: no CLI framework needed
        from stigmer import __version__

        print(__version__)
        return
    import signal

    from stigmer.errors import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, StigmerError

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM and SIGHUP take the same road as Ctrl-C, so a start that is
    # interrupted tears down what it began
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        plain_run = plain_run_args(argv)
        if plain_run is not None:
            from stigmer.cli.running import run_agent

            rc: object = run_agent(**plain_run)
        else:
            rc = _run_app()
    except StigmerError as exc:
        from stigmer.cli._output import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(EXIT_BROKEN_PIPE)
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
            _home_after_the_command(argv)
            sys.exit(code)
        import traceback

        traceback.print_exc()
        print("This is a bug in stigmer; please report it with the lines above.", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    if isinstance(rc, int) and rc:
        # a command that returns 130 (run detached on Ctrl-C) has said so itself
        sys.exit(rc)


def _home_after_the_command(argv: list[str]) -> None:
    """A usage error with ``--home DIR`` after the command: say where it goes."""
    import shlex

    at = next((i for i, a in enumerate(argv) if a == "--home" or a.startswith("--home=")), None)
    if not at:  # none, or first (then it is not what went wrong)
        return
    width = 1 if "=" in argv[at] else 2
    if at + width > len(argv):
        return  # no value to move
    moved = [*argv[at : at + width], *argv[:at], *argv[at + width :]]
    print(
        f"Fix: --home goes before the command: stigmer {shlex.join(moved)}",
        file=sys.stderr,
    )


def _run_app() -> object:
    """The Typer app (every command); returns its exit status."""
    import typer

    from stigmer.cli.app import Interrupted, app

    try:
        return app(standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except Interrupted:
        raise KeyboardInterrupt from None
    except typer.Abort:
        raise KeyboardInterrupt from None


def plain_run_args(argv: list[str]) -> RunArgs | None:
    """``stigmer run``'s arguments when ``argv`` is a plain run, else None.

    Plain: ``run AGENT MESSAGE`` with at most ``-o/--output text|json`` and
    ``-d/--detach``, in any order. Such a run is started without loading Typer
    (about 50 ms of the command's start-up; docs/performance.md); anything else
    (other options, ``--help``, a message that starts with ``-``, stdin) goes
    through the Typer app, which parses the same command the same way
    (tests/unit/test_cli_fast_path.py checks that).
    """
    if not argv or argv[0] != "run":
        return None
    positional: list[str] = []
    output, detach = "text", False
    rest = argv[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("-o", "--output") and i + 1 < len(rest):
            output, i = rest[i + 1], i + 2
        elif arg.startswith("--output="):
            output, i = arg.partition("=")[2], i + 1
        elif arg in ("-d", "--detach"):
            detach, i = True, i + 1
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
            i += 1
    if len(positional) != 2 or output not in ("text", "json"):
        return None
    return {
        "agent": positional[0],
        "message": positional[1],
        "env": [],
        "model": None,
        "detach": detach,
        "on_interrupt": "ask",
        "output": output,
    }
