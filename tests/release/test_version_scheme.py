"""The version is one source (src/stigmer/_version.py) for the CLI, the image and the registry tag."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stigmer import __version__, _version
from stigmer.images import buildinfo
from stigmer.images.resolve import is_dev_version, registry_tag
from tests.release.conftest import ROOT, Repo, clean_env, make_repo


@pytest.mark.parametrize(
    ("base", "revision", "tags", "want"),
    [
        ("0.1.0.dev0", "1a2b3c4d5e6f" + "0" * 28, [], "0.1.0.dev0+g1a2b3c4"),
        ("1.5.0", "1a2b3c4d5e6f" + "0" * 28, ["v1.5.0"], "1.5.0"),
        ("1.5.0", "1a2b3c4d5e6f" + "0" * 28, [], "1.5.1.dev0+g1a2b3c4"),
        ("1.5.0", "1a2b3c4d5e6f" + "0" * 28, ["v1.4.0", "other"], "1.5.1.dev0+g1a2b3c4"),
        ("2.0.0rc1", "1a2b3c4d5e6f" + "0" * 28, ["v2.0.0rc1"], "2.0.0rc1+g1a2b3c4"),
        ("1.5.0", None, [], "1.5.0"),
    ],
)
def test_compose(base: str, revision: str | None, tags: list[str], want: str) -> None:
    assert _version.compose(base, revision, tags) == want


def test_release_and_dev_versions_map_to_the_tags_the_release_workflow_pushes() -> None:
    assert registry_tag("1.5.0") == ("v1.5.0", None)
    assert not is_dev_version("1.5.0")
    for dev in ("0.1.0.dev0+g1a2b3c4", "1.5.1.dev0+g1a2b3c4"):
        assert is_dev_version(dev)
        assert registry_tag(dev)[0] == "test-1a2b3c4"


def test_checkout_version_is_dev_with_the_revision_and_one_source() -> None:
    # computed now (not at import): the checkout may have moved on since
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    now = _version.version_from_git(ROOT)
    assert now is not None
    tags = subprocess.run(
        ["git", "-C", str(ROOT), "tag", "--points-at", "HEAD"], capture_output=True, text=True
    ).stdout.split()
    if f"v{_version.BASE_VERSION}" not in tags:  # not the release commit itself
        assert now.endswith(f"+g{sha[:7]}"), now
        assert ".dev" in now
    # the CLI, the image build args and the standalone file all agree
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "stigmer"), "--version"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert cli.stdout.strip() == now
    assert buildinfo.build_args(ROOT)["VERSION"] == now
    assert buildinfo.build_version(ROOT) == now
    plain = subprocess.run(
        ["python3", str(ROOT / "src/stigmer/_version.py")], capture_output=True, text=True
    )
    assert plain.stdout.strip() == now
    args = subprocess.run(
        [sys.executable, "-m", "stigmer.images.buildinfo", "build-args", "--lines"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert f"VERSION={now}" in args
    assert __version__.startswith(_version.dev_base(_version.BASE_VERSION).split("+")[0]) or (
        __version__ == _version.BASE_VERSION
    )


def test_fixture_repo_versions_follow_commits_and_release_tags(fixture_repo: Repo) -> None:
    repo = fixture_repo
    head = repo.git("rev-parse", "HEAD")
    assert _version.version_from_git(repo.path) == f"0.1.0.dev0+g{head[:7]}"
    # what `make release` makes: a release commit with its tag
    out = repo.make("release", "bump=minor")
    assert out.returncode == 0, out.stderr
    assert _version.version_from_git(repo.path) == "0.1.0"
    # the next commit is a development build of the next patch
    nxt = repo.commit("work after the release")
    assert _version.version_from_git(repo.path) == f"0.1.1.dev0+g{nxt[:7]}"
    # a tag that is not v<BASE_VERSION> does not make a release
    repo.git("tag", "v9.9.9")
    assert _version.version_from_git(repo.path) == f"0.1.1.dev0+g{nxt[:7]}"
    # the release commit, checked out again, is the release again
    repo.git("checkout", "-q", "v0.1.0")
    assert _version.version_from_git(repo.path) == "0.1.0"


def test_without_git_an_installed_copy_or_the_image_reports_what_it_was_built_as(
    tmp_path: Path,
) -> None:
    # a copy of the package outside any checkout, as in the image (/app/stigmer)
    app = tmp_path / "app"
    shutil.copytree(
        ROOT / "src" / "stigmer", app / "stigmer", ignore=shutil.ignore_patterns("__pycache__")
    )
    code = "import stigmer; print(stigmer.__version__)"
    env = {"PYTHONPATH": str(app), "PATH": os.environ["PATH"]}
    bare = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert bare.stdout.strip() == _version.BASE_VERSION, bare.stderr
    stamped = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env | {_version.BUILD_VERSION_ENV: "1.2.3.dev0+gabcdef0"},
        cwd=tmp_path,
    )
    assert stamped.stdout.strip() == "1.2.3.dev0+gabcdef0", stamped.stderr


def test_version_file_is_what_make_release_rewrites() -> None:
    text = (ROOT / "src/stigmer/_version.py").read_text()
    assert text.count("\nBASE_VERSION = ") == 1
    assert _version.read_base(ROOT) == _version.BASE_VERSION


def test_tagged_release_in_a_clone_is_the_release_version(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, base="3.1.4", tags=("v3.1.4",))
    assert _version.version_from_git(repo.path) == "3.1.4"


def test_created_label_is_the_commit_time_so_a_rebuild_is_the_same_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a label with the time of the build would give each rebuild a new image ID
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    ct = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    want = datetime.fromtimestamp(int(ct), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert buildinfo.build_args(ROOT)["CREATED"] == want
    assert buildinfo.build_created(ROOT) == want
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert buildinfo.build_created(ROOT) == "2023-11-14T22:13:20Z"
    # not a git work tree, no epoch: the time of the build, still a valid label
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert buildinfo.build_created(tmp_path).endswith("Z")
