#!/usr/bin/env python3
"""The ``determine-version`` job of .github/workflows/release.yml: what this run builds and publishes.

Reads the event from the environment (as GitHub Actions sets it) and the
checkout's version from ``src/stigmer/_version.py``, and prints ``key=value``
lines for ``$GITHUB_OUTPUT``:

* a pushed tag ``vX.Y.Z``: a release. The checkout's version must be ``X.Y.Z``
  (the commit ``make release`` made), else this fails.
* ``workflow_dispatch`` with ``version`` (an existing tag ``vX.Y.Z``): builds
  that tag (this script checks it out); a release only if ``release`` is true,
  else a rehearsal that pushes ``test-<sha7>`` and publishes nothing.
* anything else (a push to a branch, a dispatch without a version): a
  development build ``<dev>+g<sha7>``, image tag ``test-<sha7>``, no release.
  A push of a commit that a ``vX.Y.Z`` tag already marks builds nothing: the
  tag's own run does.

Outputs: ``build``, ``release`` (``true``/``false``), ``version``, ``tag``
(``vX.Y.Z`` or empty), ``checkout-ref`` (what the other jobs check out, so that
they compute the same version), ``image`` (``ghcr.io/<owner>/agent-runner``),
``image-tag`` (``vX.Y.Z`` or ``test-<sha7>``) and ``tags`` (the full image
references to push, one a line: ``:vX.Y.Z`` and ``:latest`` for a release,
``:test-<sha7>`` otherwise).

Env: GITHUB_EVENT_NAME, GITHUB_REF, GITHUB_SHA, GITHUB_REPOSITORY_OWNER,
INPUT_VERSION, INPUT_RELEASE, IMAGE_NAME (default ``agent-runner``),
REGISTRY (default ``ghcr.io``). Standard library only.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
RELEASE_TAG = re.compile(r"^v(\d+\.\d+\.\d+)$")


class Refused(Exception):
    pass


def load_version_module(root: Path) -> ModuleType:
    """``src/stigmer/_version.py`` of ``root``, loaded by path (no package import, no dependencies)."""
    path = root / "src" / "stigmer" / "_version.py"
    spec = importlib.util.spec_from_file_location("stigmer_version_of_checkout", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(root: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if out.returncode != 0:
        raise Refused(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def decide(root: Path, env: dict[str, str]) -> dict[str, str]:
    event = env.get("GITHUB_EVENT_NAME", "")
    ref = env.get("GITHUB_REF", "")
    owner = env.get("GITHUB_REPOSITORY_OWNER", "stigmer").lower()
    image = f"{env.get('REGISTRY') or 'ghcr.io'}/{owner}/{env.get('IMAGE_NAME') or 'agent-runner'}"
    want = (env.get("INPUT_VERSION") or "").strip()
    publish = (env.get("INPUT_RELEASE") or "").strip().lower() == "true"

    release_tag = ""
    if event == "push" and ref.startswith("refs/tags/"):
        release_tag = ref[len("refs/tags/") :]
        if not RELEASE_TAG.match(release_tag):
            raise Refused(f"tag {release_tag} is not vX.Y.Z: nothing to release")
        publish = True
    elif event == "workflow_dispatch" and want:
        release_tag = want if want.startswith("v") else f"v{want}"
        if not RELEASE_TAG.match(release_tag):
            raise Refused(f"version input {want!r} is not vX.Y.Z")
        try:
            git(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{release_tag}^{{commit}}")
        except Refused:
            raise Refused(
                f"no tag {release_tag}: make it with `make release` (the workflow builds existing tags only)"
            ) from None
        git(
            root,
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            f"refs/tags/{release_tag}",
        )
    elif publish:
        raise Refused("release=true needs the version input: an existing tag vX.Y.Z")

    vmod = load_version_module(root)
    sha = git(root, "rev-parse", "HEAD")
    if release_tag:
        version = vmod.version_from_git(root)
        expected = release_tag[1:]
        if version != expected:
            raise Refused(
                f"tag {release_tag} is on a commit whose version is {version} (BASE_VERSION "
                f"{vmod.read_base(root)!r}), not {expected}: tag releases with `make release`, "
                "which writes the version, commits and tags together"
            )
        image_tag = release_tag if publish else f"test-{sha[:7]}"
        tags = (
            [f"{image}:{release_tag}", f"{image}:latest"] if publish else [f"{image}:{image_tag}"]
        )
        return {
            "build": "true",
            "release": "true" if publish else "false",
            "version": version,
            "tag": release_tag,
            "checkout-ref": f"refs/tags/{release_tag}",
            "image": image,
            "image-tag": image_tag,
            "tags": "\n".join(tags),
        }

    # A development build. The other jobs check out the bare commit (no tags),
    # so the version is the development one even where a tag marks the commit.
    base = vmod.read_base(root)
    version = vmod.compose(base, sha, [])
    marked = vmod.compose(base, sha, git(root, "tag", "--points-at", "HEAD").split())
    build = not (event == "push" and marked != version)
    image_tag = f"test-{sha[:7]}"
    return {
        "build": "true" if build else "false",
        "release": "false",
        "version": version,
        "tag": "",
        "checkout-ref": sha,
        "image": image,
        "image-tag": image_tag,
        "tags": f"{image}:{image_tag}",
    }


def github_output(values: dict[str, str]) -> str:
    lines = []
    for key, value in values.items():
        if "\n" in value:
            lines += [f"{key}<<__STIGMER_EOF__", value, "__STIGMER_EOF__"]
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def main() -> int:
    root = Path(os.environ.get("STIGMER_CHECKOUT") or ROOT)
    try:
        values = decide(root, dict(os.environ))
    except Refused as exc:
        print(f"::error title=determine-version::{exc}", file=sys.stderr)
        return 1
    sys.stdout.write(github_output(values))
    kind = "release" if values["release"] == "true" else "development build"
    note = (
        "" if values["build"] == "true" else " (nothing to build: a release tag marks this commit)"
    )
    print(f"{kind} {values['version']}{note}; image tags: {values['tags']!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
