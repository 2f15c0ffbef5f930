"""Helpers for the stigmer benchmark (``bench/run.py``): timing, statistics, processes,
Docker, Temporal probes and cleanup.

Everything a benchmark run creates is registered with :class:`Cleanup` and removed
at the end, even on failure or Ctrl-C: containers (by the name we gave them),
images (by the tags and ids we built), stacks (``stigmer server stop`` on each
home we started), processes (by the pid of the ``Popen`` we spawned) and the work
folder. Nothing is ever matched by a broad name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
STIGMER = str(VENV_BIN / "stigmer")
PYTHON = sys.executable

MB = 1_000_000  # docker's "MB" (what `docker images` prints)


def log(msg: str) -> None:
    """A progress line on stderr; a closed stderr (``| head``) must not stop the cleanup."""
    with contextlib.suppress(OSError, ValueError):
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- stats ---


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100), like numpy's default."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Iterable[float]) -> dict[str, Any]:
    xs = [float(v) for v in values]
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "min": min(xs),
        "max": max(xs),
        "p95": percentile(xs, 95),
        "samples": [round(x, 6) for x in xs],
    }


# ----------------------------------------------------------------- processes ---


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 600,
    check: bool = True,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv``; return (wall seconds, completed process)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    took = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return took, proc


def free_ports(n: int) -> list[int]:
    from stigmer.stack.ports import unused_ports

    return unused_ports(n)


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.02)
    return False


def parse_stamp(stamp: str) -> float:
    """``2026-01-02T03:04:05.123456Z`` (or ``+00:00``) -> epoch seconds."""
    s = stamp.strip().replace("Z", "+00:00")
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


# ------------------------------------------------------------------- cleanup ---


@dataclass
class Cleanup:
    """What this run created, removed in reverse order by :meth:`run`."""

    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # tags and ids
    homes: list[tuple[Path, dict[str, str]]] = field(default_factory=list)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    #: anything else to undo (a database), called last
    callbacks: list[Callable[[], Any]] = field(default_factory=list)
    done: bool = False

    def run(self) -> None:
        if self.done:
            return
        self.done = True
        for name in self.containers:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=60)
        for _home, env in reversed(self.homes):
            with contextlib.suppress(Exception):
                subprocess.run(
                    [STIGMER, "server", "stop"],
                    env=env,
                    capture_output=True,
                    timeout=120,
                    stdin=subprocess.DEVNULL,
                )
        for p in self.procs:
            stop_process(p)
        for ref in reversed(self.images):
            subprocess.run(["docker", "rmi", ref], capture_output=True, timeout=120)
        for path in self.paths:
            shutil.rmtree(path, ignore_errors=True)
        for undo in reversed(self.callbacks):
            with contextlib.suppress(Exception):
                undo()


def stop_process(p: subprocess.Popen[Any], grace: float = 5) -> None:
    """SIGTERM the process group we started (start_new_session), then SIGKILL."""
    if p.poll() is not None:
        return
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


# -------------------------------------------------------------------- docker ---


def docker_client() -> Any:
    import docker

    client = docker.from_env(timeout=120)
    client.ping()
    return client


def image_size(ref: str) -> int:
    _, proc = run(["docker", "image", "inspect", "-f", "{{.Size}}", ref])
    return int(proc.stdout.strip())


def image_id(ref: str) -> str | None:
    _, proc = run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], check=False)
    return proc.stdout.strip() or None


def builder_stage_ids(build_log: str) -> list[str]:
    """Ids of the images that end each non-final stage of a classic-builder log, when
    this build made them.

    The classic builder keeps a multi-stage build's earlier stages as untagged
    images; the id printed just before each later ``FROM`` step is one of them. One
    that came from the cache (``---> Using cache``) is shared with other builds and
    is left alone; one this build produced is ours to remove.
    """
    ids: list[str] = []
    last: str | None = None
    cached = False
    seen_from = 0
    for line in build_log.splitlines():
        line = line.strip()
        if line.startswith("Step ") and " : FROM " in line:
            seen_from += 1
            if seen_from > 1 and last and not cached:
                ids.append(last)
            last, cached = None, False
        elif line.startswith("Step "):
            cached = False
        elif line == "---> Using cache":
            cached = True
        elif line.startswith("---> ") and len(line.split()) == 2:
            last = line.split()[1]
    return ids


def cgroup_memory(container_id: str) -> dict[str, int] | None:
    """Memory figures of a running container from its cgroup (v1 or v2), in bytes.

    ``usage`` is what ``docker stats`` shows (usage minus inactive file cache);
    ``anon`` the anonymous memory (cgroup v1 ``total_rss``, v2 ``anon``);
    ``file_mapped`` the mapped file pages (shared libraries).
    """
    candidates = [
        Path("/sys/fs/cgroup/memory/docker") / container_id,  # v1, cgroupfs driver
        Path("/sys/fs/cgroup/memory/system.slice") / f"docker-{container_id}.scope",  # v1, systemd
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",  # v2, systemd
        Path("/sys/fs/cgroup/docker") / container_id,  # v2, cgroupfs
    ]
    for base in candidates:
        stat_file = base / "memory.stat"
        if not stat_file.is_file():
            continue
        stat: dict[str, int] = {}
        for line in stat_file.read_text().splitlines():
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                stat[k] = int(v)
        if (base / "memory.usage_in_bytes").is_file():  # v1
            usage = int((base / "memory.usage_in_bytes").read_text())
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
            return {
                "usage": usage - inactive,
                "anon": stat.get("total_rss", stat.get("rss", 0)),
                "file_mapped": stat.get("total_mapped_file", stat.get("mapped_file", 0)),
                "raw_usage": usage,
            }
        usage = int((base / "memory.current").read_text())
        return {
            "usage": usage - stat.get("inactive_file", 0),
            "anon": stat.get("anon", 0),
            "file_mapped": stat.get("file_mapped", 0),
            "raw_usage": usage,
        }
    return None


def container_vmrss(container_id: str) -> int | None:
    """Sum of VmRSS of the container's processes (from the host's /proc), bytes."""
    _, proc = run(["docker", "top", container_id, "-eo", "pid"], check=False)
    total = 0
    found = False
    for line in proc.stdout.splitlines()[1:]:
        pid = line.strip()
        try:
            for row in Path(f"/proc/{pid}/status").read_text().splitlines():
                if row.startswith("VmRSS:"):
                    total += int(row.split()[1]) * 1024
                    found = True
        except OSError:
            continue
    return total if found else None


def runner_config_json(home: Path, env: dict[str, str], identity: str, task_queue: str) -> str:
    """A runner configuration like the stack's own, for another identity and task queue.

    Built by the supervisor's own code (``stigmer.stack.handover.runner_config``)
    from the stack's settings; handed to the container on its stdin, as the
    supervisor does (``stigmer.stack.agent_runner_docker.run_with_config``).
    """
    from stigmer.settings import resolve
    from stigmer.stack.agent_runner_docker import HEARTBEAT_IN_CONTAINER
    from stigmer.stack.handover import runner_config

    settings = resolve(home, env=env)
    settings.set("runner_mode", "docker", "bench")
    cfg = runner_config(
        settings,
        identity=identity,
        task_queue=task_queue,
        workspace="/workspace",
        heartbeat_file=HEARTBEAT_IN_CONTAINER,
        secrets={},
    )
    return cfg.model_dump_json()


def clone_kwargs(stack_container: Any, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """``containers.create`` kwargs that reproduce the stack's runner container.

    Same image, env, user, mounts, network, limits and hardening, read from
    ``docker inspect`` of the container the supervisor started; its
    configuration is handed over on stdin (see :func:`runner_config_json`).
    """
    from docker.types import Mount

    attrs = stack_container.attrs
    cfg, host = attrs["Config"], attrs["HostConfig"]
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
    mounts = [
        Mount(
            m["Target"],
            m["Source"],
            type=m.get("Type", "bind"),
            read_only=bool(m.get("ReadOnly")),
        )
        for m in host.get("Mounts") or []
    ]
    kwargs: dict[str, Any] = {
        "image": cfg["Image"],
        "name": name,
        "environment": env,
        "user": cfg.get("User") or None,
        "labels": {**(cfg.get("Labels") or {}), **labels},
        "mounts": mounts,
        "cap_drop": host.get("CapDrop"),
        "security_opt": host.get("SecurityOpt"),
        "read_only": bool(host.get("ReadonlyRootfs")),
        "tmpfs": host.get("Tmpfs") or None,
        "pids_limit": host.get("PidsLimit") or None,
        "mem_limit": host.get("Memory") or None,
        "network_mode": host.get("NetworkMode") or None,
        "restart_policy": {"Name": "no"},
    }
    if host.get("ExtraHosts"):
        kwargs["extra_hosts"] = dict(h.split(":", 1) for h in host["ExtraHosts"])
    return kwargs


# ------------------------------------------------------------------ temporal ---


class TemporalProbe:
    """A temporalio client in a private event loop, for synchronous callers."""

    def __init__(self, address: str, namespace: str = "default") -> None:
        self.address = address
        self.namespace = namespace
        self.loop = asyncio.new_event_loop()
        self.client: Any = None

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def connect(self, timeout: float = 30) -> None:
        from temporalio.client import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client = self._run(
                    Client.connect(
                        self.address,
                        namespace=self.namespace,
                        identity="stigmer-bench",
                        connect_timeout=timedelta(seconds=2),
                    )
                )
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pollers(self, task_queue: str) -> set[str]:
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        async def both() -> set[str]:
            out: set[str] = set()
            for tq_type in (
                TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            ):
                resp = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.namespace,
                        task_queue=TaskQueue(name=task_queue),
                        task_queue_type=tq_type,
                    ),
                    timeout=timedelta(seconds=2),
                )
                out |= {p.identity for p in resp.pollers}
            return out

        return self._run(both())

    def wait_poller(
        self, task_queue: str, identity: str, timeout: float, interval: float = 0.05
    ) -> float | None:
        """Block until ``identity`` polls ``task_queue``; the time.perf_counter() it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if identity in self.pollers(task_queue):
                    return time.perf_counter()
            time.sleep(interval)
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.close()


