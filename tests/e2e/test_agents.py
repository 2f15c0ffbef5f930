"""Agents and durable executions end to end, with the runner in local and in docker mode.

One stack per mode for the module (a crash test kills its runner; the stack
recovers by design, and the later tests also prove that).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STIGMER, Stack, stack_data_converter
from tests.e2e.conftest import FAKE_ANTHROPIC, FAKE_OPENAI, kill_runner

ROOT = Path(__file__).resolve().parents[2]


def agent_yaml(
    name: str, tools: list[str], script: list[dict[str, Any]], instructions: str = "test"
) -> str:
    return json.dumps(
        {
            "apiVersion": "stigmer.ai/v1",
            "kind": "Agent",
            "metadata": {"name": name},
            "spec": {
                "instructions": instructions,
                "model": "test",
                "tools": tools,
                "local_shell": True,  # local mode: these agents may use shell
                "test_script": script,
            },
        }
    )


def apply_text(st: Stack, tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / f"agent-{time.monotonic_ns()}.yaml"
    f.write_text(text)
    return st.cli("apply", "-f", str(f))


def run_json(st: Stack, *args: str, timeout: float = 180) -> tuple[int, dict[str, Any]]:
    proc = st.cli("run", *args, "--output", "json", timeout=timeout)
    return proc.returncode, json.loads(proc.stdout)


def start_run_json(st: Stack, agent: str, message: str) -> subprocess.Popen[str]:
    """`stigmer run AGENT MESSAGE --output json` in the background (communicate() for its end)."""
    return subprocess.Popen(
        [STIGMER, "run", agent, message, "--output", "json"],
        env=st.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events_of(st: Stack, execution_id: str) -> list[dict[str, Any]]:
    out = st.cli("execution", "logs", execution_id, "--output", "json", check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def activity_types(st: Stack, workflow_id: str) -> list[str]:
    """The activity types scheduled by a workflow, from its Temporal history."""
    import asyncio

    from temporalio.client import Client

    async def fetch() -> list[str]:
        client = await Client.connect(f"127.0.0.1:{st.ports['temporal']}")  # names are not sealed
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        return [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]

    return asyncio.run(fetch())


def replay_in_sandbox(st: Stack, workflow_id: str) -> None:
    """Replay a workflow's history with the sandboxed runner; raises on non-determinism."""
    import asyncio

    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
    from temporalio.client import Client
    from temporalio.worker import Replayer
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from stigmer.runner.workflows import name_agent

    async def replay() -> None:
        client = await Client.connect(f"127.0.0.1:{st.ports['temporal']}")
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        replayer = Replayer(
            workflows=[name_agent()],  # the class, with its agent named for the plugin
            plugins=[PydanticAIPlugin()],
            data_converter=stack_data_converter(st),
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules(
                    "stigmer._version"
                )
            ),
        )
        result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
        assert result.replay_failure is None, result.replay_failure

    asyncio.run(replay())


def assert_clean_log(events: list[dict[str, Any]]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), f"sequence numbers not strictly increasing: {seqs}"
    assert seqs == list(range(1, len(seqs) + 1)), f"gap in sequence numbers: {seqs}"
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "duplicate events"


