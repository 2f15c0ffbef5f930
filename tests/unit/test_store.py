from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from stigmer.contract.workflow import ExecutionInput
from stigmer.server import db
from stigmer.server.store import EventRejected, Store
from stigmer.spec.models import AgentSpec


def test_interrupted_migration_leaves_nothing_half_done(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    pid = os.fork()
    if pid == 0:  # the child dies right after the second CREATE TABLE
        import sqlalchemy

        orig = sqlalchemy.engine.Connection.execute
        seen = {"n": 0}

        def execute(self, *a, **k):  # type: ignore[no-untyped-def]
            out = orig(self, *a, **k)
            if "CREATE TABLE" in str(a[0]).upper():
                seen["n"] += 1
                if seen["n"] == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
            return out

        sqlalchemy.engine.Connection.execute = execute  # type: ignore[method-assign]
        db.migrate(db.make_engine(f"sqlite:///{path}"))
        os._exit(0)
    os.waitpid(pid, 0)
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
    assert tables == []
    engine = db.make_engine(f"sqlite:///{path}")
    db.migrate(engine)
    assert db.check(engine)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return str(request.getfixturevalue("pg_database").url)


def execution_input(execution_id: str) -> ExecutionInput:
    return ExecutionInput(
        execution_id=execution_id,
        agent_name="a",
        spec=AgentSpec(instructions="x"),
        message="m",
        model="test",
    )


def test_append_is_idempotent_and_ordered(store_url: str) -> None:
    engine = db.make_engine(store_url)
    db.migrate(engine)
    store = Store(engine)
    store.put_agent("a", {"instructions": "x"})
    ex = store.create_execution(execution_input("ex-1"))
    assert ex["phase"] == "PENDING"
    evs = [
        {
            "event_id": "ex-1/r/1/0",
            "type": "tool_call",
            "payload": {"tool_call_id": "t", "name": "n", "status": "started"},
            "at": "2026-01-01T00:00:00Z",
        },
        {
            "event_id": "ex-1/r/2/0",
            "type": "tool_call",
            "payload": {"tool_call_id": "t", "name": "n", "status": "completed"},
            "at": "2026-01-01T00:00:01.5Z",
        },
    ]
    assert store.append("ex-1", evs) == [2, 3]
    assert store.append("ex-1", evs) == [2, 3]  # a retried publisher adds nothing
    store.append(
        "ex-1",
        [{"event_id": "ex-1/run", "type": "phase", "payload": {"phase": "RUNNING"}}],
    )
    store.append(
        "ex-1",
        [
            {
                "event_id": "ex-1/done",
                "type": "phase",
                "payload": {"phase": "COMPLETED", "output": "ok"},
            }
        ],
    )
    with pytest.raises(EventRejected, match="cannot go from COMPLETED to RUNNING"):
        store.append(
            "ex-1", [{"event_id": "ex-1/late", "type": "phase", "payload": {"phase": "RUNNING"}}]
        )
    with pytest.raises(EventRejected, match="not one of execution ex-1"):
        store.append("ex-1", [{"event_id": "ex-2/x", "type": "usage", "payload": {}}])
    late_tool = {
        "event_id": "ex-1/r/3/1",
        "type": "message",
        "payload": {"role": "tool", "content": "x"},
    }
    assert store.append("ex-1", [late_tool]) == []  # after the final phase: dropped
    assert store.append("ex-1", evs) == [2, 3]  # repeats still get their seq
    got = store.events_after("ex-1")
    assert [e["seq"] for e in got] == [1, 2, 3, 4, 5]
    assert got[2]["payload"]["duration_ms"] == 1500
    assert store.get_execution("ex-1")["phase"] == "COMPLETED"
    # a listed execution has the same last_seq as one read alone
    store.create_execution(execution_input("ex-2"))
    listed = {e["id"]: e for e in store.list_executions()}
    assert listed["ex-1"]["last_seq"] == store.get_execution("ex-1")["last_seq"] == 5
    assert listed["ex-2"]["last_seq"] == store.get_execution("ex-2")["last_seq"]
    assert store.put_agent("a", {"instructions": "x"})[0] == "unchanged"
    assert store.put_agent("a", {"instructions": "y"})[0] == "updated"


def test_two_servers_appending_at_once_never_race(store_url: str) -> None:
    """Two stores on one database (two API servers) append to one execution from many threads."""
    from concurrent.futures import ThreadPoolExecutor

    engines = [db.make_engine(store_url) for _ in range(2)]
    db.migrate(engines[0])
    db.migrate(engines[1])  # a second server migrating finds nothing to do
    stores = [Store(e) for e in engines]
    stores[0].create_execution(execution_input("ex-race"))
    stores[0].append(
        "ex-race", [{"event_id": "ex-race/run", "type": "phase", "payload": {"phase": "RUNNING"}}]
    )

    def publish(i: int) -> list[int]:
        event = {"event_id": f"ex-race/e/{i % 40}", "type": "usage", "payload": {}}
        return stores[i % 2].append("ex-race", [event])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(publish, range(120)))  # each id is sent three times
    seqs = [e["seq"] for e in stores[1].events_after("ex-race")]
    assert seqs == list(range(1, 43)), seqs
    by_id: dict[str, set[int]] = {}
    for i, got in enumerate(results):
        by_id.setdefault(f"e/{i % 40}", set()).update(got)
    assert all(len(v) == 1 for v in by_id.values()), "a repeated id got two seqs"
    for e in engines:
        e.dispose()


def test_cancel_before_start_is_conditional_and_a_late_run_claims_nothing(store_url: str) -> None:
    engine = db.make_engine(store_url)
    db.migrate(engine)
    store = Store(engine)
    store.put_agent("a", {"instructions": "x"})
    store.create_execution(execution_input("ex-c1"))
    cancel = [
        {"event_id": "ex-c1/server/cancelled", "type": "phase", "payload": {"phase": "CANCELLED"}}
    ]
    running = [
        {
            "event_id": "ex-c1/r/run",
            "type": "phase",
            "payload": {"phase": "RUNNING"},
            "run_id": "r1",
        }
    ]
    # a run claimed it first: the cancel-before-start stores nothing (Temporal is asked instead)
    assert store.append("ex-c1", running) == [2]
    assert store.append("ex-c1", cancel, if_unstarted=True) == []
    assert store.get_execution("ex-c1")["phase"] == "RUNNING"  # type: ignore[index]

    store.create_execution(execution_input("ex-c2"))
    cancel2 = [
        {"event_id": "ex-c2/server/cancelled", "type": "phase", "payload": {"phase": "CANCELLED"}}
    ]
    assert store.append("ex-c2", cancel2, if_unstarted=True) == [2]
    late = [
        {
            "event_id": "ex-c2/r/t/0",
            "type": "tool_call",
            "payload": {"tool_call_id": "t", "name": "shell", "status": "started"},
            "run_id": "r-late",
        }
    ]
    assert store.append("ex-c2", late) == []  # dropped: the execution ended
    ex = store.get_execution("ex-c2")
    assert ex is not None and ex["phase"] == "CANCELLED" and ex["run_id"] is None


def test_the_fast_head_check_agrees_with_alembic(tmp_path: Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from stigmer.server import db

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert db.head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    assert not db.at_head(engine)
    db.migrate(engine)
    assert db.at_head(engine)
    db.migrate(engine)  # idempotent, and without Alembic this time
