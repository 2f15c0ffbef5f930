"""Port pre-flight checks: is a loopback port free, and who holds it if not."""

from __future__ import annotations

import contextlib
import errno
import random
import socket
from dataclasses import dataclass
from pathlib import Path

from stigmer.errors import PortInUseError


@dataclass(frozen=True)
class PortNeed:
    """A port the stack will bind (on ``host``), with the setting it comes from."""

    port: int
    what: str
    key: str
    host: str = "127.0.0.1"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if ``host:port`` can be bound now (we bind and release it at once).

    SO_REUSEADDR is set as the servers we start set it (uvicorn, Go's net), so
    connections in TIME_WAIT from a previous run do not count as a conflict; a
    live listener still does, and the connect probe also catches one bound to
    another address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    # a listener on another loopback or wildcard address shows up on connect
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) != 0


UNUSED_PORTS_FROM = 20000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports nobody asked for by number (bind to 0, outgoing)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def unused_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free on ``host`` now, outside the kernel's ephemeral range.

    For a throwaway stack (the demo, tests, benchmarks). Not ``bind(0)``: that
    hands out an ephemeral port, and the managed Temporal dev server takes
    several ephemeral ports of its own while it starts (its services'
    membership and gRPC ports), as do outgoing connections, so a port picked
    that way could be taken again before the API server binds it.
    """
    low, _ = ephemeral_range()
    pool = range(UNUSED_PORTS_FROM, low) if low - UNUSED_PORTS_FROM > 1000 else range(0)
    picked: list[int] = []
    for port in random.sample(pool, min(len(pool), 200)):
        if port_free(port, host):
            picked.append(port)
            if len(picked) == n:
                return picked
    while len(picked) < n:  # no room below the ephemeral range: the kernel picks
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in picked:
            picked.append(port)
    return picked


def port_holder(port: int) -> str | None:
    """Describe the process listening on ``port`` ("python3 (pid 123)"), if the OS shows it.

    Uses ``psutil.net_connections``; without privileges other users' sockets may
    be hidden, in which case this returns ``None``.
    """
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    try:
                        proc = psutil.Process(conn.pid)
                        line = " ".join(" ".join(proc.cmdline()).split())[:120]
                        found = f"{proc.name()} (pid {conn.pid}: {line})"
                    except psutil.Error:
                        return f"pid {conn.pid}"
                    with contextlib.suppress(psutil.Error):  # another stack's: say whose
                        home = proc.environ().get("STIGMER_HOME")
                        if home:
                            found += f", of the stigmer stack in {home}"
                    return found
                return "another process (its pid is hidden from this user)"
    except Exception:
        return None
    return None


def port_fix(key: str) -> str:
    """Where another port for ``key`` is set: its flag, env var and config key."""
    return (
        f"`--{key.replace('_', '-')} PORT`, STIGMER_{key.upper()}=PORT "
        f"or `stigmer config set {key} PORT`."
    )


def check_port_settings(needs: list[PortNeed]) -> None:
    """Fail if two needs share one port (no binding is tried).

    Raises:
        PortInUseError: naming both settings.
    """
    seen: dict[int, PortNeed] = {}
    for need in needs:
        if need.port in seen:
            other = seen[need.port]
            raise PortInUseError(
                f"Port {need.port} is configured for both {other.what} ({other.key}) "
                f"and {need.what} ({need.key}).",
                f"Give one of them another port: {port_fix(need.key)}",
            )
        seen[need.port] = need


def check_ports(needs: list[PortNeed]) -> None:
    """Fail fast if two needs share one port or any needed port is taken.

    Raises:
        PortInUseError: naming the port, the setting, and the holder when known.
    """
    check_port_settings(needs)
    taken = [need for need in needs if not port_free(need.port, need.host)]
    if len(taken) == 1:
        need = taken[0]
        holder = port_holder(need.port)
        raise PortInUseError(
            f"Port {need.port} on {need.host}, needed for {need.what}, is already in use"
            + (f" by {holder}." if holder else "."),
            f"Stop whatever holds port {need.port}, or choose another port: {port_fix(need.key)}",
        )
    if taken:  # all of them at once: not one per try
        lines = []
        for need in taken:
            holder = port_holder(need.port)
            lines.append(
                f"  {need.port} ({need.key}, {need.what})" + (f": {holder}" if holder else "")
            )
        flags = " ".join(f"--{n.key.replace('_', '-')} PORT" for n in taken)
        raise PortInUseError(
            f"{len(taken)} ports this stack needs are already in use:\n" + "\n".join(lines),
            f"Stop whatever holds them, or choose other ports: `{flags}`, the "
            "STIGMER_<KEY>=PORT variables or `stigmer config set KEY PORT` (another "
            "stack on this machine: give it its own ports in its own --home).",
        )
