"""The store's engine and schema migrations (Alembic): SQLite by default, or PostgreSQL.

The URL is the server's configuration's ``store_url`` (the ``database_url``
setting; default ``sqlite:///$STIGMER_HOME/data/stigmer.db``). A PostgreSQL URL
is written as users write it, ``postgresql://user:pass@host/db``; it is driven
by psycopg 3. Migrations run at server start-up (``alembic upgrade head``),
under a PostgreSQL advisory lock so that several API servers starting at once
migrate one after the other.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL

from stigmer.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
#: Seconds to wait for the database to answer a new connection.
CONNECT_TIMEOUT = 5
#: The advisory lock key that serializes migrations (any constant of ours).
MIGRATION_LOCK = 0x5716_3E4


def normalize_url(raw: str) -> URL:
    """The SQLAlchemy URL for ``raw``: ``postgresql://`` and ``postgres://`` use psycopg 3.

    Raises:
        ConfigError: not a URL, or a database stigmer does not support.
    """
    try:
        url = make_url(raw)
    except Exception:
        raise ConfigError(
            "database_url is not a database URL.",
            "Write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or unset it for SQLite.",
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise ConfigError(
        f"database_url names a {backend} database; stigmer's store is SQLite or PostgreSQL.",
        "Write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or unset it for SQLite.",
    )


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def make_engine(raw_url: str) -> Engine:
    """An engine for the store at ``raw_url``.

    SQLite gets WAL mode, a busy timeout, foreign keys and real transactions:
    pysqlite's own transaction handling commits before DDL, so a migration cut
    short (a crash, a kill) could leave tables without their Alembic version.
    SQLAlchemy's documented recipe is used instead: the driver's handling is
    off and every transaction starts with an explicit ``BEGIN``, which makes a
    migration all or nothing. PostgreSQL gets a connect timeout and a pool that
    checks each connection before use (the database may have restarted).
    """
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            # "IMMEDIATE" for the store's writes (Store.writing)
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}")

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": CONNECT_TIMEOUT, "application_name": "stigmer-server"},
    )


def head_revision() -> str:
    """The newest migration's revision id (they are numbered ``0001``, ``0002``, ...)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def at_head(engine: Engine) -> bool:
    """Whether the store's schema is at :func:`head_revision` already (one query, no Alembic)."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return False  # no schema yet (or a store Alembic will name the problem of)
    return list(found) == [head_revision()]


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent).

    A store at the newest revision already (every start but the first after an
    upgrade) is left alone without loading Alembic and its scripts.
    """
    if at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


#: Free bytes under which the store's disk is reported full (SQLite): a write may fail.
LOW_DISK = 16 * 1024 * 1024


def store_folder(engine: Engine) -> Path | None:
    """The folder of a SQLite store's file (None for PostgreSQL, or in memory)."""
    if is_postgres(engine) or not engine.url.database or engine.url.database == ":memory:":
        return None
    return Path(engine.url.database).resolve().parent


def free_bytes(engine: Engine) -> int | None:
    """Free bytes on the disk of a SQLite store (None when we cannot tell: PostgreSQL)."""
    import shutil

    folder = store_folder(engine)
    if folder is None:
        return None
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full(exc: BaseException) -> bool:
    """True if a database error means its disk is full (SQLite's SQLITE_FULL, ENOSPC,
    PostgreSQL's ``disk_full`` 53100)."""
    import errno

    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) == "53100" or getattr(orig, "pgcode", None) == "53100":
        return True
    if isinstance(orig, OSError) and orig.errno == errno.ENOSPC:
        return True
    text_ = str(orig).lower()
    return "database or disk is full" in text_ or "no space left on device" in text_


def check(engine: Engine) -> bool:
    """True if the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def reachable(raw_url: str) -> None:
    """Connect once, or say why not (what ``server start`` checks before anything starts).

    Raises:
        ConfigError: naming ``database_url`` and the cause (a wrong password, a
            host that does not answer, a database that does not exist).
    """
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        return
    engine = make_engine(raw_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        shown = url.render_as_string(hide_password=True)
        raise ConfigError(
            f"database_url: cannot connect to {shown}: {cause[0] if cause else type(exc).__name__}",
            "Check the user, password, host, port and database name in database_url "
            "(STIGMER_DATABASE_URL), and that PostgreSQL runs and accepts connections from here.",
        ) from None
    finally:
        engine.dispose()
