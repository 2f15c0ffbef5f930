"""A supervisor killed with SIGKILL early in `server start` leaves no child unnoticed (issue 13, case 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil

from tests.conftest import STIGMER, Stack


def supervisor_of(stack: Stack, timeout: float = 15) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in stack.our_processes():
            try:
                if "stigmer.stack.supervisor" in p.cmdline():
                    return p
            except psutil.Error:
                continue
        time.sleep(0.02)
    raise AssertionError("no supervisor appeared")


def cmdlines(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(" ".join(p.cmdline())[:120])
        except psutil.Error:
            continue
    return out


def gone_within(stack: Stack, seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    left = stack.our_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = stack.our_processes()
    return left


def test_supervisor_killed_early_in_start_leaks_nothing(stack: Stack) -> None:
    delays = [0.2, 0.35, 0.5, 0.5, 0.65, 0.8, 1.0, 1.3, 1.8, 2.5]
    leaked = []
    for i, delay in enumerate(delays):
        cli = subprocess.Popen(
            [STIGMER, "server", "start"],
            env=stack.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sup = supervisor_of(stack)
        time.sleep(delay)
        alone = i % 2 == 1  # every other try, the CLI dies too: nothing is left to clean up
        if alone:
            cli.kill()
        sup.kill()
        _, err = cli.communicate(timeout=120)
        if not alone:  # the CLI saw it die, said so, and left nothing
            assert cli.returncode != 0 and "supervisor exited during start-up" in err, err
        # the children die with their supervisor (PR_SET_PDEATHSIG), pid file or not
        left = gone_within(stack, 20)
        if left:
            leaked.append((delay, alone, cmdlines(left)))
            # status is honest about what is left, and stop ends it
            st = stack.status()
            assert st["running"] is False
            assert any(c["state"] == "orphaned" for c in st["components"]), (cmdlines(left), st)
            stack.cli("server", "stop", check=True)
            assert gone_within(stack, 10) == []
        else:
            st = stack.status()
            assert st["running"] is False
            assert all(c["state"] == "stopped" for c in st["components"]), st
    assert leaked == [], leaked
    # and the next start works
    st = stack.start()
    assert st["ready"] is True
    stack.cli("server", "stop", check=True)
    assert gone_within(stack, 10) == []


def test_leftover_without_pid_file_is_found_by_identity(stack: Stack) -> None:
    # what a supervisor killed before it wrote the pid file leaves: a `python -m
    # stigmer.server` of this home (this one waits for its configuration on stdin)
    stack.home.mkdir(parents=True, exist_ok=True)
    leftover = subprocess.Popen(
        [sys.executable, "-m", "stigmer.server"],
        env={**stack.env, "STIGMER_CONFIG": "-"},
        cwd=stack.home,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(1)
        assert leftover.poll() is None
        assert not list(stack.home.glob("run/*.pid"))
        api = next(c for c in stack.status()["components"] if c["name"] == "stigmer-server")
        assert api["state"] == "orphaned" and api["pid"] == leftover.pid, api
        human = stack.cli("server", "status")
        assert "stigmer server stop" in human.stdout
        stop = json.loads(stack.cli("server", "stop", "--json", check=True).stdout)
        assert leftover.wait(15) is not None
        print("stop:", stop)
        assert any(f"pid {leftover.pid}, no pid file" in s for s in stop["stopped"]), stop
        # a process of another home, or not ours by its command line, is never touched
        st = stack.start()
        assert st["ready"] is True
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait(5)
