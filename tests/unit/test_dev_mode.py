"""Dev mode (`server start --dev`) without a stack: the sources, the watch and the restart path."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stigmer.errors import ConfigError
from stigmer.settings import resolve
from stigmer.stack import dev
from stigmer.stack import supervisor as sup
from stigmer.stack.component import Component
from tests.conftest import STIGMER

ROOT = Path(__file__).resolve().parents[2]


class Runner(Component):
    """A fake runner: runs until terminated (exit 143), or crashes when told to."""

    name = "agent-runner"

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.launches = 0
        self.graces: list[float] = []
        self.notes: list[str] = []
        self.crash = False
        self._end: asyncio.Event | None = None

    async def launch(self) -> None:
        self.launches += 1
        self._end = asyncio.Event()

    async def wait(self) -> int | None:
        if self.crash:
            await asyncio.sleep(0.01)
            return 1
        assert self._end is not None
        await self._end.wait()
        return 143

    async def terminate(self, grace: float) -> None:
        self.graces.append(grace)
        if self._end is not None:
            self._end.set()

    async def ready(self) -> bool:
        return True

    def note(self, text: str) -> None:
        self.notes.append(text)


async def _until(cond, timeout: float = 5) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.005)


def test_dev_restarts_are_no_crashes_and_not_counted(tmp_path: Path) -> None:
    settings = resolve(tmp_path, flags={"restart_limit": 1, "restart_window": 60}, env={})

    async def go() -> tuple[sup.Supervised, Runner]:
        comp = Runner(settings)
        unit = sup.Supervised(comp, settings)
        unit.start()
        await _until(lambda: unit.state == "running")
        for n in range(1, 4):  # more than restart_limit
            unit.reload("stigmer/runner/tools.py changed")
            await _until(lambda n=n: comp.launches == n + 1 and unit.state == "running")
        await unit.stop(1)
        return unit, comp

    unit, comp = asyncio.run(go())
    assert unit.dev_restarts == 3 and unit.restarts == 0
    assert unit.last_crash is None and unit.last_error is None
    # stopped quickly for a dev restart: the worker cancels what runs after RESTART_GRACE
    # (its stop_grace in dev mode), and gets WIND_DOWN_S to report it
    assert comp.graces[:3] == [dev.RESTART_GRACE + sup.WIND_DOWN_S] * 3
    assert all("stigmer/runner/tools.py changed; restarting agent-runner" in n for n in comp.notes)


def test_dev_reload_starts_a_failed_runner_again(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sup, "BACKOFF_START", 0.01)
    settings = resolve(tmp_path, flags={"restart_limit": 1, "restart_window": 60}, env={})

    async def go() -> tuple[sup.Supervised, Runner]:
        comp = Runner(settings)
        comp.crash = True  # broken sources: it crashes at once, until fixed
        unit = sup.Supervised(comp, settings)
        unit.start()
        assert unit.task is not None
        await asyncio.wait_for(unit.task, 5)
        assert unit.state == "failed"
        comp.crash = False  # the fix is saved
        unit.reload("stigmer/runner/agent.py changed")
        await _until(lambda: unit.state == "running")
        await unit.stop(1)
        return unit, comp

    unit, comp = asyncio.run(go())
    assert unit.last_error is None
    assert any("starting agent-runner again" in n for n in comp.notes)


def test_dev_reload_cuts_a_crash_backoff_short(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sup, "BACKOFF_START", 30)
    settings = resolve(tmp_path, env={})

    async def go() -> Runner:
        comp = Runner(settings)
        comp.crash = True
        unit = sup.Supervised(comp, settings)
        unit.start()
        await _until(lambda: unit.state == "restarting")
        comp.crash = False
        unit.reload("stigmer/runner/agent.py changed")
        await _until(lambda: unit.state == "running", timeout=3)
        await unit.stop(1)
        return comp

    assert asyncio.run(go()).launches == 2


def test_runner_sources_are_the_image_package() -> None:
    src = ROOT / "src"
    assert dev.is_runner_source(src / "stigmer" / "runner" / "tools.py", src)
    assert dev.is_runner_source(src / "stigmer" / "contract" / "config.py", src)
    assert dev.is_runner_source(src / "stigmer" / "codec.py", src)
    for outside in (
        "stigmer/cli/server.py",
        "stigmer/stack/supervisor.py",
        "stigmer/server/app.py",
        "stigmer/images/resolve.py",
        "stigmer/runner/__pycache__/tools.cpython-311.pyc",
        "stigmer/runner/sedUbIOGd",
        "README.md",
    ):
        assert not dev.is_runner_source(src / outside, src), outside


def test_source_dir_refuses_what_holds_no_runner(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    empty = resolve(tmp_path, flags={"dev": True, "dev_source": str(tmp_path)}, env={})
    with pytest.raises(ConfigError) as err:
        dev.check(empty)
    assert "no stigmer/runner/__init__.py" in err.value.message
    assert "STIGMER_DEV_SOURCE" in (err.value.fix or "")
    # an installed package, dev_source unset: there is no checkout to run
    import stigmer._version

    monkeypatch.setattr(stigmer._version, "checkout_root", lambda: None)
    installed = resolve(tmp_path, flags={"dev": True}, env={})
    with pytest.raises(ConfigError) as err:
        dev.check(installed)
    assert "installed package" in err.value.message and "not a checkout" in err.value.message
    # from this checkout it is this checkout's src/
    monkeypatch.undo()
    assert dev.source_dir(resolve(tmp_path, flags={"dev": True}, env={})) == ROOT / "src"
    dev.check(resolve(tmp_path, env={}))  # no dev: nothing to check


def test_unreadable_sources_are_found(tmp_path: Path) -> None:
    pkg = tmp_path / "stigmer"
    shutil.copytree(ROOT / "src" / "stigmer" / "runner", pkg / "runner")
    os.chmod(tmp_path, 0o700)  # above the mount: does not matter
    assert dev.unreadable_for_others(pkg) is None
    (pkg / "runner" / "tools.py").chmod(0o600)
    assert dev.unreadable_for_others(pkg) == pkg / "runner" / "tools.py"


def test_watch_reports_runner_sources_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "stigmer" / "runner").mkdir(parents=True)
    (src / "stigmer" / "cli").mkdir(parents=True)

    async def go() -> list[list[str]]:
        seen: list[list[str]] = []
        stop = asyncio.Event()

        async def changed(files: list[str]) -> None:
            seen.append(files)
            stop.set()

        task = asyncio.create_task(dev.watch(src, changed, stop))
        await asyncio.sleep(0.5)
        (src / "stigmer" / "cli" / "x.py").write_text("# not the runner's\n")
        (src / "stigmer" / "runner" / "notes.tmp").write_text("an editor's file\n")
        await asyncio.sleep(0.4)
        (src / "stigmer" / "runner" / "tools.py").write_text("# changed\n")
        await asyncio.wait_for(task, 10)
        return seen

    assert asyncio.run(go()) == [["stigmer/runner/tools.py"]]


def test_server_start_dev_without_sources_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    env |= {"STIGMER_HOME": str(tmp_path / "home"), "STIGMER_DEV_SOURCE": str(tmp_path / "none")}
    proc = subprocess.run(
        [STIGMER, "server", "start", "--dev", "--runner", "local", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = json.loads(proc.stdout or proc.stderr)
    assert "holds no runner sources" in err["message"] and "STIGMER_DEV_SOURCE" in err["fix"]
    assert not (tmp_path / "home" / "run" / "supervisor.pid").exists()


def test_the_dev_runner_cancels_running_calls_after_restart_grace(tmp_path: Path) -> None:
    from stigmer.stack.handover import runner_stop_grace

    plain = resolve(tmp_path, flags={"stop_grace": 10}, env={})
    assert runner_stop_grace(plain) == 10
    with_dev = resolve(tmp_path, flags={"stop_grace": 10, "dev": True}, env={})
    assert runner_stop_grace(with_dev) == dev.RESTART_GRACE
    short = resolve(tmp_path, flags={"stop_grace": 0.5, "dev": True}, env={})
    assert runner_stop_grace(short) == 0.5
