"""Help texts and docs a new user reads first (issue 13 case 16), through the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STIGMER

ROOT = Path(__file__).resolve().parents[2]


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"STIGMER_HOME": str(home), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run([STIGMER, *args], env=base | (env or {}), capture_output=True, text=True)


def _commands() -> Iterator[tuple[str, Any]]:
    import click
    import typer.main

    from stigmer.cli.app import app

    todo: list[tuple[str, click.Command]] = [("stigmer", typer.main.get_command(app))]
    while todo:
        path, cmd = todo.pop()
        if isinstance(cmd, click.Group):
            todo += [(f"{path} {name}", sub) for name, sub in cmd.commands.items()]
        else:
            yield path, cmd


def test_every_option_and_argument_has_help_and_arguments_read_upper_case() -> None:
    import click

    missing, lower = [], []
    for path, cmd in _commands():
        for p in cmd.params:
            if isinstance(p, click.Option) and not (p.help or "").strip():
                missing.append(f"{path} {p.opts[0]}")
            if isinstance(p, click.Argument):
                if not (getattr(p, "help", None) or "").strip():
                    missing.append(f"{path} {p.name}")
                if not (p.metavar and p.metavar.isupper()):
                    lower.append(f"{path} {p.name}")
    assert missing == [], f"options or arguments without help: {missing}"
    assert lower == [], f"arguments without an upper-case metavar: {lower}"


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (("run",), "stigmer run [OPTIONS] AGENT MESSAGE"),
        (("agent", "get"), "stigmer agent get [OPTIONS] AGENT"),
        (("agent", "delete"), "stigmer agent delete [OPTIONS] AGENT"),
        (("execution", "logs"), "stigmer execution logs [OPTIONS] EXECUTION_ID"),
        (("execution", "cancel"), "stigmer execution cancel [OPTIONS] EXECUTION_ID"),
        (("config", "set"), "stigmer config set [OPTIONS] KEY VALUE"),
    ],
)
def test_usage_lines_name_arguments_as_the_docs_do(
    tmp_path: Path, command: tuple[str, ...], usage: str
) -> None:
    out = cli(tmp_path, *command, "--help")
    assert out.returncode == 0, out.stderr
    assert usage in out.stdout
    assert "{" not in out.stdout.split("Usage:", 1)[1].splitlines()[0]


@pytest.mark.parametrize(
    "command",
    [
        ("apply",),
        ("agent", "list"),
        ("agent", "get"),
        ("agent", "delete"),
        ("execution", "list"),
        ("execution", "get"),
        ("execution", "logs"),
        ("execution", "cancel"),
        ("run",),
    ],
)
def test_output_option_is_described(tmp_path: Path, command: tuple[str, ...]) -> None:
    out = cli(tmp_path, *command, "--help").stdout
    line = next(ln for ln in out.splitlines() if "--output" in ln)
    assert re.search(r"<str>\s+text\b.*\bjson\b", line), line


def test_port_options_show_their_text_env_var_and_default(tmp_path: Path) -> None:
    for command in ("start", "restart"):
        out = cli(tmp_path, "server", command, "--help").stdout
        assert "API port (env STIGMER_SERVER_PORT, default 7234)." in out
        assert "Temporal gRPC port (env STIGMER_TEMPORAL_PORT, default 7233)." in out
        assert "Temporal UI port (env STIGMER_TEMPORAL_UI_PORT, default 8233)." in out
        assert not re.search(r"\w \.", out)  # "API port ." was the help once


def test_exit_codes_of_the_issue_are_documented_where_users_look() -> None:
    from stigmer.errors import EXIT_CODES
    from tests.unit.test_contract import readme_exit_codes

    documented = readme_exit_codes()
    for code in (4, 10, 11, 16):
        assert code in EXIT_CODES and documented.get(code) == EXIT_CODES[code]


def test_server_start_help_names_its_exit_code_for_other_settings(tmp_path: Path) -> None:
    out = cli(tmp_path, "server", "start", "--help").stdout
    assert "exits 16" in out and "stigmer server" in out and "restart" in out


def _readme_script_variables() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `\{\{ ([a-z.N]+) \}\}` \| (.+?) \|$", text, re.MULTILINE)
    return dict(rows)


def test_test_script_variables_are_each_explained() -> None:
    from stigmer.runner import models

    known = set(re.findall(r"\{\{ ([a-z.N]+) \}\}", models.render.__doc__ or ""))
    explained = _readme_script_variables()
    assert known == {"last", "result.N", "all", "reads", "item", "message"}
    assert set(explained) == known
    assert all(len(meaning.split()) >= 3 for meaning in explained.values()), explained


def test_test_script_variables_mean_what_the_readme_says() -> None:
    from stigmer.runner.models import Turn, render

    turn = Turn(
        results=["a.md\nb.md", "text of a", "exit code 0\ntext of b"],
        reads=[("a.md", "text of a")],
        prompt="hi",
    )
    # after an `each` step: the result of its last call, a shell result without `exit code N`
    assert render("{{ last }}", turn) == "text of b"
    assert render("{{ result.0 }}|{{ result.1 }}|{{ result.9 }}", turn) == "a.md\nb.md|text of a|"
    assert render("{{ all }}", turn).startswith("## Result 1\na.md")
    assert render("{{ reads }}", turn) == "## a.md\n\ntext of a"
    assert render("{{ item }} {{ message }}", turn, item="b.md") == "b.md hi"


def test_config_list_shows_effective_values_and_the_env_vars_the_readme_names(
    tmp_path: Path,
) -> None:
    from stigmer.images.resolve import registry_tag

    listing = json.loads(cli(tmp_path, "config", "list", "--json").stdout)
    rows = {r["key"]: r for r in listing["settings"]}
    assert rows["runner_tag"]["value"] == registry_tag()[0]
    assert rows["runner_tag"]["source"] == "default"
    assert rows["workspace"]["value"] == str(tmp_path / "data" / "workspace")
    text = cli(tmp_path, "config", "list").stdout
    assert registry_tag()[0] in text
    readme = (ROOT / "README.md").read_text()
    for key, alias in (
        ("anthropic_api_key", "ANTHROPIC_API_KEY"),
        ("openai_api_key", "OPENAI_API_KEY"),
    ):
        assert rows[key]["envs"] == [f"STIGMER_{alias}", alias]
        assert f"STIGMER_{alias}, {alias}" in text
    assert "`STIGMER_ANTHROPIC_API_KEY` or `ANTHROPIC_API_KEY`" in readme
    assert "`ANTHROPIC_API_KEY` / `OPENAI_API_KEY`" in readme


def test_runner_memory_error_prints_its_whole_pattern(tmp_path: Path) -> None:
    bad = cli(tmp_path, "config", "set", "runner_memory", "2x")
    assert bad.returncode == 2
    assert "[0-9]+[bkmgBKMG]?" in bad.stderr
    env = cli(tmp_path, "server", "start", env={"STIGMER_RUNNER_MEMORY": "lots"})
    assert env.returncode == 2
    assert "STIGMER_RUNNER_MEMORY" in env.stderr and "[0-9]+[bkmgBKMG]?" in env.stderr


def test_fixes_name_the_home_they_are_for(tmp_path: Path) -> None:
    """A fix pasted as printed acts on the same home; --home after the command is placed."""
    home = tmp_path / "a home"
    stopped = subprocess.run(
        [STIGMER, "--home", str(home), "agent", "list"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert stopped.returncode == 5
    assert f"`stigmer --home '{home}' server start`" in stopped.stderr, stopped.stderr
    late = cli(tmp_path, "agent", "list", "--home", str(home))
    assert late.returncode == 2
    assert f"Fix: --home goes before the command: stigmer --home '{home}' agent list" in late.stderr
