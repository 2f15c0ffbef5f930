"""Backups of the SQLite store: one per changed state, not one per start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stigmer.errors import StoreDamagedError
from stigmer.server import backup


def make_store(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    return path


def write(path: Path, value: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.commit()
    conn.close()


def test_an_unchanged_store_is_not_copied_again(tmp_path: Path) -> None:
    store = make_store(tmp_path / "stigmer.db")
    first = backup.back_up(store, keep=3)
    assert first is not None
    for _ in range(4):  # restarts with nothing written: the one backup stands
        backup.check(store)
        assert backup.back_up(store, keep=3) == first
    assert [b.name for b in backup.list_backups(store)] == [first.name]
    write(store, 2)
    second = backup.back_up(store, keep=3)
    assert second is not None and second.name != first.name
    assert [b.name for b in backup.list_backups(store)] == [second.name, first.name]
    # a newest backup changed since it was made (damaged, replaced) is not trusted
    with second.path.open("r+b") as fh:
        fh.truncate(second.size // 2)
    redone = backup.back_up(store, keep=3)
    assert redone is not None and redone.name != second.name
    second = redone
    # a deleted newest backup is made again, not assumed
    second.path.unlink()
    third = backup.back_up(store, keep=3)
    assert third is not None and third.path.exists() and third.name != first.name
    state = (backup.backups_dir(store) / backup.STATE).stat()
    assert state.st_mode & 0o777 == 0o600


def test_a_check_is_not_repeated_within_a_minute_unless_the_store_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "stigmer.db")
    calls: list[Path] = []
    real = backup.damage

    def counting(path: Path) -> str | None:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(backup, "damage", counting)
    backup.check(store)
    backup.check(store)  # the CLI, then the supervisor: one quick_check
    assert len(calls) == 1
    write(store, 3)
    backup.check(store)
    assert len(calls) == 2
    monkeypatch.setattr(backup, "RECHECK_S", 0.0)
    backup.check(store)  # a minute later: checked again
    assert len(calls) == 3


def test_a_store_damaged_after_its_check_is_still_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path / "stigmer.db")
    backup.check(store)
    with store.open("r+b") as fh:
        fh.truncate(store.stat().st_size // 2)
    with pytest.raises(StoreDamagedError, match="damaged"):
        backup.check(store)
