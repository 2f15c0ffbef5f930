"""`stigmer server reset` on a home with no stack running: what it asks, deletes and keeps.

The whole road, a real stack reset and started again, is tests/e2e/test_reset.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import STIGMER
from tests.pty_cli import run_on_pty

DATA = (
    "data/stigmer.db",
    "data/stigmer.db-wal",
    "data/temporal.db",
    "data/backups/stigmer-20250101T000000Z.db",
    "logs/stigmer-server.log",
    "run/stack.json",
)
KEPT = ("config.yaml", "credentials/api-token", "credentials/stack-key.json", "run/stack.lock")
WORKSPACE = "data/workspace/notes/a.md"


def make_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for rel in (*DATA, *KEPT, WORKSPACE):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text("{}\n" if rel == "config.yaml" else rel)
    return home


def env_for(home: Path, **more: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    return base | {"STIGMER_HOME": str(home), **more}


def reset(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STIGMER, "server", "reset", *args],
        env=env_for(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def present(home: Path) -> set[str]:
    return {rel for rel in (*DATA, *KEPT, WORKSPACE) if (home / rel).exists()}


def test_without_yes_and_without_a_terminal_it_refuses_and_changes_nothing(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path)
    for args in ((), ("--workspace",), ("--json",)):
        out = reset(home, *args)
        assert out.returncode == 2, out.stdout + out.stderr
        assert present(home) == {*DATA, *KEPT, WORKSPACE}
    text = reset(home).stderr
    assert "needs --yes" in text and "Add --yes" in text
    assert str(home / "data" / "stigmer.db") in text, "it says what it would delete"
    assert json.loads(reset(home, "--json").stdout)["error"] == "ConfirmationNeededError"


def test_yes_deletes_the_data_and_keeps_config_credentials_and_workspace(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    out = reset(home, "--yes", "--json")
    assert out.returncode == 0, out.stderr
    assert present(home) == {*KEPT, WORKSPACE}
    done = json.loads(out.stdout)
    deleted = {Path(d["path"]).relative_to(home).as_posix() for d in done["deleted"]}
    assert deleted == {"data/backups", "data/stigmer.db", "data/stigmer.db-wal"} | {
        "data/temporal.db",
        "logs",
        "run/stack.json",
    }
    assert any("credentials" in k for k in done["kept"])
    assert any("workspace" in k for k in done["kept"])

    again = reset(home, "--yes", "--workspace")
    assert again.returncode == 0, again.stderr
    assert present(home) == set(KEPT)
    assert "deleted" in again.stdout and "kept" in again.stdout


def test_a_workspace_outside_the_home_or_a_folder_that_is_no_home_is_refused(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path)
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "code.py").write_text("keep me")
    out = reset(home, "--yes", "--workspace", STIGMER_WORKSPACE=str(mine))
    assert out.returncode == 2 and "outside the home" in out.stderr, out.stderr
    assert (mine / "code.py").exists() and present(home) == {*DATA, *KEPT, WORKSPACE}

    out = reset(mine, "--yes")
    assert out.returncode == 2 and "not a stigmer home" in out.stderr, out.stderr
    assert (mine / "code.py").exists()

    (home / "config.yaml").write_text("not: [valid")
    broken = reset(home, "--yes")
    assert broken.returncode == 2 and "config.yaml" in broken.stderr, broken.stderr
    assert present(home) == {*DATA, *KEPT, WORKSPACE}, "a broken config: nothing is guessed"

    gone = reset(tmp_path / "nothing-here", "--yes")
    assert gone.returncode == 0 and "Nothing to reset" in gone.stdout
    assert not (tmp_path / "nothing-here").exists()


def test_on_a_terminal_it_asks_and_no_keeps_everything(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    code, text = run_on_pty(["server", "reset"], env_for(home), [(b"[y/N]", b"n\n")], timeout=60)
    assert code == 0, text
    assert "Reset stops the stack" in text and "Nothing was changed" in text
    assert present(home) == {*DATA, *KEPT, WORKSPACE}

    code, text = run_on_pty(["server", "reset"], env_for(home), [(b"[y/N]", b"y\n")], timeout=60)
    assert code == 0, text
    assert present(home) == {*KEPT, WORKSPACE}
