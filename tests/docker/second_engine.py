"""A second dockerd of a test's own, to kill and restart (never the engine other tests use).

It has its own socket, data root, exec root and pid file under one folder, and a
bridge of its own (``--bridge=stgXXXX``, ``--iptables=false --ip-masq=false``):
never ``--bridge=none`` and never the default bridge, which would delete the
main engine's ``docker0`` (see /work/shared/notes/test-hosts.md). It is labelled
by the folder name; :meth:`SecondEngine.remove` ends its processes (the engine,
its containerd and the container shims left by a SIGKILL), unmounts what it left
under its folder, and deletes the folder and the bridge, also after a failed test.
Each engine holds a lock (``/tmp/stgd-ID.lock``, a kernel flock) while its test
runs; :func:`sweep_stale` cleans up after a test process that was killed, whose
lock is free, and never touches another live test's engine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import docker
import psutil


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _free_subnet() -> int:
    """A third octet N with no route to 172.31.N.0/24 on this machine."""
    routes = _run("ip", "-4", "route").stdout
    taken = {int(p.split(".")[2]) for p in routes.split() if p.startswith("172.31.")}
    free = [n for n in range(100, 250) if n not in taken]
    return random.choice(free)


def sweep_stale() -> list[str]:
    """Remove what killed test runs left: engines whose lock no live process holds."""
    notes = []
    for lock in Path("/tmp").glob("stgd-*.lock"):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live test's engine
        else:
            eng = SecondEngine(engine_id=lock.stem.removeprefix("stgd-"))
            notes += [f"{eng.root}: {n}" for n in eng.remove()]
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return notes


class SecondEngine:
    """One test's own dockerd; ``start``, ``kill`` (SIGKILL), ``start`` again, ``remove``."""

    def __init__(self, live_restore: bool = False, engine_id: str | None = None) -> None:
        #: ``--live-restore``: containers keep running while the engine is away, and after
        self.live_restore = live_restore
        self.id = engine_id or uuid.uuid4().hex[:8]
        self._lock: int | None = None
        # short: a unix socket path has a limit of about 108 bytes
        self.root = Path(f"/tmp/stgd-{self.id}")
        self.sock = self.root / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.bridge = f"stgbr{self.id[:8]}"
        self.subnet = _free_subnet()
        self.proc: subprocess.Popen[bytes] | None = None

    def create_bridge(self) -> None:
        self._lock = os.open(f"/tmp/stgd-{self.id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.root.mkdir(mode=0o700)
        for argv in (
            ("ip", "link", "add", self.bridge, "type", "bridge"),
            ("ip", "addr", "add", f"172.31.{self.subnet}.1/24", "dev", self.bridge),
            ("ip", "link", "set", self.bridge, "up"),
        ):
            out = _run(*argv)
            assert out.returncode == 0, f"{' '.join(argv)}: {out.stderr}"

    def start(self, timeout: float = 60) -> None:
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    "--host",
                    self.host,
                    "--data-root",
                    str(self.root / "data"),
                    "--exec-root",
                    str(self.root / "exec"),
                    "--pidfile",
                    str(self.root / "docker.pid"),
                    f"--bridge={self.bridge}",
                    "--iptables=false",
                    "--ip-masq=false",
                    "--label",
                    f"io.stigmer.test.engine={self.id}",
                    *(["--live-restore"] if self.live_restore else []),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}:\n{self.log()}")
            if self.answers():
                return
            time.sleep(0.2)
        raise AssertionError(f"dockerd did not answer within {timeout}s:\n{self.log()}")

    def answers(self) -> bool:
        try:
            client = docker.DockerClient(base_url=self.host, timeout=2)
        except Exception:
            return False
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=30)

    def load_image(self, image: str) -> None:
        """``docker save IMAGE | DOCKER_HOST=... docker load`` (from the main engine)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "load"],
            stdin=save.stdout,
            env={**os.environ, "DOCKER_HOST": self.host},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert save.stdout is not None
        save.stdout.close()
        assert save.wait(60) == 0 and load.returncode == 0, load.stderr

    def kill(self) -> None:
        """SIGKILL the engine (its containerd dies with it; container shims live on)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.sock.exists() and self.answers():
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return (self.root / "dockerd.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _leftover_processes(self) -> list[psutil.Process]:
        """Processes that name our folder (engine, containerd, shims) and their children."""
        found: list[psutil.Process] = []
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if str(self.root) in " ".join(p.info["cmdline"] or []):
                    found.append(p)
                    found += p.children(recursive=True)
        return found

    def remove(self) -> list[str]:
        """End the engine and everything it left; return what had to be cleaned."""
        notes = []
        if self.proc is not None and self.proc.poll() is None:
            if self.answers():  # stop our containers while the engine can
                with contextlib.suppress(Exception):
                    c = self.client()
                    for ctr in c.containers.list(all=True):
                        ctr.remove(force=True)
                    c.close()
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        left = self._leftover_processes()
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
                notes.append(f"killed pid {p.pid}")
        psutil.wait_procs(left, timeout=10)
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if str(self.root) in line.split()[1]
        ]
        for m in sorted(mounts, key=len, reverse=True):  # deepest first
            if _run("umount", m).returncode != 0:
                _run("umount", "-l", m)
            notes.append(f"unmounted {m}")
        shutil.rmtree(self.root, ignore_errors=True)
        if _run("ip", "link", "show", self.bridge).returncode == 0:
            _run("ip", "link", "del", self.bridge)
            notes.append(f"deleted bridge {self.bridge}")
        if self._lock is not None:
            Path(f"/tmp/stgd-{self.id}.lock").unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None
        return notes
