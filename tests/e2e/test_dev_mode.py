"""`stigmer server start --dev`: the runner runs a checkout's sources and restarts on change.

Each test runs on a copy of this checkout's src/ (STIGMER_DEV_SOURCE), never on
the checkout itself, in local and in docker mode: a runner source file is
changed, the runner restarts with the new code within 5 s (the image is not
rebuilt), a run in flight during the change completes, and a run after it
completes with the new code.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, new_stack, tear_down
from tests.e2e.test_agents import agent_yaml, apply_text, events_of

ROOT = Path(__file__).resolve().parents[2]


def copy_sources(dest: Path) -> Path:
    """A copy of the checkout's src/ (no byte code), readable by the container's uid."""
    src = dest / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src


@pytest.fixture(params=["local", "docker"])
def devstack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    src = copy_sources(tmp_path)
    st = new_stack(tmp_path / "home", request.param, STIGMER_DEV_SOURCE=str(src))
    st.src = src  # type: ignore[attr-defined]
    st.mode = request.param  # type: ignore[attr-defined]
    if request.param == "docker":
        from tests.fixtures_docker import docker_mode

        image = request.getfixturevalue("runner_image")
        labels = request.getfixturevalue("docker_labels")
        with docker_mode(st, image, labels) as dst:
            yield dst
        tear_down(st)
        return
    yield st
    tear_down(st)


def wait_log(st: Stack, needle: str, timeout: float, stream: str = "out") -> float:
    """Seconds until ``needle`` is in the runner's log (stdout or stderr)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if needle in st.log("agent-runner", stream):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(
        f"{needle!r} not in the runner's log within {timeout}s:\n"
        + st.log("agent-runner")[-3000:]
        + st.log("agent-runner", "err")[-3000:]
    )


def image_id(st: Stack) -> str:
    import docker

    client = docker.from_env()
    try:
        return str(client.images.get(st.env["STIGMER_RUNNER_IMAGE"]).id)
    finally:
        client.close()


def runner_of(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["components"] if c["name"] == "agent-runner")


