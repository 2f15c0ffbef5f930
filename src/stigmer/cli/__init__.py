"""The ``stigmer`` command line (entry point :func:`main`).

The Typer app is in :mod:`stigmer.cli.app`, one module per command group.
This module stays light so ``stigmer --version`` answers without loading the
CLI framework. Errors are printed in one place, :func:`main`.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point: run the app, turn errors into output and an exit code.

    Exit codes: 0 success; a StigmerError's own code (1-11, see stigmer.errors);
    2 a usage error; 130 interrupted (Ctrl-C, SIGTERM, SIGHUP).
    """
    if sys.argv[1:] in (["--version"], ["-V"]):  # fast path: no CLI framework needed
        from stigmer import __version__

        print(__version__)
        return
    import signal

    import typer

    from stigmer.cli._output import print_error
    from stigmer.cli.app import app
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
