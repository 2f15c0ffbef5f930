"""Payload limits are designed in (issue 13, case 9): a big tool argument is kept out of
Temporal's history (stored by the API, a reference in the history), one over the limit
fails the run at once with the cause, and no input hangs an execution."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, new_stack, tear_down

#: a shell result of 16 KiB (the tool's cap), to be repeated by the test model's template
CHUNK = {"tool": "shell", "args": {"command": "head -c 20000 /dev/zero | tr '\\0' x"}}


def agent(name: str, copies: int) -> dict[str, Any]:
    return {
        "apiVersion": "stigmer.ai/v1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "instructions": "test",
            "model": "test",
            "tools": ["shell", "write_file"],
            "local_shell": True,
            "test_script": [
                CHUNK,
                {
                    "tool": "write_file",
                    "args": {"path": f"{name}.txt", "content": "{{ last }}" * copies},
                },
                {"answer": "{{ last }}"},
            ],
        },
    }


@pytest.fixture(scope="module")
def pstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("payloads") / "home"
    st = new_stack(home, "local")
    st.start()
    grown = agent("grown-conversation", 1)
    grown["spec"]["test_script"] = [
        CHUNK,
        {"tool": "write_file", "args": {"path": "a.txt", "content": "{{ result.0 }}" * 180}},
        {"tool": "write_file", "args": {"path": "b.txt", "content": "{{ result.0 }}" * 180}},
        {"answer": "{{ last }}"},
    ]
    nul = agent("nul-path", 1)
    nul["spec"]["test_script"] = [
        {"tool": "shell", "args": {"command": "printf 'a\\0b'"}},
        # the tool's error goes to the model (which goes on), not the run's
        {
            "tool": "write_file",
            "args": {"path": "{{ last }}", "content": "x"},
            "on_error": "continue",
        },
        {"answer": "{{ last }}"},
    ]
    for name, spec in (
        ("big-write", agent("big-write", 200)),
        ("too-big-write", agent("too-big-write", 300)),
        ("nul-path", nul),
        ("grown-conversation", grown),
    ):
        f = home.parent / f"{name}.yaml"
        f.write_text(json.dumps(spec))
        st.cli("apply", "-f", str(f), check=True)
    yield st
    tear_down(st)


def history_payload_sizes(st: Stack, workflow_id: str) -> list[int]:
    from stigmer.stack.temporal import temporal_binary

    out = subprocess.run(
        [
            str(temporal_binary()),
            "workflow",
            "show",
            "-w",
            workflow_id,
            "--address",
            f"127.0.0.1:{st.ports['temporal']}",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    sizes: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "data" in node and "metadata" in node and isinstance(node["data"], str):
                sizes.append(len(node["data"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(out))
    return sizes


def test_a_3mb_tool_argument_is_kept_out_of_the_history(pstack: Stack) -> None:
    proc = pstack.cli("run", "big-write", "go", "--output", "json", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["phase"] == "COMPLETED", result
    written = pstack.home / "data" / "workspace" / "big-write.txt"
    assert written.stat().st_size > 3_000_000
    assert f"wrote {written.stat().st_size} bytes" in result["output"]
    sizes = history_payload_sizes(pstack, result["workflow_id"])
    assert sizes and max(sizes) < 400 * 1024, f"a payload of {max(sizes)} bytes is in the history"


def test_a_payload_over_the_limit_fails_the_run_at_once(pstack: Stack, tmp_path: Path) -> None:
    proc = pstack.cli("run", "too-big-write", "go", "--output", "json", timeout=120)
    assert proc.returncode != 0, proc.stdout
    result = json.loads(proc.stdout)
    assert result["phase"] == "FAILED", result
    assert "over the limit" in (result["error"] or ""), result
    assert not (pstack.home / "data" / "workspace" / "too-big-write.txt").exists()


def test_a_path_with_a_nul_byte_is_the_tools_error_not_the_runs(pstack: Stack) -> None:
    proc = pstack.cli("run", "nul-path", "go", "--output", "json", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["phase"] == "COMPLETED", result
    assert "NUL character" in result["output"], result


def test_a_forged_reference_to_a_stored_payload_fails_at_once(pstack: Stack) -> None:
    """Someone on Temporal's open port starts the workflow with a reference to a payload
    that is not there (or not a payload): it fails at once, executing nothing."""
    import asyncio
    import hashlib
    import uuid

    import httpx
    from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.common import RawValue
    from temporalio.converter import JSONProtoPayloadConverter

    from stigmer.codec import DRIVER_NAME
    from stigmer.contract.workflow import TASK_QUEUE, WORKFLOW_NAME

    junk = b"\xff\xff\xff\xff"
    junk_key = hashlib.sha256(junk).hexdigest()
    runner = (pstack.home / "credentials" / "runner-token").read_text().strip()
    admin = (pstack.home / "credentials" / "api-token").read_text().strip()
    base = f"http://127.0.0.1:{pstack.ports['server']}/v1"
    put = httpx.put(
        f"{base}/blobs/{junk_key}", content=junk, headers={"Authorization": f"Bearer {runner}"}
    )
    assert put.status_code == 204, put.text

    def reference(key: str) -> Any:
        ref = ExternalStorageReference(driver_name=DRIVER_NAME, claim_data={"sha256": key})
        return JSONProtoPayloadConverter().to_payload(ref)

    # the codec endpoint shows a reference to something that is not a payload as it is
    import base64

    shown = httpx.post(
        f"{base}/codec/decode",
        json={
            "payloads": [
                {
                    "metadata": {
                        k: base64.b64encode(v).decode()
                        for k, v in reference(junk_key).metadata.items()
                    },
                    "data": base64.b64encode(reference(junk_key).data).decode(),
                }
            ]
        },
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert shown.status_code == 200, shown.text

    async def forge(key: str) -> float:
        client = await Client.connect(f"127.0.0.1:{pstack.ports['temporal']}")
        t0 = asyncio.get_running_loop().time()
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            RawValue(reference(key)),
            id=f"forged-{uuid.uuid4().hex[:8]}",
            task_queue=TASK_QUEUE,
        )
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=30)
        return asyncio.get_running_loop().time() - t0

    for key in ("0" * 64, junk_key):
        assert asyncio.run(forge(key)) < 15


def test_a_chunked_body_over_the_limit_gets_413_not_a_hang(pstack: Stack) -> None:
    import hashlib

    import httpx

    runner = (pstack.home / "credentials" / "runner-token").read_text().strip()
    body = b"x" * (4 * 1024 * 1024 + 1)
    key = hashlib.sha256(body).hexdigest()

    def one_chunk() -> Iterator[bytes]:
        yield body  # one chunk, the last: the limit is crossed on the final read

    resp = httpx.put(
        f"http://127.0.0.1:{pstack.ports['server']}/v1/blobs/{key}",
        content=one_chunk(),
        headers={"Authorization": f"Bearer {runner}"},
        timeout=15,
    )
    assert resp.status_code == 413, resp.text


def test_an_execution_whose_input_cannot_be_decoded_can_be_cancelled(pstack: Stack) -> None:
    """Its workflow task fails on every attempt (the input is not an ExecutionInput):
    the execution gets an error event, and `execution cancel` ends it."""
    import asyncio
    import time

    from temporalio.client import Client

    from stigmer.contract.ids import new_execution_id
    from stigmer.contract.workflow import TASK_QUEUE, WORKFLOW_NAME, ExecutionInput, workflow_id
    from stigmer.server import db
    from stigmer.server.store import Store
    from stigmer.spec.models import AgentSpec
    from tests.conftest import stack_data_converter

    execution_id = new_execution_id()
    store = Store(db.make_engine(f"sqlite:///{pstack.home / 'data' / 'stigmer.db'}"))
    store.create_execution(
        ExecutionInput(
            execution_id=execution_id,
            agent_name="big-write",
            spec=AgentSpec(instructions="x"),
            message="m",
            model="test",
        )
    )

    async def start_undecodable() -> None:
        client = await Client.connect(
            f"127.0.0.1:{pstack.ports['temporal']}", data_converter=stack_data_converter(pstack)
        )
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            {"not": "an execution input"},
            id=workflow_id(execution_id),
            task_queue=TASK_QUEUE,
        )
        assert handle.result_run_id is not None
        store.claim_run(execution_id, handle.result_run_id)
        deadline = time.monotonic() + 60
        while (await handle.describe()).raw_description.pending_workflow_task.attempt < 3:
            assert time.monotonic() < deadline, "the workflow task did not keep failing"
            await asyncio.sleep(0.5)

    asyncio.run(start_undecodable())
    cancel = pstack.cli("execution", "cancel", execution_id)
    assert cancel.returncode == 0, cancel.stderr
    deadline = time.monotonic() + 20
    while True:
        ex = json.loads(
            pstack.cli("execution", "get", execution_id, "--output", "json", check=True).stdout
        )
        if ex["phase"] == "CANCELLED":
            break
        assert time.monotonic() < deadline, ex
        time.sleep(0.5)


def test_a_conversation_grown_past_the_limit_fails_the_run(pstack: Stack) -> None:
    """Each payload fits, but the conversation the next model request carries does not:
    the run ends FAILED with the cause (it retried its workflow task for ever)."""
    proc = pstack.cli("run", "grown-conversation", "go", "--output", "json", timeout=150)
    assert proc.returncode != 0, proc.stdout
    result = json.loads(proc.stdout)
    assert result["phase"] == "FAILED", result
    assert "could not go on" in (result["error"] or ""), result
    assert "over the limit" in result["error"], result


def test_a_grown_conversation_fails_even_when_nobody_watches(pstack: Stack) -> None:
    """Detached, never followed: the API's own round of checks ends it FAILED."""
    import time

    run = pstack.cli("run", "grown-conversation", "unwatched", "--detach", check=True)
    execution_id = run.stdout.strip().splitlines()[0]
    deadline = time.monotonic() + 120
    while True:
        listed = json.loads(
            pstack.cli(
                "execution", "list", "--agent", "grown-conversation", "-o", "json", check=True
            ).stdout
        )
        items = listed["executions"] if isinstance(listed, dict) else listed
        ex = next(e for e in items if e["id"] == execution_id)  # a list does not reconcile
        if ex["phase"] == "FAILED":
            break
        assert time.monotonic() < deadline, ex
        time.sleep(2)
    assert "over the limit" in (ex["error"] or ""), ex
