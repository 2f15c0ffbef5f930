"""A human in the loop: calls wait, durably, for approval; cancel stops a tool at once; retries shown.

Every test runs against a real stack (Temporal, the API, a runner), in local
and in docker mode; the `test` model plays the scripts, so no person and no
real model is needed. A pseudo-terminal stands in for the person at
`stigmer run`'s prompt.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from tests.conftest import STIGMER, Stack
from tests.e2e.conftest import execution, kill_runner, wait_phase
from tests.e2e.test_agents import agent_yaml, apply_text, events_of
from tests.pty_cli import run_on_pty

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


@MODES
def test_run_asks_on_a_terminal(astack: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    target = astack.home / "data" / "workspace" / f"pty-{tag}.txt"
    name = f"asked-{tag}"
    apply_text(astack, tmp_path, gated_agent(name, f"echo ran >> {target.name}; echo wrote"))
    # an answer that is none of the choices is asked again, not taken for "later"
    code, text = run_on_pty(
        ["run", name, "go"],
        astack.env,
        [
            (b"[y] approve", b"x\n"),
            (b"Please answer", b"maybe\n"),
            (b"Please answer", b"y\n"),
        ],
    )
    assert "Please answer" in text and "left waiting" not in text, text
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
            execution_id="ex-1a2b3c4d5e6f7a8b9c", call_id="t0_0", decision="approve", by="x"
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


class ScriptedModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that answers each request with the next turn of ``turns``.

    A turn is a list of ``(tool call id, tool, args)`` or a final text: the ids are
    the model's to choose, as a real provider's are.
    """

    turns: ClassVar[list[Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        turn = ScriptedModel.turns.pop(0) if ScriptedModel.turns else "Done."
        if isinstance(turn, str):
            delta: dict[str, Any] = {"role": "assistant", "content": turn}
            finish = "stop"
        else:
            delta = {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": i,
                        "id": cid,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                    for i, (cid, name, args) in enumerate(turn)
                ],
            }
            finish = "tool_calls"
        usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        base = {"id": "c1", "created": 1, "model": body["model"]}
        self.send_response(200)
        if not body.get("stream"):
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            message = {**delta, "content": delta.get("content")}
            out = {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
            self.wfile.write(json.dumps(out).encode())
            return
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks = [
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage},
        ]
        for c in chunks:
            c = {**base, "object": "chat.completion.chunk", **c}
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


def scripted_agent(st: Stack, tmp_path: Path, turns: list[Any]) -> tuple[str, Any]:
    """An agent on a model that plays ``turns``, its shell gated; (agent name, the server)."""
    ScriptedModel.turns = list(turns)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = f"scripted-{uuid.uuid4().hex[:8]}"
    doc = {
        "apiVersion": "stigmer.ai/v1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "instructions": "test",
            "model": "openai:scripted",
            "base_url": f"http://127.0.0.1:{server.server_port}/v1",
            "tools": ["shell"],
            "local_shell": True,
            "approval": {"tools": ["shell"]},
        },
    }
    apply_text(st, tmp_path, json.dumps(doc))
    return name, server


def pending_of(st: Stack, ex_id: str) -> list[dict[str, Any]]:
    with api(st) as c:
        return c.get(f"/v1/executions/{ex_id}/approvals").json()["pending"]  # type: ignore[no-any-return]


