#!/usr/bin/env python3
"""Cut a release: ``make release bump=patch|minor|major [DRY_RUN=1]``.

1. The next version is the highest ``vX.Y.Z`` tag (local tags, plus the
   remote's when it answers) bumped by ``--bump``; with no such tag it is
   ``v0.1.0``, whatever the bump.
2. Checks: a git work tree, no uncommitted changes to tracked files, on the
   release branch (``RELEASE_BRANCH``, default ``main``), not behind the
   remote branch, the tag not taken.
3. Writes ``BASE_VERSION = "X.Y.Z"`` into ``src/stigmer/_version.py``, commits
   it (``Release vX.Y.Z``), makes the annotated tag ``vX.Y.Z`` and pushes the
   branch and the tag in one atomic push. The tag push starts
   ``.github/workflows/release.yml``.

``--dry-run`` (``DRY_RUN=1``) prints the version and every step and changes
nothing: no fetch, no write, no commit, no tag, no push. It exits 1 when the
real run would refuse, naming why.

Standard library only: it runs with any ``python3`` >= 3.9, without the
project's environment.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

VERSION_FILE = Path("src/stigmer/_version.py")
BASE_LINE = re.compile(r'^BASE_VERSION = "([^"]*)"$', re.MULTILINE)
TAG = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
BUMPS = ("patch", "minor", "major")
FIRST = (0, 1, 0)


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc


def parse_tags(names: list[str]) -> list[tuple[int, int, int]]:
    """The ``vX.Y.Z`` tags among ``names``, as tuples (anything else is ignored)."""
    found = []
    for name in names:
        m = TAG.match(name.strip())
        if m:
            found.append((int(m[1]), int(m[2]), int(m[3])))
    return found


def next_version(tags: list[tuple[int, int, int]], bump: str) -> tuple[int, int, int]:
    if not tags:
        return FIRST
    major, minor, patch = max(tags)
    if bump == "major":
        return (major + 1, 0, 0)
    if bump == "minor":
        return (major, minor + 1, 0)
    return (major, minor, patch + 1)


def fmt(v: tuple[int, int, int]) -> str:
    return ".".join(str(x) for x in v)


def local_tags() -> list[str]:
    return git("tag", "--list", "v*").stdout.split()


def remote_refs(remote: str) -> dict[str, str] | None:
    """``{ref: sha}`` of ``remote``'s branches and tags (read-only ``ls-remote``); None if it does not answer."""
    proc = git("ls-remote", "--refs", remote, check=False)
    if proc.returncode != 0:
        return None
    refs = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref.strip()] = sha.strip()
    return refs


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="make release", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bump", default="", help="patch, minor or major")
    ap.add_argument(
        "--dry-run", action="store_true", help="print what would happen; change nothing"
    )
    ap.add_argument("--remote", default=os.environ.get("RELEASE_REMOTE", "origin"))
    ap.add_argument("--branch", default=os.environ.get("RELEASE_BRANCH", "main"))
    args = ap.parse_args(argv)
    dry = args.dry_run
    say = print

    if args.bump not in BUMPS:
        print(
            f"usage: make release bump=patch|minor|major [DRY_RUN=1]  (got bump={args.bump!r})",
            file=sys.stderr,
        )
        return 2
    top = git("rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0:
        print("not inside a git work tree", file=sys.stderr)
        return 2
    os.chdir(top.stdout.strip())
    if not VERSION_FILE.is_file() or not BASE_LINE.search(VERSION_FILE.read_text()):
        print(f"no BASE_VERSION line in {VERSION_FILE}", file=sys.stderr)
        return 2

    problems: list[str] = []
    has_remote = git("remote", "get-url", args.remote, check=False).returncode == 0
    if not has_remote:
        problems.append(f"no git remote {args.remote!r} to push to (RELEASE_REMOTE=...)")

    # The real run fetches first, so that it sees every tag and the remote branch.
    if has_remote and not dry:
        fetched = git("fetch", "--tags", args.remote, args.branch, check=False)
        if fetched.returncode != 0:
            problems.append(f"git fetch {args.remote} failed: {fetched.stderr.strip()}")
    names = local_tags()
    note = "local tags"
    theirs = remote_refs(args.remote) if has_remote else None
    if has_remote and theirs is None:
        problems.append(f"remote {args.remote!r} does not answer (git ls-remote)")
    if theirs is not None:
        names = sorted(
            set(names) | {r[len("refs/tags/") :] for r in theirs if r.startswith("refs/tags/")}
        )
        note = f"local and {args.remote} tags"
    tags = parse_tags(names)
    current = f"v{fmt(max(tags))}" if tags else None
    new = fmt(next_version(tags, args.bump))
    tag = f"v{new}"

    say(f"current release: {current or '(none: no vX.Y.Z tag)'}  [{note}]")
    if current:
        say(f"next version:    {tag}  ({args.bump} bump of {current})")
    else:
        say(f"next version:    {tag}  (first release)")

    branch = git("symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.strip()
    if branch != args.branch:
        problems.append(
            f"on {branch or 'a detached HEAD'}, not on the release branch {args.branch} "
            "(RELEASE_BRANCH=...)"
        )
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.rstrip()
    if dirty:
        problems.append(
            "uncommitted changes to tracked files:\n    " + dirty.replace("\n", "\n    ")
        )
    if tag in names:
        problems.append(f"tag {tag} exists already")
    their_head = (theirs or {}).get(f"refs/heads/{args.branch}")
    if (
        their_head
        and git("merge-base", "--is-ancestor", their_head, "HEAD", check=False).returncode
    ):
        problems.append(
            f"HEAD does not contain {args.remote}/{args.branch} ({their_head[:7]}): pull first"
        )

    text = VERSION_FILE.read_text()
    m = BASE_LINE.search(text)
    assert m is not None
    steps = [
        f'write BASE_VERSION = "{new}" into {VERSION_FILE} (was "{m[1]}")',
        f"git commit -m 'Release {tag}' -- {VERSION_FILE}",
        f"git tag -a {tag} -m 'stigmer {tag}'",
        f"git push --atomic {args.remote} HEAD:refs/heads/{args.branch} refs/tags/{tag}",
    ]
    if dry:
        say("dry run: would")
        for s in steps:
            say(f"  - {s}")
        if problems:
            say("but the real run would refuse:")
            for p in problems:
                say(f"  ! {p}")
            return 1
        say("nothing changed (DRY_RUN=1)")
        return 0

    if problems:
        print("refusing to release:", file=sys.stderr)
        for p in problems:
            print(f"  ! {p}", file=sys.stderr)
        return 1

    VERSION_FILE.write_text(BASE_LINE.sub(f'BASE_VERSION = "{new}"', text, count=1))
    say(f"- {steps[0]}")
    git("add", "--", str(VERSION_FILE))
    git("commit", "--quiet", "-m", f"Release {tag}", "--", str(VERSION_FILE))
    say(f"- {steps[1]}")
    git("tag", "-a", tag, "-m", f"stigmer {tag}")
    say(f"- {steps[2]}")
    pushed = git(
        "push",
        "--atomic",
        args.remote,
        f"HEAD:refs/heads/{args.branch}",
        f"refs/tags/{tag}",
        check=False,
    )
    if pushed.returncode != 0:
        print(
            f"push failed: {pushed.stderr.strip()}\n"
            f"The release commit and tag {tag} exist locally only. Fix the cause and push with\n"
            f"  git push --atomic {args.remote} HEAD:refs/heads/{args.branch} refs/tags/{tag}\n"
            f"or undo with\n  git tag -d {tag} && git reset --hard HEAD~1",
            file=sys.stderr,
        )
        return 1
    say(f"- {steps[3]}")
    say(f"released {tag}: the tag push starts the release workflow (.github/workflows/release.yml)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RuntimeError as exc:
        print(f"release: {exc}", file=sys.stderr)
        sys.exit(1)
