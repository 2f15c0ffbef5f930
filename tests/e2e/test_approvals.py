"""A human in the loop: calls wait, durably, for approval; cancel stops a tool at once; retries shown.

Every test runs against a real stack (Temporal, the API, a runner), in local
and in docker mode; the `test` model plays the scripts, so no person and no
real model is needed. A pseudo-terminal stands in for the person at
`stigmer run`'s prompt.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import STIGMER, Stack
from tests.e2e.conftest import execution, kill_runner, wait_phase
from tests.e2e.test_agents import agent_yaml, apply_text, events_of

MODES = pytest.mark.parametrize("astack", ["local", "docker"], indirect=True)


def gated_agent(name: str, command: str, *, timeout: str = "1h", on_timeout: str = "deny") -> str:
    doc = json.loads(
        agent_yaml(
            name,
            ["shell"],
            [{"tool": "shell", "args": {"command": command}}, {"answer": "after: {{ last }}"}],
        )
    )
    doc["spec"]["approval"] = {"tools": ["shell"], "timeout": timeout, "on_timeout": on_timeout}
    return json.dumps(doc)


def start_gated(st: Stack, tmp_path: Path, **kw: str) -> tuple[str, Path, str]:
    """A gated agent whose shell call appends a line to a file of its own; started, detached."""
    tag = uuid.uuid4().hex[:10]
    name = f"gated-{tag}"
    target = f"approved-{tag}.txt"
    apply_text(st, tmp_path, gated_agent(name, f"echo ran >> {target}; echo wrote", **kw))
    ex_id = st.cli("run", name, "go", "--detach", check=True).stdout.strip()
    return ex_id, st.home / "data" / "workspace" / target, name


def api(st: Stack) -> httpx.Client:
    token = (st.home / "credentials" / "api-token").read_text().strip()
    return httpx.Client(
        base_url=f"http://127.0.0.1:{st.ports['server']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def started_calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "tool_call" and e["payload"]["status"] == "started"]


@MODES
def test_approved_call_runs_once(astack: Stack, tmp_path: Path) -> None:
    ex_id, target, _ = start_gated(astack, tmp_path)
    ex = wait_phase(astack, ex_id, "AWAITING_APPROVAL")
    assert ex["phase"] == "AWAITING_APPROVAL"
    time.sleep(1)
    assert not target.exists(), "the call ran before it was approved"
    listing = astack.cli("execution", "list", check=True).stdout
    assert "AWAITING_APPROVAL" in listing
    astack.cli("execution", "approve", ex_id, check=True)
    ex = wait_phase(astack, ex_id, "COMPLETED")
    assert target.read_text() == "ran\n", "the approved call ran more than once, or never"
    events = events_of(astack, ex_id)
    assert len(started_calls(events)) == 1
    kinds = [e["type"] for e in events]
    assert kinds.index("approval_requested") < kinds.index("approval_decided")
    decided = next(e for e in events if e["type"] == "approval_decided")["payload"]
    assert decided["decision"] == "approved" and decided["by"] == "admin"
    phases = [e["payload"]["phase"] for e in events if e["type"] == "phase"]
    assert phases == ["PENDING", "RUNNING", "AWAITING_APPROVAL", "RUNNING", "COMPLETED"]
    # nothing waits any more: the API says so with a 409, and the CLI names it
    with api(astack) as c:
        r = c.post(f"/v1/executions/{ex_id}/approvals/t0", json={"decision": "approve"})
        assert r.status_code == 409, r.text
    again = astack.cli("execution", "approve", ex_id)
    assert again.returncode != 0 and "waits for approval" in again.stderr


@MODES
def test_denied_call_never_runs_and_the_model_sees_why(astack: Stack, tmp_path: Path) -> None:
    ex_id, target, _ = start_gated(astack, tmp_path)
    wait_phase(astack, ex_id, "AWAITING_APPROVAL")
    astack.cli("execution", "deny", ex_id, "t0", "--reason", "not on a Friday", check=True)
    ex = wait_phase(astack, ex_id, "COMPLETED")
    assert not target.exists()
    assert "not on a Friday" in ex["output"]  # the model's next message: "after: {{ last }}"
    events = events_of(astack, ex_id)
    assert not started_calls(events)
    ai = [e["payload"]["content"] for e in events if e["type"] == "message"]
    assert any("denied" in m and "not on a Friday" in m for m in ai)
    text = astack.cli("execution", "logs", ex_id, check=True).stdout
    assert "denied shell" in text and "? approval shell" in text


@MODES
def test_wait_survives_a_killed_runner_and_a_restarted_stack(astack: Stack, tmp_path: Path) -> None:
    ex_id, target, _ = start_gated(astack, tmp_path)
    wait_phase(astack, ex_id, "AWAITING_APPROVAL")
    kill_runner(astack)
    astack.cli("server", "restart", "--json", check=True, timeout=180)
    assert execution(astack, ex_id)["phase"] == "AWAITING_APPROVAL"
    assert not target.exists()
    astack.cli("execution", "approve", ex_id, check=True)
    wait_phase(astack, ex_id, "COMPLETED", timeout=120)
    assert target.read_text() == "ran\n"


@MODES
def test_timeout_decides_by_itself(astack: Stack, tmp_path: Path) -> None:
    ex_id, target, _ = start_gated(astack, tmp_path, timeout="3s", on_timeout="deny")
    t0 = time.monotonic()
    ex = wait_phase(astack, ex_id, "COMPLETED", timeout=60)
    assert time.monotonic() - t0 < 30
    assert not target.exists()
    decided = next(e for e in events_of(astack, ex_id) if e["type"] == "approval_decided")
    assert decided["payload"]["by"] == "timeout" and decided["payload"]["decision"] == "denied"
    assert "no decision within 3s" in ex["output"]


def _pty_run(st: Stack, agent: str, answers: list[tuple[bytes, bytes]]) -> tuple[int, str]:
    """`stigmer run AGENT go` on a pseudo-terminal; writes each answer once its prompt shows."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(STIGMER, [STIGMER, "run", agent, "go"], st.env)
    out = b""
    todo = list(answers)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if todo and todo[0][0] in out:
            os.write(fd, todo.pop(0)[1])
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


