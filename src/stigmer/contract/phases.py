"""Execution phases (standard library only: the CLI imports this on its hot path)."""

from __future__ import annotations

PHASES = ("PENDING", "RUNNING", "AWAITING_APPROVAL", "COMPLETED", "FAILED", "CANCELLED")
#: Phases after which an execution's event log is complete.
TERMINAL_PHASES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