def wait_pending(st: Stack, ex_id: str, n: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = pending_of(st, ex_id)
        if len(pending) == n:
            return pending
        time.sleep(0.2)
    raise AssertionError(f"{ex_id}: {n} waiting calls expected, got {pending_of(st, ex_id)}")


@pytest.mark.parametrize("astack", ["local"], indirect=True)
def test_a_model_reusing_a_call_id_gets_asked_again(astack: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    target = astack.home / "data" / "workspace" / f"reuse-{tag}.txt"
    turns = [
        [("call_0", "shell", {"command": f"echo one >> {target.name}"})],
        [("call_0", "shell", {"command": f"echo two >> {target.name}"})],
        "finished",
    ]
    name, server = scripted_agent(astack, tmp_path, turns)
    try:
        ex_id = astack.cli("run", name, "go", "--detach", check=True).stdout.strip()
        [first] = wait_pending(astack, ex_id, 1)
        assert first["call_id"] == "call_0"
        astack.cli("execution", "approve", ex_id, "call_0", check=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = pending_of(astack, ex_id)
            if pending:
                break
            time.sleep(0.2)
        [second] = pending
        # the same model id again waits for a decision of its own, under an id of the workflow's
        assert second["tool_call_id"] == "call_0" and second["call_id"] != "call_0"
        assert execution(astack, ex_id)["phase"] == "AWAITING_APPROVAL"
        assert target.read_text() == "one\n"
        again = astack.cli("execution", "approve", ex_id, "call_0")
        assert again.returncode == 13 and "approved by admin" in again.stderr, again.stderr
        astack.cli("execution", "deny", ex_id, second["call_id"], "--reason", "no", check=True)
        wait_phase(astack, ex_id, "COMPLETED")
        assert target.read_text() == "one\n"
    finally:
        server.shutdown()


@pytest.mark.parametrize("astack", ["local"], indirect=True)
def test_odd_call_ids_cannot_steer_a_decision(astack: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    pwned = astack.home / "data" / "workspace" / f"pwned-{tag}"
    turns = [
        [
            ("d?", "shell", {"command": "echo harmless"}),
            ("%65", "shell", {"command": "echo harmless too"}),
            ("d", "shell", {"command": f"touch {pwned.name}"}),
            ("e", "shell", {"command": f"touch {pwned.name}-e"}),
        ],
        "finished",
    ]
    name, server = scripted_agent(astack, tmp_path, turns)
    try:
        ex_id = astack.cli("run", name, "go", "--detach", check=True).stdout.strip()
        pending = wait_pending(astack, ex_id, 4)
        ids = {p["tool_call_id"]: p["call_id"] for p in pending}
        assert ids["d"] == "d" and ids["e"] == "e"
        assert ids["d?"].startswith("approval-") and ids["%65"].startswith("approval-")
        # the ids as the model gave them name no waiting call: nothing is decided by them
        for odd in ("d?", "%65"):
            r = astack.cli("execution", "approve", ex_id, odd)
            assert r.returncode == 13, r.stdout + r.stderr
        assert len(pending_of(astack, ex_id)) == 4
        for odd in ("d?", "%65"):
            astack.cli("execution", "approve", ex_id, ids[odd], check=True)
        for bad in ("d", "e"):
            astack.cli("execution", "deny", ex_id, bad, "--reason", "no", check=True)
        wait_phase(astack, ex_id, "COMPLETED")
        assert not pwned.exists() and not Path(f"{pwned}-e").exists()
        # a decision on a call someone decided already is refused, naming what was decided
        late = astack.cli("execution", "approve", ex_id, "d")
        assert late.returncode == 13 and "denied by admin" in late.stderr, late.stderr
    finally:
        server.shutdown()


def test_terminal_controls_are_shown_not_obeyed() -> None:
    from stigmer.cli._output import terminal_safe

    forged = "ok\x1b[1A\x1b[2K\x1b[32mapproved\x1b[0m \u202eevil\x9b"
    shown = terminal_safe(forged)
    assert "\x1b" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert "\u241b[1A" in shown and "approved" in shown


@pytest.mark.parametrize("astack", ["local"], indirect=True)
def test_ctrl_c_on_a_terminal_detaches_and_the_execution_goes_on(
    astack: Stack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    name = f"detached-{tag}"
    doc = json.loads(
        agent_yaml(
            name,
            ["shell"],
            [{"tool": "shell", "args": {"command": f"sleep 3; echo {tag}"}}, {"answer": "ok"}],
        )
    )
    apply_text(astack, tmp_path, json.dumps(doc))
    # Ctrl-C while the call runs, then Enter: the default is to detach
    code, text = run_on_pty(
        ["run", name, "go"], astack.env, [(b"sleep 3", b"\x03"), (b"[D/c]", b"\r")]
    )
    assert code == 130, text
    assert "detached; the execution goes on" in text, text
    assert "Interrupted." not in text, text  # the note says it, once
    ex_id = re.search(r"logs -f (ex-[0-9a-f]+)", text)
    assert ex_id, text
    assert wait_phase(astack, ex_id.group(1), "COMPLETED")["output"] == "ok"


@pytest.mark.parametrize("astack", ["local"], indirect=True)
def test_odd_ids_and_names_are_looked_up_not_sent_as_url(astack: Stack, tmp_path: Path) -> None:
    # a pasted escape code, a space, ?, / or ..: not found at once, not "the API is not answering"
    for odd in ("ex-1\x1b[0m", "ex 1/../x?y", "ex-1#frag", "%2e%2e"):
        proc = astack.cli("execution", "get", odd)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert "There is no execution" in proc.stderr and "not answering" not in proc.stderr
    proc = astack.cli("agent", "get", "a b?c")
    assert proc.returncode == 4 and "There is no agent named" in proc.stderr, proc.stderr
    name = f"summarize-{uuid.uuid4().hex[:6]}"
    apply_text(astack, tmp_path, agent_yaml(name, [], [{"answer": "x"}]))
    proc = astack.cli("run", name.replace("summarize", "summarise"), "hi")
    assert proc.returncode == 4 and f"(did you mean `{name}`?)" in proc.stderr, proc.stderr
    # a filter on a misspelled agent is not "no executions yet"
    proc = astack.cli("execution", "list", "--agent", name.replace("summarize", "summarise"))
    assert proc.returncode == 4 and f"(did you mean `{name}`?)" in proc.stderr, proc.stderr
    proc = astack.cli("execution", "list", "--agent", name)
    assert proc.returncode == 0 and f"No executions of {name} yet" in proc.stdout, proc.stdout
