"""Output helpers shared by the commands: errors, JSON, durations."""

from __future__ import annotations

import json
import sys
from typing import Any

#: set by commands run with --json / --output json, so errors come out as JSON too
JSON_MODE = {"on": False}


def output_json(output: str) -> bool:
    """Whether ``--output`` asks for JSON; also switches errors to JSON. Raises ConfigError."""
    if output not in ("text", "json"):
        from stigmer.errors import ConfigError

        raise ConfigError(
            f"Unknown output format {output!r}.", "Use --output text or --output json."
        )
    JSON_MODE["on"] = output == "json"
    return output == "json"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_error(exc: Any) -> None:
    """Print a StigmerError: message, fix and details to stderr (JSON on stdout in JSON mode)."""
    if JSON_MODE["on"]:
        print_json(exc.to_dict())
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    # the texts are plain: a pattern such as [0-9]+[bkmgBKMG]? must not be read as markup
    console.print(f"[bold red]Error:[/] {_escape(exc.message)}", markup=True, soft_wrap=True)
    if exc.fix:
        console.print(f"[bold]Fix:[/] {_escape(exc.fix)}", soft_wrap=True)
    if exc.details:
        console.print("[dim]" + _escape(exc.details) + "[/]", soft_wrap=True)


def _escape(text: str) -> str:
    """Plain text for Rich: no markup, and no terminal control characters (a file
    name, another process's command line or a server's answer may hold them)."""
    from rich.markup import escape

    return escape(terminal_safe(text))


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def human_size(size: float) -> str:
    """Bytes as the docker CLI shows them: ``248MB``, ``1.2GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f}{unit}" if size >= 100 or unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{size:.1f}TB"


def print_listing(
    key: str,
    items: list[dict[str, Any]],
    as_json: bool,
    empty: str,
    columns: tuple[str, ...],
    row: Any,
) -> None:
    """``{key: items}`` as JSON, or a table with one ``row(item)`` per item, or ``empty``."""
    if as_json:
        print_json({key: items})
        return
    if not items:
        print(empty)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in columns:
        table.add_column(col)
    for item in items:
        table.add_row(*row(item))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def exit_141_on_broken_pipe() -> None:
    """Make every Rich console end with 141 when its reader goes away (``| head``).

    Rich's default exits 1, which ``stigmer run`` uses for a FAILED execution,
    and Typer's help is printed by Rich too.
    """
    from rich.console import Console

    if getattr(Console.on_broken_pipe, "stigmer", False):
        return
    original = Console.on_broken_pipe

    def on_broken_pipe(self: Console) -> None:
        try:
            original(self)
        except SystemExit:
            raise SystemExit(141) from None

    on_broken_pipe.stigmer = True  # type: ignore[attr-defined]
    Console.on_broken_pipe = on_broken_pipe  # type: ignore[method-assign]


def interactive() -> bool:
    """Whether a question can be asked: stdin and stderr are a terminal."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str, *, yes: bool, what: str, listing: str, dry_run_flag: bool) -> bool:
    """Whether a command that deletes things goes ahead.

    ``--yes`` goes ahead; on a terminal the user is asked (``question``, default
    no); without one it is refused, naming ``what`` it would do and the flag to
    add, with ``listing`` as the details.

    Raises:
        ConfirmationNeededError: no ``--yes`` and no terminal; nothing was changed.
    """
    if yes:
        return True
    if not interactive():
        from stigmer.errors import ConfirmationNeededError

        raise ConfirmationNeededError(
            f"{what}; without a terminal to ask on, it needs --yes. Nothing was changed.",
            "Add --yes to go ahead"
            + (" (or --dry-run to only list what it would remove)." if dry_run_flag else "."),
            details=listing,
        )
    import typer

    print(listing, file=sys.stderr)
    return bool(typer.confirm(question, default=False, err=True))


#: Characters that move the cursor, rewrite lines or reorder text on a terminal,
#: other than newline and tab: C0 controls, DEL, C1 controls, bidi and
#: zero-width format characters. Shown as visible symbols instead.
_CONTROL = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A)}
_CONTROL[0x7F] = "\u2421"
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
_CONTROL.update(
    {
        c: f"\\u{c:04x}"
        for c in (
            0x061C,
            0x200B,
            0x200C,
            0x200D,
            0x200E,
            0x200F,
            0xFEFF,
            *range(0x202A, 0x202F),
            *range(0x2066, 0x206A),
        )
    }
)


def terminal_safe(text: str) -> str:
    """``text`` with terminal control characters shown as symbols (ESC as ␛, U+202E as \\u202e).

    What a tool printed, a model wrote or a call id holds must not move the
    cursor or rewrite the lines around it (a fake "approved" line).
    """
    return text.translate(_CONTROL)
