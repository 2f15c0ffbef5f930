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
    from rich.markup import escape

    return escape(text)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


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
