"""The package version: the one source for the CLI, the wheel, the image tag and the image labels.

``BASE_VERSION`` is the only line a release changes (``make release`` writes it,
commits it and tags the commit ``v<BASE_VERSION>``). What a build reports,
:data:`__version__`, follows from it and from where the code runs:

* a source checkout (a git work tree): the commit tagged ``v<BASE_VERSION>`` is
  the release, ``1.5.0``; any other commit is a development build,
  ``<dev>+g<sha7>``, e.g. ``1.5.1.dev0+g1a2b3c4``. ``<dev>`` is BASE_VERSION
  when it is already a pre-release (``0.1.0.dev0``), else the next patch's
  ``.dev0`` (after release 1.5.0 comes 1.5.1.dev0);
* an installed wheel or sdist: the version in its metadata, which the build
  computed as above from the checkout it was built from (hatchling's ``code``
  version source runs this file; a wheel built from an sdist takes the
  version from the sdist's PKG-INFO);
* the agent-runner image: ``STIGMER_BUILD_VERSION``, set by the Dockerfile from
  the ``VERSION`` build argument, which ``python -m stigmer.images.buildinfo``
  computes here too, so the runner, the image label and the CLI agree;
* anything else: BASE_VERSION as it stands.

``python src/stigmer/_version.py`` prints the version (``--base``: BASE_VERSION)
with nothing but the standard library.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BASE_VERSION = "0.1.0.dev0"

#: The environment variable through which the runner image carries its version.
BUILD_VERSION_ENV = "STIGMER_BUILD_VERSION"

_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def dev_base(base: str) -> str:
    """The public part of a development build's version for ``base``."""
    m = _RELEASE.match(base)
    if m is None:  # already a pre-release / dev version
        return base
    major, minor, patch = (int(x) for x in m.groups())
    return f"{major}.{minor}.{patch + 1}.dev0"


def compose(base: str, revision: str | None, tags_at_head: list[str]) -> str:
    """The version of a build of ``base`` at git ``revision`` (None: unknown)."""
    if revision is None:
        return base
    if _RELEASE.match(base) and f"v{base}" in tags_at_head:
        return base
    return f"{dev_base(base)}+g{revision[:7]}"


def _git(root: Path, *args: str) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def read_base(root: Path) -> str:
    """BASE_VERSION as written in ``root``'s ``src/stigmer/_version.py``."""
    text = (root / "src" / "stigmer" / "_version.py").read_text()
    m = re.search(r'^BASE_VERSION = "([^"]+)"$', text, re.MULTILINE)
    if m is None:
        raise ValueError(f"no BASE_VERSION line in {root}/src/stigmer/_version.py")
    return m.group(1)


def version_from_git(root: Path) -> str | None:
    """The version of the checkout at ``root``, or None if it is not a git work tree."""
    revision = _git(root, "rev-parse", "--verify", "HEAD")
    if not revision or not re.fullmatch(r"[0-9a-f]{40,64}", revision):
        return None
    base = read_base(root)
    tags: list[str] = []
    if _RELEASE.match(base):  # only a release base needs the tag check
        tags = (_git(root, "tag", "--points-at", "HEAD") or "").split()
    return compose(base, revision, tags)


def checkout_root() -> Path | None:
    """The source checkout this file belongs to, or None (installed, or in the image)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        return root
    return None


def _installed_version() -> str | None:
    """The version in the metadata of the installed distribution that holds this file.

    The ``stigmer-*.dist-info`` folder beside the package is read directly: a
    scan of every distribution with ``importlib.metadata`` costs an installed
    CLI tens of milliseconds at each start. That scan is the fallback.
    """
    here = Path(__file__).resolve()
    for meta in sorted(here.parents[1].glob("stigmer-*.dist-info/METADATA")):
        try:
            with meta.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Version:"):
                        return line.partition(":")[2].strip()
                    if not line.strip():
                        break  # the end of the headers
        except OSError:
            continue
    try:
        from importlib.metadata import distribution

        dist = distribution("stigmer")
        located = Path(str(dist.locate_file("stigmer/_version.py"))).resolve()
    except Exception:
        return None
    if located == Path(__file__).resolve():
        return dist.version
    return None


def _resolve() -> str:
    root = checkout_root()
    if root is not None:
        found = version_from_git(root)
        if found:
            return found
    return _installed_version() or os.environ.get(BUILD_VERSION_ENV) or BASE_VERSION


__version__ = _resolve()


if __name__ == "__main__":
    print(BASE_VERSION if sys.argv[1:] == ["--base"] else __version__)
