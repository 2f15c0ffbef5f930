"""PostgreSQL for the tests: a role and a database of their own on the machine's cluster.

Debian's ``postgresql`` (``.ci/run`` installs and starts it) listens on
127.0.0.1:5432. Each fixture makes a role with a password and a database it
owns, named with a unique id, and drops both afterwards. Without a running
cluster the tests that need it are skipped; under ``CI=true`` that is a failure.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fixtures_docker import unavailable

PG_HOST = "127.0.0.1"
PG_PORT = 5432


def psql(sql: str, db: str = "postgres") -> subprocess.CompletedProcess[str]:
    """Run ``sql`` as the postgres superuser, over the local socket."""
    return subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-d",
            db,
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def pg_available() -> str | None:
    """None if the cluster answers, else why not."""
    if not shutil.which("psql") or not shutil.which("runuser"):
        return "psql is not installed (apt-get install postgresql; .ci/run does)"
    proc = psql("select 1")
    if proc.returncode != 0:
        return f"PostgreSQL does not answer: {proc.stderr.strip() or proc.stdout.strip()}"
    return None


@dataclass(frozen=True)
class PgDatabase:
    name: str
    user: str
    password: str

    @property
    def url(self) -> str:
        """As users write it: ``postgresql://user:pass@host:port/db``."""
        return f"postgresql://{self.user}:{self.password}@{PG_HOST}:{PG_PORT}/{self.name}"


def create_database() -> PgDatabase:
    why = pg_available()
    if why:
        unavailable(why)
    ident = uuid.uuid4().hex[:10]
    db = PgDatabase(f"stg_{ident}", f"stg_{ident}", secrets.token_hex(12))
    made = psql(f"CREATE ROLE {db.user} LOGIN PASSWORD '{db.password}'")
    assert made.returncode == 0, made.stderr
    made = psql(f"CREATE DATABASE {db.name} OWNER {db.user}")
    assert made.returncode == 0, made.stderr
    return db


def drop_database(db: PgDatabase) -> None:
    psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{db.name}' AND pid <> pg_backend_pid()"
    )
    psql(f"DROP DATABASE IF EXISTS {db.name}")
    psql(f"DROP ROLE IF EXISTS {db.user}")


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    db = create_database()
    try:
        yield db
    finally:
        drop_database(db)


@pytest.fixture(scope="module")
def pg_database_module() -> Iterator[PgDatabase]:
    db = create_database()
    try:
        yield db
    finally:
        drop_database(db)
