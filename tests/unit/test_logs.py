from __future__ import annotations

import os
from pathlib import Path

from stigmer.settings import Paths
from stigmer.stack.logs import RotatingLog, _Follower, follow, tail


def test_rotation_keeps_backups(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "c.log", max_bytes=200, backups=2)
    for i in range(50):
        log.write(f"line {i}")
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c.log", "c.log.1", "c.log.2"]
    assert all(p.stat().st_size <= 260 for p in tmp_path.iterdir())


def test_tail_merges_by_time_and_handles_zero(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    a = RotatingLog(paths.log_file("a"), 0, 0)
    b = RotatingLog(paths.log_file("b", "err"), 0, 0)
    a.write("a1")
    b.write("b1")
    a.write("a2")
    a.close()
    b.close()
    got = [(line.source, line.text) for line in tail(paths, ["a", "b"], None, False)]
    assert got == [("a", "a1"), ("b", "b1"), ("a", "a2")]
    assert tail(paths, ["a", "b"], 0, False) == []
    assert [line.text for line in tail(paths, ["a"], 1, False)] == ["a2"]
    assert [line.text for line in tail(paths, ["a", "b"], None, True)] == ["b1"]


def test_follower_survives_rotation_and_late_creation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    fl = _Follower(path, "x", from_end=True)
    assert fl.poll() == []  # not there yet
    log = RotatingLog(path, max_bytes=120, backups=1)
    seen: list[str] = []
    for i in range(20):
        log.write(f"msg {i}")
        seen += [line.text for line in fl.poll()]
    log.close()
    seen += [line.text for line in fl.poll()]
    # every line written after the last rotation is seen, in order, no duplicates
    assert len(seen) == len(set(seen))
    assert seen[-1] == "msg 19"
    assert seen == sorted(seen, key=lambda s: int(s.split()[1]))


def test_follow_stops_after(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    os.makedirs(paths.logs)
    assert list(follow(paths, ["a"], False, interval=0.05, stop_after=0.2)) == []
