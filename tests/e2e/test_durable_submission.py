"""A submission is durable: kept while Temporal is away, one execution however often it is
retried, started once Temporal answers, and cancellable in every phase (issue 13, cases 3 and 4).

Temporal "away" is the managed dev server frozen with SIGSTOP: it holds its connections and
answers nothing, as a host that is gone does, and comes back as it was with SIGCONT.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import STIGMER, Stack, new_stack, tear_down
from tests.e2e.conftest import execution, wait_phase

AGENT = "durable"
SPEC = {
    "apiVersion": "stigmer.ai/v1",
    "kind": "Agent",
    "metadata": {"name": AGENT},
    "spec": {"instructions": "test", "model": "test", "test_script": [{"answer": "done"}]},
}


@pytest.fixture(scope="module")
def dstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("durable") / "home"
    st = new_stack(home, "local")
    st.start()
    f = home.parent / "agent.yaml"
    f.write_text(json.dumps(SPEC))
    st.cli("apply", "-f", str(f), check=True)
    yield st
    tear_down(st)


def pid_of(st: Stack, component: str) -> int:
    pid = st.component(component)["pid"]
    assert pid, component
    return int(pid)


@contextlib.contextmanager
def temporal_frozen(st: Stack) -> Iterator[int]:
    pid = pid_of(st, "temporal")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def executions(st: Stack) -> list[dict[str, Any]]:
    out = st.cli("execution", "list", "--agent", AGENT, "-n", "1000", "--output", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data["executions"] if isinstance(data, dict) else data  # type: ignore[no-any-return]


def api(st: Stack) -> httpx.Client:
    token = (st.home / "credentials" / "api-token").read_text().strip()
    return httpx.Client(
        base_url=f"http://127.0.0.1:{st.ports['server']}/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_retried_submission_is_one_execution(dstack: Stack) -> None:
    from stigmer.contract.ids import new_execution_id

    execution_id = new_execution_id()
    body = {"id": execution_id, "agent": AGENT, "message": "once"}
    with api(dstack) as http:
        first = http.post("/executions", json=body)
        again = http.post("/executions", json=body)
        assert first.status_code == 201, first.text
        assert again.status_code == 201, again.text
        assert again.json()["id"] == first.json()["id"] == execution_id
        assert again.json()["run_id"] == first.json()["run_id"]
        other = http.post("/executions", json=body | {"message": "something else"})
        assert other.status_code == 409, other.text
        assert "taken by another submission" in other.json()["detail"]
        bad = http.post("/executions", json=body | {"id": "../../etc"})
        assert bad.status_code == 422, bad.text
    assert [e["id"] for e in executions(dstack)].count(execution_id) == 1
    wait_phase(dstack, execution_id, "COMPLETED")


def test_submitted_while_temporal_is_away_runs_when_it_is_back(dstack: Stack) -> None:
    with temporal_frozen(dstack):
        ids = []
        for i in range(3):
            t0 = time.monotonic()
            run = dstack.cli("run", AGENT, f"while away {i}", "--detach", timeout=60)
            assert run.returncode == 0, run.stderr
            assert time.monotonic() - t0 < 20, "the submission waited for Temporal"
            assert "kept PENDING and starts when Temporal is back" in run.stderr, run.stderr
            ids.append(run.stdout.strip().splitlines()[0])
        for execution_id in ids:
            ex = execution(dstack, execution_id)
            assert ex["phase"] == "PENDING", ex
            assert ex["run_id"] is None, ex
        # cancel works before there is a workflow: it ends, and is never started
        cancel = dstack.cli("execution", "cancel", ids[2])
        assert cancel.returncode == 0, cancel.stderr
        assert execution(dstack, ids[2])["phase"] == "CANCELLED"
    for execution_id in ids[:2]:
        done = wait_phase(dstack, execution_id, "COMPLETED")
        assert done["output"] == "done"
    time.sleep(5)  # the starter has had rounds to (wrongly) start the cancelled one
    cancelled = execution(dstack, ids[2])
    assert cancelled["phase"] == "CANCELLED" and cancelled["run_id"] is None, cancelled


def test_api_killed_mid_submission_leaves_nothing_stuck(dstack: Stack) -> None:
    before = {e["id"] for e in executions(dstack)}
    with temporal_frozen(dstack):
        # the API records the execution, then waits on the frozen Temporal to start it
        proc = subprocess.Popen(
            [STIGMER, "run", AGENT, "killed mid-submission", "--output", "json"],
            env=dstack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not [e for e in executions(dstack) if e["id"] not in before]:
                assert time.monotonic() < deadline, "the execution was never recorded"
                time.sleep(0.1)
            os.kill(pid_of(dstack, "stigmer-server"), signal.SIGKILL)  # the supervisor restarts it
            time.sleep(3)
        except BaseException:
            proc.kill()
            raise
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "not answering; retrying" in err, err  # the CLI waited the restart out
    result = json.loads(out)
    assert result["phase"] == "COMPLETED", result
    new = [e for e in executions(dstack) if e["id"] not in before]
    assert [e["id"] for e in new] == [result["id"]], "a retried submission made another execution"


def test_cancel_of_a_pending_execution_over_http_is_final(dstack: Stack, tmp_path: Path) -> None:
    with temporal_frozen(dstack), api(dstack) as http:
        made = http.post("/executions", json={"agent": AGENT, "message": "cancel me"})
        assert made.status_code == 201, made.text
        execution_id = made.json()["id"]
        assert made.json()["phase"] == "PENDING"
        cancel = http.post(f"/executions/{execution_id}/cancel")
        assert cancel.status_code == 202, cancel.text
        again = http.post(f"/executions/{execution_id}/cancel")
        assert again.status_code == 409, again.text
    events = dstack.cli("execution", "logs", execution_id, "--output", "json", check=True)
    phases = [json.loads(line)["payload"].get("phase") for line in events.stdout.splitlines()]
    assert [p for p in phases if p] == ["PENDING", "CANCELLED"], phases


def test_a_hung_temporal_or_api_server_is_restarted_and_runs_go_on(tmp_path: Path) -> None:
    """Liveness all the time: a managed Temporal, then an API server, that runs but answers
    nothing (frozen here) is shown not ready, restarted after restart_unready_after, and
    work goes on."""
    st = new_stack(tmp_path / "home", "local", STIGMER_RESTART_UNREADY_AFTER="4")
    try:
        st.start()
        f = tmp_path / "agent.yaml"
        f.write_text(json.dumps(SPEC))
        st.cli("apply", "-f", str(f), check=True)
        old = pid_of(st, "temporal")
        os.kill(old, signal.SIGSTOP)
        try:
            st.wait_for(lambda s: not s["ready"], timeout=30, what="the stack not ready")
            restarted = st.wait_for(
                lambda s: (
                    next(c for c in s["components"] if c["name"] == "temporal")["pid"]
                    not in (None, old)
                ),
                timeout=60,
                what="Temporal restarted",
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(old, signal.SIGCONT)
        temporal = next(c for c in restarted["components"] if c["name"] == "temporal")
        crash = temporal.get("last_crash") or {}
        assert "stopped answering" in (crash.get("error") or ""), temporal
        st.wait_for(lambda s: s["ready"], timeout=90, what="the stack ready again")
        run = st.cli("run", AGENT, "after the restart", "--output", "json", timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["phase"] == "COMPLETED"

        # a hung API server: shown not ready with the cause, then restarted
        api_pid = pid_of(st, "stigmer-server")
        os.kill(api_pid, signal.SIGSTOP)
        try:
            hung = st.wait_for(lambda s: not s["ready"], timeout=30, what="the API not ready")
            server = next(c for c in hung["components"] if c["name"] == "stigmer-server")
            assert "does not answer" in (server.get("waiting_for") or ""), server
            st.wait_for(
                lambda s: (
                    next(c for c in s["components"] if c["name"] == "stigmer-server")["pid"]
                    not in (None, api_pid)
                ),
                timeout=60,
                what="the API server restarted",
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(api_pid, signal.SIGCONT)
        st.wait_for(lambda s: s["ready"], timeout=90, what="the stack ready again")
        again = st.cli("run", AGENT, "after the API restart", "--output", "json", timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        tear_down(st)
