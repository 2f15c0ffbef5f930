#!/usr/bin/env python3
"""Warn when the local runner image is stale against this checkout; never fail.

Stale: the image's ``io.stigmer.source-digest`` label is not this checkout's
source digest, the SHA-256 over uv.lock, the Dockerfile (and its packing
script) and the runner sources that ``make build-agent-runner-image`` stamps
on the image; it is computed by the same function (``stigmer.images.buildinfo.source_digest``). The image is
``--image``, else the ``runner_image`` setting (``STIGMER_RUNNER_IMAGE``,
config.yaml; default ``stigmer-agent-runner:local``).

Exits 0 in every case (the pre-commit hook ``runner-image-stale`` warns only):
without a Docker engine, or without the image, it says so and passes.

    uv run python scripts/check-runner-image.py [--image NAME:TAG]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def configured_image() -> str:
    from stigmer.errors import ConfigError
    from stigmer.images.resolve import DEFAULT_IMAGE
    from stigmer.settings import resolve

    try:
        return resolve().runner_image
    except ConfigError:  # a broken config.yaml is `stigmer`'s to report, not this hook's
        return DEFAULT_IMAGE


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="the image to check (default: the runner_image setting)")
    args = parser.parse_args(argv)

    import docker

    from stigmer.errors import StigmerError
    from stigmer.images.buildinfo import LABEL_DIGEST, source_digest
    from stigmer.images.engine import connect
    from stigmer.images.resolve import DEFAULT_IMAGE

    image = args.image or configured_image()
    want = source_digest(ROOT)
    try:
        client = connect(timeout=2)
    except StigmerError as exc:
        print(f"runner image check skipped: {exc.message}")
        return 0
    try:
        labels = client.images.get(image).labels or {}
    except docker.errors.ImageNotFound:
        print(f"runner image check: {image} is not built here (`make build-agent-runner-image`).")
        return 0
    except docker.errors.APIError as exc:
        print(f"runner image check skipped: the engine refused {image!r}: {exc.explanation}")
        return 0
    finally:
        client.close()
    have = labels.get(LABEL_DIGEST)
    if have == want:
        print(f"runner image {image} is up to date with this checkout ({want[:19]}...).")
        return 0
    build = "make build-agent-runner-image" + ("" if image == DEFAULT_IMAGE else f" IMAGE={image}")
    print(
        f"warning: the runner image {image} is stale: uv.lock or the runner sources changed "
        f"since it was built (its {LABEL_DIGEST} is {have or 'missing'}, this checkout's is "
        f"{want}). Rebuild it: `{build}` (or `stigmer server start --rebuild`).",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
