"""The supervisor's restart policy, with a fake component (no processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stigmer.settings import resolve
from stigmer.stack import supervisor as sup
from stigmer.stack.component import Component, FatalComponentError


class Crasher(Component):
    name = "fake"

    def __init__(self, settings, crash_after: float = 0.01, fatal: bool = False) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.launches = 0
        self.crash_after = crash_after
        self.fatal = fatal

    async def launch(self) -> None:
        if self.fatal:
            raise FatalComponentError("port 1 (fake_port) is already in use")
        self.launches += 1

    async def wait(self) -> int | None:
        await asyncio.sleep(self.crash_after)
        self.recent_errors.append(f"boom {self.launches}")
        return 3

    async def terminate(self, grace: float) -> None:
        pass

    async def ready(self) -> bool:
        return True


def test_crash_loop_ends_failed_with_last_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sup, "BACKOFF_START", 0.01)
    settings = resolve(tmp_path, flags={"restart_limit": 3, "restart_window": 60}, env={})

    async def go() -> sup.Supervised:
        unit = sup.Supervised(Crasher(settings), settings)
        unit.start()
        assert unit.task is not None
        await asyncio.wait_for(unit.task, 10)
        return unit

    unit = asyncio.run(go())
    assert unit.state == "failed"
    assert unit.restarts == 3  # the limit is not reset by restarting
    assert "boom" in (unit.last_error or "")
    assert unit.status()["last_exit_code"] == 3


def test_fatal_launch_error_fails_at_once(tmp_path: Path) -> None:
    settings = resolve(tmp_path, env={})

    async def go() -> sup.Supervised:
        unit = sup.Supervised(Crasher(settings, fatal=True), settings)
        unit.start()
        assert unit.task is not None
        await asyncio.wait_for(unit.task, 5)
        return unit

    unit = asyncio.run(go())
    assert unit.state == "failed"
    assert unit.restarts == 0
    assert "already in use" in (unit.last_error or "")


def test_stop_during_backoff(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sup, "BACKOFF_START", 30)
    settings = resolve(tmp_path, env={})

    async def go() -> sup.Supervised:
        unit = sup.Supervised(Crasher(settings), settings)
        unit.start()
        await asyncio.sleep(0.2)
        assert unit.state == "restarting"
        await asyncio.wait_for(unit.stop(1), 5)
        return unit

    unit = asyncio.run(go())
    assert unit.state == "stopped"