def test_example_run_writes_the_report(astack: Stack, tmp_path: Path) -> None:
    ws = astack.home / "data" / "workspace"
    (ws / "notes").mkdir(parents=True, exist_ok=True)
    (ws / "notes" / "alpha.txt").write_text("Alpha is where it starts.\n")
    (ws / "notes" / "omega.txt").write_text("Omega is where it ends.\n")
    astack.cli("apply", "-f", str(ROOT / "examples" / "summarize-folder.yaml"), check=True)
    again = astack.cli("apply", "-f", str(ROOT / "examples" / "summarize-folder.yaml"), check=True)
    assert "unchanged" in again.stdout
    code, result = run_json(astack, "summarize-folder", "Summarize the notes folder")
    assert code == 0, result
    assert result["phase"] == "COMPLETED"
    assert "reports/notes-summary.md" in result["output"]
    report = (ws / "reports" / "notes-summary.md").read_text()
    assert "Alpha is where it starts." in report and "Omega is where it ends." in report
    events = events_of(astack, result["id"])
    assert_clean_log(events)
    done = [e for e in events if e["type"] == "tool_call" and e["payload"]["status"] == "completed"]
    assert {e["payload"]["name"] for e in done} == {"list_files", "read_file", "write_file"}
    assert all(e["payload"]["result"] for e in done)
    assert all("duration_ms" in e["payload"] for e in done)
    started = [
        e for e in events if e["type"] == "tool_call" and e["payload"]["status"] == "started"
    ]
    # the arguments the tool ran with (defaults filled in)
    assert started[0]["payload"]["args"] == {"path": "notes", "recursive": True}
    # one activity per model request and per tool call: the tool activities publish
    # their own events (no event-handler activity per tool event); the workflow's
    # own events go out in local activities
    kinds = activity_types(astack, result["workflow_id"])
    tool_kind = "agent__stigmer_agent__toolset__workspace__call_tool"
    assert set(kinds) == {"agent__stigmer_agent__model_request_stream", tool_kind}, kinds
    assert kinds.count(tool_kind) == len(done), kinds
    # the history replays in the workflow sandbox, whichever runner recorded it
    replay_in_sandbox(astack, result["workflow_id"])
    runner_log = "".join(
        p.read_text(errors="replace") for p in (astack.home / "logs").glob("agent-runner*.log*")
    )
    sandbox = "on" if astack.mode == "local" else "off"  # type: ignore[attr-defined]
    assert f"(workflow sandbox {sandbox})" in runner_log
    phases = [e["payload"]["phase"] for e in events if e["type"] == "phase"]
    assert phases == ["PENDING", "RUNNING", "COMPLETED"]
    assert any(e["type"] == "usage" for e in events)
    assert any(e["type"] == "message" and e["payload"]["role"] == "human" for e in events)
    assert any(e["type"] == "message" and e["payload"]["role"] == "ai" for e in events)


def test_todo_example(astack: Stack) -> None:
    ws = astack.home / "data" / "workspace"
    (ws / "src").mkdir(parents=True, exist_ok=True)
    (ws / "src" / "app.py").write_text(
        "x = 1  # TODO: name this\n# FIXME: remove\n" + "ok = True\n" * 8 + "# TODO: line 11\n"
    )
    astack.cli("apply", "-f", str(ROOT / "examples" / "find-todos.yaml"), check=True)
    code, result = run_json(astack, "find-todos", "List the TODOs of src")
    assert code == 0 and result["phase"] == "COMPLETED", result
    todos = (ws / "todos.md").read_text()
    assert (
        "- [ ] src/app.py:1:" in todos and "TODO: name this" in todos and "FIXME: remove" in todos
    )
    # by file, then by line number (not as text: 2 before 11)
    assert todos.index("src/app.py:2:") < todos.index("src/app.py:11:"), todos


def test_a_failed_scripted_call_stops_the_run_unless_the_step_goes_on(
    astack: Stack, tmp_path: Path
) -> None:
    """The test model stops at a failed call (FAILED, naming the step and the error);
    ``on_error: continue`` goes on; usage counts every call, failed ones too."""
    script: list[dict[str, Any]] = [
        {"tool": "list_files", "args": {"path": "no-such-folder"}},
        {"answer": "should not get here"},
    ]
    apply_text(astack, tmp_path, agent_yaml("stopper", ["list_files", "read_file"], script))
    code, result = run_json(astack, "stopper", "go")
    assert code == 1 and result["phase"] == "FAILED", result
    events = events_of(astack, result["id"])
    (failed,) = [e for e in events if e["type"] == "phase" and e["payload"]["phase"] == "FAILED"]
    error = failed["payload"]["error"]
    assert "test_script step 1 of 2 (list_files) failed" in error, error
    assert "'no-such-folder' does not exist" in error and "on_error: continue" in error
    assert not any(e["type"] == "message" and e["payload"]["role"] == "ai" for e in events)

    script = [
        {"tool": "list_files", "args": {"path": "no-such-folder"}, "on_error": "continue"},
        {
            "tool": "read_file",
            "each": "a.txt\nb.txt",
            "args": {"path": "{{ item }}"},
            "on_error": "continue",
        },
        {"answer": "went on after: {{ result.0 }}; read: [{{ reads }}]"},
    ]
    apply_text(astack, tmp_path, agent_yaml("goer", ["list_files", "read_file"], script))
    code, result = run_json(astack, "goer", "go")
    assert code == 0 and result["phase"] == "COMPLETED", result
    assert "'no-such-folder' does not exist" in result["output"]
    assert "read: []" in result["output"]  # failed reads are no reads
    events = events_of(astack, result["id"])
    (usage,) = [e["payload"] for e in events if e["type"] == "usage"]
    assert usage["tool_calls"] == 3, usage


