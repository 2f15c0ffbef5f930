"""Fixtures for the release pipeline tests: fixture git repositories, the built wheel, Docker.

Nothing here touches the checkout's own git state: every test that runs
``make release`` or the workflow scripts gets a clone in a temporary folder,
with its own bare ``origin``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The Docker fixtures (engine, labels and cleanup, local registry, base image):
# tests/conftest.py registers tests/fixtures_docker.py for the whole suite;
# with the older layout they live in tests/docker/conftest.py and are imported.
try:
    from tests.fixtures_docker import RUN_ID, RUN_LABEL, TEST_LABEL, unavailable
except ImportError:  # pragma: no cover - older layout
    from tests.docker.conftest import (  # type: ignore[no-redef]  # noqa: F401
        RUN_ID,
        RUN_LABEL,
        TEST_LABEL,
        docker_client,
        docker_labels,
        docker_test_id,
        local_registry,
        registry_cleanup,
        standin_base,
        unavailable,
    )

ROOT = Path(__file__).resolve().parents[2]
#: Files of the working tree a fixture repository takes over (they may be uncommitted here).
OVERLAY = ("Makefile", "scripts/release.py", "src/stigmer/_version.py", "pyproject.toml")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "stigmer test",
    "GIT_AUTHOR_EMAIL": "test@stigmer.invalid",
    "GIT_COMMITTER_NAME": "stigmer test",
    "GIT_COMMITTER_EMAIL": "test@stigmer.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the GIT_*/STIGMER_* variables of the caller, plus test identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "STIGMER_", "MAKE"))}
    env.pop("MFLAGS", None)
    return env | GIT_ENV | extra


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=clean_env()
    )
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


@dataclass
class Repo:
    """A clone of this checkout in a temporary folder, with a bare ``origin`` of its own."""

    path: Path
    origin: Path

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def make(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=self.path,
            capture_output=True,
            text=True,
            env=clean_env(**env),
            timeout=120,
        )

    def commit(self, message: str, path: str = "CHANGES", text: str | None = None) -> str:
        f = self.path / path
        f.write_text(text if text is not None else f"{message}\n")
        self.git("add", path)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def set_base(self, base: str) -> None:
        vf = self.path / "src" / "stigmer" / "_version.py"
        text = vf.read_text()
        lines = [
            f'BASE_VERSION = "{base}"' if line.startswith("BASE_VERSION = ") else line
            for line in text.splitlines()
        ]
        vf.write_text("\n".join(lines) + "\n")

    def push(self) -> None:
        self.git("push", "-q", "--tags", "origin", "HEAD:refs/heads/main")

    def state(self) -> dict[str, str]:
        """What a dry run must leave alone: HEAD, branches, tags, status, the version file."""
        return {
            "head": self.git("rev-parse", "HEAD"),
            "refs": self.git("for-each-ref", "--format=%(refname) %(objectname)"),
            "status": self.git("status", "--porcelain"),
            "version_file": (self.path / "src/stigmer/_version.py").read_text(),
            "origin": git(self.origin, "for-each-ref", "--format=%(refname) %(objectname)"),
        }


def make_repo(tmp: Path, tags: tuple[str, ...] = (), base: str | None = None) -> Repo:
    """Clone this checkout (history, no tags), overlay the release files of the working tree,
    commit, tag ``tags`` on that commit and publish to a fresh bare origin."""
    path = tmp / "repo"
    subprocess.run(
        ["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(path)],
        check=True,
        env=clean_env(),
        capture_output=True,
    )
    repo = Repo(path, tmp / "origin.git")
    for t in repo.git("tag", "--list").split():
        repo.git("tag", "-d", t)
    repo.git("checkout", "-q", "-B", "main")
    for rel in OVERLAY:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, path / rel)
    if base is not None:
        repo.set_base(base)
    repo.git("add", "--", *OVERLAY)
    repo.git(
        "commit", "-q", "--allow-empty", "-m", "fixture: the release files of the working tree"
    )
    for t in tags:
        repo.git("tag", "-a", t, "-m", t)
    repo.git("remote", "remove", "origin")
    subprocess.run(
        ["git", "init", "-q", "--bare", "--initial-branch=main", str(repo.origin)],
        check=True,
        env=clean_env(),
    )
    repo.git("remote", "add", "origin", str(repo.origin))
    repo.push()
    return repo


@pytest.fixture
def fixture_repo(tmp_path: Path) -> Repo:
    """A fixture repository without tags, pushed to its own bare origin."""
    return make_repo(tmp_path)


@pytest.fixture(scope="session")
def built_dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``uv build`` of this checkout once per session: {"wheel", "sdist", "dir", "version", "head"}.

    ``version`` is the one the build computed (from the wheel's name); ``head``
    the commit it was built from.
    """
    if shutil.which("uv") is None:
        pytest.skip("uv not on PATH")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        ["uv", "build", "--quiet", "--out-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(out.glob("stigmer-*.whl"))
    sdists = sorted(out.glob("stigmer-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    version = wheels[0].name.removeprefix("stigmer-").removesuffix("-py3-none-any.whl")
    yield {
        "wheel": wheels[0],
        "sdist": sdists[0],
        "dir": out,
        "version": version,  # type: ignore[dict-item]
        "head": git(ROOT, "rev-parse", "HEAD"),  # type: ignore[dict-item]
    }
