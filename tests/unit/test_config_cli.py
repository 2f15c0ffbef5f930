from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import STIGMER


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"STIGMER_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([STIGMER, *args], env=base | (env or {}), capture_output=True, text=True)


def test_config_set_get_list_path(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(home, "config", "path").stdout.strip() == str(home / "config.yaml")
    assert run(home, "config", "get", "server_port").stdout.strip() == "7234"
    assert run(home, "config", "set", "server_port", "9000").returncode == 0
    assert (home / "config.yaml").stat().st_mode & 0o777 == 0o600
    assert run(home, "config", "get", "server_port").stdout.strip() == "9000"
    # env beats config
    got = run(home, "config", "get", "server_port", env={"STIGMER_SERVER_PORT": "9100"})
    assert got.stdout.strip() == "9100"
    listing = json.loads(run(home, "config", "list", "--json").stdout)
    row = next(r for r in listing["settings"] if r["key"] == "server_port")
    assert (row["value"], row["source"]) == (9000, "config")
    assert run(home, "config", "unset", "server_port").returncode == 0
    assert run(home, "config", "get", "server_port").stdout.strip() == "7234"


def test_a_misspelt_key_in_the_file_is_named_and_unset_removes_it(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run(home, "config", "set", "server_port", "9000").returncode == 0
    with (home / "config.yaml").open("a") as f:
        f.write("sever_port: 9001\n")
    broken = run(home, "config", "list")
    assert broken.returncode != 0 and "did you mean `server_port`" in broken.stderr
    assert "stigmer config unset sever_port" in broken.stderr, broken.stderr
    unset = run(home, "config", "unset", "sever_port")
    assert unset.returncode == 0 and "sever_port removed" in unset.stdout, unset.stderr
    assert run(home, "config", "get", "server_port").stdout.strip() == "9000"


def test_config_rejects_bad_input(tmp_path: Path) -> None:
    bad_key = run(tmp_path, "config", "set", "nope", "1")
    assert bad_key.returncode != 0 and "Unknown config key" in bad_key.stderr
    # the keys like it, not all fifty on one line
    near = run(tmp_path, "config", "set", "no_such_key", "1")
    assert "Keys like it: " in near.stderr and "openai_api_key" in near.stderr, near.stderr
    assert "log_backups" not in near.stderr
    piped = run(tmp_path, "config", "list").stdout  # not a terminal: plain columns
    assert "server_port" in piped and "┃" not in piped and "│" not in piped
    bad_value = run(tmp_path, "config", "set", "server_port", "x")
    assert bad_value.returncode != 0 and "server_port" in bad_value.stderr


def test_secret_is_masked(tmp_path: Path) -> None:
    run(tmp_path, "config", "set", "temporal_api_key", "sekrit-123")
    out = (
        run(tmp_path, "config", "list").stdout
        + run(tmp_path, "config", "get", "temporal_api_key").stdout
    )
    assert "sekrit-123" not in out


def test_version_and_status_when_stopped(tmp_path: Path) -> None:
    from stigmer import __version__

    assert run(tmp_path, "--version").stdout.strip() == __version__
    st = json.loads(run(tmp_path, "server", "status", "--json").stdout)
    assert st["running"] is False
    assert [c["state"] for c in st["components"]] == ["stopped"] * 3
    logs = run(tmp_path, "server", "logs", "-n", "0")
    assert logs.returncode == 0
    bad = run(tmp_path, "server", "logs", "-c", "nope")
    assert bad.returncode != 0 and "Unknown component" in bad.stderr


def test_missing_provider_key_without_terminal_names_the_env_var(tmp_path: Path) -> None:
    proc = run(
        tmp_path, "server", "start", env={"STIGMER_DEFAULT_MODEL": "anthropic:claude-sonnet-4-5"}
    )
    assert proc.returncode != 0
    assert "ANTHROPIC_API_KEY" in proc.stderr and "default_model" in proc.stderr
    assert not (tmp_path / "run" / "supervisor.pid").exists()