def test_the_logs_say_when_each_execution_starts_and_ends(astack: Stack, tmp_path: Path) -> None:
    """One line per execution start and end in the runner's log (id, agent, phase, duration),
    no line per event published, and no alembic plugin lines from the API server."""
    import re

    script: list[dict[str, Any]] = [
        {"tool": "write_file", "args": {"path": "logged.txt", "content": "x"}},
        {"tool": "read_file", "args": {"path": "logged.txt"}},
        {"answer": "ok"},
    ]
    apply_text(astack, tmp_path, agent_yaml("logged", ["write_file", "read_file"], script))
    bad = [{"tool": "read_file", "args": {"path": "nope.txt"}}]
    apply_text(astack, tmp_path, agent_yaml("logged-bad", ["read_file"], bad))
    code, ok = run_json(astack, "logged", "go")
    assert code == 0, ok
    code, failed = run_json(astack, "logged-bad", "go")
    assert code == 1, failed
    deadline = time.monotonic() + 10
    while True:
        out = astack.cli("server", "logs", "-c", "agent-runner", check=True).stdout
        if f"execution {failed['id']} ended" in out or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for ex, agent, phase in ((ok, "logged", "COMPLETED"), (failed, "logged-bad", "FAILED")):
        starts = re.findall(rf"execution {ex['id']} started: agent {agent}, model test$", out, re.M)
        ends = re.findall(
            rf"execution {ex['id']} ended: agent {agent}, {phase} in \d+\.\ds$", out, re.M
        )
        assert len(starts) == 1 and len(ends) == 1, out
    assert "HTTP Request" not in out and "/events" not in out, out
    server = astack.cli("server", "logs", "-c", "stigmer-server", check=True).stdout
    assert "alembic.runtime.plugins" not in server and "Context impl" not in server, server