@MODES
def test_run_asks_on_a_terminal(astack: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    target = astack.home / "data" / "workspace" / f"pty-{tag}.txt"
    name = f"asked-{tag}"
    apply_text(astack, tmp_path, gated_agent(name, f"echo ran >> {target.name}; echo wrote"))
    code, text = _pty_run(astack, name, [(b"[y] approve", b"y\n")])
    assert "[y] approve" in text, text
    assert code == 0, text
    assert "COMPLETED" in text and target.read_text() == "ran\n"


@MODES
def test_run_without_a_terminal_prints_how_to_decide(astack: Stack, tmp_path: Path) -> None:
    ex_id = None
    tag = uuid.uuid4().hex[:10]
    name = f"printed-{tag}"
    apply_text(astack, tmp_path, gated_agent(name, "echo hi"))
    proc = subprocess.Popen(
        [STIGMER, "run", name, "go"],
        env=astack.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + 60
        while "stigmer execution approve" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        line = next(x for x in seen.splitlines() if "stigmer execution approve" in x)
        ex_id = line.split("stigmer execution approve ")[1].split()[0]
        astack.cli("execution", "approve", ex_id, "t0", check=True)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, seen + out + err
    assert "COMPLETED" in out


@MODES
def test_cancel_stops_a_running_tool_at_once(astack: Stack, tmp_path: Path) -> None:
    marker = f"{60 + int(uuid.uuid4().int % 1000) / 1000:.3f}"  # sleep 60.xyz: ours alone
    script: list[dict[str, Any]] = [
        {"tool": "shell", "args": {"command": f"sleep {marker}"}},
        {"answer": "never"},
    ]
    name = f"sleeper-{uuid.uuid4().hex[:8]}"
    apply_text(astack, tmp_path, agent_yaml(name, ["shell"], script))
    ex_id = astack.cli("run", name, "zzz", "--detach", check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not started_calls(events_of(astack, ex_id)):
        time.sleep(0.2)
    while time.monotonic() < deadline:  # the sleep runs now (in the container too)
        if subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    t0 = time.monotonic()
    with api(astack) as c:
        assert c.post(f"/v1/executions/{ex_id}/cancel").status_code == 202
        while time.monotonic() - t0 < 10:
            if c.get(f"/v1/executions/{ex_id}").json()["phase"] == "CANCELLED":
                break
            time.sleep(0.05)
    took = time.monotonic() - t0
    assert execution(astack, ex_id)["phase"] == "CANCELLED"
    assert took < 3, f"cancel took {took:.1f}s"
    alive = subprocess.run(["pgrep", "-af", f"sleep {marker}"], capture_output=True, text=True)
    assert alive.returncode == 1, f"the cancelled tool's sleep is still there: {alive.stdout}"


@MODES
def test_a_lost_runner_shows_as_a_retry(astack: Stack, tmp_path: Path) -> None:
    script: list[dict[str, Any]] = [
        {"tool": "shell", "args": {"command": "sleep 4; echo slept"}},
        {"answer": "{{ last }}"},
    ]
    name = f"retried-{uuid.uuid4().hex[:8]}"
    apply_text(astack, tmp_path, agent_yaml(name, ["shell"], script))
    ex_id = astack.cli("run", name, "nap", "--detach", check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not started_calls(events_of(astack, ex_id)):
        time.sleep(0.2)
    time.sleep(1)
    kill_runner(astack)
    follow = astack.cli("execution", "logs", "-f", ex_id, timeout=180)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    retries = [e["payload"] for e in events_of(astack, ex_id) if e["type"] == "retry"]
    assert retries, "no retry event"
    assert retries[0]["name"] == "shell" and retries[0]["tool_call_id"] == "t0"
    assert retries[0]["attempt"] == 2 and "timeout" in retries[0]["reason"].lower()
    assert "↻ shell call t0 attempt 2" in follow.stdout, follow.stdout


@MODES
def test_rerun_runs_the_same_input_again(astack: Stack, tmp_path: Path) -> None:
    name = f"again-{uuid.uuid4().hex[:8]}"
    apply_text(astack, tmp_path, agent_yaml(name, [], [{"answer": "echo {{ message }}"}]))
    first = json.loads(astack.cli("run", name, "hello there", "-o", "json", check=True).stdout)
    # the agent changes after the run: a rerun keeps the snapshot the first run had
    apply_text(astack, tmp_path, agent_yaml(name, [], [{"answer": "changed"}]))
    out = astack.cli("execution", "rerun", first["id"], "-o", "json", check=True).stdout
    second = json.loads(out)
    assert second["id"] != first["id"]
    assert second["phase"] == "COMPLETED" and second["output"] == "echo hello there"
    missing = astack.cli("execution", "rerun", "ex-1a2b3c4d5e6f7a8b9c")
    assert missing.returncode == 4, missing.stderr


@pytest.mark.parametrize("astack", ["local"], indirect=True)
def test_approvals_api_refuses_bad_input(astack: Stack, tmp_path: Path) -> None:
    ex_id, _, _ = start_gated(astack, tmp_path)
    wait_phase(astack, ex_id, "AWAITING_APPROVAL")
    with api(astack) as c:
        base = f"/v1/executions/{ex_id}/approvals"
        assert c.get(base).json()["pending"][0]["tool_call_id"] == "t0"
        assert c.post(f"{base}/t9", json={"decision": "approve"}).status_code == 409
        assert c.post(f"{base}/t0", json={"decision": "maybe"}).status_code == 422
        assert c.post(f"{base}/t0", json={"decision": "approve", "x": 1}).status_code == 422
        assert c.post(f"{base}/t%2F..", json={"decision": "approve"}).status_code in (404, 422)
        assert (
            c.post("/v1/executions/ex-1a2b3c4d5e6f7a8b9c/approvals/t0", json={"decision": "deny"})
        ).status_code == 404
        bare = httpx.post(
            f"http://127.0.0.1:{astack.ports['server']}{base}/t0", json={"decision": "approve"}
        )
        assert bare.status_code == 401
        # two calls never wait here; the one that does is decided by the CLI without its id
    assert execution(astack, ex_id)["phase"] == "AWAITING_APPROVAL"
    astack.cli("execution", "cancel", ex_id, check=True)
    wait_phase(astack, ex_id, "CANCELLED", timeout=30)


@pytest.mark.parametrize("astack", ["local"], indirect=True)
def test_several_waiting_calls_are_listed_and_decided_one_by_one(
    astack: Stack, tmp_path: Path
) -> None:
    import asyncio

    from temporalio.client import Client

    from stigmer.contract.workflow import APPROVAL_SIGNAL, ApprovalDecision
    from tests.conftest import stack_data_converter

    name = f"multi-{uuid.uuid4().hex[:8]}"
    doc = json.loads(
        agent_yaml(
            name,
            ["shell"],
            [
                {"tool": "shell", "each": "a\nb", "args": {"command": "echo {{ item }}"}},
                {"answer": "{{ all }}"},
            ],
        )
    )
    doc["spec"]["approval"] = {"tools": ["shell"]}
    apply_text(astack, tmp_path, json.dumps(doc))
    ex_id = astack.cli("run", name, "go", "--detach", check=True).stdout.strip()
    ex = wait_phase(astack, ex_id, "AWAITING_APPROVAL")
    both = astack.cli("execution", "approve", ex_id)
    assert both.returncode == 13, both.stderr
    assert "2 calls" in both.stderr and "t0_0" in both.stderr and "t0_1" in both.stderr

    # a sealed decision made for another execution is ignored by this one's workflow
    async def forge() -> None:
        client = await Client.connect(
            f"127.0.0.1:{astack.ports['temporal']}", data_converter=stack_data_converter(astack)
        )
        other = ApprovalDecision(
            execution_id="ex-1a2b3c4d5e6f7a8b9c", tool_call_id="t0_0", decision="approve", by="x"
        )
        await client.get_workflow_handle(ex["workflow_id"]).signal(APPROVAL_SIGNAL, other)

    asyncio.run(forge())
    time.sleep(2)
    assert execution(astack, ex_id)["phase"] == "AWAITING_APPROVAL"
    assert not any(e["type"] == "approval_decided" for e in events_of(astack, ex_id))
    astack.cli("execution", "approve", ex_id, "t0_0", check=True)
    astack.cli("execution", "deny", ex_id, "t0_1", "--reason", "one is enough", check=True)
    ex = wait_phase(astack, ex_id, "COMPLETED")
    assert "a" in ex["output"] and "one is enough" in ex["output"]
