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
    nul = agent("nul-path", 1)
    nul["spec"]["test_script"] = [
        {"tool": "shell", "args": {"command": "printf 'a\\0b'"}},
        {"tool": "write_file", "args": {"path": "{{ last }}", "content": "x"}},
        {"answer": "{{ last }}"},
    ]
    for name, spec in (
        ("big-write", agent("big-write", 200)),
        ("too-big-write", agent("too-big-write", 300)),
        ("nul-path", nul),
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
