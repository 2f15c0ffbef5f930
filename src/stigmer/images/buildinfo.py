"""What goes into the runner image, and the labels that identify a build.

``python -m stigmer.images.buildinfo build-args`` prints the ``--build-arg``
flags the Makefile passes to ``docker build`` (version, revision, created
(the commit's time, so a rebuild of unchanged sources is the same image),
source digest); ``build-args --lines`` prints them as ``KEY=VALUE`` lines (the
form of docker/build-push-action's ``build-args``); ``digest`` prints the
source digest alone; ``version`` prints the version an image built from this
checkout carries, which is the CLI's version (see ``stigmer._version``).

The source digest is a SHA-256 over the lock file, the Dockerfile, its packing
script (scripts/pack-site-packages.py) and every
file of the package that goes into the image. An image whose
``io.stigmer.source-digest`` label differs from the checkout's digest is stale.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from stigmer import __version__, _version

#: Package folders that stay out of the runner image (mirrored in .dockerignore).
NOT_IN_IMAGE = ("cli", "stack", "server", "images")
#: Checkout files that shape the image besides the package sources.
BUILD_INPUTS = ("uv.lock", "Dockerfile", "scripts/pack-site-packages.py")

LABEL_VERSION = "org.opencontainers.image.version"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_DIGEST = "io.stigmer.source-digest"
#: What the API server, the CLI and the runner must agree on (the workflow input,
#: the events, the agent spec): a runner built from other contract sources cannot
#: run this stack's executions.
LABEL_CONTRACT = "io.stigmer.contract-digest"
#: The sources of that contract (globs under the package). Not the rest of
#: ``spec/``: its YAML loader, JSON schema and hints run in the CLI and the API
#: server only, and a new error message there must not refuse every built image.
CONTRACT_SOURCES = ("contract/*.py", "spec/models.py")
SOURCE_URL = "https://github.com/stigmer/stigmer"


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed wheel."""
    root = Path(__file__).resolve().parents[3]
    if (
        (root / "Dockerfile").is_file()
        and (root / "uv.lock").is_file()
        and (root / "src" / "stigmer").is_dir()
    ):
        return root
    return None


def image_sources(root: Path) -> list[Path]:
    """Files whose content defines the image, sorted (relative to ``root``)."""
    pkg = root / "src" / "stigmer"
    files = [root / name for name in BUILD_INPUTS]
    for path in sorted(pkg.rglob("*")):
        rel = path.relative_to(pkg)
        if not path.is_file() or rel.parts[0] in NOT_IN_IMAGE:
            continue
        if "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        files.append(path)
    return files


def source_digest(root: Path) -> str:
    """``sha256:<hex>`` over the paths and contents of :func:`image_sources`."""
    h = hashlib.sha256()
    for path in image_sources(root):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def contract_sources() -> list[Path]:
    """The contract modules of the running package (checkout or installed), in digest order."""
    pkg = Path(__file__).resolve().parents[1]
    return [path for pattern in CONTRACT_SOURCES for path in sorted(pkg.glob(pattern))]


def contract_digest() -> str:
    """``sha256:<hex>`` over the paths and contents of :func:`contract_sources`."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in contract_sources():
        h.update(path.relative_to(pkg).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def git_revision(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_created(root: Path) -> str:
    """The image's ``created`` label: ``SOURCE_DATE_EPOCH`` if set, else the commit time of HEAD.

    Not the time of the build: a label that changes on every build gives every
    rebuild of unchanged sources a new image ID (the layer cache is hit, the
    config is not), and the image it replaces is left dangling. The time of
    the build only when neither is known (not a git work tree).
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch.isdigit():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "log", "-1", "--format=%ct"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            epoch = out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            epoch = ""
    try:
        when = datetime.fromtimestamp(int(epoch), UTC)
    except (ValueError, OverflowError, OSError):
        when = datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_version(root: Path) -> str:
    """The version an image built from ``root`` carries: what ``stigmer --version`` prints there.

    Computed from ``root``'s git state (release on the commit tagged
    ``v<BASE_VERSION>``, else ``<dev>+g<sha7>``); the running package's
    version when ``root`` is not a git work tree.
    """
    return _version.version_from_git(root) or __version__


def source_url() -> str:
    """The repository URL for the source label: the GitHub Actions repository when run there."""
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    return f"{server.rstrip('/')}/{repo}" if server and repo else SOURCE_URL


def build_args(root: Path) -> dict[str, str]:
    """The ``--build-arg`` values for ``docker build`` of the runner image."""
    return {
        "VERSION": build_version(root),
        "REVISION": git_revision(root),
        "CREATED": build_created(root),
        "SOURCE": source_url(),
        "SOURCE_DIGEST": source_digest(root),
        "CONTRACT_DIGEST": contract_digest(),
    }


def main(argv: list[str]) -> int:
    root = checkout_root()
    if root is None:
        print("not running from a source checkout", file=sys.stderr)
        return 2
    cmd = argv[0] if argv else "build-args"
    if cmd == "digest":
        print(source_digest(root))
    elif cmd == "version":
        print(build_version(root))
    elif cmd == "build-args" and argv[1:] == ["--lines"]:
        print("\n".join(f"{k}={v}" for k, v in build_args(root).items()))
    elif cmd == "build-args" and not argv[1:]:
        print(" ".join(f"--build-arg {k}={v}" for k, v in build_args(root).items()))
    else:
        print(
            f"unknown command {' '.join(argv)!r}: use build-args [--lines], digest or version",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
