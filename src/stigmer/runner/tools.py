"""The built-in workspace tools: list, read, write and edit files, and run a shell command.

Every path is relative to the workspace (the runner's configured workspace:
``/workspace`` in the container, ``$STIGMER_HOME/data/workspace`` for a local
runner); a path
that resolves outside it, through ``..`` or a symlink, is refused. Errors the
model can act on are raised as ``ModelRetry``, so the model sees them and the
tool call is recorded as failed.

The shell tool runs ``bash -c`` in the workspace with a timeout and an output
cap, in an environment built from scratch: a few harmless variables of the
runner (PATH, LANG, ...) plus the agent's own ``spec.env``. Nothing else of the
runner's environment (API keys, the stigmer token) is visible to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_ai import ModelRetry, RunContext
from pydantic_ai.exceptions import ToolFailed

from stigmer.contract.registry import TOOL_NAMES
from stigmer.runner import memory, runtime

MAX_READ = 64 * 1024
MAX_OUTPUT = 16 * 1024
MAX_LIST = 500
SAFE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
DEFAULT_SHELL_TIMEOUT = 60.0
MAX_SHELL_TIMEOUT = 900.0


@dataclass
class RunDeps:
    """Everything a run needs, from the spec snapshot in the workflow input.

    Serialized into every activity (keep it small): no secret values, only the
    names of the env vars that hold them (``secret_env``: tool env name -> runner env name).
    """

    execution_id: str
    agent_name: str
    instructions: str
    tools: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    test_script: list[dict] | None = None  # type: ignore[type-arg]
    base_url: str | None = None
    api_key_env: str | None = None
    #: the agent accepts that `shell` runs as the user when the runner is a host process
    local_shell: bool = False
    #: tools whose calls wait for a person's decision (``spec.approval.tools``)
    approval_tools: list[str] = field(default_factory=list)


#: Bytes read past a cap, so that a secret across the cut is masked whole.
MASK_MARGIN = 4096


def _masked(ctx: RunContext[RunDeps], text: str) -> str:
    """``text`` with the run's secrets masked (the tool activity masks again, whole)."""
    out: str = runtime.current().mask(text, ctx.deps.secret_env.values())
    return out


def workspace_root() -> Path:
    return runtime.current().workspace


def resolve_path(path: str) -> Path:
    """``path`` inside the workspace, or ``ModelRetry`` if it escapes it."""
    if "\x00" in path:
        raise ModelRetry(f"path {path!r} contains a NUL character; no file can have that name")
    root = workspace_root()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ModelRetry(f"path {path!r} is outside the workspace; use a path relative to it")
    return target


def _rel(p: Path) -> str:
    return str(p.relative_to(workspace_root())) or "."


async def list_files(ctx: RunContext[RunDeps], path: str = ".", recursive: bool = True) -> str:
    """List the files under ``path`` (relative to the workspace), one per line; folders end with '/'."""
    base = resolve_path(path)
    if not base.exists():
        raise ModelRetry(f"{path!r} does not exist")
    if base.is_file():
        return _rel(base)
    entries = sorted(base.rglob("*") if recursive else base.iterdir())
    lines = []
    for p in entries:
        if any(part.startswith(".") for part in p.relative_to(base).parts):
            continue
        lines.append(_rel(p) + ("/" if p.is_dir() else ""))
        if len(lines) >= MAX_LIST:
            lines.append(f"... (more than {MAX_LIST} entries, listing stopped)")
            break
    return "\n".join(lines) if lines else "(empty)"


async def read_file(ctx: RunContext[RunDeps], path: str) -> str:
    """Read a text file of the workspace (the first 64 KiB)."""
    p = resolve_path(path)
    if not p.is_file():
        raise ModelRetry(f"{path!r} is not a file")
    size = p.stat().st_size
    with p.open("rb") as fh:  # a little more than is shown: a secret across the cut is masked whole
        head = fh.read(MAX_READ + MASK_MARGIN)
    text = _masked(ctx, head.decode("utf-8", errors="replace"))[:MAX_READ]
    if size > MAX_READ:
        text += f"\n... [file is {size} bytes; only the first {MAX_READ} are shown]"
    return text


async def write_file(ctx: RunContext[RunDeps], path: str, content: str) -> str:
    """Create or overwrite a file of the workspace with ``content`` (folders are created)."""
    p = resolve_path(path)
    if p.is_dir():
        raise ModelRetry(f"{path!r} is a folder")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(content)
    return f"wrote {len(content.encode())} bytes to {_rel(p)}"


async def edit_file(ctx: RunContext[RunDeps], path: str, old: str, new: str) -> str:
    """Replace the exact text ``old`` with ``new`` in a workspace file (``old`` must occur once)."""
    p = resolve_path(path)
    if not p.is_file():
        raise ModelRetry(f"{path!r} is not a file")
    text = p.read_text()
    count = text.count(old)
    if count != 1:
        raise ModelRetry(
            f"the text to replace occurs {count} times in {path!r}; it must occur once"
        )
    p.write_text(text.replace(old, new, 1))
    return f"edited {_rel(p)}"


def tool_environment(deps: RunDeps) -> dict[str, str]:
    """The shell tool's environment: safe runner variables plus the agent's ``spec.env``.

    Secret references (``{secret: NAME}``) resolve to the secrets the runner was
    configured with; nothing else of the runner's environment is passed on.
    """
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["HOME"] = str(workspace_root())
    env["PWD"] = str(workspace_root())
    env.update(deps.env)
    secrets = runtime.current().secrets
    for name, ref in deps.secret_env.items():
        if ref in secrets:
            env[name] = secrets[ref]
    return env


async def shell(
    ctx: RunContext[RunDeps], command: str, timeout: float = DEFAULT_SHELL_TIMEOUT
) -> str:
    """Run ``command`` with bash in the workspace; returns the exit code and combined output.

    ``timeout`` is in seconds (at most 900); output beyond 16 KiB is cut.
    """
    if runtime.current().mode == "local" and not ctx.deps.local_shell:
        raise ToolFailed(
            "shell is off: this runner is a host process (local mode), so a command would run "
            "as the user who started the stack, with all of their access. The agent's owner can "
            "allow it with `local_shell: true` in the agent spec, or run the stack with "
            "`--runner docker`."
        )
    if "\x00" in command:
        raise ModelRetry("the command contains a NUL character, which bash cannot take")
    known = runtime.current().secrets
    missing = sorted(
        f"{ref} (for {name})" for name, ref in ctx.deps.secret_env.items() if ref not in known
    )
    if missing:
        raise ToolFailed(
            f"the secret(s) {', '.join(missing)} that spec.env references are not set where "
            "the stack was started: set them in that environment, then `stigmer server restart`"
        )
    timeout = max(1.0, min(float(timeout), MAX_SHELL_TIMEOUT))
    in_container = runtime.current().mode == "docker"
    ooms = memory.oom_kills() if in_container else None
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        cwd=str(workspace_root()),
        env=tool_environment(ctx.deps),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise ModelRetry(f"command timed out after {timeout:.0f}s") from None
    text = _masked(ctx, out.decode("utf-8", errors="replace"))  # before the cut, not after
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + f"\n... [{len(text) - MAX_OUTPUT} more characters cut]"
    note = memory.killed_note(ooms) if in_container else None
    return f"exit code {proc.returncode}\n{text}" + (f"\n{note}" if note else "")


#: The implementations of the built-in tools, by name (the names are the registry's).
ALL_TOOLS: dict[str, Any] = {name: globals()[name] for name in TOOL_NAMES}
