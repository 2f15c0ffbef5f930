"""Component logs: timestamped, rotated files, and reading them back (tail, merge, follow).

The supervisor captures each component's stdout and stderr and writes every line
as ``<UTC ISO-8601 timestamp> <text>`` to ``logs/<name>.log`` (stdout) or
``logs/<name>.err.log`` (stderr). The timestamp is taken when the line arrives,
so merging components by time needs no knowledge of their own log formats.
Files rotate by size (``log_max_bytes``, ``log_backups`` rotated copies: ``.1``
is the newest).
"""

from __future__ import annotations

import heapq
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from stigmer.settings import Paths


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RotatingLog:
    """Append-only, size-rotated log file of timestamped lines."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, text: str) -> None:
        """Write one line (without its newline), stamped now.

        A file removed underneath (someone cleaned ``logs/``) is created again.
        """
        if not os.path.exists(self.path):
            self._fh.close()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._fh.write(f"{now_stamp()} {text.rstrip(chr(10))}\n")
        self._fh.flush()
        if self.max_bytes and self._fh.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._fh.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        self._fh.close()


@dataclass(frozen=True, order=True)
class LogLine:
    stamp: str
    source: str
    text: str


def parse_line(raw: str, source: str) -> LogLine:
    raw = raw.rstrip("\n")
    stamp, sep, text = raw.partition(" ")
    if not sep or len(stamp) < 20 or stamp[4] != "-" or not stamp.endswith("Z"):
        return LogLine("", source, raw)
    return LogLine(stamp, source, text)


def stream_files(paths: Paths, component: str, stderr_only: bool) -> list[Path]:
    streams = ["err"] if stderr_only else ["out", "err"]
    return [paths.log_file(component, s) for s in streams]


def _tail_file(path: Path, n: int, source: str) -> list[LogLine]:
    """Last ``n`` lines of ``path``, reaching into ``path.1`` when the file is short."""
    if n <= 0:
        return []
    lines: deque[str] = deque(maxlen=n)
    rotated = path.with_name(path.name + ".1")
    for p in (rotated, path):
        try:
            with open(p, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    lines.append(line)
        except FileNotFoundError:
            continue
    return [parse_line(line, source) for line in lines]


def tail(paths: Paths, components: list[str], n: int | None, stderr_only: bool) -> list[LogLine]:
    """The last ``n`` lines of each component (all lines if ``n`` is None), merged by time.

    ``n == 0`` returns nothing (with ``follow`` only new lines are shown).
    """
    merged: list[list[LogLine]] = []
    for comp in components:
        per: list[LogLine] = []
        for f in stream_files(paths, comp, stderr_only):
            per.extend(_tail_file(f, n if n is not None else 10**9, comp))
        per.sort(key=lambda line: line.stamp)
        merged.append(per[-n:] if n else per if n is None else [])
    return list(heapq.merge(*merged, key=lambda line: line.stamp))


class _Follower:
    """Follows one file across rotation, truncation and late creation."""

    def __init__(self, path: Path, source: str, from_end: bool) -> None:
        self.path = path
        self.source = source
        self.fh: TextIO | None = None
        self.inode: int | None = None
        self.buffer = ""
        self._open(seek_end=from_end)

    def _open(self, seek_end: bool) -> None:
        try:
            fh = open(self.path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except FileNotFoundError:
            return
        if self.fh:
            self.fh.close()
        self.fh = fh
        self.inode = os.fstat(fh.fileno()).st_ino
        if seek_end:
            fh.seek(0, os.SEEK_END)

    def poll(self) -> list[LogLine]:
        out: list[LogLine] = []
        if self.fh is None:
            self._open(seek_end=False)  # appeared after we started: read it whole
            if self.fh is None:
                return out
        out += self._drain()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out
        if st.st_ino != self.inode or st.st_size < self.fh.tell():
            # rotated or truncated: finish the old file, then read the new one from its start
            out += self._drain()
            self._open(seek_end=False)
            out += self._drain()
        return out

    def _drain(self) -> list[LogLine]:
        assert self.fh is not None
        chunk = self.fh.read()
        if not chunk:
            return []
        data = self.buffer + chunk
        *complete, self.buffer = data.split("\n")
        return [parse_line(line, self.source) for line in complete]


def follow(
    paths: Paths,
    components: list[str],
    stderr_only: bool,
    interval: float = 0.2,
    stop_after: float | None = None,
) -> Iterator[LogLine]:
    """Yield new lines as they are written, until interrupted (or ``stop_after`` s).

    Keeps following when a component restarts (the supervisor appends to the same
    file), when a file rotates, and when a file does not exist yet.
    """
    followers = [
        _Follower(f, comp, from_end=True)
        for comp in components
        for f in stream_files(paths, comp, stderr_only)
    ]
    deadline = None if stop_after is None else time.monotonic() + stop_after
    while deadline is None or time.monotonic() < deadline:
        batch: list[LogLine] = []
        for fl in followers:
            batch += fl.poll()
        batch.sort(key=lambda line: line.stamp)
        yield from batch
        time.sleep(interval)


def render(line: LogLine, width: int, out: TextIO = sys.stdout, color: bool = False) -> None:
    prefix = f"{line.source:<{width}} | "
    if color:
        code = 31 + (sum(map(ord, line.source)) % 6)
        prefix = f"\x1b[{code}m{prefix}\x1b[0m"
    stamp = f"{line.stamp} " if line.stamp else ""
    out.write(f"{prefix}{stamp}{line.text}\n")


class RotatingLogHandler(logging.Handler):
    """A ``logging`` handler writing through :class:`RotatingLog` (the supervisor's own log)."""

    def __init__(self, log: RotatingLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.write(self.format(record))
        except Exception:
            self.handleError(record)
