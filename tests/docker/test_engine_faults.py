"""Engine faults under a running stack: a Docker engine gone for a while, a runner out of memory.

The outage is made on a second dockerd that the test starts on its own socket,
data root and bridge (:mod:`tests.docker.second_engine`), never on the engine the
other tests use.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import Stack
from tests.docker.second_engine import SecondEngine, sweep_stale
from tests.fixtures_docker import docker_mode, unavailable

SLEEPER = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata: {name: sleeper}
spec:
  instructions: Sleep, then say so.
  model: test
  tools: [shell]
  test_script:
    - tool: shell
      args: {command: "sleep 2; echo slept"}
    - answer: "{{ last }}"
"""


def runner(st: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in st["components"] if c["name"] == "agent-runner")


def execution(st: Stack, ex_id: str) -> dict[str, Any]:
    out = st.cli("execution", "get", ex_id, "-o", "json", check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def wait_done(st: Stack, ex_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    ex: dict[str, Any] = {}
    while time.monotonic() < deadline:
        ex = execution(st, ex_id)
        if ex["phase"] not in ("PENDING", "RUNNING"):
            return ex
        time.sleep(0.5)
    raise AssertionError(f"{ex_id} did not end within {timeout}s: {ex}")


@pytest.fixture(params=[False, True], ids=["engine-stops-containers", "live-restore"])
def engine(
    request: pytest.FixtureRequest, docker_client: docker.DockerClient, runner_image: str
) -> Iterator[SecondEngine]:
    """A second dockerd of this test's own, with the runner image loaded.

    Without ``--live-restore`` the restarted engine stops the containers it finds
    running; with it, they keep running and are adopted.
    """
    if os.geteuid() != 0 or shutil.which("dockerd") is None or shutil.which("ip") is None:
        unavailable("a second Docker engine needs root, dockerd and ip")
    stale = sweep_stale()
    if stale:
        print(f"[engine] cleaned up after a killed run: {stale}")
    eng = SecondEngine(live_restore=request.param)
    try:
        eng.create_bridge()
        eng.start()
        eng.load_image(runner_image)
        yield eng
    finally:
        notes = eng.remove()
        if notes:
            print(f"[engine] cleaned up: {notes}")


@pytest.fixture
def estack(stack: Stack, engine: SecondEngine, runner_image: str) -> Iterator[Stack]:
    """A docker-mode stack whose runner lives on the second engine."""
    stack.env |= {
        "DOCKER_HOST": engine.host,
        "STIGMER_RUNNER_MODE": "docker",
        "STIGMER_RUNNER_IMAGE": runner_image,
        "STIGMER_RUNNER_CONTAINER": f"stigmer-agent-runner-{engine.id}",
        "STIGMER_OFFLINE": "1",
        # an outage counted as crashes would use this up at once
        "STIGMER_RESTART_LIMIT": "1",
    }
    yield stack
    stack.cli("server", "stop", timeout=90)


def test_engine_killed_for_20s_is_waited_out_and_runs_complete(
    estack: Stack, engine: SecondEngine, tmp_path: Path
) -> None:
    agent = tmp_path / "sleeper.yaml"
    agent.write_text(SLEEPER)
    estack.start()
    estack.cli("apply", "-f", str(agent), check=True)
    first = estack.cli("run", "sleeper", "before", "--detach", check=True).stdout.strip()
    assert wait_done(estack, first, 60)["phase"] == "COMPLETED"
    before = runner(estack.status())
    assert before["state"] == "running" and before["restarts"] == 0

    engine.kill()
    during = estack.cli("run", "sleeper", "during", "--detach", check=True).stdout.strip()
    t0 = time.monotonic()
    seen: list[tuple[float, str, bool, str | None]] = []
    while time.monotonic() - t0 < 20:
        r = runner(estack.status())
        seen.append((round(time.monotonic() - t0, 1), r["state"], r["ready"], r["waiting_for"]))
        time.sleep(0.5)
    states = {s for _, s, _, _ in seen}
    print("during the outage:", seen[:3], "...", seen[-3:])
    # an engine away is waited out: never a crash, never 'restarting', never 'failed'
    assert "waiting" in states, seen
    assert states <= {"running", "waiting"}, seen
    late = [w for t, s, _, w in seen if t > 3]
    assert late and all(w and "waiting for Docker" in w and engine.host in w for w in late), seen
    human = estack.cli("server", "status").stdout
    assert "waiting for Docker" in human

    engine.start()  # the same socket and data root
    after = estack.wait_for(
        lambda s: runner(s)["state"] == "running" and s["ready"], 90, "the runner back"
    )
    r = runner(after)
    assert r["last_error"] is None and r["waiting_for"] is None
    # the engine is asked what runs: the container on it now is the one status names
    client = engine.client()
    try:
        live = client.containers.get(estack.env["STIGMER_RUNNER_CONTAINER"])
        assert live.status == "running" and live.short_id == r["container_id"]
        ours = client.containers.list(all=True, filters={"label": f"io.stigmer.home={estack.home}"})
        assert [c.id for c in ours] == [live.id]
    finally:
        client.close()
    told = [ln for ln in estack.log("agent-runner", "err").splitlines() if "[stigmer]" in ln]
    print("after the outage:", told)
    if engine.live_restore:  # still running: adopted, not replaced, and no restart counted
        assert r["container_id"] == before["container_id"] and r["restarts"] == 0, r
        assert any("took over the runner container" in ln for ln in told), told
    else:  # the engine stopped it as it came back: a new one, and that is no crash
        assert r["container_id"] != before["container_id"] and r["last_crash"] is None, r
        assert any("ended while the Docker engine was away" in ln for ln in told), told
    # runs complete afterwards, with no `server restart`
    ids = [
        estack.cli("run", "sleeper", f"after {i}", "--detach", check=True).stdout.strip()
        for i in range(2)
    ]
    for ex_id in ids:
        assert wait_done(estack, ex_id, 120)["phase"] == "COMPLETED"
    # and so does the one submitted while the engine was away: nothing was lost
    assert wait_done(estack, during, 120)["phase"] == "COMPLETED"
    assert runner(estack.status())["state"] == "running"


HOG = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata: {name: hog}
spec:
  instructions: Fill memory.
  model: test
  tools: [shell]
  test_script:
    - tool: shell
      args: {command: "head -c 300m /dev/zero > /tmp/fill; echo filled"}
    - answer: "{{ last }}"
"""


@pytest.fixture
def mstack(stack: Stack, runner_image: str, docker_labels: dict[str, str]) -> Iterator[Stack]:
    """A docker-mode stack on the main engine whose runner has little memory (160m; a test may change it)."""
    # the worker uses about 95 MB: a tool that fills /tmp (memory, charged to the
    # container) takes it over the limit, and the kernel kills the biggest process
    with docker_mode(
        stack,
        runner_image,
        docker_labels,
        STIGMER_RUNNER_MEMORY="160m",
        STIGMER_RESTART_LIMIT="10",
    ) as st:
        yield st


def test_runner_out_of_memory_is_named(mstack: Stack, tmp_path: Path) -> None:
    agent = tmp_path / "hog.yaml"
    agent.write_text(HOG)
    mstack.start()
    mstack.cli("apply", "-f", str(agent), check=True)
    ex_id = mstack.cli("run", "hog", "fill it", "--detach", check=True).stdout.strip()
    st = mstack.wait_for(
        lambda s: runner(s)["last_crash"] is not None, 90, "the runner killed out of memory"
    )
    crash = runner(st)["last_crash"]
    print("crash:", crash)
    assert crash["error"].startswith("out of memory"), crash
    assert "runner_memory=160m" in crash["error"] and crash["exit_code"] == 137
    assert "SIGKILL" not in crash["error"]
    assert "stigmer config set runner_memory 320m" in crash["fix"]
    human = mstack.cli("server", "status").stdout
    assert "out of memory" in human, human
    ex = wait_done(mstack, ex_id, 240)
    print("execution:", ex["phase"], ex.get("error"))
    # the run fails with the cause, not "Heartbeat timeout", and is not retried into
    # the next runner (which it would kill too)
    assert ex["phase"] == "FAILED"
    assert "out of memory" in ex["error"] and "runner_memory=160m" in ex["error"], ex
    assert "Heartbeat timeout" not in ex["error"]
    assert runner(mstack.status())["restarts"] == 1
    # it recovers by itself: the next run that fits completes
    back = mstack.wait_for(lambda s: s["ready"], 90, "the runner back")
    assert runner(back)["last_error"] is None


BIG_TOOL = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata: {name: big}
spec:
  instructions: Allocate memory in a process of its own.
  model: test
  tools: [shell]
  test_script:
    - tool: shell
      args: {command: "python3 -c 'b = bytearray(b\\"x\\") * (600 << 20)'; echo after"}
    - answer: "{{ last }}"
"""


def test_tool_killed_out_of_memory_is_told_so(mstack: Stack, tmp_path: Path) -> None:
    # the limit is over twice what the worker uses: the tool is the biggest process,
    # so the kernel kills it, and the runner lives on
    mstack.env["STIGMER_RUNNER_MEMORY"] = "320m"
    agent = tmp_path / "big.yaml"
    agent.write_text(BIG_TOOL)
    mstack.start()
    mstack.cli("apply", "-f", str(agent), check=True)
    ex_id = mstack.cli("run", "big", "allocate", "--detach", check=True).stdout.strip()
    ex = wait_done(mstack, ex_id, 120)
    print("execution:", ex["phase"], repr(ex.get("output")))
    assert ex["phase"] == "COMPLETED"
    assert "out of memory" in ex["output"] and "runner_memory" in ex["output"], ex
    assert "320 MiB" in ex["output"]
    r = runner(mstack.status())
    assert r["restarts"] == 0 and r["last_crash"] is None, r
