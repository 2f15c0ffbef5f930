"""The first hour of a new user: the README's and the examples' commands, as printed.

Each test starts from a fresh home and runs, in order, every `stigmer ...` line
of the README's "Using it" block and of the examples' header comments, exactly
as written (`ID` becomes the id the detached run printed). Every command must
exit 0 with no warning, and every execution must end COMPLETED with no failed
tool call, its usage counting every call it made.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STIGMER, Stack, new_stack, tear_down

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[list[str]]:
    """The `stigmer` lines of the README's "Using it" block, split as a shell splits them."""
    text = (ROOT / "README.md").read_text()
    block = text.split("\n## Using it\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if argv and argv[0] == "stigmer":
            out.append(argv)
    return out


def example_commands() -> list[list[str]]:
    """The `stigmer` lines in the header comments of examples/*.yaml."""
    out = []
    for f in sorted((ROOT / "examples").glob("*.yaml")):
        for line in f.read_text().splitlines():
            if not line.startswith("#"):
                break
            argv = shlex.split(line.lstrip("# "), comments=True)
            if argv and argv[0] == "stigmer":
                out.append(argv)
    return out


@pytest.fixture(params=["local", "docker"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A fresh home as a new user has it: nothing in it, the stack not started."""
    st = new_stack(tmp_path / "home", request.param)
    container = None
    if request.param == "docker":
        container = f"stigmer-agent-runner-{request.getfixturevalue('docker_test_id')}"
        st.env |= {
            "STIGMER_RUNNER_IMAGE": request.getfixturevalue("runner_image"),
            "STIGMER_RUNNER_CONTAINER": container,
            "STIGMER_OFFLINE": "1",
        }
    yield st
    tear_down(st)
    if container is not None:
        with contextlib.suppress(Exception):
            request.getfixturevalue("docker_client").containers.get(container).remove(force=True)


def run_as_printed(st: Stack, argv: list[str], ids: list[str]) -> subprocess.CompletedProcess[str]:
    """Run one printed command from the checkout (where the README's paths are relative to)."""
    args = [ids[-1] if a == "ID" else a for a in argv[1:]]
    follow = args[:3] == ["server", "logs", "-f"]  # it follows until interrupted
    try:
        proc = subprocess.run(
            [STIGMER, *args],
            env=st.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=4 if follow else 240,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        assert follow, f"{shlex.join(argv)} timed out"
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return subprocess.CompletedProcess(argv, 0, out, "")
    assert proc.returncode == 0, (
        f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    said = (proc.stdout + proc.stderr).lower()
    assert "warning" not in said, f"{shlex.join(argv)} warned:\n{proc.stdout}\n{proc.stderr}"
    if argv[1] == "run" and "--detach" in argv:
        ids.append(proc.stdout.split()[0])
    return proc


def check_executions(st: Stack) -> list[dict[str, Any]]:
    listed = st.cli("execution", "list", "--output", "json", check=True).stdout
    executions = json.loads(listed)["executions"]
    for ex in executions:
        out = st.cli("execution", "logs", ex["id"], "--output", "json", check=True).stdout
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        calls = [e["payload"] for e in events if e["type"] == "tool_call"]
        failed = [c for c in calls if c["status"] == "failed"]
        assert not failed, f"{ex['agent']}: failed tool calls {failed}"
        phases = [e["payload"]["phase"] for e in events if e["type"] == "phase"]
        assert phases[-1] == "COMPLETED", (ex["agent"], phases)
        (usage,) = [e["payload"] for e in events if e["type"] == "usage"]
        assert usage["tool_calls"] == sum(c["status"] == "started" for c in calls) > 0
    return executions


def test_readme_and_example_commands_work_as_printed_on_a_fresh_home(fresh: Stack) -> None:
    commands = readme_commands()
    assert commands[0] == ["stigmer", "server", "start"], commands
    assert ["stigmer", "init"] in commands
    stop = commands.pop()
    assert stop == ["stigmer", "server", "stop"], commands
    ids: list[str] = []
    for argv in commands:
        run_as_printed(fresh, argv, ids)
    ws = fresh.home / "data" / "workspace"
    report = (ws / "reports" / "notes-summary.md").read_text()
    assert "## notes/durability.txt" in report and "Temporal keeps the history" in report
    assert "- [ ] src/app.py:" in (ws / "todos.md").read_text()
    assert len(check_executions(fresh)) == 2
    # the examples' own comments, again as printed, on a fresh workspace
    for p in ws.iterdir():
        subprocess.run(["rm", "-rf", str(p)], check=True)
    for argv in example_commands():
        run_as_printed(fresh, argv, ids)
    assert "Temporal keeps the history" in (ws / "reports" / "notes-summary.md").read_text()
    assert "FIXME: this is not a farewell" in (ws / "todos.md").read_text()
    assert len(check_executions(fresh)) == 4
    run_as_printed(fresh, stop, ids)


def test_init_keeps_files_and_follows_the_workspace_setting(stack: Stack, tmp_path: Path) -> None:
    ws = tmp_path / "elsewhere"
    (ws / "notes").mkdir(parents=True)
    (ws / "notes" / "events.txt").write_text("mine\n")
    out = stack.cli("init", "--json", env={"STIGMER_WORKSPACE": str(ws)}, check=True)
    result = json.loads(out.stdout)
    assert result["workspace"] == str(ws)
    assert result["kept"] == ["notes/events.txt"]
    assert "notes/runner.txt" in result["written"] and "src/app.py" in result["written"]
    assert (ws / "notes" / "events.txt").read_text() == "mine\n"
    assert not (stack.home / "data" / "workspace" / "notes").exists()
