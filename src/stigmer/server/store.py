"""The store: agents, executions and the per-execution event log (SQLAlchemy Core).

The schema is created by the Alembic migrations in ``migrations/``; the table
objects here mirror them for queries.

Event appends are idempotent: an event whose ``event_id`` is already stored
for that execution is skipped and its existing ``seq`` returned. Sequence
numbers are assigned in the database, in the append's transaction, strictly
increasing from 1 per execution: the execution's row is locked first
(``SELECT ... FOR UPDATE`` on PostgreSQL, so several API servers on one
database never race; SQLite has one writer), and a conflict on the unique keys
is retried. On PostgreSQL each append also sends ``NOTIFY stigmer_events`` with
the execution's id, which wakes the streams of every API server
(:mod:`stigmer.server.wakeups`). Events have the shapes of
:mod:`stigmer.contract.events`; an append that breaks the rules (an id that is
not the execution's, a phase change that cannot happen) stores nothing and
raises :class:`EventRejected`.

Bearer tokens are kept as their SHA-256, with a role (``admin`` or ``runner``);
so are the web console's one-time login codes and its sessions, with their
expiry (in the store, so every API server sharing it knows them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from stigmer.contract.events import PhasePayload, format_timestamp, new_event, parse_timestamp
from stigmer.contract.phases import TERMINAL_PHASES
from stigmer.contract.workflow import ExecutionInput, workflow_id

metadata = MetaData()


def _stamp(name: str) -> Column[Any]:
    """A timestamp column (with its time zone) that every row has."""
    return Column(name, DateTime(timezone=True), nullable=False)


agents = Table(
    "agents",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("generation", Integer, nullable=False),
    _stamp("created_at"),
    _stamp("updated_at"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agent_name", String(63), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("workflow_id", String(200), nullable=False),
    Column("run_id", String(64)),
    Column("input", JSON, nullable=False),
    Column("output", Text),
    Column("error", Text),
    _stamp("created_at"),
    _stamp("updated_at"),
)

events = Table(
    "events",
    metadata,
    Column("execution_id", String(64), ForeignKey("executions.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("event_id", String(200), nullable=False),
    Column("type", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    _stamp("created_at"),
    UniqueConstraint("execution_id", "event_id", name="uq_events_execution_event"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("hash", String(64), primary_key=True),  # sha256: the token itself is never kept
    Column("role", String(16), nullable=False),
    _stamp("created_at"),
    Column("label", String(200), nullable=False),
)

#: Payloads kept out of Temporal's history (sealed by the codec), by their SHA-256.
blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    _stamp("created_at"),
)

#: The web console's one-time login codes (``stigmer ui``), by their SHA-256.
console_codes = Table(
    "console_codes",
    metadata,
    Column("hash", String(64), primary_key=True),
    _stamp("created_at"),
    _stamp("expires_at"),
    Column("used_at", DateTime(timezone=True)),
)

#: The web console's sessions (what its cookie holds), by their SHA-256.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("hash", String(64), primary_key=True),
    _stamp("created_at"),
    _stamp("expires_at"),
)

#: PostgreSQL channel of the wake-ups: its payload is the execution id.
WAKEUP_CHANNEL = "stigmer_events"
#: Appends retried after a conflict on the unique keys (another writer was first).
APPEND_ATTEMPTS = 5

#: The phases an execution may go to from each phase (a final phase goes nowhere).
NEXT_PHASES: dict[str, frozenset[str]] = {
    "PENDING": frozenset({"RUNNING", "FAILED", "CANCELLED"}),
    "RUNNING": frozenset({"AWAITING_APPROVAL", "COMPLETED", "FAILED", "CANCELLED"}),
    "AWAITING_APPROVAL": frozenset({"RUNNING", "FAILED", "CANCELLED"}),
}


class ExecutionExists(Exception):
    """An execution of that id exists; ``stored`` is the input it was submitted with."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__("execution exists")
        self.stored = stored


