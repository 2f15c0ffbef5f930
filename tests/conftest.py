"""Shared fixtures: a private STIGMER_HOME with free ports, and the CLI run as a user runs it.

Every stack a test starts lives in its own temporary home, on its own free
ports, and is stopped in teardown; a final sweep kills any process whose
environment names that home, so a crashed test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from stigmer.stack.ports import unused_ports

pytest_plugins = ["tests.fixtures_docker", "tests.fixtures_pg"]

STIGMER = str(Path(sys.executable).parent / "stigmer")


def free_port() -> int:
    return unused_ports(1)[0]


def free_ports(n: int) -> list[int]:
    return unused_ports(n)


def processes_of_home(home: Path) -> list[psutil.Process]:
    """Live processes whose environment names ``home`` as STIGMER_HOME."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("STIGMER_HOME") == str(home):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


@dataclass
class Stack:
    """A test's stack: its home, ports, env, and a way to run the CLI against it."""

    home: Path
    ports: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)

    def cli(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [STIGMER, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"stigmer {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def status(self) -> dict[str, Any]:
        """`server status --json` (its exit code says ready 0 / not ready 12 / stopped 5)."""
        proc = self.cli("server", "status", "--json")
        assert proc.returncode in (0, 12, 5), proc.stderr
        st = json.loads(proc.stdout)
        assert proc.returncode == (0 if st["ready"] else 12 if st["running"] else 5)
        return st

    def component(self, name: str) -> dict[str, Any]:
        return next(c for c in self.status()["components"] if c["name"] == name)

    def start(self, *args: str) -> dict[str, Any]:
        out = self.cli("server", "start", "--json", *args, check=True)
        return json.loads(out.stdout)

    def wait_for(
        self, predicate: Any, timeout: float = 60, what: str = "condition"
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if predicate(st):
                return st
            time.sleep(0.25)
        raise AssertionError(
            f"timed out waiting for {what}; last status:\n{json.dumps(st, indent=2)}"
        )

    def our_processes(self) -> list[psutil.Process]:
        """Live processes whose environment names this home (ours, by construction)."""
        return processes_of_home(self.home)

    def log(self, component: str, stream: str = "out") -> str:
        name = f"{component}.log" if stream == "out" else f"{component}.err.log"
        try:
            return (self.home / "logs" / name).read_text()
        except FileNotFoundError:
            return ""


def new_stack(home: Path, mode: str = "local", **extra_env: str) -> Stack:
    """A Stack for ``home`` on free ports, with our env vars cleared and the runner mode set."""
    server, temporal, ui = free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")} | {
        "STIGMER_HOME": str(home),
        "STIGMER_SERVER_PORT": str(server),
        "STIGMER_TEMPORAL_PORT": str(temporal),
        "STIGMER_TEMPORAL_UI_PORT": str(ui),
        "STIGMER_RUNNER_MODE": mode,
        "STIGMER_STOP_GRACE": "5",
        **extra_env,
    }
    return Stack(home, {"server": server, "temporal": temporal, "ui": ui}, env)


def tear_down(st: Stack) -> None:
    """Stop the stack, then kill anything whose environment still names its home."""
    st.cli("server", "stop", timeout=90)
    for p in st.our_processes():
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGKILL)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A fresh home on free ports; stopped and swept afterwards."""
    st = new_stack(tmp_path / "home")
    yield st
    tear_down(st)


def stack_data_converter(st: Stack) -> Any:
    """The data converter of the stack's own Temporal clients: sealed with its key."""
    from stigmer.codec import data_converter
    from stigmer.contract.config import StackKeys
    from stigmer.credentials import read_stack_keys

    found = read_stack_keys(st.home / "credentials" / "stack-key.json")
    assert found is not None, "the stack has no key yet"
    active, keys = found
    return data_converter(StackKeys(active=active, keys=keys))  # type: ignore[arg-type]


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def port_listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0
