"""``stigmer server reset``: stop a home's stack and delete its data; keep its configuration and keys.

Deleted: the SQLite store (agents, executions, events, the tokens made with
``stigmer token create``) with its backups, the managed Temporal's state,
every other file of ``data/``, the logs and the run state (pid files, the
recorded settings). Kept, as ``docker compose down -v`` keeps the compose file
and ``supabase db reset`` the project's config and keys:

* ``config.yaml``;
* ``credentials/``: the admin and runner token files (the next start registers
  them again, so scripts and runner hosts that hold them keep working) and the
  stack's key;
* the workspace, unless ``--workspace``: then it goes too, if it lies inside
  the home (a folder of the user's elsewhere is never deleted);
* a PostgreSQL store and an external Temporal: they are not this home's files
  (and may be shared by other hosts); drop them with their own tools.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stigmer.errors import ConfigError, SupervisorError
from stigmer.settings import Settings

#: Files beside a SQLite store that belong to it.
STORE_SIBLINGS = ("-wal", "-shm", "-journal")


@dataclass
class Reset:
    """What a reset deletes (path, what it is) and keeps (descriptions)."""

    home: Path
    delete: list[tuple[Path, str]] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)

    def listing(self) -> str:
        lines = [f"Reset stops the stack of {self.home} and deletes:"]
        lines += [f"  {p}  ({what})" for p, what in self.delete] or ["  (nothing: no data yet)"]
        lines.append("Kept:")
        lines += [f"  {k}" for k in self.keep]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "home": str(self.home),
            "deleted": [{"path": str(p), "what": what} for p, what in self.delete],
            "kept": self.keep,
        }


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _what(name: str) -> str:
    if name.startswith("stigmer.db"):
        return "the store: agents, executions, tokens made with `token create`"
    if name.startswith("temporal.db"):
        return "the managed Temporal's state: workflow histories"
    if name == "backups":
        return "the store's backups"
    return "data"


def _children(folder: Path, keep: Path | None) -> list[Path]:
    """The entries of ``folder`` but ``keep``; a folder that holds ``keep`` is entered."""
    out: list[Path] = []
    if not folder.is_dir():
        return out
    for entry in sorted(folder.iterdir()):
        if entry == keep:
            continue
        if keep is not None and keep.is_relative_to(entry) and entry.is_dir():
            out += _children(entry, keep)
        else:
            out.append(entry)
    return out


def plan(settings: Settings, workspace: bool) -> Reset:
    """What a reset of this home would delete and keep; touches nothing.

    Raises:
        ConfigError: the home does not look like a stigmer home (no config.yaml,
            no credentials/), or ``--workspace`` names a workspace outside the home.
    """
    paths = settings.paths
    home = paths.home
    if home.exists() and not (paths.config.exists() or paths.credentials.is_dir()):
        raise ConfigError(
            f"{home} is not a stigmer home: it has no config.yaml and no credentials/. "
            "Nothing was changed.",
            "Point STIGMER_HOME (or --home) at the home to reset.",
        )
    ws = settings.workspace_dir
    if workspace and not _inside(ws, home):
        raise ConfigError(
            f"--workspace: the workspace {ws} is outside the home {home}; reset deletes only "
            "what is inside the home. Nothing was changed.",
            "Delete that folder yourself if you mean to, or reset without --workspace.",
        )
    out = Reset(home)
    store = settings.sqlite_store
    for entry in _children(paths.data, None if workspace else ws):
        if entry == ws:
            what = "the workspace"
        elif _inside(ws, entry):
            what = "data, with the workspace"
        else:
            what = _what(entry.name)
        out.delete.append((entry, what))
    if store is not None and not _inside(store, paths.data):
        from stigmer.server.backup import list_backups

        names = [store.name + s for s in STORE_SIBLINGS]
        for p in [store, *(store.parent / n for n in names)]:
            if p.exists():
                out.delete.append((p, _what("stigmer.db")))
        for p in sorted(store.parent.glob(f"{store.name}.replaced-*")):
            out.delete.append((p, "a store set aside by `server restore`"))
        for b in list_backups(store):
            out.delete.append((b.path, "a backup of the store"))
    if paths.logs.exists():
        out.delete.append((paths.logs, "the logs"))
    for entry in _children(paths.run, paths.start_lock):
        out.delete.append((entry, "run state"))
    if paths.config.exists():
        out.keep.append(f"{paths.config} (the settings)")
    if paths.credentials.is_dir():
        out.keep.append(f"{paths.credentials} (the admin and runner tokens, the stack's key)")
    if not workspace:
        out.keep.append(f"{ws} (the workspace; --workspace deletes it)")
    if store is None:
        out.keep.append("the PostgreSQL store (database_url): drop its tables with its own tools")
    if not settings.temporal_managed:
        out.keep.append(f"the external Temporal at {settings.temporal_address}: not this home's")
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def reset(
    settings: Settings, workspace: bool, on_wait_lock: Callable[[], None] | None = None
) -> tuple[list[str], Reset]:
    """Stop the stack, then delete what :func:`plan` lists, under the stack lock.

    The plan is made again once the stack is stopped, so that what it wrote
    meanwhile goes too. Returns what was stopped, and what was deleted and kept.

    Raises:
        SupervisorError: the supervisor could not be stopped; nothing was deleted.
    """
    from stigmer.stack import control

    done = Reset(settings.home)

    def delete() -> None:
        nonlocal done
        if control.supervisor_holds_lock(settings.paths):
            raise SupervisorError(
                f"The stigmer supervisor of {settings.home} did not stop; nothing was deleted.",
                "Stop it (`stigmer server stop`), then reset again.",
            )
        done = plan(settings, workspace)
        for path, _what in done.delete:
            _remove(path)

    stopped = control.stop(settings, on_wait_lock, then=delete)
    return stopped, done
