"""Ports for throwaway stacks: free, distinct, and out of the way of Temporal's own."""

from __future__ import annotations

import socket

from stigmer.stack.ports import ephemeral_range, port_free, unused_ports


def test_unused_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    low, _ = ephemeral_range()
    ports = unused_ports(5)
    assert len(set(ports)) == 5
    assert all(port_free(p) for p in ports)
    # the managed Temporal dev server binds ephemeral ports while it starts
    assert all(p < low for p in ports)


def test_unused_ports_skip_a_port_that_is_listening(monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr("random.sample", lambda pool, k: [port, *list(pool)[:k]])
        picked = unused_ports(2)
    assert port not in picked and len(picked) == 2
