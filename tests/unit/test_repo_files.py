"""The editor and repository files: pre-commit's config, the dev container, the VS Code tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def strict_json(path: Path) -> Any:
    """The file as strict JSON (VS Code allows comments and trailing commas; we keep it plain)."""
    return json.loads(path.read_text())


def test_pre_commit_config_is_valid_and_has_the_hooks() -> None:
    out = subprocess.run(
        [str(BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "runner-image-stale"} <= set(hooks)
    stale = hooks["runner-image-stale"]
    assert "scripts/check-runner-image.py" in stale["entry"]
    assert (ROOT / "scripts" / "check-runner-image.py").is_file()
    assert stale["pass_filenames"] is False and stale["verbose"] is True


def test_the_stale_image_hook_passes_without_an_engine() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "DOCKER_"))}
    env |= {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "STIGMER_HOME": "/nonexistent"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check-runner-image.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "skipped" in out.stdout and "engine answered" in out.stdout


def test_dev_container_parses_and_sets_up_python_uv_and_docker() -> None:
    dc = strict_json(ROOT / ".devcontainer" / "devcontainer.json")
    assert "python:1-3.11" in dc["image"]
    assert any("docker" in feature for feature in dc["features"])
    setup = dc["postCreateCommand"]
    assert "uv" in setup and "uv sync --frozen" in setup and "pre-commit install" in setup


def test_vscode_tasks_parse_and_name_the_make_target() -> None:
    tasks = strict_json(ROOT / ".vscode" / "tasks.json")
    assert tasks["version"] == "2.0.0"
    commands = {t["label"]: t["command"] for t in tasks["tasks"]}
    assert "make build-agent-runner-image" in commands.values()
    joined = "\n".join(commands.values())
    for needed in ("server start", "server stop", "server logs -f", "pytest", "make test"):
        assert needed in joined, needed
    assert len(commands) == len(tasks["tasks"]), "labels are unique"
    # the make target the tasks name exists
    make = (ROOT / "Makefile").read_text()
    assert "\nbuild-agent-runner-image:" in make


def test_contributing_points_at_the_set_up() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for needed in ("make install", "pre-commit install", "make build-agent-runner-image"):
        assert needed in text
