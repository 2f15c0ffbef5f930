"""`make release bump=... [DRY_RUN=1]`, in fixture repositories (clones with a bare origin of their own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.release.conftest import Repo, git, make_repo


def test_dry_run_minor_after_v1_4_2_prints_v1_5_0_and_changes_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))
    before = repo.state()
    out = repo.make("release", "bump=minor", "DRY_RUN=1")
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)
    assert "v1.5.0" in out.stdout
    assert "next version:    v1.5.0  (minor bump of v1.4.2)" in out.stdout
    assert "git push --atomic origin HEAD:refs/heads/main refs/tags/v1.5.0" in out.stdout
    assert repo.state() == before


def test_dry_run_without_tags_prints_v0_1_0(fixture_repo: Repo) -> None:
    before = fixture_repo.state()
    for bump in ("patch", "minor", "major"):
        out = fixture_repo.make("release", f"bump={bump}", "DRY_RUN=1")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "v0.1.0" in out.stdout and "(first release)" in out.stdout, out.stdout
    assert fixture_repo.state() == before


@pytest.mark.parametrize(
    ("tags", "bump", "want"),
    [
        (("v1.4.2",), "patch", "v1.4.3"),
        (("v1.4.2",), "major", "v2.0.0"),
        # the highest by version, not by name; other tags are ignored
        (("v1.9.0", "v1.10.1", "v1.2.3", "v2.0.0-rc1", "nightly"), "patch", "v1.10.2"),
    ],
)
def test_dry_run_bumps_the_highest_semver_tag(
    tmp_path: Path, tags: tuple[str, ...], bump: str, want: str
) -> None:
    repo = make_repo(tmp_path, tags=tags)
    out = repo.make("release", f"bump={bump}", "DRY_RUN=1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"next version:    {want}" in out.stdout, out.stdout


def test_dry_run_sees_tags_that_only_the_remote_has(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))
    git(repo.origin, "tag", "v1.6.0", "main")
    out = repo.make("release", "bump=patch", "DRY_RUN=1")
    assert "next version:    v1.6.1" in out.stdout, out.stdout
    assert "v1.6.0" not in repo.git("tag", "--list")  # read, not fetched


def test_bad_or_missing_bump_is_a_usage_error(fixture_repo: Repo) -> None:
    for args in (["release"], ["release", "bump=huge", "DRY_RUN=1"]):
        out = fixture_repo.make(*args)
        assert out.returncode != 0
        assert "usage: make release bump=patch|minor|major" in out.stderr


def test_real_release_writes_commits_tags_and_pushes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))
    out = repo.make("release", "bump=minor")
    assert out.returncode == 0, out.stdout + out.stderr
    # the version file, one commit on top, an annotated tag on it
    assert 'BASE_VERSION = "1.5.0"' in (repo.path / "src/stigmer/_version.py").read_text()
    assert repo.git("log", "-1", "--format=%s") == "Release v1.5.0"
    assert repo.git("diff", "--name-only", "HEAD~1", "HEAD") == "src/stigmer/_version.py"
    assert repo.git("cat-file", "-t", "v1.5.0") == "tag"
    head = repo.git("rev-parse", "HEAD")
    assert repo.git("rev-parse", "v1.5.0^{commit}") == head
    # pushed: the branch and the tag
    assert git(repo.origin, "rev-parse", "refs/heads/main") == head
    assert git(repo.origin, "rev-parse", "v1.5.0^{commit}") == head
    assert repo.git("status", "--porcelain", "--untracked-files=no") == ""
    # and that commit's version is the release
    from stigmer import _version

    assert _version.version_from_git(repo.path) == "1.5.0"
    # a second release right after: the next patch
    again = repo.make("release", "bump=patch", "DRY_RUN=1")
    assert "next version:    v1.5.1  (patch bump of v1.5.0)" in again.stdout, again.stdout


def test_first_real_release_is_v0_1_0(fixture_repo: Repo) -> None:
    out = fixture_repo.make("release", "bump=major")
    assert out.returncode == 0, out.stdout + out.stderr
    assert git(fixture_repo.origin, "tag", "--list") == "v0.1.0"
    assert 'BASE_VERSION = "0.1.0"' in (fixture_repo.path / "src/stigmer/_version.py").read_text()


def test_refusals_leave_everything_as_it_was(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))

    # uncommitted changes to tracked files
    (repo.path / "README.md").write_text("changed\n")
    before = repo.state()
    for dry in ("DRY_RUN=1", "DRY_RUN="):
        out = repo.make("release", "bump=patch", dry)
        assert out.returncode != 0
        assert "uncommitted changes" in out.stdout + out.stderr
        assert repo.state() == before
    repo.git("checkout", "--", "README.md")

    # not on the release branch
    repo.git("checkout", "-q", "-b", "feature")
    out = repo.make("release", "bump=patch")
    assert out.returncode != 0 and "not on the release branch main" in out.stderr
    repo.git("checkout", "-q", "main")

    # behind the remote
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo.origin), str(other))
    git(other, "commit", "-q", "--allow-empty", "-m", "someone else's")
    git(other, "push", "-q", "origin", "HEAD:main")
    before = repo.state()
    out = repo.make("release", "bump=patch")
    assert out.returncode != 0 and "pull first" in out.stderr, out.stderr
    assert repo.git("rev-parse", "HEAD") == before["head"]
    assert "v1.4.3" not in git(repo.origin, "tag", "--list")


def test_tag_taken_on_the_remote_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, tags=("v1.4.2",))
    # someone pushed v1.4.3 on a commit we do not have a tag for; ls-remote sees it
    git(repo.origin, "tag", "v1.4.3", "main")
    out = repo.make("release", "bump=patch", "DRY_RUN=1")
    # the highest tag is now v1.4.3, so the next patch is v1.4.4: no clash
    assert "next version:    v1.4.4" in out.stdout
