"""The SQLite store is backed up at each start of the API server, and comes back.

A real stack in its own home: data is written, the store is truncated, the
start fails fast naming the file and `stigmer server restore`, the restore
brings the newest backup back (the damaged file kept), and the data is there.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.conftest import Stack

AGENT = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata:
  name: keeper
spec:
  instructions: keep
  model: test
  test_script:
    - answer: kept
"""


def backups(st: Stack) -> list[dict[str, object]]:
    out = st.cli("server", "restore", "--list", "--json", check=True).stdout
    found: list[dict[str, object]] = json.loads(out)["backups"]
    return found


def truncate_store(st: Stack) -> Path:
    db = st.home / "data" / "stigmer.db"
    size = db.stat().st_size
    with db.open("r+b") as fh:
        fh.truncate(size // 2)
    return db


def test_a_truncated_store_fails_start_fast_and_restore_brings_the_data_back(
    stack: Stack, tmp_path: Path
) -> None:
    stack.env["STIGMER_BACKUP_KEEP"] = "2"
    stack.start()
    (tmp_path / "a.yaml").write_text(AGENT)
    stack.cli("apply", "-f", str(tmp_path / "a.yaml"), check=True)
    ran = json.loads(stack.cli("run", "keeper", "hello", "--output", "json", check=True).stdout)
    assert backups(stack) == []  # the first start had no store to copy yet
    for i in range(3):  # each start of the API server takes one; the last 2 are kept
        stack.cli("server", "restart", check=True)
        stack.cli("run", "keeper", f"again {i}", check=True)  # a store changed since
    stack.cli("server", "restart", check=True)
    kept = backups(stack)
    assert len(kept) == 2, kept
    for _ in range(2):  # nothing written since: no copy of the same state again
        stack.cli("server", "restart", check=True)
    assert backups(stack) == kept
    assert all(Path(str(b["path"])).stat().st_mode & 0o777 == 0o600 for b in kept)

    # a restore needs the stack stopped: the API server has the store open
    running = stack.cli("server", "restore")
    assert running.returncode == 18, running.stderr
    assert "stigmer server stop" in running.stderr

    stack.cli("server", "stop", check=True)
    db = truncate_store(stack)
    t0 = time.monotonic()
    failed = stack.cli("server", "start")
    took = time.monotonic() - t0
    assert failed.returncode == 17, failed.stdout + failed.stderr
    assert str(db) in failed.stderr and "stigmer server restore" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert took < 15, took  # at once, not after a crash loop
    assert stack.our_processes() == []
    assert len(backups(stack)) == 2  # a damaged store is never backed up

    restored = json.loads(stack.cli("server", "restore", "--json", check=True).stdout)
    assert restored["restored"]["name"] == kept[0]["name"]  # the newest
    aside = restored["set_aside"]  # the damaged file is kept
    assert aside and all(".replaced-" in p and Path(p).exists() for p in aside), aside

    stack.start()
    agents = json.loads(stack.cli("agent", "list", "--output", "json", check=True).stdout)
    assert [a["name"] for a in agents["agents"]] == ["keeper"]
    got = json.loads(stack.cli("execution", "get", ran["id"], "--output", "json").stdout)
    assert got["phase"] == "COMPLETED", got

    # a named backup, and a name that is none
    stack.cli("server", "stop", check=True)
    now = backups(stack)  # that start took one more: the oldest of before is gone
    assert [b["name"] for b in now][1:] == [kept[0]["name"]], now
    named = stack.cli("server", "restore", str(now[1]["name"]), "--json", check=True)
    assert json.loads(named.stdout)["restored"]["name"] == now[1]["name"]
    missing = stack.cli("server", "restore", "nope.db")
    assert missing.returncode == 4 and "restore --list" in missing.stderr, missing.stderr


def test_a_store_damaged_while_running_fails_the_api_server_at_once(stack: Stack) -> None:
    """The supervisor's restart of the API server checks the store too: failed, not six crashes."""
    stack.start()
    stack.cli("server", "restart", check=True)  # a store to damage, and one backup of it
    api = stack.component("stigmer-server")
    db = truncate_store(stack)
    os.kill(api["pid"], signal.SIGKILL)
    st = stack.wait_for(
        lambda s: (
            next(c for c in s["components"] if c["name"] == "stigmer-server")["state"] == "failed"
        ),
        timeout=30,
        what="stigmer-server failed",
    )
    comp = next(c for c in st["components"] if c["name"] == "stigmer-server")
    assert str(db) in comp["last_error"] and "damaged" in comp["last_error"], comp
    assert "stigmer server restore" in (comp.get("fix") or ""), comp
    assert comp["restarts"] <= 1, comp


def test_a_postgres_store_is_not_ours_to_back_up(stack: Stack) -> None:
    stack.env["STIGMER_DATABASE_URL"] = "postgresql://u:p@127.0.0.1:1/none"
    for args in (["server", "restore"], ["server", "restore", "--list"]):
        proc = stack.cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert "pg_dump" in proc.stderr, proc.stderr