def test_runner_crash_mid_tool_completes_without_duplicates(astack: Stack, tmp_path: Path) -> None:
    script = [
        {"tool": "shell", "args": {"command": "sleep 6; echo slept"}},
        {"answer": "{{ last }}"},
    ]
    apply_text(astack, tmp_path, agent_yaml("sleeper", ["shell"], script))
    ex_id = astack.cli("run", "sleeper", "nap", "--detach", check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        evs = events_of(astack, ex_id)
        if any(e["type"] == "tool_call" and e["payload"]["status"] == "started" for e in evs):
            break
        time.sleep(0.2)
    time.sleep(1)  # the tool runs now
    kill_runner(astack)
    follow = astack.cli("execution", "logs", "-f", ex_id, timeout=180)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    ex = json.loads(astack.cli("execution", "get", ex_id, "--output", "json", check=True).stdout)
    assert ex["phase"] == "COMPLETED"
    assert "slept" in ex["output"]
    events = events_of(astack, ex_id)
    assert_clean_log(events)
    completed = [
        e for e in events if e["type"] == "tool_call" and e["payload"]["status"] == "completed"
    ]
    assert len(completed) == 1
    assert astack.component("agent-runner")["restarts"] >= 1


def test_cancel_gives_cancelled_and_nonzero_exit(astack: Stack, tmp_path: Path) -> None:
    import uuid

    marker = f"cancel-marker-{uuid.uuid4().hex[:10]}"
    script = [
        {"tool": "shell", "args": {"command": f"sleep 120; echo {marker}"}},
        {"answer": "never"},
    ]
    apply_text(astack, tmp_path, agent_yaml("long-sleeper", ["shell"], script))
    proc = start_run_json(astack, "long-sleeper", "zzz")
    try:
        deadline = time.monotonic() + 60
        ex_id = None
        while time.monotonic() < deadline and ex_id is None:
            items = json.loads(
                astack.cli(
                    "execution", "list", "--agent", "long-sleeper", "--output", "json", check=True
                ).stdout
            )["executions"]
            running = [e for e in items if e["phase"] == "RUNNING"]
            ex_id = running[0]["id"] if running else None
            time.sleep(0.3)
        assert ex_id
        time.sleep(1)
        astack.cli("execution", "cancel", ex_id, check=True)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 3, out + err
    assert json.loads(out)["phase"] == "CANCELLED"
    # the execution ends after its tool stopped: the shell is gone, not left running
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert alive.returncode == 1, f"the cancelled tool still runs: {alive.stdout}"
    events = events_of(astack, ex_id)
    assert_clean_log(events)
    assert events[-1]["type"] == "phase" and events[-1]["payload"]["phase"] == "CANCELLED"
    ends = [e for e in events if e["type"] == "tool_call" and e["payload"]["status"] != "started"]
    assert [e["payload"]["status"] for e in ends] == ["failed"], ends
    assert "cancelled" in ends[0]["payload"]["result"]
    # nothing is appended after the final phase, even by a late publisher
    time.sleep(1)
    assert events_of(astack, ex_id) == events
    again = astack.cli("execution", "cancel", ex_id)
    assert again.returncode != 0 and "already ended" in again.stderr


def test_resumable_stream_has_no_gap_or_repeat(astack: Stack, tmp_path: Path) -> None:
    from stigmer.client import Client
    from stigmer.settings import resolve

    script = [
        {"tool": "shell", "args": {"command": "sleep 1; echo one"}},
        {"tool": "shell", "args": {"command": "sleep 1; echo two"}},
        {"answer": "done"},
    ]
    apply_text(astack, tmp_path, agent_yaml("two-steps", ["shell"], script))
    settings = resolve(astack.home, env=astack.env)
    with Client(settings) as client:
        ex = client.run("two-steps", "go", {}, None)
        first: list[dict[str, Any]] = []
        for e in client.stream(ex["id"]):
            first.append(e)
            if len(first) == 4:
                break  # the client goes away mid-run
        rest = list(client.stream(ex["id"], after=first[-1]["seq"]))
        full = client.events(ex["id"])
    got = first + rest
    assert [e["seq"] for e in got] == [e["seq"] for e in full]
    assert [e["event_id"] for e in got] == [e["event_id"] for e in full]
    assert got[-1]["payload"].get("phase") == "COMPLETED"


def test_the_stream_ends_with_the_ended_execution_and_calls_in_order(
    astack: Stack, tmp_path: Path
) -> None:
    """A named stream's last message is the execution as it ended (what GET answers).

    A quick tool call of a run the worker knows publishes started with its result:
    every call still shows started, then completed, then its tool message.
    """
    import httpx

    script = [
        {"tool": "shell", "args": {"command": "echo quick"}},
        {"tool": "shell", "args": {"command": "sleep 0.6; echo slow"}},
        {"answer": "done"},
    ]
    apply_text(astack, tmp_path, agent_yaml("ends-with-it", ["shell"], script))
    ex_id = astack.cli("run", "ends-with-it", "go", "--detach", check=True).stdout.strip()
    token = (astack.home / "credentials" / "api-token").read_text().strip()
    url = f"http://127.0.0.1:{astack.ports['server']}/v1/executions/{ex_id}/events"
    messages: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream(
        "GET",
        url,
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        timeout=120,
    ) as resp:
        kind = ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                messages.append((kind, json.loads(line[5:])))
    kind, ended = messages[-1]
    assert kind == "execution", messages[-1]
    got = httpx.get(
        f"http://127.0.0.1:{astack.ports['server']}/v1/executions/{ex_id}",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert ended == got and ended["phase"] == "COMPLETED", (ended, got)
    events = [m for k, m in messages[:-1]]
    assert ended["last_seq"] == events[-1]["seq"]
    assert_clean_log(events)
    calls = [e["payload"] for e in events if e["type"] == "tool_call"]
    assert [(c["tool_call_id"], c["status"]) for c in calls] == [
        (calls[0]["tool_call_id"], "started"),
        (calls[0]["tool_call_id"], "completed"),
        (calls[2]["tool_call_id"], "started"),
        (calls[2]["tool_call_id"], "completed"),
    ], calls
    # the CLI's JSON is the same execution, without asking for it after the stream
    code, out = run_json(astack, "ends-with-it", "again")
    assert code == 0 and out["phase"] == "COMPLETED" and out["output"] == "done"
    assert out["last_seq"] == events_of(astack, out["id"])[-1]["seq"]


def test_twenty_concurrent_runs_complete(astack: Stack, tmp_path: Path) -> None:
    script = [{"tool": "shell", "args": {"command": "echo hi"}}, {"answer": "ok {{ message }}"}]
    apply_text(astack, tmp_path, agent_yaml("quick", ["shell"], script))

    def one(i: int) -> tuple[int, dict[str, Any]]:
        return run_json(astack, "quick", f"n{i}", timeout=300)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert [code for code, _ in results] == [0] * 20, results
    assert sorted(r["output"] for _, r in results) == sorted(f"ok n{i}" for i in range(20))


def test_shell_env_shows_no_secrets(astack: Stack, tmp_path: Path) -> None:
    script = [{"tool": "shell", "args": {"command": "env"}}, {"answer": "{{ last }}"}]
    apply_text(astack, tmp_path, agent_yaml("env-dump", ["shell"], script))
    code, result = run_json(astack, "env-dump", "show env", "--env", "VISIBLE=yes")
    assert code == 0, result
    out = result["output"]
    assert "PATH=" in out and "VISIBLE=yes" in out
    token = (astack.home / "credentials" / "api-token").read_text().strip()
    for secret in (FAKE_OPENAI, FAKE_ANTHROPIC, token):
        assert secret not in out
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "STIGMER_API_TOKEN",
        "STIGMER_TEMPORAL_API_KEY",
    ):
        assert name not in out
    # and the keys never reach the logs
    logs = "".join(p.read_text(errors="replace") for p in (astack.home / "logs").glob("*.log*"))
    for secret in (FAKE_OPENAI, FAKE_ANTHROPIC, token):
        assert secret not in logs


def test_path_escape_is_refused(astack: Stack, tmp_path: Path) -> None:
    script = [
        {"tool": "read_file", "args": {"path": "../../../etc/passwd"}, "on_error": "continue"},
        {"answer": "{{ last }}"},
    ]
    apply_text(astack, tmp_path, agent_yaml("escaper", ["read_file"], script))
    code, result = run_json(astack, "escaper", "read it")
    assert code == 0, result
    events = events_of(astack, result["id"])
    failed = [e for e in events if e["type"] == "tool_call" and e["payload"]["status"] == "failed"]
    assert failed and "outside the workspace" in failed[0]["payload"]["result"]
    assert "root:" not in result["output"]


def test_calls_refused_before_a_tool_runs_are_logged(astack: Stack, tmp_path: Path) -> None:
    """A call with invalid arguments never reaches a tool activity; the log still shows it."""
    script = [
        {"tool": "read_file", "args": {"wrong": "x"}, "on_error": "continue"},
        {"tool": "read_file", "args": {"path": "missing.txt"}, "on_error": "continue"},
        {"answer": "gave up"},
    ]
    applied = apply_text(astack, tmp_path, agent_yaml("fumbler", ["read_file"], script))
    assert applied.returncode == 0, applied.stderr
    code, result = run_json(astack, "fumbler", "try")
    assert code == 0, result
    events = events_of(astack, result["id"])
    assert_clean_log(events)
    failed = [e for e in events if e["type"] == "tool_call" and e["payload"]["status"] == "failed"]
    assert [e["payload"]["name"] for e in failed] == ["read_file", "read_file"], failed
    assert "path" in failed[0]["payload"]["result"]  # the validation error names the field
    assert (
        "does not exist" in failed[1]["payload"]["result"]
        or "not a file" in failed[1]["payload"]["result"]
    )
    tool_messages = [e for e in events if e["type"] == "message" and e["payload"]["role"] == "tool"]
    assert len(tool_messages) == 2


def test_api_server_killed_mid_run(astack: Stack, tmp_path: Path) -> None:
    """The API dies while a tool runs: the tool runs once, no event is lost or repeated,
    and `stigmer run` follows the run to its end once the supervisor restarted the API."""
    import uuid

    ws = astack.home / "data" / "workspace"
    ws.mkdir(parents=True, exist_ok=True)
    log = f"side-effect-{uuid.uuid4().hex[:8]}.log"
    script = [
        {"tool": "shell", "args": {"command": f"date >> {log}; sleep 3; echo ran"}},
        {"answer": "{{ last }}"},
    ]
    apply_text(astack, tmp_path, agent_yaml("api-outage", ["shell"], script))
    server = next(c for c in astack.status()["components"] if c["name"] == "stigmer-server")
    proc = start_run_json(astack, "api-outage", "go")
    try:
        deadline = time.monotonic() + 60
        while not (ws / log).exists():
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.1)
        os.kill(server["pid"], signal.SIGKILL)  # the supervisor restarts it
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    result = json.loads(out)
    assert result["phase"] == "COMPLETED", result
    assert len((ws / log).read_text().splitlines()) == 1, "the tool ran more than once"
    events = events_of(astack, result["id"])
    assert_clean_log(events)
    statuses = [e["payload"]["status"] for e in events if e["type"] == "tool_call"]
    assert statuses == ["started", "completed"], statuses
    restarted = next(c for c in astack.status()["components"] if c["name"] == "stigmer-server")
    assert restarted["pid"] != server["pid"]