class EventRejected(ValueError):
    """An append broke the event rules; nothing of it was stored.

    ``conflict``: it does not fit the execution's state (a phase that cannot
    follow), rather than being malformed.
    """

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    return format_timestamp(dt) if dt is not None else None


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        # SQLite: one writer; this keeps this process's threads from racing for it
        self._append_lock = threading.Lock() if not self.postgres else contextlib.nullcontext()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction; on SQLite ``BEGIN IMMEDIATE``, so two writers wait, not fail.

        (A deferred transaction that reads, then writes, fails at once with
        "database is locked" when another writer got there first.)
        """
        with (
            self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn,
            conn.begin(),
        ):
            yield conn

    # -- agents ---------------------------------------------------------------

    def put_agent(
        self, name: str, spec: dict[str, Any], dry_run: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """Create or update; returns (``created``|``updated``|``unchanged``, agent).

        With ``dry_run`` nothing is stored: the status says what a put would do,
        and the agent is the record as it would be.
        """
        h = spec_hash(spec)
        if dry_run:
            found = self.get_agent(name)
            if found is None:
                stamp = iso(now())
                return "created", {
                    "name": name,
                    "spec": spec,
                    "spec_hash": h,
                    "generation": 1,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            if found["spec_hash"] == h:
                return "unchanged", found
            return "updated", {
                **found,
                "spec": spec,
                "spec_hash": h,
                "generation": found["generation"] + 1,
            }
        with self.writing() as conn:
            row = conn.execute(select(agents).where(agents.c.name == name)).mappings().first()
            if row is None:
                conn.execute(
                    insert(agents).values(
                        name=name,
                        spec=spec,
                        spec_hash=h,
                        generation=1,
                        created_at=now(),
                        updated_at=now(),
                    )
                )
                status = "created"
            elif row["spec_hash"] == h:
                status = "unchanged"
            else:
                conn.execute(
                    update(agents)
                    .where(agents.c.name == name)
                    .values(
                        spec=spec, spec_hash=h, generation=row["generation"] + 1, updated_at=now()
                    )
                )
                status = "updated"
        agent = self.get_agent(name)
        assert agent is not None
        return status, agent

    def get_agent(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(agents).where(agents.c.name == name)).mappings().first()
        return _agent(row) if row else None

    def list_agents(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(agents).order_by(agents.c.name)).mappings().all()
        return [_agent(r) for r in rows]

    def delete_agent(self, name: str) -> bool:
        with self.writing() as conn:
            return conn.execute(delete(agents).where(agents.c.name == name)).rowcount > 0

    # -- executions -----------------------------------------------------------

    def create_execution(self, inp: ExecutionInput) -> dict[str, Any]:
        """Record an execution as PENDING, with its workflow input.

        Raises:
            ExecutionExists: an execution of this id exists (a retried submission, or a
                clash); it holds the stored input.
        """
        execution_id = inp.execution_id
        try:
            self._insert_execution(inp)
        except IntegrityError:
            stored = self.execution_input(execution_id)
            if stored is None:
                raise
            raise ExecutionExists(stored) from None
        self.append(
            execution_id,
            [new_event(f"{execution_id}/server/pending", PhasePayload(phase="PENDING"))],
        )
        ex = self.get_execution(execution_id)
        assert ex is not None
        return ex

    def execution_input(self, execution_id: str) -> dict[str, Any] | None:
        """The workflow input an execution was submitted with (secret values included)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(executions.c.input).where(executions.c.id == execution_id)
            ).first()
        return None if row is None else dict(row[0])

    def approvals(
        self, execution_id: str
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """(the ``approval_requested`` payloads no decision answered yet, with their ``seq``;
        the ``approval_decided`` payloads by ``call_id``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.seq, events.c.type, events.c.payload)
                .where(
                    events.c.execution_id == execution_id,
                    events.c.type.in_(("approval_requested", "approval_decided")),
                )
                .order_by(events.c.seq)
            ).all()
        asked: dict[str, dict[str, Any]] = {}
        decided: dict[str, dict[str, Any]] = {}
        for seq, kind, payload in rows:
            call = payload.get("call_id")
            if kind == "approval_requested":
                asked[call] = {**payload, "seq": seq}
            else:
                asked.pop(call, None)
                decided[call] = payload
        return list(asked.values()), decided

    def pending_approvals(self, execution_id: str) -> list[dict[str, Any]]:
        """The ``approval_requested`` payloads (with their ``seq``) that no decision answered yet."""
        return self.approvals(execution_id)[0]

    def unstarted(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Ids of PENDING executions that no workflow run has claimed, oldest first."""
        cutoff = now() - timedelta(seconds=older_than_s)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(executions.c.id)
                .where(executions.c.phase == "PENDING")
                .where(executions.c.run_id.is_(None))
                .where(executions.c.created_at <= cutoff)
                .order_by(executions.c.id)
                .limit(limit)
            ).all()
        return [r[0] for r in rows]

    def active(self, limit: int = 50) -> list[dict[str, Any]]:
        """Executions that have a workflow run and have not ended, least recently changed first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(executions)
                    .where(executions.c.phase.in_(("PENDING", "RUNNING")))
                    .where(executions.c.run_id.is_not(None))
                    .order_by(executions.c.updated_at)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [_execution(r, None) for r in rows]

    def _insert_execution(self, inp: ExecutionInput) -> None:
        execution_id = inp.execution_id
        with self.writing() as conn:
            conn.execute(
                insert(executions).values(
                    id=execution_id,
                    agent_name=inp.agent_name,
                    phase="PENDING",
                    workflow_id=workflow_id(execution_id),
                    input=inp.model_dump(mode="json", exclude_none=True),
                    created_at=now(),
                    updated_at=now(),
                )
            )

    def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(executions).where(executions.c.id == execution_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            last = conn.execute(
                select(func.max(events.c.seq)).where(events.c.execution_id == execution_id)
            ).scalar()
        return _execution(row, last or 0)

    def list_executions(
        self, agent: str | None = None, limit: int = 50, phase: str | None = None
    ) -> list[dict[str, Any]]:
        q = select(executions).order_by(executions.c.id.desc()).limit(limit)
        if agent:
            q = q.where(executions.c.agent_name == agent)
        if phase:
            q = q.where(executions.c.phase == phase)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            ids = [r["id"] for r in rows]
            last: dict[str, int] = {}
            if ids:
                last = {
                    eid: seq
                    for eid, seq in conn.execute(
                        select(events.c.execution_id, func.max(events.c.seq))
                        .where(events.c.execution_id.in_(ids))
                        .group_by(events.c.execution_id)
                    ).all()
                }
        return [_execution(r, last.get(r["id"], 0)) for r in rows]

    def execution_stats(self, ids: list[str]) -> dict[str, dict[str, int]]:
        """Per execution: ``tool_calls`` started and the tokens of its ``usage`` events."""
        stats = {i: {"tool_calls": 0, "input_tokens": 0, "output_tokens": 0} for i in ids}
        if not ids:
            return stats
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.execution_id, events.c.type, events.c.payload)
                .where(events.c.execution_id.in_(ids))
                .where(events.c.type.in_(("tool_call", "usage")))
            ).all()
        for execution_id, kind, payload in rows:
            s = stats[execution_id]
            if kind == "tool_call" and payload.get("status") == "started":
                s["tool_calls"] += 1
            elif kind == "usage":
                s["input_tokens"] += int(payload.get("input_tokens") or 0)
                s["output_tokens"] += int(payload.get("output_tokens") or 0)
        return stats

    # -- tokens ---------------------------------------------------------------

    def register_token(self, token: str, role: str, label: str = "") -> None:
        """Accept ``token`` for ``role`` from now on (idempotent; only its hash is kept)."""
        h = token_hash(token)
        with self.writing() as conn:
            row = conn.execute(select(tokens.c.role).where(tokens.c.hash == h)).first()
            if row is None:
                conn.execute(
                    insert(tokens).values(hash=h, role=role, label=label, created_at=now())
                )
            elif row[0] != role:
                conn.execute(update(tokens).where(tokens.c.hash == h).values(role=role))

    def token_role(self, token: str) -> str | None:
        """The role of a bearer token, or None if it is not one of ours."""
        with self.engine.connect() as conn:
            role = conn.execute(
                select(tokens.c.role).where(tokens.c.hash == token_hash(token))
            ).scalar()
        return str(role) if role is not None else None

    def token_label(self, token: str) -> str | None:
        """The label a bearer token was made with, or None if it is not one of ours."""
        with self.engine.connect() as conn:
            label = conn.execute(
                select(tokens.c.label).where(tokens.c.hash == token_hash(token))
            ).scalar()
        return str(label) if label is not None else None

    def claim_run(self, execution_id: str, run_id: str) -> bool:
        """Record the workflow run the server started; False if another run claimed it first."""
        with self.writing() as conn:
            current = conn.execute(
                select(executions.c.run_id).where(executions.c.id == execution_id).with_for_update()
            ).scalar()
            if current is None:
                conn.execute(
                    update(executions).where(executions.c.id == execution_id).values(run_id=run_id)
                )
                return True
            return bool(current == run_id)

    # -- the web console's login codes and sessions ----------------------------

    def add_console_code(self, code: str, ttl_s: float) -> datetime:
        """Keep a one-time login code (its hash) for ``ttl_s`` seconds; returns its expiry.

        Codes and sessions that expired are dropped at the same time.
        """
        at = now()
        expires = at + timedelta(seconds=ttl_s)
        with self.writing() as conn:
            conn.execute(delete(console_codes).where(console_codes.c.expires_at < at))
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < at))
            conn.execute(
                insert(console_codes).values(
                    hash=token_hash(code), created_at=at, expires_at=expires, used_at=None
                )
            )
        return expires

    def use_console_code(self, code: str) -> str:
        """Use a login code once: ``ok``, else why not (``used``, ``expired``, ``unknown``).

        One conditional update: of two servers (or tabs) using the same code at
        once, only one gets ``ok``.
        """
        h = token_hash(code)
        at = now()
        with self.writing() as conn:
            done = conn.execute(
                update(console_codes)
                .where(console_codes.c.hash == h)
                .where(console_codes.c.used_at.is_(None))
                .where(console_codes.c.expires_at > at)
                .values(used_at=at)
            ).rowcount
            if done == 1:
                return "ok"
            row = conn.execute(
                select(console_codes.c.used_at).where(console_codes.c.hash == h)
            ).first()
        if row is None:
            return "unknown"
        return "used" if row[0] is not None else "expired"

    def add_console_session(self, session: str, ttl_s: float) -> datetime:
        at = now()
        expires = at + timedelta(seconds=ttl_s)
        with self.writing() as conn:
            conn.execute(
                insert(console_sessions).values(
                    hash=token_hash(session), created_at=at, expires_at=expires
                )
            )
        return expires

    def console_session_ok(self, session: str) -> bool:
        """True if ``session`` is a console session that has not expired."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(console_sessions.c.hash)
                .where(console_sessions.c.hash == token_hash(session))
                .where(console_sessions.c.expires_at > now())
            ).first()
        return found is not None

    def end_console_session(self, session: str) -> None:
        with self.writing() as conn:
            conn.execute(
                delete(console_sessions).where(console_sessions.c.hash == token_hash(session))
            )

    # -- blobs ----------------------------------------------------------------

    def put_blob(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` under its SHA-256 (the caller checked it); a repeat is a no-op."""
        try:
            with self.writing() as conn:
                if conn.execute(select(blobs.c.sha256).where(blobs.c.sha256 == sha256)).first():
                    return
                conn.execute(insert(blobs).values(sha256=sha256, data=data, created_at=now()))
        except IntegrityError:
            pass  # another writer stored the same bytes first

    def get_blob(self, sha256: str) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(blobs.c.data).where(blobs.c.sha256 == sha256)).first()
        return None if row is None else bytes(row[0])

    # -- events ---------------------------------------------------------------

    def append(
        self, execution_id: str, new: list[dict[str, Any]], *, if_unstarted: bool = False
    ) -> list[int]:
        """Append events idempotently; returns each event's seq (existing seq for a repeat).

        A ``phase`` event also updates the execution's phase, ``output`` and
        ``error``; events that arrive after a terminal phase are dropped (no
        seq); a ``tool_call`` that ends gets ``duration_ms`` from its start event.

        ``if_unstarted``: only if the execution is still PENDING with no workflow run
        (else nothing is stored, and ``[]`` returned): a cancel before the start.

        Raises:
            KeyError: no such execution. EventRejected: an event breaks the rules.
        """
        for attempt in range(APPEND_ATTEMPTS):
            try:
                return self._append(execution_id, new, if_unstarted)
            except IntegrityError:
                # another writer took a seq or stored an id first: read again
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _append(
        self, execution_id: str, new: list[dict[str, Any]], if_unstarted: bool = False
    ) -> list[int]:
        seqs: list[int] = []
        stored = False
        with self._append_lock, self.writing() as conn:
            ex = (
                conn.execute(
                    select(executions).where(executions.c.id == execution_id).with_for_update()
                )
                .mappings()
                .first()
            )
            if ex is None:
                raise KeyError(execution_id)
            phase = ex["phase"]
            run_id = ex["run_id"]
            if if_unstarted and (phase != "PENDING" or run_id is not None):
                return []
            last = (
                conn.execute(
                    select(func.max(events.c.seq)).where(events.c.execution_id == execution_id)
                ).scalar()
                or 0
            )
            for e in new:
                if not e["event_id"].startswith(f"{execution_id}/"):
                    raise EventRejected(
                        f"event id {e['event_id']!r} is not one of execution {execution_id}'s "
                        f"(they start with {execution_id}/)"
                    )
                if e.get("run_id") and not (run_id is None and phase in TERMINAL_PHASES):
                    # (an execution that ended before any run claimed it stays unclaimed)
                    if run_id is None:  # the first run to publish claims the execution
                        run_id = e["run_id"]
                        conn.execute(
                            update(executions)
                            .where(executions.c.id == execution_id)
                            .values(run_id=run_id)
                        )
                    elif e["run_id"] != run_id:
                        raise EventRejected(
                            f"execution {execution_id} belongs to workflow run {run_id}, "
                            f"not to {e['run_id']} (a replayed or replaced workflow)",
                            conflict=True,
                        )
                existing = conn.execute(
                    select(events.c.seq).where(
                        events.c.execution_id == execution_id, events.c.event_id == e["event_id"]
                    )
                ).scalar()
                if existing is not None:
                    seqs.append(existing)
                    continue
                if e["type"] == "phase":
                    new_phase = e["payload"]["phase"]
                    # the log opens with PENDING, recorded with the execution itself
                    start = last == 0 and phase == new_phase == "PENDING"
                    if not start and new_phase not in NEXT_PHASES.get(phase, frozenset()):
                        raise EventRejected(
                            f"execution {execution_id} cannot go from {phase} to {new_phase}",
                            conflict=True,
                        )
                if phase in TERMINAL_PHASES:
                    # the log ends with the final phase: what a late publisher sends
                    # after it (an activity still running when the run was cancelled)
                    # is dropped, so followers and last_seq see the whole log
                    continue
                payload = dict(e["payload"])
                created = parse_timestamp(e.get("at")) or now()
                if e["type"] == "tool_call" and payload.get("status") in ("completed", "failed"):
                    started = self._tool_start(conn, execution_id, payload.get("tool_call_id"))
                    if started is not None:
                        payload["duration_ms"] = max(
                            0, int((created - started).total_seconds() * 1000)
                        )
                if e["type"] == "phase":
                    phase = payload["phase"]
                    values: dict[str, Any] = {"phase": phase, "updated_at": now()}
                    if "output" in payload:
                        values["output"] = payload["output"]
                    if "error" in payload:
                        values["error"] = payload["error"]
                    conn.execute(
                        update(executions).where(executions.c.id == execution_id).values(**values)
                    )
                last += 1
                conn.execute(
                    insert(events).values(
                        execution_id=execution_id,
                        seq=last,
                        event_id=e["event_id"],
                        type=e["type"],
                        payload=payload,
                        created_at=created,
                    )
                )
                seqs.append(last)
                stored = True
            if self.postgres and stored:  # delivered when the transaction commits
                conn.execute(select(func.pg_notify(WAKEUP_CHANNEL, execution_id)))
        return seqs

    @staticmethod
    def _tool_start(conn: Any, execution_id: str, tool_call_id: str | None) -> datetime | None:
        if not tool_call_id:
            return None
        rows = conn.execute(
            select(events.c.payload, events.c.created_at).where(
                events.c.execution_id == execution_id, events.c.type == "tool_call"
            )
        ).all()
        for payload, created in rows:
            if payload.get("tool_call_id") == tool_call_id and payload.get("status") == "started":
                when: datetime = created
                return when if when.tzinfo else when.replace(tzinfo=UTC)
        return None

    def events_after(
        self, execution_id: str, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return _events_after(conn, execution_id, after, limit)

    def stream_batch(
        self, execution_id: str, after: int, limit: int = 1000
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """What a stream sends next: the execution, then its events after ``after``.

        One connection, the execution read first: when it has ended, the events
        read after it include its last one (an ended execution takes no more).
        The execution's ``last_seq`` is that of the last event returned (else
        the store's), so it is right whenever the batch reaches the end.
        """
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(executions).where(executions.c.id == execution_id))
                .mappings()
                .first()
            )
            if row is None:
                return None, []
            batch = _events_after(conn, execution_id, after, limit)
            last = (
                batch[-1]["seq"]
                if batch
                else conn.execute(
                    select(func.max(events.c.seq)).where(events.c.execution_id == execution_id)
                ).scalar()
            )
        return _execution(row, last or 0), batch


def _agent(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"],
        "spec": row["spec"],
        "spec_hash": row["spec_hash"],
        "generation": row["generation"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _events_after(conn: Any, execution_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    rows = (
        conn.execute(
            select(events)
            .where(events.c.execution_id == execution_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        .mappings()
        .all()
    )
    return [
        {
            "execution_id": r["execution_id"],
            "seq": r["seq"],
            "event_id": r["event_id"],
            "type": r["type"],
            "payload": r["payload"],
            "at": iso(r["created_at"]),
        }
        for r in rows
    ]


def _execution(row: Any, last_seq: int | None) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "agent": row["agent_name"],
        "phase": row["phase"],
        "workflow_id": row["workflow_id"],
        "run_id": row["run_id"],
        "message": row["input"].get("message"),
        "model": row["input"].get("model") or row["input"].get("spec", {}).get("model"),
        "output": row["output"],
        "error": row["error"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if last_seq is not None:
        out["last_seq"] = last_seq
    return out
