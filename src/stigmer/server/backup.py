"""Backups of a SQLite store: one at each start of the API server, the last N kept.

The supervisor calls :func:`check_and_back_up` before it launches the API
server (``ApiServer.preflight``), so the store is checked and copied while no
process writes it. A store unchanged since the newest backup (its files' inode,
size and times: :func:`fingerprint`, kept in ``backups/.state.json``) is not
copied again: N restarts do not push N older states out, and a large store
does not slow every start. Nor is it checked again within :data:`RECHECK_S` of
a check that found it whole (the CLI checks it before it spawns the
supervisor). The copy is made with SQLite's online backup API, so it is
consistent even with a write-ahead log beside the file. A damaged store is
never copied: the start fails at once, naming the file and the way back,
``stigmer server restore``, which puts a backup in its place (the damaged
file is kept beside it). PostgreSQL stores are not backed up by stigmer
(``pg_dump``).

Only the standard library: the CLI's ``server restore`` uses this module too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stigmer.errors import NotFoundError, StoreDamagedError

#: Backups of ``stigmer.db`` are ``backups/stigmer-<UTC time>.db`` beside it.
PREFIX = "stigmer-"
SUFFIX = ".db"
RESTORE_FIX = (
    "Bring back the newest backup with `stigmer server restore` (`stigmer server restore "
    "--list` shows them all; the damaged file is kept), then `stigmer server start`."
)


#: A store checked whole this recently (s), and unchanged since, is not checked again.
RECHECK_S = 60.0
#: What the last check and backup saw, beside the backups.
STATE = ".state.json"


def fingerprint(store: Path) -> str:
    """The store's files as the filesystem sees them: a write changes it.

    The main file's inode, size, modification and change times, and its
    write-ahead log's when it holds anything (an empty one comes and goes with
    each connection): a file replaced or written, however coarse the clock.
    """
    parts = []
    for suffix in ("", "-wal"):
        try:
            st = store.with_name(store.name + suffix).stat()
        except FileNotFoundError:
            continue
        if suffix and st.st_size == 0:
            continue
        parts.append(f"{suffix or 'db'}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    return ";".join(parts)


def _file_key(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _state(store: Path) -> dict[str, object]:
    try:
        data = json.loads((backups_dir(store) / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(store: Path, **values: object) -> None:
    """Merge ``values`` into the state file (written aside, then renamed; 0600)."""
    folder = backups_dir(store)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        state = _state(store) | values
        tmp = folder / f".{STATE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, folder / STATE)
    except OSError:
        pass  # only a shortcut is lost: the next start checks and copies again


@dataclass(frozen=True)
class Backup:
    name: str
    path: Path
    size: int
    created: float

    def to_dict(self) -> dict[str, object]:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return {"name": self.name, "path": str(self.path), "size": self.size, "created": when}


def backups_dir(store: Path) -> Path:
    return store.parent / "backups"


def _connect(path: Path) -> sqlite3.Connection:
    """An existing database file (never created here: ``mode=rw``)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=30)


def damage(path: Path) -> str | None:
    """Why the SQLite file at ``path`` cannot be used, or None if it reads whole."""
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        problems = [str(r[0]) for r in rows if r and r[0] != "ok"]
        return "; ".join(problems[:3]) if problems else None
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()


def check(store: Path) -> None:
    """Raise :class:`StoreDamagedError` if the store exists and cannot be read whole.

    A store of 0 bytes while backups exist is damage too (a truncated file: SQLite
    would take it for a new, empty store).
    """
    if not store.exists():
        return
    size = store.stat().st_size
    if size == 0:
        if list_backups(store):
            raise StoreDamagedError(
                f"the store {store} is empty (0 bytes), though backups of it exist.", RESTORE_FIX
            )
        return
    seen = fingerprint(store)
    state = _state(store)
    checked = state.get("checked_at")
    if (
        state.get("checked") == seen
        and isinstance(checked, int | float)
        and 0 <= time.time() - checked < RECHECK_S
    ):
        return
    why = damage(store)
    if why is not None:
        raise StoreDamagedError(f"the store {store} is damaged: {why}.", RESTORE_FIX)
    _save_state(store, checked=seen, checked_at=time.time())


