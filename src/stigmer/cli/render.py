"""Live rendering of execution events with Rich."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape as _markup_escape

from stigmer.cli._output import exit_141_on_broken_pipe, terminal_safe

PHASE_STYLE = {
    "PENDING": "dim",
    "RUNNING": "cyan",
    "AWAITING_APPROVAL": "bold magenta",
    "COMPLETED": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "bold yellow",
}


def escape(text: str) -> str:
    """``text`` safe to print: no Rich markup, and no terminal control (escapes, bidi)."""
    return _markup_escape(terminal_safe(text))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


exit_141_on_broken_pipe()


class Renderer:
    def __init__(self) -> None:
        self.console = Console(
            highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120
        )
        #: the message of the last error event: a FAILED phase with the same one does not repeat it
        self._error: str | None = None
        #: tool call id -> its last attempt, from retry events: a call's duration spans them
        self._attempts: dict[str, int] = {}

    def header(self, text: str) -> None:
        self.console.print(f"[dim]{escape(text)}[/]")

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]{escape(text)}[/]")

    def event(self, e: dict[str, Any]) -> None:
        p = e["payload"]
        seq = f"[dim]{e['seq']:>3}[/] "
        t = e["type"]
        if t == "phase":
            style = PHASE_STYLE.get(p["phase"], "default")
            error = p.get("error")
            extra = f"  {escape(_short(error, 300))}" if error and error != self._error else ""
            self.console.print(f"{seq}[{style}]● {p['phase']}[/]{extra}")
        elif t == "message":
            role = p.get("role")
            if role == "human":
                self.console.print(f"{seq}[bold]you[/]   {escape(p['content'])}")
            elif role == "ai":
                self.console.print(f"{seq}[bold magenta]agent[/] {escape(p['content'])}")
            # tool messages are shown with their tool_call result
        elif t == "tool_call":
            name = p.get("name")
            if p.get("status") == "started":
                self.console.print(
                    f"{seq}[blue]→ {escape(name)}[/]({escape(_short(p.get('args', {})))})"
                )
            else:
                ok = p.get("status") == "completed"
                mark = "[green]✓[/]" if ok else "[red]✗[/]"
                took = f" {p['duration_ms']} ms" if p.get("duration_ms") is not None else ""
                attempts = self._attempts.get(p.get("tool_call_id") or "")
                if took and attempts:
                    took += f" over {attempts} attempts"
                call = f" [dim]({escape(p['tool_call_id'])})[/]" if p.get("tool_call_id") else ""
                self.console.print(
                    f"{seq}{mark} {escape(name)}{call}{took}: "
                    f"[dim]{escape(_short(p.get('result', ''), 200))}[/]"
                )
        elif t == "usage":
            self.console.print(
                f"{seq}[dim]usage: {p.get('input_tokens', 0)} in / {p.get('output_tokens', 0)} out tokens, "
                f"{_n(p.get('requests', 0), 'model request')}, {_n(p.get('tool_calls', 0), 'tool call')}[/]"
            )
        elif t == "approval_requested":
            # the whole of what would run, never cut: a person decides on it
            args = json.dumps(p.get("args", {}), ensure_ascii=False, indent=2)
            self.console.print(
                f"{seq}[bold magenta]? approval[/] {escape(p.get('name', ''))} "
                f"[dim]call {escape(p.get('call_id', ''))}, until "
                f"{escape(p.get('deadline', '')[:19])}Z, then {escape(p.get('on_timeout', ''))}[/]"
            )
            self.console.print(escape(args))
        elif t == "approval_decided":
            ok = p.get("decision") == "approved"
            mark = "[green]approved[/]" if ok else "[red]denied[/]"
            why = f": {escape(_short(p['reason'], 200))}" if p.get("reason") else ""
            self.console.print(
                f"{seq}{mark} {escape(p.get('name', ''))} [dim]call {escape(p.get('call_id', ''))} "
                f"by {escape(p.get('by', ''))}[/]{why}"
            )
        elif t == "retry":
            if p.get("tool_call_id") and isinstance(p.get("attempt"), int):
                self._attempts[p["tool_call_id"]] = p["attempt"]
            call = f" call {p['tool_call_id']}" if p.get("tool_call_id") else ""
            self.console.print(
                f"{seq}[yellow]↻ {escape(p.get('name', ''))}{escape(call)} attempt {p.get('attempt')}[/]"
                f" [dim]{escape(_short(p.get('reason', ''), 300))}[/]"
            )
        elif t == "error":
            self._error = p.get("message")
            self.console.print(
                f"{seq}[red]error ({escape(p.get('kind', ''))}): {escape(p.get('message', ''))}[/]"
            )

    def done(self, ex: dict[str, Any]) -> None:
        phase = ex["phase"]
        style = PHASE_STYLE.get(phase, "default")
        if phase == "COMPLETED" and ex.get("output"):
            self.console.rule("output", style="dim")
            self.console.print(escape(ex["output"]))
            self.console.rule(style="dim")
        self.console.print(f"[{style}]{phase}[/] [dim]{ex['id']}[/]")
