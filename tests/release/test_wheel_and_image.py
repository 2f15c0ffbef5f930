"""The built wheel, installed in a clean venv, prints the version that the image built from
the same commit carries in its label (and that the runner inside the image prints)."""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from stigmer.images import buildinfo
from tests.release.conftest import ROOT, RUN_ID, RUN_LABEL, TEST_LABEL, clean_env, git

pytestmark = pytest.mark.docker


@pytest.fixture
def clean_venv(tmp_path: Path, built_dist: dict[str, Any]) -> Path:
    """A fresh venv with the wheel and its dependencies (at the locked versions), nothing else."""
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", str(venv)], check=True, env=clean_env())
    constraints = tmp_path / "constraints.txt"
    subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-q",
         "-o", str(constraints)],
        check=True, cwd=ROOT, env=clean_env(),
    )  # fmt: skip
    proc = subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         "-c", str(constraints), str(built_dist["wheel"])],
        capture_output=True, text=True, env=clean_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return venv


@pytest.fixture
def image_from_this_commit(
    docker_client: docker.DockerClient, docker_labels: dict[str, str], docker_test_id: str
) -> Iterator[str]:
    tag = f"stigmer-agent-runner:rel-{docker_test_id}"
    flags = " ".join(f"--label {k}={v}" for k, v in docker_labels.items())
    assert docker_labels[TEST_LABEL] == "1" and docker_labels[RUN_LABEL] == RUN_ID
    proc = subprocess.run(
        ["make", "--no-print-directory", "build-agent-runner-image", f"IMAGE={tag}",
         f"BUILD_FLAGS={flags}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield tag
    # (removed by docker_labels' cleanup; the tag goes with it)


def test_wheel_version_equals_the_image_label(
    docker_client: docker.DockerClient,
    standin_base: str,
    built_dist: dict[str, Any],
    clean_venv: Path,
    image_from_this_commit: str,
) -> None:
    cli = subprocess.run(
        [str(clean_venv / "bin" / "stigmer"), "--version"],
        capture_output=True,
        text=True,
        cwd=clean_venv,  # not in the checkout: the installed metadata speaks
        env={"PATH": "/usr/bin:/bin", "HOME": str(clean_venv)},
    )
    assert cli.returncode == 0, cli.stderr
    wheel_version = cli.stdout.strip()
    image = docker_client.images.get(image_from_this_commit)
    label = image.labels[buildinfo.LABEL_VERSION]
    runner = docker_client.containers.run(
        image_from_this_commit, ["python", "-m", "stigmer.runner", "--version"], remove=True
    )
    print(f"wheel {built_dist['wheel'].name}: stigmer --version = {wheel_version}")
    print(f"image {image_from_this_commit}: label = {label}, runner = {runner.decode().strip()}")
    revision = image.labels[buildinfo.LABEL_REVISION]
    if revision != built_dist["head"]:
        pytest.fail(
            f"HEAD moved from {built_dist['head'][:7]} (wheel) to {revision[:7]} (image) "
            "during the session: not the same commit, rerun",
            pytrace=False,
        )
    assert wheel_version == label
    assert runner.decode().strip() == label
    # the one source: the version in the wheel's file name and metadata too
    version = built_dist["version"]
    assert wheel_version == version
    with zipfile.ZipFile(built_dist["wheel"]) as whl:
        meta = whl.read(f"stigmer-{version}.dist-info/METADATA").decode()
    assert f"\nVersion: {version}\n" in meta
    if revision == git(ROOT, "rev-parse", "HEAD"):  # and it is this checkout's version
        assert version == buildinfo.build_version(ROOT)
