"""PostgreSQL for the tests: a role and a database of their own on the machine's cluster.

Debian's ``postgresql`` (``.ci/run`` installs and starts it) listens on
127.0.0.1:5432. Each fixture makes a role with a password and a database it
owns, named with a unique id, and drops both afterwards. Without a running
cluster the tests that need it are skipped; under ``CI=true`` that is a failure.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    host: str = PG_HOST
    port: int = PG_PORT

    @property
    def url(self) -> str:
        """As users write it: ``postgresql://user:pass@host:port/db``."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.name}"


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


@dataclass(frozen=True)
class PgCluster:
    """A PostgreSQL cluster of the test's own (``pg_createcluster``), to restart or move freely."""

    version: str
    name: str
    port: int
    host: str = PG_HOST

    def psql(self, sql: str, db: str = "postgres") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "-h",
                "/var/run/postgresql",
                "-p",
                str(self.port),
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

    def ctl(self, action: str, *prefix: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, "pg_ctlcluster", self.version, self.name, action],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def database(self) -> PgDatabase:
        ident = uuid.uuid4().hex[:10]
        db = PgDatabase(f"stg_{ident}", f"stg_{ident}", secrets.token_hex(12), self.host, self.port)
        for sql in (
            f"CREATE ROLE {db.user} LOGIN PASSWORD '{db.password}'",
            f"CREATE DATABASE {db.name} OWNER {db.user}",
        ):
            made = self.psql(sql)
            assert made.returncode == 0, made.stderr
        return db


#: A test cluster untouched for this long (hours) is a crashed test's: dropped by the next.
STALE_CLUSTER_H = 6


def drop_stale_clusters() -> None:
    """Drop the ``stg*`` clusters that crashed or killed tests left behind."""
    import time

    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) < 6 or not fields[1].startswith("stg"):
            continue
        data_dir = Path(fields[5])
        with contextlib.suppress(OSError):
            if time.time() - data_dir.stat().st_mtime > STALE_CLUSTER_H * 3600:
                drop_cluster(PgCluster(fields[0], fields[1], int(fields[2])))


def create_cluster(port: int, listen: str = PG_HOST, hba: str = "") -> PgCluster:
    """A new cluster on ``port``, listening on ``listen``; ``hba`` adds a pg_hba.conf line."""
    why = pg_available()
    if why:
        unavailable(why)
    drop_stale_clusters()
    version = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    cluster = PgCluster(version, f"stg{uuid.uuid4().hex[:8]}", port, listen)
    made = subprocess.run(
        [
            "pg_createcluster",
            version,
            cluster.name,
            "-p",
            str(port),
            "--",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    conf = f"/etc/postgresql/{version}/{cluster.name}"
    with open(f"{conf}/postgresql.conf", "a") as fh:
        fh.write(f"\nlisten_addresses = '{listen}'\nmax_connections = 200\n")
    if hba:
        with open(f"{conf}/pg_hba.conf", "a") as fh:
            fh.write(hba + "\n")
    return cluster


def drop_cluster(cluster: PgCluster) -> None:
    subprocess.run(
        ["pg_ctlcluster", cluster.version, cluster.name, "stop", "-m", "immediate"],
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        ["pg_dropcluster", cluster.version, cluster.name], capture_output=True, timeout=60
    )


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A running cluster of the test's own on 127.0.0.1 (restart it without disturbing others)."""
    from tests.conftest import free_port

    cluster = create_cluster(free_port())
    try:
        started = cluster.ctl("start")
        assert started.returncode == 0, started.stderr
        yield cluster
    finally:
        drop_cluster(cluster)