def namespace_ready(address: str, namespace: str = "default") -> bool:
    """One DescribeNamespace against ``address`` (fresh client); True if it answers."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def once() -> bool:
        client = await Client.connect(
            address, namespace=namespace, connect_timeout=timedelta(seconds=1)
        )
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=1)
        )
        return True

    try:
        return asyncio.run(once())
    except Exception:
        return False


# ------------------------------------------------------------------- machine ---


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(Exception):
        _, p = run(["docker", "version", "--format", "{{json .}}"], check=False)
        v = json.loads(p.stdout)
        info["docker_server"] = v["Server"]["Version"]
        info["docker_client"] = v["Client"]["Version"]
    with contextlib.suppress(Exception):
        _, p = run(["docker", "info", "--format", "{{json .}}"], check=False)
        d = json.loads(p.stdout)
        info["docker_storage_driver"] = d.get("Driver")
        info["docker_cgroup"] = f"v{d.get('CgroupVersion')} ({d.get('CgroupDriver')})"
    with contextlib.suppress(Exception):
        _, p = run([str(VENV_BIN / "temporal"), "--version"], check=False)
        info["temporal_cli"] = p.stdout.strip().splitlines()[0]
    with contextlib.suppress(Exception):
        _, p = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False)
        info["git_revision"] = p.stdout.strip()
        _, p = run(["git", "-C", str(ROOT), "status", "--porcelain"], check=False)
        info["git_dirty"] = bool(p.stdout.strip())
    return info


def machine_busy_cpu_s() -> float:
    """CPU seconds every CPU of the machine spent busy since boot (/proc/stat: all but idle, iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_load(max_load: float, wait_s: float) -> list[float]:
    """Wait (up to ``wait_s``) until the 1-minute load average is below ``max_load``."""
    deadline = time.monotonic() + wait_s
    while True:
        la = loadavg()
        if la[0] < max_load or time.monotonic() > deadline:
            return la
        log(
            f"load average {la[0]} >= {max_load}: waiting (up to {deadline - time.monotonic():.0f}s more)"
        )
        time.sleep(15)


def round_all(obj: Any, nd: int = 4) -> Any:
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: round_all(v, nd) for k, v in obj.items()}
    if isinstance(obj, list):
        return [round_all(v, nd) for v in obj]
    return obj


