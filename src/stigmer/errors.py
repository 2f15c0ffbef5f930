"""Every error a user can meet.

Each class carries a message that names the problem, a ``fix`` that says what to
do about it, and the process exit code. The CLI turns them into output in one
place (:func:`stigmer.cli.main`); nothing else prints errors.
"""

from __future__ import annotations


class StigmerError(Exception):
    """Base of every user-facing error.

    Attributes:
        message: one line naming the problem.
        fix: what the user can do about it (may span lines), or ``None``.
        details: extra context printed after the fix (log lines, for example).
        exit_code: the CLI's exit status for this error (never 0).
    """

    exit_code: int = 1

    def __init__(
        self,
        message: str,
        fix: str | None = None,
        *,
        details: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.details = details
        if exit_code is not None:
            self.exit_code = exit_code

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "fix": self.fix,
            "details": self.details,
            "exit_code": self.exit_code,
        }


class ConfigError(StigmerError):
    """A configuration value, flag or env var is invalid."""

    exit_code = 2


class PortInUseError(StigmerError):
    """A port the stack needs is already taken by another process."""

    exit_code = 3


class StackStartError(StigmerError):
    """The stack did not become ready; nothing was left running."""

    exit_code = 4


class StackNotRunningError(StigmerError):
    """A command needs the running stack, and it is not running."""

    exit_code = 5


class StackBusyError(StigmerError):
    """Another ``stigmer server`` command holds the stack lock."""

    exit_code = 6


class SupervisorError(StigmerError):
    """The supervisor did not answer or misbehaved."""

    exit_code = 7
