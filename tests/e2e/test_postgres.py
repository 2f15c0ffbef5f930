"""The store on PostgreSQL: what a bad database_url gives, and a database restart under load."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, free_port
from tests.fixtures_pg import PgCluster, PgDatabase


@pytest.mark.parametrize("what", ["wrong password", "nothing listens", "no such database"])
def test_a_bad_database_url_fails_start_fast_naming_it(
    stack: Stack, pg_database: PgDatabase, what: str
) -> None:
    url = {
        "wrong password": pg_database.url.replace(pg_database.password, "not-the-password"),
        "nothing listens": f"postgresql://u:p@127.0.0.1:{free_port()}/db",
        "no such database": pg_database.url.rsplit("/", 1)[0] + "/no_such_db",
    }[what]
    t0 = time.monotonic()
    proc = stack.cli("server", "start", env={"STIGMER_DATABASE_URL": url}, timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert took < 15, f"took {took:.1f}s"
    assert "database_url" in proc.stderr, proc.stderr
    assert "not-the-password" not in proc.stderr  # the URL is shown without its password
    assert stack.our_processes() == []


def test_postgres_restart_under_load_loses_nothing(
    stack: Stack, pg_cluster: PgCluster, tmp_path: Path
) -> None:
    # a cluster of this test's own: restarting the shared one would cut other tests off
    stack.env["STIGMER_DATABASE_URL"] = pg_cluster.database().url
    stack.start()
    agent = tmp_path / "a.yaml"
    agent.write_text(
        "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: steady}\n"
        "spec:\n  instructions: x\n  model: test\n  tools: [shell]\n  local_shell: true\n"
        "  test_script:\n    - {tool: shell, args: {command: 'sleep 2; echo {{ message }}'}}\n"
        "    - {answer: 'done {{ message }}'}\n"
    )
    stack.cli("apply", "-f", str(agent), check=True)

    # 50 executions are submitted, then the database restarts while they run
    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(
            pool.map(
                lambda i: stack.cli(
                    "run", "steady", f"n{i}", "--detach", check=True
                ).stdout.strip(),
                range(50),
            )
        )
    time.sleep(1)
    restart = subprocess.run(
        ["pg_ctlcluster", "15", "main", "restart"], capture_output=True, text=True
    )
    assert restart.returncode == 0, restart.stderr

    def follow(execution_id: str) -> dict[str, Any]:
        proc = stack.cli("execution", "logs", "-f", execution_id, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
        got = stack.cli("execution", "get", execution_id, "--output", "json", check=True)
        result: dict[str, Any] = json.loads(got.stdout)
        return result

    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(follow, ids))
    assert sorted(r["output"] for r in results) == sorted(f"done n{i}" for i in range(50))
    for r in results:
        out = stack.cli("execution", "logs", r["id"], "--output", "json", check=True).stdout
        events = [json.loads(line) for line in out.splitlines()]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert len({e["event_id"] for e in events}) == len(events)
        done = [
            e for e in events if e["type"] == "tool_call" and e["payload"]["status"] == "completed"
        ]
        assert len(done) == 1, events
