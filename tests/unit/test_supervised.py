"""The supervisor's restart policy, with a fake component (no processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stigmer.settings import resolve
from stigmer.stack import supervisor as sup
from stigmer.stack.component import Component, ComponentUnavailable, FatalComponentError


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


class EngineAway(Component):
    """A component whose engine does not answer for its first ``away`` launches."""

    name = "fake"

    def __init__(self, settings, away: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.away = away
        self.launches = 0
        self.live = asyncio.Event()

    async def launch(self) -> None:
        self.launches += 1
        if self.launches <= self.away:
            raise ComponentUnavailable("waiting for Docker: the engine does not answer")

    async def wait(self) -> int | None:
        await self.live.wait()
        return 0

    async def terminate(self, grace: float) -> None:
        self.live.set()

    async def ready(self) -> bool:
        return True


def test_engine_away_is_waited_out_not_counted(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sup, "WAIT_RETRY", 0.01)
    settings = resolve(tmp_path, flags={"restart_limit": 1, "restart_window": 60}, env={})

    async def go() -> tuple[sup.Supervised, list[str]]:
        unit = sup.Supervised(EngineAway(settings, away=20), settings)
        unit.start()
        seen, waiting = [], None
        for _ in range(400):
            seen.append(unit.state)
            if unit.state == "waiting":
                waiting = unit.status()["waiting_for"]
            if unit.state == "running":
                break
            await asyncio.sleep(0.01)
        await unit.stop(1)
        return unit, [*seen, str(waiting)]

    unit, seen = asyncio.run(go())
    assert "waiting" in seen and "running" in seen and "failed" not in seen
    assert "waiting for Docker" in seen[-1]
    assert unit.restarts == 0 and unit.last_crash is None


def test_last_error_cleared_once_ready_again(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sup, "BACKOFF_START", 0.01)
    settings = resolve(tmp_path, flags={"restart_limit": 5, "restart_window": 60}, env={})

    class CrashOnce(Crasher):
        end = asyncio.Event()

        async def wait(self) -> int | None:
            if self.launches == 1:
                return await super().wait()
            await self.end.wait()
            return 0

        async def terminate(self, grace: float) -> None:
            self.end.set()

    async def go() -> tuple[dict, dict]:  # type: ignore[type-arg]
        unit = sup.Supervised(CrashOnce(settings), settings)
        unit.start()
        while unit.state != "restarting":
            await asyncio.sleep(0.005)
        during = dict(unit.status())
        while unit.state != "running":
            await asyncio.sleep(0.01)
        after = dict(unit.status())
        await unit.stop(1)
        return during, after

    during, after = asyncio.run(go())
    assert "boom 1" in (during["last_error"] or "")
    assert after["last_error"] is None and after["fix"] is None
    assert after["last_crash"]["exit_code"] == 3 and "boom 1" in after["last_crash"]["error"]


class RefusesWhenKilled(Component):
    """Ready until it is killed; the check running then fails (connection refused)."""

    name = "fake"

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.killed = asyncio.Event()

    async def launch(self) -> None:
        pass

    async def wait(self) -> int | None:
        await self.killed.wait()
        return 0

    async def terminate(self, grace: float) -> None:
        self.killed.set()

    async def ready(self) -> bool:
        await self.killed.wait()
        raise ConnectionRefusedError("connection refused")


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_a_readiness_check_failing_as_it_is_cancelled_still_ends(
    tmp_path: Path, turns: int
) -> None:
    """Python 3.11's ``asyncio.wait_for`` lost the cancellation when the awaited check
    ended at that moment (here: failed, its component just killed): the readiness
    watcher went on forever, and so did `server stop` (80 s, until it killed the
    supervisor)."""
    settings = resolve(tmp_path, env={})

    async def go() -> bool:
        comp = RefusesWhenKilled(settings)
        unit = sup.Supervised(comp, settings)
        watcher = asyncio.create_task(unit._watch_ready())
        await asyncio.sleep(0.05)  # the check is waiting
        comp.killed.set()
        for _ in range(turns):
            await asyncio.sleep(0)  # the check fails meanwhile
        watcher.cancel()
        done, _ = await asyncio.wait({watcher}, timeout=2)
        return bool(done)

    assert asyncio.run(go()), "the readiness watcher did not end when cancelled"


class NeverEnds(EngineAway):
    """A component whose end is never seen (a stuck pipe, say), even after it was stopped."""

    async def terminate(self, grace: float) -> None:
        pass


def test_stop_is_bounded_when_the_end_is_never_seen(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sup, "SUPERVISION_END_S", 0.2)
    settings = resolve(tmp_path, env={})

    async def go() -> sup.Supervised:
        unit = sup.Supervised(NeverEnds(settings, away=0), settings)
        unit.start()
        while unit.state != "running":
            await asyncio.sleep(0.01)
        async with asyncio.timeout(3):
            await unit.stop(0.1)
        return unit

    unit = asyncio.run(go())
    assert unit.state == "stopped" and unit.task is not None and unit.task.done()
