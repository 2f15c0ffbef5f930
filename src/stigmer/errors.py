"""Every error a user can meet, and every exit code of the ``stigmer`` command.

Each class carries a message that names the problem, a ``fix`` that says what
to do about it, and the process exit code. The CLI turns them into output in
one place (:func:`stigmer.cli.main`); nothing else prints errors.

:data:`EXIT_CODES` is the one table of exit codes: each code has one meaning,
and the README's table is checked against it (``tests/unit/test_errors.py``).
A class that shares its parent's code means the same thing, more precisely.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_NOT_READY = 12
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: Every exit code of ``stigmer``, with its one meaning.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success; `run` and `execution logs -f`: the execution COMPLETED; "
    "`server status`: every component is ready",
    EXIT_FAILED: "`run` and `execution logs -f`: the execution FAILED",
    2: "invalid input: a flag, a setting, the config file or an agent file (the message says "
    "which, and where)",
    EXIT_CANCELLED: "`run` and `execution logs -f`: the execution was CANCELLED",
    4: "not found: no such agent, execution or backup",
    5: "the stack is not running (`server status`: stopped)",
    6: "another stigmer command is starting or stopping the stack",
    7: "the stigmer supervisor does not answer",
    8: "a port the stack needs, or its runner's container name, is taken; nothing was started",
    9: "the stack did not become ready; nothing was left running",
    10: "no Docker engine answers, or its socket refuses this user (not in the `docker` group)",
    11: "the runner image is not available",
    EXIT_NOT_READY: "`server status`: the stack runs, but a component is not ready",
    13: "the API refused the request",
    14: "the API refused the token, or there is none",
    15: "Temporal cannot be reached: its address, TLS or authentication",
    16: "`server start`: the stack already runs with other settings (the message names them; "
    "`server restart` applies them)",
    17: "the store cannot be read (damaged or truncated); `stigmer server restore` brings back a "
    "backup",
    18: "the stack is running, and the command needs it stopped (`stigmer server stop`)",
    EXIT_INTERNAL: "internal error: a bug in stigmer (a traceback is printed; please report it)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM or SIGHUP)",
    EXIT_BROKEN_PIPE: "the output pipe was closed (for example by `| head`)",
}


class StigmerError(Exception):
    """Base of every user-facing error.

    Attributes:
        message: one line naming the problem.
        fix: what the user can do about it (may span lines), or ``None``.
        details: extra context printed after the fix (log lines, for example).
        exit_code: the CLI's exit status for this error (a key of :data:`EXIT_CODES`).
    """

    exit_code: ClassVar[int] = EXIT_FAILED

    def __init_subclass__(cls, code: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.exit_code = code

    def __init__(self, message: str, fix: str | None = None, *, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "fix": self.fix,
            "details": self.details,
            "exit_code": self.exit_code,
        }


class ConfigError(StigmerError, code=2):
    """A configuration value, flag, env var or the config file is invalid."""


class SpecError(ConfigError):
    """An agent file is not valid; nothing was stored."""


class ConfirmationNeededError(ConfigError):
    """A command that deletes things needs ``--yes``: there is no terminal to ask on.

    Nothing was changed; the message says what would go, the fix names the flag.
    """


class NotFoundError(StigmerError, code=4):
    """No agent or execution has that name or id."""


class StackNotRunningError(StigmerError, code=5):
    """A command needs the running stack (its API), and nothing answers."""


class StackBusyError(StigmerError, code=6):
    """Another ``stigmer server`` command holds the stack lock."""


class SupervisorError(StigmerError, code=7):
    """The supervisor did not answer or misbehaved."""


class PortInUseError(StigmerError, code=8):
    """A port the stack needs is already taken by another process."""


class NameTakenError(PortInUseError):
    """The runner's container name is taken by a running container of another stack.

    The same exit status as a taken port: something the stack needs is held by
    another, and nothing was started.
    """


class StackStartError(StigmerError, code=9):
    """The stack did not become ready; nothing was left running."""


class StackSettingsDifferError(StigmerError, code=16):
    """``server start`` on a running stack with other settings; nothing was changed."""


class DockerNotRunningError(StigmerError, code=10):
    """No Docker engine answered at the resolved endpoint, or its socket refuses this user."""

    #: what is at the address, when known ("there is no socket at ...")
    why: str | None = None


class ImageError(StigmerError, code=11):
    """The runner image could not be found, pulled or built."""


class ApiError(StigmerError, code=13):
    """The API answered with an error."""


class ConflictError(ApiError):
    """The request does not fit the resource's state (cancel an execution that ended)."""


class RequestRejectedError(ApiError):
    """The API refused what was sent as invalid (400, 422): the message says which field and why."""


class ApiUnavailableError(ApiError):
    """The API answered that it cannot serve now (502, 503, 504): its store or Temporal is away."""


class AuthError(ApiError, code=14):
    """The API refused the bearer token, or there is none to send."""


class TemporalError(StigmerError, code=15):
    """Temporal cannot be reached or refused us.

    ``kind`` is ``tls``, ``auth``, ``namespace`` or ``unreachable``; ``setting``
    names the setting to change. TLS, authentication and namespace errors do
    not go away by retrying.
    """

    def __init__(
        self,
        message: str,
        fix: str | None = None,
        *,
        kind: str = "unreachable",
        setting: str | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message, fix, details=details)
        self.kind = kind
        self.setting = setting

    @property
    def permanent(self) -> bool:
        """True when retrying cannot help: the configuration must change."""
        return self.kind in ("tls", "auth", "namespace")


class StoreDamagedError(StigmerError, code=17):
    """The SQLite store cannot be read whole: damaged, truncated, or not a database."""


class StackRunningError(StigmerError, code=18):
    """The command changes what the running stack uses (the store): stop the stack first."""


def error_classes() -> list[type[StigmerError]]:
    """Every error class (for the exit-code table's test)."""
    out: list[type[StigmerError]] = []
    todo: list[type[StigmerError]] = [StigmerError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out
