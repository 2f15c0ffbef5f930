#!/usr/bin/env python3
"""Release notes for a tag: the image to pull, how to install the CLI, the commits since the previous tag.

  python3 scripts/release-notes.py --tag v1.5.0 --image ghcr.io/stigmer/agent-runner \\
      --digest sha256:... [--checksums dist/SHA256SUMS] [--repo stigmer/stigmer]

The previous tag is the highest ``vX.Y.Z`` tag below ``--tag``; with none, the
notes list every commit up to the tag. Standard library only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    ).stdout


def semver(tag: str) -> tuple[int, int, int] | None:
    m = TAG.match(tag)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def previous_tag(tag: str) -> str | None:
    mine = semver(tag)
    if mine is None:
        raise SystemExit(f"--tag {tag!r} is not vX.Y.Z")
    older = [(v, t) for t in git("tag", "--list", "v*").split() if (v := semver(t)) and v < mine]
    return max(older)[1] if older else None


def render(
    tag: str,
    image: str,
    digest: str,
    checksums: str | None,
    repo: str,
    commits: list[str],
    prev: str | None,
) -> str:
    version = tag[1:]
    out = [f"## stigmer {tag}", ""]
    out += [
        "### Agent-runner image",
        "",
        f"`{image}:{tag}` (also `:latest`), for linux/amd64 and linux/arm64. Exact reference:",
        "",
        f"    {image}:{tag}@{digest}" if digest else f"    {image}:{tag}",
        "",
        "```bash",
        f"docker pull {image}:{tag}",
        "```",
        "",
        f"`stigmer server start` pulls it by itself when the CLI is version {version}.",
        "",
        "### CLI",
        "",
        "```bash",
        f"uv tool install stigmer=={version}      # or: pipx install stigmer=={version}",
        "brew install stigmer/tap/stigmer",
        f"curl -fsSL https://raw.githubusercontent.com/{repo}/{tag}/scripts/install.sh | sh -s -- --version {version}",
        "```",
        "",
        f"### Changes since {prev}" if prev else "### Changes",
        "",
    ]
    out += commits or ["- (no commits)"]
    if checksums:
        out += ["", "### SHA-256", "", "```", checksums.strip(), "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--image", required=True, help="e.g. ghcr.io/stigmer/agent-runner")
    ap.add_argument("--digest", default="", help="the pushed index digest, sha256:...")
    ap.add_argument("--checksums", type=Path, help="a SHA256SUMS file to include")
    ap.add_argument("--repo", default="stigmer/stigmer", help="owner/name on GitHub")
    args = ap.parse_args(argv)
    prev = previous_tag(args.tag)
    span = f"{prev}..{args.tag}" if prev else args.tag
    log = git("log", "--no-merges", "--format=- %s (%h)", span)
    commits = [line for line in log.splitlines() if line.strip()]
    checksums = args.checksums.read_text() if args.checksums else None
    sys.stdout.write(render(args.tag, args.image, args.digest, checksums, args.repo, commits, prev))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