def test_dev_runner_restarts_with_new_code_and_runs_complete(devstack: Stack) -> None:
    st = devstack
    src: Path = st.src  # type: ignore[attr-defined]
    docker_mode = st.mode == "docker"  # type: ignore[attr-defined]
    before_image = image_id(st) if docker_mode else None
    started = st.start("--dev")
    assert started["dev"]["source"] == str(src)
    assert runner_of(started)["dev_source"] == str(src)
    assert f"code from {src / 'stigmer'}" in st.log("agent-runner") or docker_mode
    human = st.cli("server", "status", check=True).stdout
    assert "Dev mode: on" in human and str(src) in human
    if docker_mode:
        import docker

        client = docker.from_env()
        try:
            c = client.containers.get(st.env["STIGMER_RUNNER_CONTAINER"])
            host = c.attrs["HostConfig"]
            # still hardened; the sources come read-only, over the image's package
            assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
            assert any("no-new-privileges" in o for o in host["SecurityOpt"])
            assert c.attrs["Config"]["User"] not in ("", "0", "root", "0:0")
            mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
            assert mounts["/opt/stigmer-dev/stigmer"]["RW"] is False
            assert mounts["/opt/stigmer-dev/stigmer"]["Source"] == str(src / "stigmer")
        finally:
            client.close()
        assert "code from /opt/stigmer-dev/stigmer" in st.log("agent-runner")

    # a run in flight: its tool call runs while the sources change
    tmp = st.home.parent
    sleeper = [
        {"tool": "shell", "args": {"command": "sleep 4; echo slept"}},
        {"answer": "{{ last }}"},
    ]
    apply_text(st, tmp, agent_yaml("dev-sleeper", ["shell"], sleeper))
    ex_id = st.cli("run", "dev-sleeper", "nap", "--detach", check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        evs = events_of(st, ex_id)
        if any(e["type"] == "tool_call" and e["payload"]["status"] == "started" for e in evs):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the tool call never started: {evs}")

    marker = f"dev-reload-{uuid.uuid4().hex[:8]}"
    models = src / "stigmer" / "runner" / "models.py"
    text = models.read_text()
    assert 'text = "Done." if steps' in text
    models.write_text(text.replace('text = "Done." if steps', f'text = "Done, {marker}." if steps'))
    with open(src / "stigmer" / "runner" / "__init__.py", "a") as fh:
        fh.write(f"\nprint({marker!r} + ' loaded', flush=True)\n")
    # the runner logs its restart, naming the changed files, and its new code runs within 5 s
    wait_log(st, "stigmer/runner/models.py", 5, "err")
    assert "changed; restarting agent-runner with the new code" in st.log("agent-runner", "err")
    took = wait_log(st, f"{marker} loaded", 5)
    print(f"dev restart: the new code ran {took:.1f}s after the change")

    # the run in flight goes on: Temporal retries its tool call on the new runner
    follow = st.cli("execution", "logs", "-f", ex_id, timeout=180)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    ex = json.loads(st.cli("execution", "get", ex_id, "--output", "json", check=True).stdout)
    assert ex["phase"] == "COMPLETED" and "slept" in ex["output"], ex
    # ... at once: the old runner's worker cancelled it as a shutdown after dev.RESTART_GRACE
    # and said so (not counted), rather than being killed and leaving Temporal to wait out
    # the call's heartbeat timeout
    retries = [e["payload"] for e in events_of(st, ex_id) if e["type"] == "retry"]
    assert retries and all("Worker is shutting down" in r["reason"] for r in retries), retries

    # a run after the change runs the new code ("Done." is the test model's last word)
    apply_text(
        st, tmp, agent_yaml("dev-lister", ["list_files"], [{"tool": "list_files", "args": {}}])
    )
    out = st.cli("run", "dev-lister", "list", "--output", "json", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["phase"] == "COMPLETED" and f"Done, {marker}." in result["output"], result

    status = st.status()
    runner = runner_of(status)
    assert status["ready"] and runner["state"] == "running"
    assert runner["restarts"] == 0, "a dev restart is no crash"
    assert runner["dev_restarts"] >= 1 and status["dev"]["restarts"] >= 1
    assert set(status["dev"]["last_change"]) <= {
        "stigmer/runner/__init__.py",
        "stigmer/runner/models.py",
    }
    if docker_mode:
        assert image_id(st) == before_image, "no image was rebuilt"

    # a change outside the runner's sources (the CLI) restarts nothing
    cli_file = src / "stigmer" / "cli" / "render.py"
    cli_file.write_text(cli_file.read_text() + "\n# touched\n")
    time.sleep(2)
    assert runner_of(st.status())["dev_restarts"] == runner["dev_restarts"]


def test_agent_code_that_does_not_load_fails_the_runner_at_once(devstack: Stack) -> None:
    """The runner polls before its agent code loads; code that cannot load fails it, with where.

    It is not restarted in a loop: a start still under way fails with the cause,
    a stack already up shows the runner failed with it. Fixed, it runs agents.
    """
    st = devstack
    src: Path = st.src  # type: ignore[attr-defined]
    tools = src / "stigmer" / "runner" / "tools.py"
    good = tools.read_text()
    tools.write_text(good + "\nraise RuntimeError('broken on purpose')\n")
    proc = st.cli("server", "start", "--dev", "--json", timeout=120)
    if proc.returncode != 0:  # it failed before the rest of the stack was up: the start says so
        failure = json.loads(proc.stdout)
        error, fix = failure["message"], failure["fix"] or ""
        assert proc.returncode == 9 and error.startswith("agent-runner failed"), proc.stdout
        assert not st.our_processes(), "a failed start leaves nothing running"
    else:  # the stack was up first: the runner shows failed, with the cause, not restarted
        runner = runner_of(st.wait_for(lambda s: runner_of(s)["state"] == "failed", 60))
        error, fix = runner["last_error"] or "", runner["fix"] or ""
        assert runner["restarts"] == 0, "a runner that cannot load is not restarted in a loop"
        status = st.cli("server", "status")
        assert status.returncode == 12 and "broken on purpose" in status.stdout + status.stderr
    assert "agent code does not load" in error and "broken on purpose" in error, error
    assert "tools.py:" in error, error
    assert "starts again when you save" in fix, fix
    # fixed: it starts again (by the dev reload, or a new start) and runs agents
    tools.write_text(good)
    if proc.returncode != 0:
        st.start("--dev")
    st.wait_for(lambda s: s.get("ready", False), timeout=60, what="the fixed runner")
    apply_text(
        st,
        st.home.parent,
        agent_yaml("dev-fixed", ["list_files"], [{"tool": "list_files", "args": {}}]),
    )
    out = st.cli("run", "dev-fixed", "list", "--output", "json", timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["phase"] == "COMPLETED", out.stdout


def test_restart_keeps_dev_and_start_names_it(tmp_path: Path) -> None:
    src = copy_sources(tmp_path)
    st = new_stack(tmp_path / "home", "local", STIGMER_DEV_SOURCE=str(src))
    try:
        assert st.start()["dev"] is None
        # a running stack without dev mode: `start --dev` says how to get it, and changes nothing
        refused = st.cli("server", "start", "--dev")
        assert refused.returncode == 16, refused.stdout + refused.stderr
        assert "stigmer server restart --dev" in refused.stderr, refused.stderr
        assert st.status()["dev"] is None
        restarted = st.cli("server", "restart", "--dev", "--json", check=True)
        assert json.loads(restarted.stdout)["dev"]["source"] == str(src)
        # `restart` keeps --dev, as every other start flag; a start without it is no change
        again = st.cli("server", "restart", check=True)
        assert "keeping the last start's flags: dev=True" in again.stderr, again.stderr
        assert "Dev mode" in again.stdout and st.status()["dev"]["source"] == str(src)
        same = st.cli("server", "start", "--json", check=True)
        assert json.loads(same.stdout)["already_running"] is True
        off = st.cli("server", "restart", "--no-dev", "--json", check=True)
        assert json.loads(off.stdout)["dev"] is None
        assert "Dev mode" not in st.cli("server", "status", check=True).stdout
    finally:
        tear_down(st)
