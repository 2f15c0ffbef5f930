"""`stigmer run AGENT MESSAGE` skips Typer; it must parse exactly as the Typer command does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from stigmer.cli import plain_run_args
from stigmer.cli.app import app

PLAIN = [
    ["run", "a", "hello"],
    ["run", "a", "hello world", "-o", "json"],
    ["run", "a", "hello", "--output", "text"],
    ["run", "a", "hello", "--output=json"],
    ["run", "-d", "a", "hello"],
    ["run", "a", "--detach", "hello", "-o", "json"],
]
NOT_PLAIN = [
    [],
    ["agent", "list"],
    ["run"],
    ["run", "a"],
    ["run", "a", "b", "c"],
    ["run", "a", "-"],  # stdin
    ["run", "a", "hello", "-e", "K=V"],
    ["run", "a", "hello", "--model", "test"],
    ["run", "a", "hello", "--on-interrupt", "cancel"],
    ["run", "a", "hello", "-o", "yaml"],  # Typer gives the error
    ["run", "a", "hello", "-o"],
    ["run", "a", "hello", "--help"],
    ["run", "a", "-x"],
    ["--home", "/tmp/h", "run", "a", "hello"],
]


def typer_params(argv: list[str]) -> dict[str, Any]:
    """What the Typer app parses for ``argv`` (``run ...``)."""
    group = typer.main.get_command(app)
    ctx = group.make_context("stigmer", ["run"])
    cmd = group.get_command(ctx, argv[0])  # type: ignore[attr-defined]
    assert argv[0] == "run" and cmd is not None
    params = cmd.make_context("run", list(argv[1:]), parent=ctx).params
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_runs_parse_like_typer(argv: list[str]) -> None:
    fast = plain_run_args(argv)
    assert fast is not None
    assert dict(fast) == typer_params(argv)


@pytest.mark.parametrize("argv", NOT_PLAIN)
def test_everything_else_goes_through_typer(argv: list[str]) -> None:
    assert plain_run_args(argv) is None


def test_a_plain_run_does_not_import_typer(tmp_path: Any) -> None:
    """The point of the fast path: no Typer on the way to the API."""
    code = (
        "import sys; sys.argv = ['stigmer', 'run', 'a', 'hello', '-o', 'json']\n"
        "from stigmer.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print('typer' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    env |= {"STIGMER_HOME": str(tmp_path / "home"), "STIGMER_SERVER_PORT": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "exit 5", out  # the API is not running: StackNotRunningError
    assert lines[-1] == "False", out


def test_a_missing_message_is_a_usage_error(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    env |= {"STIGMER_HOME": str(tmp_path / "home")}
    stigmer = str(Path(sys.executable).parent / "stigmer")
    out = subprocess.run([stigmer, "run", "a"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "Missing argument 'MESSAGE'" in out.stderr, out
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("args", [["run", "a", "  "], ["run", "a", "-"]])
def test_an_empty_message_is_refused_before_anything_starts(tmp_path: Any, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    env |= {"STIGMER_HOME": str(tmp_path / "home")}
    stigmer = str(Path(sys.executable).parent / "stigmer")
    out = subprocess.run([stigmer, *args], env=env, capture_output=True, text=True, input="\n")
    assert out.returncode == 2, out
    assert "The message for the agent is empty" in out.stderr
    assert "stigmer run a - < FILE" in out.stderr
    assert not (tmp_path / "home").exists()  # nothing was started or written
