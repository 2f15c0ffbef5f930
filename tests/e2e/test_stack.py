"""The stack as a user drives it: real processes, real Temporal, real SQLite, local runner."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import (
    STIGMER,
    Stack,
    free_port,
    pid_alive,
    port_listening,
    stack_data_converter,
)

COMPONENTS = {"temporal", "stigmer-server", "agent-runner"}


def all_running(st: dict) -> bool:
    return st["ready"] and all(c["state"] == "running" and c["ready"] for c in st["components"])


def test_start_status_stop_leaves_nothing(stack: Stack) -> None:
    started = stack.start()
    assert started["ready"] is True
    st = stack.status()
    assert {c["name"] for c in st["components"]} == COMPONENTS
    for c in st["components"]:
        assert c["state"] == "running", c
        assert c["pid"], c
        assert c["restarts"] == 0
        assert "container_id" in c
    assert "Connected to Temporal server" in stack.log("agent-runner")

    # config.yaml and the token were created private
    assert (stack.home / "config.yaml").stat().st_mode & 0o777 == 0o600
    assert (stack.home / "credentials" / "api-token").stat().st_mode & 0o777 == 0o600

    pids = [c["pid"] for c in st["components"]] + [st["supervisor"]["pid"]]
    stop = stack.cli("server", "stop", check=True)
    assert "stopped" in stop.stdout
    for pid in pids:
        assert not pid_alive(pid), f"pid {pid} survived stop"
    for port in stack.ports.values():
        assert not port_listening(port), f"port {port} still listening after stop"
    assert stack.our_processes() == []
    # stop is idempotent
    again = stack.cli("server", "stop", check=True)
    assert "not running" in again.stdout
    assert stack.status()["running"] is False


def test_start_twice_is_a_noop_and_restart_restarts(stack: Stack) -> None:
    first = stack.start()
    second = stack.cli("server", "start", check=True)
    assert "already running" in second.stdout
    assert stack.status()["supervisor"]["pid"] == first["supervisor"]["pid"]
    restarted = json_of(stack.cli("server", "restart", "--json", check=True).stdout)
    assert restarted["ready"]
    assert restarted["supervisor"]["pid"] != first["supervisor"]["pid"]


def json_of(text: str) -> dict:
    return json.loads(text)


def test_start_with_other_settings_names_them_and_changes_nothing(stack: Stack) -> None:
    """Issue 13 case 15: same settings, a no-op (0); other settings, each named, exit 16."""
    first = stack.start()
    pid = first["supervisor"]["pid"]
    same = stack.cli("server", "start")
    assert same.returncode == 0 and "already running" in same.stdout, same.stderr
    offline = stack.cli("server", "start", "--offline")
    assert offline.returncode == 16, offline.stderr
    assert "offline: running false, this start true" in offline.stderr
    assert "`stigmer server restart --offline`" in offline.stderr
    port = free_port()
    other = stack.cli("server", "start", "--server-port", str(port), "--json")
    assert other.returncode == 16
    err = json.loads(other.stdout)
    assert err["error"] == "StackSettingsDifferError" and err["exit_code"] == 16
    assert f"server_port: running {stack.ports['server']}, this start {port}" in err["message"]
    assert f"stigmer server restart --server-port {port}" in err["fix"]
    registry = stack.cli(
        "server", "start", env={"STIGMER_RUNNER_REGISTRY": "127.0.0.1:5000/elsewhere"}
    )
    assert registry.returncode == 16
    assert (
        'runner_registry: running "ghcr.io/stigmer/agent-runner", '
        'this start "127.0.0.1:5000/elsewhere"' in registry.stderr
    )
    assert "`stigmer server restart`" in registry.stderr
    # nothing was changed
    st = stack.status()
    assert st["ready"] and st["supervisor"]["pid"] == pid
    # the printed fix applies it; then the same start is a no-op again
    restarted = stack.cli("server", "restart", "--offline", "--json", check=True)
    assert json.loads(restarted.stdout)["supervisor"]["pid"] != pid
    assert stack.cli("server", "start", "--offline").returncode == 0
    # a start without the flag keeps what the running stack was given, as restart does
    assert stack.cli("server", "start").returncode == 0


def test_corrupt_config_does_not_stop_stop_or_status(stack: Stack) -> None:
    """Issue 13 case 7: `server status` and `server stop` work whatever config.yaml says."""
    stack.start()
    config = stack.home / "config.yaml"
    config.write_text("server_port: [\n")
    st = stack.cli("server", "status", "--json")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["ready"] is True
    assert f"{config}:" in st.stderr and "not valid YAML" in st.stderr
    assert stack.cli("server", "status").returncode == 0
    assert stack.cli("server", "logs", "-n", "1").returncode == 0
    stop = stack.cli("server", "stop")
    assert stop.returncode == 0, stop.stderr
    assert "stigmer stopped" in stop.stdout
    assert "fix it before the next start" in stop.stderr
    assert stack.our_processes() == []
    for port in stack.ports.values():
        assert not port_listening(port)
    assert stack.cli("server", "status").returncode == 5
    assert stack.cli("server", "stop").returncode == 0
    # a start still refuses the broken file, naming it
    start = stack.cli("server", "start")
    assert start.returncode == 2 and str(config) in start.stderr
    assert stack.our_processes() == []


def test_concurrent_starts_give_one_stack(stack: Stack) -> None:
    procs = [
        subprocess.Popen(
            [STIGMER, "server", "start", "--json"],
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    sups = {json_of(o)["supervisor"]["pid"] for o, _ in outs}
    assert len(sups) == 1
    supervisors = [
        p for p in stack.our_processes() if "stigmer.stack.supervisor" in " ".join(p.cmdline())
    ]
    assert len(supervisors) == 1
    temporals = [p for p in stack.our_processes() if p.name() == "temporal"]
    assert len(temporals) == 1


def test_runner_sigkill_is_restarted(stack: Stack) -> None:
    stack.start()
    runner = stack.component("agent-runner")
    os.kill(runner["pid"], signal.SIGKILL)
    st = stack.wait_for(
        lambda s: (
            next(c for c in s["components"] if c["name"] == "agent-runner")["restarts"] == 1
            and all_running(s)
        ),
        what="runner restart",
    )
    new = next(c for c in st["components"] if c["name"] == "agent-runner")
    assert new["pid"] != runner["pid"]
    # recovered: the error is no longer shown as current, the crash is kept with its time
    assert new["last_error"] is None and new["fix"] is None
    crash = new["last_crash"]
    assert "killed by SIGKILL" in crash["error"] and crash["exit_code"] == -9
    assert time.time() - 120 < crash["at"] <= time.time()
    human = stack.cli("server", "status").stdout
    assert "last error" not in human and "recovered; last crash" in human


def test_temporal_sigkill_is_restarted_and_runner_polls_again(stack: Stack) -> None:
    stack.start()
    temporal = stack.component("temporal")
    runner = stack.component("agent-runner")
    os.kill(temporal["pid"], signal.SIGKILL)
    st = stack.wait_for(
        lambda s: (
            next(c for c in s["components"] if c["name"] == "temporal")["restarts"] >= 1
            and all_running(s)
        ),
        timeout=90,
        what="temporal restart and runner polling again",
    )
    # the runner process survived the outage or was restarted; either way it works again
    assert next(c for c in st["components"] if c["name"] == "temporal")["pid"] != temporal["pid"]
    result = asyncio.run(run_ping(stack))
    assert result.startswith("pong: hello")
    del runner


async def run_ping(stack: Stack) -> str:
    from temporalio.client import Client

    client = await Client.connect(
        f"127.0.0.1:{stack.ports['temporal']}", data_converter=stack_data_converter(stack)
    )
    return await client.execute_workflow(
        "StigmerPing",
        "hello",
        id=f"test-ping-{uuid.uuid4().hex[:8]}",
        task_queue="agent_execution_runner",
        execution_timeout=__import__("datetime").timedelta(seconds=60),
    )


def test_supervisor_sigkill_then_start_and_stop_clean_up(stack: Stack) -> None:
    first = stack.start()
    old_pids = [c["pid"] for c in first["components"]]
    os.kill(first["supervisor"]["pid"], signal.SIGKILL)
    time.sleep(0.5)
    st = stack.status()
    assert st["running"] is False
    second = stack.start()
    assert second["ready"]
    assert second["supervisor"]["pid"] != first["supervisor"]["pid"]
    stack.cli("server", "stop", check=True)
    for pid in old_pids + [c["pid"] for c in second["components"]]:
        assert not pid_alive(pid), f"pid {pid} survived"
    assert stack.our_processes() == []


def test_supervisor_sigkill_then_stop_cleans_up(stack: Stack) -> None:
    first = stack.start()
    os.kill(first["supervisor"]["pid"], signal.SIGKILL)
    time.sleep(0.3)
    stack.cli("server", "stop", check=True)
    for c in first["components"]:
        assert not pid_alive(c["pid"]), c
    assert stack.our_processes() == []


def test_taken_temporal_port_fails_fast_naming_it(stack: Stack) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", stack.ports["temporal"]))
        s.listen()
        t0 = time.monotonic()
        proc = stack.cli("server", "start", timeout=30)
        took = time.monotonic() - t0
    assert proc.returncode != 0
    assert took < 10
    assert str(stack.ports["temporal"]) in proc.stderr
    assert stack.our_processes() == []


def test_every_taken_port_is_named_at_once(stack: Stack) -> None:
    with socket.socket() as a, socket.socket() as b:
        for s, port in ((a, stack.ports["temporal"]), (b, stack.ports["server"])):
            s.bind(("127.0.0.1", port))
            s.listen()
        proc = stack.cli("server", "start", timeout=30)
    assert proc.returncode == 8, proc.stderr
    assert "2 ports this stack needs are already in use" in proc.stderr, proc.stderr
    for key in ("temporal_port", "server_port"):
        assert key in proc.stderr and f"--{key.replace('_', '-')} PORT" in proc.stderr
    assert stack.our_processes() == []


def test_stale_pid_files_never_block_or_kill(stack: Stack) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        run = stack.home / "run"
        run.mkdir(parents=True)
        # a bare number, and our JSON shape with a create time that does not match
        (run / "supervisor.pid").write_text(f"{bystander.pid}\n")
        (run / "temporal.pid").write_text(f"{bystander.pid}\n")
        (run / "agent-runner.pid").write_text(
            json.dumps(
                {
                    "pid": bystander.pid,
                    "create_time": 1.0,
                    "name": "agent-runner",
                    "home": str(stack.home),
                }
            )
        )
        dead = subprocess.Popen(["true"])
        dead.wait()
        (run / "stigmer-server.pid").write_text(
            json.dumps(
                {
                    "pid": dead.pid,
                    "create_time": 1.0,
                    "name": "stigmer-server",
                    "home": str(stack.home),
                }
            )
        )
        st = stack.start()
        assert st["ready"]
        stack.cli("server", "stop", check=True)
        assert bystander.poll() is None, "an unrelated process was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_logs_tail_component_and_follow_across_restart(stack: Stack) -> None:
    stack.start()
    zero = stack.cli("server", "logs", "--tail", "0", check=True)
    assert zero.stdout == ""
    five = stack.cli("server", "logs", "-c", "temporal", "-n", "5", check=True)
    lines = five.stdout.splitlines()
    assert 0 < len(lines) <= 5
    assert all(line.startswith("temporal") for line in lines)
    merged = stack.cli("server", "logs", check=True).stdout
    assert "agent-runner" in merged and "stigmer-server" in merged

    follower = subprocess.Popen(
        [STIGMER, "server", "logs", "-f", "-n", "0", "-c", "agent-runner"],
        env=stack.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: [seen.append(line) for line in follower.stdout],
        daemon=True,  # type: ignore[union-attr]
    )
    reader.start()
    try:
        time.sleep(1)
        os.kill(stack.component("agent-runner")["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            "Connected to Temporal server" in line for line in seen
        ):
            time.sleep(0.2)
        assert any("Connected to Temporal server" in line for line in seen), seen
        assert all(line.startswith("agent-runner") for line in seen)
    finally:
        follower.terminate()
        follower.wait(10)


def test_api_needs_token_and_nothing_listens_beyond_loopback(stack: Stack) -> None:
    st = stack.start()
    base = f"http://127.0.0.1:{stack.ports['server']}"
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/v1/info").status_code == 401
    bad = httpx.get(f"{base}/v1/info", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    token = (stack.home / "credentials" / "api-token").read_text().strip()
    ok = httpx.get(f"{base}/v1/info", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert token not in "".join(
        p.read_text(errors="replace") for p in (stack.home / "logs").glob("*.log")
    )

    pids = {c["pid"] for c in st["components"]} | {st["supervisor"]["pid"]}
    listeners = [
        conn
        for conn in psutil.net_connections(kind="inet")
        if conn.pid in pids and conn.status == psutil.CONN_LISTEN
    ]
    assert listeners, "expected our processes to listen somewhere"
    for conn in listeners:
        assert conn.laddr.ip in ("127.0.0.1", "::1"), f"listening on {conn.laddr} (pid {conn.pid})"


def test_external_temporal_is_not_started(stack: Stack, tmp_path: Path) -> None:
    from tests.conftest import free_ports
    from tests.tls_front import temporal_dev_server

    port, ui = free_ports(2)
    ext = temporal_dev_server(port, ui)
    try:
        st = stack.start("--temporal-address", f"127.0.0.1:{port}")
        temporal = next(c for c in st["components"] if c["name"] == "temporal")
        assert temporal["managed"] is False
        assert temporal["pid"] is None
        assert temporal["endpoint"] == f"127.0.0.1:{port}"
        stack.cli("server", "stop", check=True)
        assert ext.poll() is None, "stop must not touch an external Temporal"
    finally:
        ext.terminate()
        ext.wait(20)


@pytest.mark.parametrize("bad", ["--server-port=0", "--runner=nope"])
def test_bad_flags_fail_clearly(stack: Stack, bad: str) -> None:
    proc = stack.cli("server", "start", bad)
    assert proc.returncode != 0
    assert "Fix:" in proc.stderr or "Invalid" in proc.stderr
    assert stack.our_processes() == []


def test_start_timeout_leaves_nothing_running(stack: Stack) -> None:
    proc = stack.cli("server", "start", "--timeout", "1")
    assert proc.returncode != 0 and "not ready within" in proc.stderr
    time.sleep(3)
    assert stack.our_processes() == []
    assert stack.status()["running"] is False


def test_start_reports_a_failed_component(stack: Stack) -> None:
    stack.env["STIGMER_RESTART_LIMIT"] = "1"
    stack.start()

    def runner(s: dict) -> dict:
        return next(c for c in s["components"] if c["name"] == "agent-runner")

    for _ in range(2):
        pid = runner(stack.status())["pid"]
        os.kill(pid, signal.SIGKILL)
        stack.wait_for(
            lambda s, old=pid: (
                runner(s)["pid"] not in (None, old) or runner(s)["state"] == "failed"
            ),
            what="runner restart or failure",
        )
    st = stack.wait_for(lambda s: runner(s)["state"] == "failed", what="runner marked failed")
    assert "gave up" in runner(st)["last_error"]
    proc = stack.cli("server", "start")
    assert proc.returncode != 0
    assert "agent-runner failed" in proc.stderr and "stigmer server restart" in proc.stderr
    assert stack.cli("server", "status").returncode == 12  # running, not ready


def test_restart_refuses_bad_settings_before_stopping(stack: Stack) -> None:
    stack.start()
    proc = stack.cli("server", "restart", "--temporal-port", str(stack.ports["server"]))
    assert proc.returncode != 0 and "configured for both" in proc.stderr
    assert stack.status()["ready"] is True


def test_usage_errors_are_short(stack: Stack) -> None:
    proc = stack.cli("server", "stat")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "No such command 'stat'" in proc.stderr


def test_logs_folder_removed_while_running_comes_back(stack: Stack) -> None:
    import shutil

    stack.start()
    shutil.rmtree(stack.home / "logs")
    os.kill(stack.component("agent-runner")["pid"], signal.SIGKILL)
    stack.wait_for(lambda s: s["ready"] and s["components"][2]["restarts"] == 1, what="restart")
    assert "Connected to Temporal server" in stack.log("agent-runner")


def test_a_stop_that_waits_for_a_running_call_says_so(stack: Stack, tmp_path: Path) -> None:
    stack.start()
    f = tmp_path / "nap.yaml"
    f.write_text(
        "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: nap}\nspec:\n"
        "  instructions: x\n  model: test\n  tools: [shell]\n  local_shell: true\n"
        "  test_script:\n    - tool: shell\n      args: {command: 'sleep 60'}\n"
    )
    stack.cli("apply", "-f", str(f), check=True)
    ex_id = stack.cli("run", "nap", "go", "--detach", check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the call runs
        out = stack.cli("execution", "logs", ex_id, "--output", "json", check=True).stdout
        if '"status": "started"' in out or '"status":"started"' in out:
            break
        time.sleep(0.2)
    stopped = stack.cli("server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    # past 5 s it says what it waits for, instead of seeming to hang
    assert "still stopping" in stopped.stderr and "stop_grace" in stopped.stderr, stopped.stderr
    assert stack.our_processes() == []


def test_restarts_during_a_tool_call_do_not_use_up_its_attempts(
    stack: Stack, tmp_path: Path
) -> None:
    """A tool call gets 3 attempts that fail or time out; a `server restart` while it
    runs ends an attempt too (Temporal's WorkerShutdown), and must not count: three restarts
    during one call (Temporal alone would give up at the third), and the execution
    still completes."""
    stack.env["STIGMER_STOP_GRACE"] = "1"
    stack.start()
    f = tmp_path / "nap.yaml"
    f.write_text(
        "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: nap}\nspec:\n"
        "  instructions: x\n  model: test\n  tools: [shell]\n  local_shell: true\n"
        "  test_script:\n    - tool: shell\n"
        "      args: {command: 'echo ran >> attempts.txt; sleep 5; echo rested'}\n"
        "    - answer: '{{ last }}'\n"
    )
    stack.cli("apply", "-f", str(f), check=True)
    ex_id = stack.cli("run", "nap", "go", "--detach", check=True).stdout.strip()
    ran = stack.home / "data" / "workspace" / "attempts.txt"

    def attempts() -> int:
        return len(ran.read_text().splitlines()) if ran.exists() else 0

    def events() -> list[dict]:
        out = stack.cli("execution", "logs", ex_id, "--output", "json", check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    for attempt in range(1, 4):
        deadline = time.monotonic() + 90
        while attempts() < attempt:  # this attempt of the call runs
            if time.monotonic() > deadline:
                pytest.fail(f"attempt {attempt} of the call never ran: {events()}")
            time.sleep(0.1)
        restarted = stack.cli("server", "restart", "--json")
        assert restarted.returncode == 0, restarted.stderr
    follow = stack.cli("execution", "logs", "-f", ex_id, timeout=180)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    ex = json.loads(stack.cli("execution", "get", ex_id, "--output", "json", check=True).stdout)
    assert ex["phase"] == "COMPLETED", ex
    assert "rested" in ex["output"]
    assert attempts() == 4
    # each attempt said it was ended by the shutdown (the runner is killed only
    # WIND_DOWN_S after stop_grace), not found dead by a heartbeat timeout 10 s later
    # (a retry event is best effort: one may miss an API server not up yet)
    retries = [e["payload"] for e in events() if e["type"] == "retry"]
    assert retries and all("shutting down" in r["reason"] for r in retries), retries


@pytest.mark.parametrize("after", [0.5, 1.5])
def test_ctrl_c_during_start_says_so_and_leaves_nothing(stack: Stack, after: float) -> None:
    proc = subprocess.Popen(
        [STIGMER, "server", "start"],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("Interrupted."), err  # Typer made it a silent 130
    assert stack.our_processes() == []


def test_the_supervisor_spawned_before_the_checks_ends_when_they_fail(stack: Stack) -> None:
    """`server start` spawns its supervisor first (it imports while the CLI checks) and
    hands it the settings once the checks pass: a start that fails them, or finds the
    stack running, leaves no supervisor behind and nothing in its log."""
    stack.start()
    again = stack.cli("server", "start", "--json", check=True)
    assert json_of(again.stdout)["already_running"] is True
    supervisors = [p for p in stack.our_processes() if "stigmer.stack.supervisor" in p.cmdline()]
    assert len(supervisors) == 1, supervisors
    stack.cli("server", "stop", check=True)
    logged = stack.log("supervisor")
    assert (stack.home / "logs").is_dir()  # so the next start spawns it before its checks
    bad = stack.cli(
        "server",
        "start",
        env={"STIGMER_SERVER_TLS_CERT_PATH": "/nonexistent", "STIGMER_SERVER_TLS_KEY_PATH": "/x"},
    )
    assert bad.returncode == 2 and "server_tls_cert_path" in bad.stderr, bad.stderr
    taken = socket.create_server(("127.0.0.1", stack.ports["server"]))
    try:
        busy = stack.cli("server", "start")
    finally:
        taken.close()
    assert busy.returncode == 8, busy.stderr
    assert stack.our_processes() == []
    assert stack.log("supervisor") == logged  # the dismissed ones wrote nothing
    assert stack.start()["ready"] is True  # and the next start is whole
