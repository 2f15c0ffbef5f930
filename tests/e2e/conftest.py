"""Fixtures of the end-to-end tests: a module's stack in each runner mode.

``astack`` is one stack per module and mode (local, docker, local with the
store on PostgreSQL); a module narrows the modes with
``@pytest.mark.parametrize("astack", [...], indirect=True)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack, new_stack, tear_down

FAKE_OPENAI = "sk-test-openai-do-not-leak-4242"
FAKE_ANTHROPIC = "sk-ant-test-do-not-leak-4343"


@pytest.fixture(scope="module", params=["local", "docker", "local-postgres"])
def astack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    mode, _, store = request.param.partition("-")
    home = tmp_path_factory.mktemp(f"agents-{request.param}") / "home"
    st = new_stack(home, mode, OPENAI_API_KEY=FAKE_OPENAI, ANTHROPIC_API_KEY=FAKE_ANTHROPIC)
    if store == "postgres":  # the whole suite again, with the store on PostgreSQL
        st.env["STIGMER_DATABASE_URL"] = request.getfixturevalue("pg_database_module").url
    # local mode runs the workflows in Temporal's sandbox (off by default, for speed):
    # a non-deterministic call in workflow code fails these tests at run time
    st.env["STIGMER_WORKFLOW_SANDBOX"] = "1" if mode == "local" else "0"
    if mode == "docker":
        image = request.getfixturevalue("runner_image")
        labels = request.getfixturevalue("docker_labels_module")
        st.env |= {
            "STIGMER_RUNNER_IMAGE": image,
            "STIGMER_RUNNER_CONTAINER": f"stigmer-agent-runner-{labels}",
            "STIGMER_OFFLINE": "1",
        }
    st.mode = mode  # type: ignore[attr-defined]
    st.start()
    yield st
    tear_down(st)


@pytest.fixture(scope="module")
def docker_labels_module(docker_client: Any) -> Iterator[str]:
    import uuid

    ident = uuid.uuid4().hex[:10]
    yield ident
    with contextlib.suppress(Exception):
        docker_client.containers.get(f"stigmer-agent-runner-{ident}").remove(force=True)


def execution(st: Stack, execution_id: str) -> dict[str, Any]:
    """``stigmer execution get ID --output json``."""
    out = st.cli("execution", "get", execution_id, "--output", "json", check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def wait_phase(st: Stack, execution_id: str, phase: str, timeout: float = 90) -> dict[str, Any]:
    """The execution, once it is in ``phase``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    ex: dict[str, Any] = {}
    while time.monotonic() < deadline:
        ex = execution(st, execution_id)
        if ex["phase"] == phase:
            return ex
        time.sleep(0.25)
    raise AssertionError(f"{execution_id} did not reach {phase}: {ex}")


def kill_runner(st: Stack) -> None:
    """Kill the stack's runner at once: its container (docker mode) or its process."""
    if getattr(st, "mode", "local") == "docker":
        subprocess.run(
            ["docker", "kill", st.env["STIGMER_RUNNER_CONTAINER"]],
            check=True,
            capture_output=True,
        )
    else:
        os.kill(st.component("agent-runner")["pid"], signal.SIGKILL)