def poll_until(fn: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    return None


# ----------------------------------------------------------------------- cpu ---


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process (from /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def processes_cpu_s(name: str) -> float:
    """User + system CPU seconds of every live process called ``name``."""
    import psutil

    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == name:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def container_cpu_s(container_id: str) -> float | None:
    """CPU seconds used by a container so far (cgroup v1 cpuacct or v2 cpu.stat)."""
    for path in (
        Path("/sys/fs/cgroup/cpuacct/docker") / container_id / "cpuacct.usage",
        Path("/sys/fs/cgroup/cpu,cpuacct/docker") / container_id / "cpuacct.usage",
        Path("/sys/fs/cgroup/cpuacct/system.slice")
        / f"docker-{container_id}.scope"
        / "cpuacct.usage",
    ):
        if path.is_file():
            return int(path.read_text()) / 1e9
    for base in (
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",
        Path("/sys/fs/cgroup/docker") / container_id,
    ):
        stat = base / "cpu.stat"
        if stat.is_file():
            for line in stat.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return None


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children (the CLI processes we ran)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def history_breakdown(probe: TemporalProbe, workflow_id: str) -> dict[str, Any]:
    """Where an execution's time went, from its Temporal history.

    Sums over the run: activity execution (started -> completed), workflow task
    dispatch (scheduled -> started) and workflow task processing (started ->
    completed); counts of activities (by type) and workflow tasks.
    """
    from temporalio.api.enums.v1 import EventType

    async def fetch() -> Any:
        return await probe.client.get_workflow_handle(workflow_id).fetch_history()

    hist = probe._run(fetch())
    out: dict[str, Any] = {
        "activities": 0,
        "workflow_tasks": 0,
        "activity_exec_s": 0.0,
        "wft_dispatch_s": 0.0,
        "wft_processing_s": 0.0,
        "by_type": {},
    }
    started: dict[int, float] = {}
    sched_type: dict[int, str] = {}
    wft_sched = wft_start = None
    first = last = None
    for ev in hist.events:
        t = ev.event_time.ToDatetime(tzinfo=UTC).timestamp()
        first = t if first is None else first
        last = t
        et = ev.event_type
        if et == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            out["activities"] += 1
            name = ev.activity_task_scheduled_event_attributes.activity_type.name
            sched_type[ev.event_id] = name
            out["by_type"][name] = out["by_type"].get(name, 0) + 1
        elif et == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[ev.activity_task_started_event_attributes.scheduled_event_id] = t
        elif et == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = ev.activity_task_completed_event_attributes.scheduled_event_id
            if sid in started:
                out["activity_exec_s"] += t - started[sid]
        elif et == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wft_sched = t
        elif et == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            out["workflow_tasks"] += 1
            if wft_sched is not None:
                out["wft_dispatch_s"] += t - wft_sched
            wft_start = t
        elif et == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and wft_start is not None:
            out["wft_processing_s"] += t - wft_start
    out["total_s"] = (last or 0) - (first or 0)
    out["events"] = len(hist.events)
    return out