@pytest.mark.parametrize("astack", ["docker"], indirect=True)
def test_a_refused_write_goes_to_the_model_not_to_retries(astack: Stack, tmp_path: Path) -> None:
    """The workspace refuses (a folder the runner's uid may not write): the model sees why."""
    import uuid

    folder = astack.home / "data" / "workspace" / f"ro-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    os.chown(folder, 0, 0)
    folder.chmod(0o555)
    script = [
        {
            "tool": "write_file",
            "args": {"path": f"{folder.name}/x.txt", "content": "x"},
            "on_error": "continue",
        },
        {"answer": "saw: {{ last }}"},
    ]
    name = f"refused-{uuid.uuid4().hex[:6]}"
    apply_text(astack, tmp_path, agent_yaml(name, ["write_file"], script))
    code, result = run_json(astack, name, "go")
    assert code == 0, result
    assert "Permission denied" in result["output"], result
    events = events_of(astack, result["id"])
    assert not [e for e in events if e["type"] == "retry"], "a refused write was retried"


@pytest.mark.parametrize("astack", ["local"], indirect=True)
def test_an_unset_secret_is_named_not_passed_as_nothing(astack: Stack, tmp_path: Path) -> None:
    import uuid

    doc = json.loads(
        agent_yaml(
            f"unset-{uuid.uuid4().hex[:6]}",
            ["shell"],
            [
                {"tool": "shell", "args": {"command": "echo tok=$MYTOK"}, "on_error": "continue"},
                {"answer": "{{ last }}"},
            ],
        )
    )
    doc["spec"]["env"] = {"MYTOK": {"secret": "NEVER_SET_TOKEN_X"}}
    apply_text(astack, tmp_path, json.dumps(doc))
    code, result = run_json(astack, doc["metadata"]["name"], "go")
    assert code == 0, result
    assert "NEVER_SET_TOKEN_X (for MYTOK)" in result["output"] and "tok=" not in result["output"]