def list_backups(store: Path) -> list[Backup]:
    """The backups of ``store``, newest first."""
    folder = backups_dir(store)
    found = []
    for p in folder.glob(f"{PREFIX}*{SUFFIX}") if folder.is_dir() else []:
        with contextlib.suppress(OSError):
            st = p.stat()
            found.append(Backup(p.name, p, st.st_size, st.st_mtime))
    return sorted(found, key=lambda b: b.name, reverse=True)


def _copy(src: Path, dst: Path) -> None:
    """A consistent copy of the database ``src`` at ``dst`` (written aside, then renamed)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    source = _connect(src)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            target.close()
    finally:
        source.close()
    os.replace(tmp, dst)


def back_up(store: Path, keep: int) -> Backup | None:
    """Copy the store into ``backups/`` and keep the newest ``keep`` (0: no backups).

    Nothing is copied when there is no store yet (a fresh home), nor when it
    is unchanged since the newest backup (that one is returned).
    """
    if keep <= 0 or not store.exists() or store.stat().st_size == 0:
        return None
    seen = fingerprint(store)
    state = _state(store)
    newest = list_backups(store)
    if (
        newest
        and state.get("backed_up") == seen
        and state.get("backup") == newest[0].name
        and state.get("backup_file") == _file_key(newest[0].path)
    ):
        return newest[0]  # the same state, and that copy untouched since it was made
    folder = backups_dir(store)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    dst = folder / f"{PREFIX}{stamp}{SUFFIX}"
    _copy(store, dst)
    backups = list_backups(store)
    for old in backups[keep:]:
        old.path.unlink(missing_ok=True)
    _save_state(store, backed_up=seen, backup=dst.name, backup_file=_file_key(dst))
    return next(b for b in backups if b.path == dst)


def check_and_back_up(store: Path, keep: int) -> Backup | None:
    """What the API server's start does first: :func:`check`, then :func:`back_up`."""
    check(store)
    return back_up(store, keep)


def restore(store: Path, name: str | None = None) -> tuple[Backup, list[Path]]:
    """Put the backup ``name`` (default: the newest) in place of the store.

    The stack must be stopped (the caller holds the stack lock). The current
    store, with its ``-wal`` and ``-shm`` files, is kept beside it as
    ``stigmer.db.replaced-<time>`` (nothing is deleted). Returns the backup and
    the files set aside.

    Raises:
        NotFoundError: there is no backup, or none of that name.
        StoreDamagedError: the backup itself cannot be read.
    """
    backups = list_backups(store)
    if not backups:
        raise NotFoundError(
            f"there is no backup of {store} (in {backups_dir(store)}).",
            "A backup is taken at each start of the API server, once the store exists.",
        )
    chosen = backups[0]
    if name is not None:
        match = [b for b in backups if name in (b.name, str(b.path))]
        if not match:
            raise NotFoundError(
                f"no backup named {name!r} in {backups_dir(store)}.",
                "List them with `stigmer server restore --list`.",
            )
        chosen = match[0]
    why = damage(chosen.path)
    if why is not None:
        raise StoreDamagedError(
            f"the backup {chosen.path} is damaged too: {why}.",
            "Name an older one: `stigmer server restore --list`, then "
            "`stigmer server restore NAME`.",
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside: list[Path] = []
    for suffix in ("", "-wal", "-shm"):
        current = store.with_name(store.name + suffix)
        if current.exists():
            moved = store.with_name(f"{store.name}{suffix}.replaced-{stamp}")
            os.replace(current, moved)
            aside.append(moved)
    _copy(chosen.path, store)
    return chosen, aside
