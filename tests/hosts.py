"""Several hosts on this machine: network namespaces on one bridge, each running part of a stack.

``Cluster`` makes a bridge in the root namespace (``10.231.N.1/24``) and one
network namespace per host, joined to it by a veth pair; the root namespace
reaches every host over the bridge, and so does every host reach the others.
A host runs ``stigmer server start --only ...`` with a home of its own, under
``nsenter --net`` (only the network is separate: the processes are this
machine's, as on a real host they would be that host's).

Everything is named with a unique id and removed at the end, also what a
crashed run left (namespaces and bridges with the prefix and no process).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import STIGMER, processes_of_home

PREFIX = "stgc"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def sweep_leftovers() -> None:
    """Namespaces and bridges of crashed runs: ours by prefix, gone once no process is in them."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX) and not ip("netns", "pids", name, check=False).stdout.strip():
            ip("netns", "del", name, check=False)
    for line in ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(f"{PREFIX}br"):
            slaves = ip("-o", "link", "show", "master", name, check=False).stdout.strip()
            if not slaves:
                ip("link", "del", name, check=False)
                rule = ["FORWARD", "-i", name, "-o", name, "-j", "ACCEPT"]
                subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False)


@dataclass
class Host:
    """One test host: a network namespace with an address on the bridge, and a stigmer home."""

    name: str
    netns: str
    address: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 180) -> Any:
        """``argv`` on this host (in its network namespace), with its env."""
        prefix = ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []
        return subprocess.run(
            [*prefix, *argv],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def cli(self, *args: str, check: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc: subprocess.CompletedProcess[str] = self.run(STIGMER, *args, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"[{self.name}] stigmer {' '.join(args)} exited {proc.returncode}\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def start(self, *args: str) -> dict[str, Any]:
        out = self.cli("server", "start", "--json", *args, check=True, timeout=240)
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def processes(self) -> list[psutil.Process]:
        """Live processes of this host's stack (found by the home in their environment)."""
        return processes_of_home(self.home)

    def kill_all(self) -> None:
        """SIGKILL every process of this host's stack at once (a machine that dies)."""
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)

    def logs(self, lines: int = 30) -> str:
        """The last lines of each of this host's logs (to explain a failure)."""
        out = []
        for f in sorted((self.home / "logs").glob("*.log")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            if text:
                out.append(f"--- {self.name}: {f.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        self.cli("server", "stop", timeout=120)
        self.kill_all()


class Cluster:
    """A bridge and hosts on it; ``root`` is the root namespace (the test's own host)."""

    def __init__(self, base: Path) -> None:
        sweep_leftovers()
        self.id = uuid.uuid4().hex[:5]
        self.base = base
        self.net = 40 + secrets.randbelow(200)
        self.bridge = f"{PREFIX}br{self.id}"
        self.hosts: dict[str, Host] = {}
        self._links: list[str] = []
        ip("link", "add", self.bridge, "type", "bridge")
        # hosts talk to each other across the bridge, and bridged traffic goes through
        # iptables (br_netfilter), where Docker's FORWARD policy drops it: accept what
        # stays on this bridge, and nothing else (the rule goes with the bridge)
        self._forward = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        subprocess.run(["iptables", "-I", *self._forward], capture_output=True, check=False)
        ip("addr", "add", f"10.231.{self.net}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        route = ip("route", "get", f"10.231.{self.net}.2").stdout
        assert f"dev {self.bridge}" in route, f"10.231.{self.net}.0/24 is not ours: {route}"
        self.root = self._host("root", "", f"10.231.{self.net}.1")

    def _host(self, name: str, netns: str, address: str) -> Host:
        home = self.base / name / "home"
        home.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
        env |= {"STIGMER_HOME": str(home), "STIGMER_STOP_GRACE": "3", "NO_PROXY": "*"}
        host = Host(name, netns, address, home, env)
        self.hosts[name] = host
        return host

    def add(self, name: str) -> Host:
        """A new host, ``10.231.N.k`` on the bridge."""
        k = len(self.hosts) + 1
        netns = f"{PREFIX}{self.id}{name}"[:15]
        inner, outer = f"{PREFIX}{self.id}{k}a", f"{PREFIX}{self.id}{k}b"
        address = f"10.231.{self.net}.{k}"
        ip("netns", "add", netns)
        ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        self._links.append(outer)
        ip("link", "set", inner, "netns", netns)
        ip("link", "set", outer, "master", self.bridge)
        ip("link", "set", outer, "up")
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", inner)
        ip("-n", netns, "link", "set", inner, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        return self._host(name, netns, address)

    def logs(self) -> str:
        return "\n".join(h.logs() for h in self.hosts.values())

    def close(self) -> None:
        for host in reversed(list(self.hosts.values())):
            with contextlib.suppress(Exception):
                host.stop()
        for host in self.hosts.values():
            if host.netns:
                ip("netns", "del", host.netns, check=False)
        for link in self._links:
            ip("link", "del", link, check=False)
        ip("link", "del", self.bridge, check=False)
        subprocess.run(["iptables", "-D", *self._forward], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
