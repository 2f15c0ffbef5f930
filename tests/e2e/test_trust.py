"""Trust boundaries: no local user and no agent can drive the runner, read secrets or forge a run.

Against the real stack, in both runner modes where it applies: a workflow
started on Temporal by someone without the stack's key, the history and the
stores read raw, a second local user, an agent's shell hunting for the token
and the keys, masking, and the event endpoint fed forgeries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STIGMER, Stack, new_stack, stack_data_converter, tear_down

ROOT = Path(__file__).resolve().parents[2]
FAKE_OPENAI = "sk-trust-openai-do-not-leak-5151"
SECRET_VALUE = f"trust-secret-{uuid.uuid4().hex}"


def agent_doc(name: str, script: list[dict[str, Any]], **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "stigmer.ai/v1",
            "kind": "Agent",
            "metadata": {"name": name},
            "spec": {
                "instructions": spec.pop("instructions", "test"),
                "model": "test",
                "tools": ["shell"],
                "local_shell": True,
                "test_script": script,
                **spec,
            },
        }
    )


@pytest.fixture(scope="module", params=["local", "docker"])
def tstack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    mode = request.param
    home = tmp_path_factory.mktemp(f"trust-{mode}") / "home"
    st = new_stack(home, mode, OPENAI_API_KEY=FAKE_OPENAI, TRUST_SECRET=SECRET_VALUE)
    if mode == "docker":
        ident = uuid.uuid4().hex[:10]
        st.env |= {
            "STIGMER_RUNNER_IMAGE": request.getfixturevalue("runner_image"),
            "STIGMER_RUNNER_CONTAINER": f"stigmer-agent-runner-trust-{ident}",
            "STIGMER_OFFLINE": "1",
        }
    st.mode = mode  # type: ignore[attr-defined]
    st.start()
    yield st
    tear_down(st)
    if mode == "docker":
        subprocess.run(
            ["docker", "rm", "-f", st.env["STIGMER_RUNNER_CONTAINER"]], capture_output=True
        )


def apply(st: Stack, tmp_path: Path, text: str) -> None:
    f = tmp_path / f"agent-{uuid.uuid4().hex[:8]}.yaml"
    f.write_text(text)
    st.cli("apply", "-f", str(f), check=True)


def run_json(st: Stack, *args: str) -> dict[str, Any]:
    proc = st.cli("run", *args, "--output", "json", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def events_of(st: Stack, execution_id: str) -> list[dict[str, Any]]:
    out = st.cli("execution", "logs", execution_id, "--output", "json", check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def api(st: Stack, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{st.ports['server']}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def token(st: Stack, name: str) -> str:
    return (st.home / "credentials" / name).read_text().strip()


def workspace(st: Stack) -> Path:
    return st.home / "data" / "workspace"


# -- sealed payloads ----------------------------------------------------------


def test_a_workflow_started_without_the_key_executes_nothing(tstack: Stack, tmp_path: Path) -> None:
    from temporalio.client import Client, WorkflowFailureError

    marker = f"forged-{uuid.uuid4().hex[:10]}"
    forged = {
        "execution_id": "ex-forged",
        "agent_name": "attacker",
        "spec": {
            "instructions": "x",
            "tools": ["shell"],
            "local_shell": True,
            "test_script": [{"tool": "shell", "args": {"command": f"touch {marker}"}}],
        },
        "message": "run it",
        "model": "test",
    }
    workflow_id = f"forged-{uuid.uuid4().hex[:8]}"

    async def attack() -> tuple[float, Any]:
        plain = await Client.connect(f"127.0.0.1:{tstack.ports['temporal']}")  # no key
        t0 = time.monotonic()
        handle = await plain.start_workflow(
            "AgentExecutionWorkflow",
            forged,
            id=workflow_id,
            task_queue="agent_execution_runner",
        )
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=60)
        took = time.monotonic() - t0
        history = await handle.fetch_history()
        # the stack's own client opens the (sealed) failure
        ours = await Client.connect(
            f"127.0.0.1:{tstack.ports['temporal']}", data_converter=stack_data_converter(tstack)
        )
        try:
            await ours.get_workflow_handle(workflow_id).result()
        except WorkflowFailureError as exc:
            return took, (history, str(exc.cause))
        raise AssertionError("the forged workflow did not fail")

    took, (history, cause) = asyncio.run(attack())
    assert "not sealed by this stack" in cause, cause
    assert took < 15, f"took {took:.1f}s to fail"
    kinds = [e.WhichOneof("attributes") for e in history.events]
    assert "workflow_execution_failed_event_attributes" in kinds
    # failed at once: no workflow task was retried, no activity was scheduled
    assert "workflow_task_failed_event_attributes" not in kinds, kinds
    assert "activity_task_scheduled_event_attributes" not in kinds, kinds
    time.sleep(1)
    assert not (workspace(tstack) / marker).exists(), "the forged shell step ran"
    # a real run still works
    apply(tstack, tmp_path, agent_doc("still-works", [{"answer": "fine"}]))
    assert run_json(tstack, "still-works", "hi")["phase"] == "COMPLETED"


def test_a_sealed_input_replayed_into_a_new_workflow_runs_nothing(
    tstack: Stack, tmp_path: Path
) -> None:
    """Copying a real, sealed input into a new workflow (a replay) executes no tool again."""
    from temporalio.api.common.v1 import WorkflowType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
    from temporalio.client import Client, WorkflowFailureError

    log = f"ran-{uuid.uuid4().hex[:8]}.log"
    script = [{"tool": "shell", "args": {"command": f"echo once >> {log}"}}, {"answer": "ok"}]
    apply(tstack, tmp_path, agent_doc("replayed", script))
    result = run_json(tstack, "replayed", "go")
    assert (workspace(tstack) / log).read_text() == "once\n"

    async def replay() -> str:
        plain = await Client.connect(f"127.0.0.1:{tstack.ports['temporal']}")
        history = await plain.get_workflow_handle(result["workflow_id"]).fetch_history()
        sealed = history.events[0].workflow_execution_started_event_attributes.input
        new_id = f"replay-{uuid.uuid4().hex[:8]}"
        await plain.workflow_service.start_workflow_execution(
            StartWorkflowExecutionRequest(
                namespace="default",
                workflow_id=new_id,
                workflow_type=WorkflowType(name="AgentExecutionWorkflow"),
                task_queue=TaskQueue(name="agent_execution_runner"),
                input=sealed,
                request_id=str(uuid.uuid4()),
            )
        )
        ours = await Client.connect(
            f"127.0.0.1:{tstack.ports['temporal']}", data_converter=stack_data_converter(tstack)
        )
        try:
            await asyncio.wait_for(ours.get_workflow_handle(new_id).result(), timeout=60)
        except WorkflowFailureError as exc:
            return f"{exc.cause}: {getattr(exc.cause, 'cause', '')}"
        raise AssertionError("the replayed workflow completed")

    cause = asyncio.run(replay())
    assert "refused" in cause, cause
    time.sleep(1)
    assert (workspace(tstack) / log).read_text() == "once\n", "the replay ran the tool again"


def replay_activity(st: Stack, workflow_id: str, activity: str, target: str) -> Any:
    """What an attacker gets who copies the sealed payloads of the first activity of
    ``workflow_id`` whose type contains ``activity`` into a workflow ``target`` of their own,
    scheduling it on the runner's queue: its result, or the exception it ended with."""
    import base64

    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from tests.attacker_workflows import ReplayActivity

    async def replay() -> Any:
        plain = await Client.connect(f"127.0.0.1:{st.ports['temporal']}")
        history = await plain.get_workflow_handle(workflow_id).fetch_history()
        scheduled = next(
            e.activity_task_scheduled_event_attributes
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
            and activity in e.activity_task_scheduled_event_attributes.activity_type.name
        )
        copied = [
            base64.b64encode(p.SerializeToString()).decode() for p in scheduled.input.payloads
        ]
        queue = f"atk-{uuid.uuid4().hex[:8]}"
        async with Worker(
            plain,
            task_queue=queue,
            workflows=[ReplayActivity],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await plain.start_workflow(
                "AgentExecutionWorkflow",
                args=[scheduled.activity_type.name, copied],
                id=target,
                task_queue=queue,
            )
            try:
                return await asyncio.wait_for(handle.result(), timeout=60)
            except Exception as exc:
                return exc

    return asyncio.run(replay())


@pytest.mark.parametrize("same_id", [False, True], ids=["new-id", "same-id"])
def test_a_tool_call_replayed_from_an_attackers_workflow_never_runs(
    tstack: Stack, tmp_path: Path, same_id: bool
) -> None:
    """Someone copies a real tool call's sealed payloads into a workflow of their own.

    With a new workflow id the payloads do not open (they are sealed for their
    workflow); with the execution's own id (the original run has ended) they
    do, but the server refuses the call's first event, from another run, so
    the tool does not run.
    """
    log = f"step-{uuid.uuid4().hex[:8]}.log"
    script = [{"tool": "shell", "args": {"command": f"echo once >> {log}"}}, {"answer": "ok"}]
    apply(tstack, tmp_path, agent_doc("stepped", script))
    result = run_json(tstack, "stepped", "go")
    assert (workspace(tstack) / log).read_text() == "once\n"
    target = result["workflow_id"] if same_id else f"atk-{uuid.uuid4().hex[:8]}"
    outcome = replay_activity(tstack, result["workflow_id"], "call_tool", target)
    assert isinstance(outcome, Exception), f"the replayed call returned {outcome!r}"
    time.sleep(1)
    assert (workspace(tstack) / log).read_text() == "once\n", "the replayed call ran the tool"


def test_a_model_request_replayed_from_an_attackers_workflow_is_not_sent(
    tstack: Stack, tmp_path: Path
) -> None:
    """Someone copies a real model request's sealed payloads into a run of the execution's id.

    Its answer would stay sealed, but sending it would spend the provider's
    credit: the runner sends a model request only for the run that owns the
    execution, so the provider sees nothing.
    """
    import threading
    from http.server import ThreadingHTTPServer

    from tests.e2e.test_openai_compatible import FakeOpenAI

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        name = f"paid-{uuid.uuid4().hex[:8]}"
        apply(
            tstack,
            tmp_path,
            json.dumps(
                {
                    "apiVersion": "stigmer.ai/v1",
                    "kind": "Agent",
                    "metadata": {"name": name},
                    "spec": {
                        "instructions": "Be brief.",
                        "model": "openai:paid-model",
                        "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                    },
                }
            ),
        )
        result = run_json(tstack, name, "say hello")
        sent = sum(r["body"].get("model") == "paid-model" for r in FakeOpenAI.requests)
        assert sent >= 1
        # the original run has ended: under its workflow id the payloads open
        wf = result["workflow_id"]
        outcome = replay_activity(tstack, wf, "__model_request", wf)
        assert isinstance(outcome, Exception), f"the replayed request returned {outcome!r}"
        chain: list[BaseException] = [outcome]
        while chain[-1].__cause__ is not None:
            chain.append(chain[-1].__cause__)  # type: ignore[arg-type]
        # refused before it was sent (the message itself is sealed)
        assert any(getattr(c, "type", None) == "EventsRefused" for c in chain), chain
        time.sleep(0.5)
        now = sum(r["body"].get("model") == "paid-model" for r in FakeOpenAI.requests)
        assert now == sent, "the replayed model request reached the provider"
    finally:
        server.shutdown()


def test_a_takeover_of_a_running_execution_cannot_make_it_complete(
    tstack: Stack, tmp_path: Path
) -> None:
    """Terminating the run and completing a workflow of the same id from one's own worker."""
    from temporalio.client import Client
    from temporalio.common import WorkflowIDConflictPolicy
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from tests.attacker_workflows import FakeCompletion

    script = [{"tool": "shell", "args": {"command": "sleep 20"}}, {"answer": "real"}]
    apply(tstack, tmp_path, agent_doc("hijacked", script))
    ex_id = tstack.cli("run", "hijacked", "x", "--detach", check=True).stdout.strip()
    queue = f"atk-{uuid.uuid4().hex[:8]}"

    async def takeover() -> None:
        plain = await Client.connect(f"127.0.0.1:{tstack.ports['temporal']}")
        async with Worker(
            plain,
            task_queue=queue,
            workflows=[FakeCompletion],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            time.sleep(2)
            handle = await plain.start_workflow(
                "AgentExecutionWorkflow",
                id=f"agent-execution/{ex_id}",
                task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
            )
            await handle.result()

    asyncio.run(takeover())
    follow = tstack.cli("execution", "logs", "-f", ex_id, timeout=120)
    done = json.loads(tstack.cli("execution", "get", ex_id, "-o", "json", check=True).stdout)
    assert done["phase"] == "FAILED", done
    assert done["output"] != "FORGED" and follow.returncode == 1


def test_history_and_stores_hold_no_plaintext(tstack: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]
    instructions = f"INSTRUCTIONS-{tag}"
    message = f"MESSAGE-{tag}"
    result_text = f"RESULT-{tag}"
    script = [
        {"tool": "shell", "args": {"command": f"echo {result_text}; echo got $MY_SECRET"}},
        {"answer": "{{ last }}"},
    ]
    apply(
        tstack,
        tmp_path,
        agent_doc(
            "plaintext",
            script,
            instructions=instructions,
            env={"MY_SECRET": {"secret": "TRUST_SECRET"}},
        ),
    )
    result = run_json(tstack, "plaintext", message)
    assert result["phase"] == "COMPLETED"
    assert result_text in result["output"] and "got ***" in result["output"]
    # `temporal workflow show -o json`, as an operator of the dev server sees it
    from stigmer.stack.temporal import temporal_binary

    shown = subprocess.run(
        [
            str(temporal_binary()),
            "workflow",
            "show",
            "-w",
            result["workflow_id"],
            "--address",
            f"127.0.0.1:{tstack.ports['temporal']}",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        "binary/encrypted"
        in __import__("base64")
        .b64decode(
            json.loads(shown)["events"][0]["workflowExecutionStartedEventAttributes"]["input"][
                "payloads"
            ][0]["metadata"]["encoding"]
        )
        .decode()
    )
    raw_temporal = b"".join(p.read_bytes() for p in (tstack.home / "data").glob("temporal.db*"))
    raw_store = b"".join(p.read_bytes() for p in (tstack.home / "data").glob("stigmer.db*"))
    for text in (instructions, message, result_text, SECRET_VALUE):
        assert text not in shown, f"{text} is in the workflow history"
        assert text.encode() not in raw_temporal, f"{text} is in temporal.db"
    assert SECRET_VALUE.encode() not in raw_store, "the secret value is in the store"


def test_codec_endpoint_opens_payloads_for_the_admin_token(tstack: Stack, tmp_path: Path) -> None:
    from stigmer.stack.temporal import temporal_binary

    apply(tstack, tmp_path, agent_doc("codec-view", [{"answer": "seen"}]))
    result = run_json(tstack, "codec-view", "look at me")
    base = [
        str(temporal_binary()),
        "workflow",
        "show",
        "-w",
        result["workflow_id"],
        "--address",
        f"127.0.0.1:{tstack.ports['temporal']}",
        "--codec-endpoint",
        f"http://127.0.0.1:{tstack.ports['server']}/v1/codec",
        "--detailed",
    ]
    shown = subprocess.run(
        [*base, "--codec-auth", f"Bearer {token(tstack, 'api-token')}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "look at me" in shown.stdout, shown.stdout[-2000:] + shown.stderr
    status, _ = api(
        tstack, "POST", "/v1/codec/decode", token(tstack, "runner-token"), {"payloads": []}
    )
    assert status == 403


# -- files --------------------------------------------------------------------


@pytest.fixture
def other_user() -> Iterator[str]:
    if os.getuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to make a second local user")
    name = f"stgt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "--force", name], capture_output=True)


def test_a_second_local_user_reads_nothing(tstack: Stack, other_user: str) -> None:
    home = tstack.home
    ws = workspace(tstack)
    inside = [p for p in home.rglob("*") if not p.is_symlink() and ws not in (p, *p.parents)]
    files = [p for p in inside if p.is_file()]
    assert any(p.name == "temporal.db" for p in files) and any(p.name == "api-token" for p in files)
    # the agents' workspace keeps its own modes, but it is inside data/, which is 0700
    for p in [home, *inside]:
        mode = p.lstat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{p} is {oct(mode)}"

    def as_other(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", other_user, "--", *argv], capture_output=True, text=True, timeout=30
        )

    assert as_other("ls", str(home)).returncode != 0
    assert as_other("ls", str(ws)).returncode != 0
    for p in files[:50]:
        assert as_other("cat", str(p)).returncode != 0, f"{other_user} read {p}"
    sock = str(home / "run" / "supervisor.sock")
    probe = as_other(
        "/usr/bin/python3",
        "-c",
        f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({sock!r}); print('open')",
    )
    assert probe.returncode != 0 and "open" not in probe.stdout


# -- secrets out of the tools' reach -------------------------------------------


def test_the_agents_shell_finds_no_token_and_no_key(tstack: Stack, tmp_path: Path) -> None:
    """Every way we know, written to a workspace file (the published output is masked)."""
    hunt = (
        "{ cat /run/stigmer/config.json; "
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done; "
        "env; cat /proc/$PPID/mem | head -c 1000000; "
        "cat /run/secrets/* /workspace/../run/stigmer/* ../../run/*/config.json; "
        "ls -la /run/stigmer /proc/1/fd; "
        "} > leak.txt 2>&1; echo done"
    )
    apply(tstack, tmp_path, agent_doc("hunter", [{"tool": "shell", "args": {"command": hunt}}]))
    # the user's own `stigmer run` does not carry the key: the stack's processes are searched
    env = {k: v for k, v in tstack.env.items() if k not in ("OPENAI_API_KEY", "TRUST_SECRET")}
    proc = subprocess.run(
        [STIGMER, "run", "hunter", "hunt", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = (workspace(tstack) / "leak.txt").read_text(errors="replace")
    secrets = {
        "the runner token": token(tstack, "runner-token"),
        "the admin token": token(tstack, "api-token"),
        "a model key": FAKE_OPENAI,
        "the stack key": json.loads((tstack.home / "credentials" / "stack-key.json").read_text())[
            "keys"
        ]["k1"],
    }
    for what, value in secrets.items():
        assert value not in found, f"the shell found {what}"
    if tstack.mode == "docker":  # type: ignore[attr-defined]
        # the credentials folder is not in the container at all
        cat = f"cat {tstack.home}/credentials/api-token > leak2.txt 2>&1; echo done"
        apply(tstack, tmp_path, agent_doc("hunter2", [{"tool": "shell", "args": {"command": cat}}]))
        run_json(tstack, "hunter2", "hunt")
        assert token(tstack, "api-token") not in (workspace(tstack) / "leak2.txt").read_text()


def test_the_runner_token_only_appends_events(tstack: Stack) -> None:
    runner = token(tstack, "runner-token")
    spec = {"instructions": "x"}
    assert api(tstack, "PUT", "/v1/agents/sneaky", runner, {"spec": spec})[0] == 403
    assert api(tstack, "POST", "/v1/executions", runner, {"agent": "still-works"})[0] == 403
    assert api(tstack, "GET", "/v1/executions", runner)[0] == 403
    assert api(tstack, "GET", "/v1/agents", runner)[0] == 403
    assert api(tstack, "GET", "/v1/info", runner)[1]["role"] == "runner"


def test_secret_values_are_masked_in_what_is_published(tstack: Stack, tmp_path: Path) -> None:
    script = [{"tool": "shell", "args": {"command": "env"}}, {"answer": "{{ last }}"}]
    apply(
        tstack,
        tmp_path,
        agent_doc("masked-env", script, env={"GITHUB_TOKEN": {"secret": "TRUST_SECRET"}}),
    )
    result = run_json(tstack, "masked-env", "env")
    events = events_of(tstack, result["id"])
    text = json.dumps(events)
    assert "GITHUB_TOKEN=***" in text
    assert SECRET_VALUE not in text and SECRET_VALUE not in result["output"]


def test_reserved_names_cannot_be_referenced(tstack: Stack, tmp_path: Path) -> None:
    for name in ("STIGMER_API_TOKEN", "OPENAI_API_KEY"):
        f = tmp_path / f"{name}.yaml"
        f.write_text(agent_doc("reserved", [{"answer": "x"}], env={"X": {"secret": name}}))
        proc = tstack.cli("apply", "-f", str(f))
        assert proc.returncode != 0 and "reserved_secrets_allowed" in proc.stderr, proc.stderr


# -- the event endpoint ---------------------------------------------------------


def test_the_event_endpoint_refuses_forgeries(tstack: Stack, tmp_path: Path) -> None:
    if tstack.mode != "local":  # type: ignore[attr-defined]
        pytest.skip("the API does not depend on the runner mode")
    script = [{"tool": "shell", "args": {"command": "sleep 5"}}, {"answer": "real"}]
    apply(tstack, tmp_path, agent_doc("victim", script))
    a = tstack.cli("run", "victim", "a", "--detach", check=True).stdout.strip()
    b = tstack.cli("run", "victim", "b", "--detach", check=True).stdout.strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        e["type"] == "phase" and e["payload"]["phase"] == "RUNNING" for e in events_of(tstack, a)
    ):
        time.sleep(0.2)
    before = events_of(tstack, a)
    admin, runner = token(tstack, "api-token"), token(tstack, "runner-token")

    def post(tok: str, *events: dict[str, Any]) -> int:
        return api(tstack, "POST", f"/v1/executions/{a}/events", tok, {"events": list(events)})[0]

    forged = {
        "event_id": f"{a}/x/1",
        "type": "phase",
        "payload": {"phase": "COMPLETED", "output": "FORGED"},
    }
    assert post(admin, forged) == 403  # the CLI's token may not append
    assert (
        post(runner, {"event_id": f"{a}/x/2", "type": "phase", "payload": {"phase": "BOGUS"}})
        == 422
    )
    assert (
        post(runner, {"event_id": f"{a}/x/3", "type": "tool_call", "payload": {"nope": 1}}) == 422
    )
    assert post(runner, {"event_id": f"{a}/x/4", "type": "phase", "payload": "COMPLETED"}) == 422
    assert post(runner, {"event_id": f"{b}/wf/running", "type": "usage", "payload": {}}) == 422
    assert (
        post(runner, {"event_id": f"{a}/x/5", "type": "phase", "payload": {"phase": "PENDING"}})
        == 409
    )
    lone = {
        "event_id": f"{a}/x/6",
        "type": "message",
        "payload": {"role": "tool", "content": "\udcff"},
    }
    assert post(runner, lone) == 422  # text that cannot be stored or streamed
    huge = {"event_id": f"{a}/x/7", "type": "usage", "payload": {}, "pad": "x" * (5 << 20)}
    assert post(runner, huge) == 413
    assert (
        api(tstack, "POST", f"/v1/executions/{a}/events", "no-token", {"x": "y" * (5 << 20)})[0]
        == 413
    )
    req = urllib.request.Request(
        f"http://127.0.0.1:{tstack.ports['server']}/v1/executions/{a}/events",
        headers={"Authorization": f"Bearer {admin}", "Last-Event-ID": "9" * 5000},
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as resp:
        assert resp.status == 200
    assert events_of(tstack, a) == before, "a refused event was stored"
    assert tstack.cli("execution", "logs", "-f", a, timeout=120).returncode == 0
    done = json.loads(tstack.cli("execution", "get", a, "-o", "json", check=True).stdout)
    assert done["phase"] == "COMPLETED" and done["output"] == "real"


def test_the_server_checks_agent_names(tstack: Stack) -> None:
    admin = token(tstack, "api-token")
    for bad in ("..", "has space", "esc\x1b[31mred", "UPPER"):
        status, _ = api(
            tstack,
            "PUT",
            f"/v1/agents/{urllib.request.quote(bad)}",
            admin,
            {"spec": {"instructions": "x"}},
        )
        assert status == 422, bad
    with contextlib.suppress(Exception):
        listed = tstack.cli("agent", "list", check=True).stdout
        assert "\x1b" not in listed


def test_this_hosts_tls_api_is_pinned_to_its_own_certificate(tmp_path: Path) -> None:
    """Without api_tls_ca_path the CLI trusts its own API's certificate, and only that one."""
    from tests.tls_front import Pki

    pki = Pki(tmp_path / "pki")
    cert = pki.issue("api", server=True, ips=("127.0.0.1",), dns=())
    other = pki.issue("other", server=True, ips=("127.0.0.1",), dns=())
    st = new_stack(
        tmp_path / "home",
        STIGMER_SERVER_TLS_CERT_PATH=str(cert.cert),
        STIGMER_SERVER_TLS_KEY_PATH=str(cert.key),
    )
    try:
        started = st.start()
        api = next(c for c in started["components"] if c["name"] == "stigmer-server")
        assert api["endpoint"].startswith("https://127.0.0.1:"), api
        listed = st.cli("agent", "list", "--output", "json")
        assert listed.returncode == 0, listed.stderr
        # a certificate other than the one this host's API serves is not trusted
        wrong = st.cli(
            "agent", "list", env={"STIGMER_SERVER_TLS_CERT_PATH": str(other.cert)}, timeout=60
        )
        assert wrong.returncode == 2, wrong.stderr
        assert "does not trust" in wrong.stderr and "api_tls_ca_path" in wrong.stderr, wrong.stderr
    finally:
        tear_down(st)
