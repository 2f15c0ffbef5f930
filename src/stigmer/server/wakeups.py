"""Waking event streams when events are appended, in this API server and in every other.

Each open stream has a flag; an append sets the flags of its execution's
streams. On SQLite (one API server) that is all. On PostgreSQL every append
also sends ``NOTIFY stigmer_events, '<execution id>'`` in its transaction, and
each API server listens on that channel, so a stream on server B wakes for an
event appended through server A. While the listening connection is down (the
database restarted), streams still poll the store every second; once it is
back every stream is woken, so nothing appended meanwhile waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from sqlalchemy import Engine

from stigmer.server.store import WAKEUP_CHANNEL

log = logging.getLogger("stigmer.server")

#: The key of streams woken by an append to any execution (the console's listings).
ANY = "*"


class Wakeups:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, execution_id: str) -> asyncio.Event:
        flag = asyncio.Event()
        self._waiters.setdefault(execution_id, set()).add(flag)
        return flag

    def discard(self, execution_id: str, flag: asyncio.Event) -> None:
        flags = self._waiters.get(execution_id)
        if flags is not None:
            flags.discard(flag)
            if not flags:
                self._waiters.pop(execution_id, None)

    def wake(self, execution_id: str) -> None:
        """Wake the streams of ``execution_id``, and those of :data:`ANY` (on the event loop)."""
        for flag in (*self._waiters.get(execution_id, ()), *self._waiters.get(ANY, ())):
            flag.set()

    def wake_all(self) -> None:
        for flags in self._waiters.values():
            for flag in flags:
                flag.set()

    #: set when the server begins to stop: open streams end at once (their
    #: followers reconnect to the next server) instead of holding up its stop
    closing = False

    def close_streams(self) -> None:
        """The server stops: wake every stream, which then ends (see :attr:`closing`)."""
        self.closing = True
        self.wake_all()

    def listen(self, engine: Engine) -> None:
        """On PostgreSQL, follow ``NOTIFY stigmer_events`` from every API server (a thread)."""
        if engine.dialect.name != "postgresql":
            return
        self._loop = asyncio.get_running_loop()
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._thread = threading.Thread(
            target=self._listen, args=(conninfo,), name="stigmer-listen", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=6)

    def _soon(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _listen(self, conninfo: str) -> None:
        import psycopg

        delay = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {WAKEUP_CHANNEL}")
                    # whatever was appended while we were not listening
                    self._soon(self.wake_all)
                    delay = 0.2
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=100):
                            self._soon(self.wake, note.payload)
            except Exception as exc:  # the database went away: streams poll meanwhile
                log.warning("event wake-ups: %s; reconnecting", str(exc).strip() or exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
