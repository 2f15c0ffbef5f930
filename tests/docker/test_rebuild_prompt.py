"""A stale runner image at `server start`: a prompt on a terminal (rebuild now, or go on), a warning without."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from stigmer.images import buildinfo
from tests.conftest import Stack
from tests.fixtures_docker import docker_mode
from tests.pty_cli import run_on_pty

QUESTION = b"Rebuild it now?"


@pytest.fixture
def stale_stack(
    stack: Stack,
    runner_image: str,
    docker_labels: dict[str, str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> Iterator[Stack]:
    """A docker-mode stack whose runner image is the session's, labelled with another digest."""
    tag = f"stigmer-stale-{docker_labels['io.stigmer.test.id']}:runner"
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {runner_image}\n")
    docker_client.images.build(
        path=str(tmp_path / "ctx"),
        tag=tag,
        labels={**docker_labels, buildinfo.LABEL_DIGEST: "sha256:stale"},
        rm=True,
        forcerm=True,
    )
    try:
        with docker_mode(stack, runner_image, docker_labels, STIGMER_RUNNER_IMAGE=tag) as st:
            yield st
    finally:  # a rebuild tagged it without the test's labels: removed by its tag
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(tag, force=True)


def image_report(st: Stack) -> dict[str, object]:
    out = st.cli("image", "status", "--json", check=True)
    local: dict[str, object] = json.loads(out.stdout)["local"]
    return local


def test_stale_image_warns_without_a_terminal_and_asks_on_one(stale_stack: Stack) -> None:
    st = stale_stack
    assert image_report(st)["stale"] is True

    # no terminal: a warning on stderr, and the start goes on with the image
    started = st.cli("server", "start", "--json", check=True)
    assert "warning: stale image" in started.stderr
    assert "--rebuild" in started.stderr
    assert json.loads(started.stdout)["ready"]
    st.cli("server", "stop", check=True)

    # a terminal, answered "no": it goes on with the stale image
    code, text = run_on_pty(["server", "start"], st.env, [(QUESTION, b"n\n")], timeout=180)
    assert code == 0, text
    assert "is stale: uv.lock or the runner sources" in text
    assert "Going on with the stale image" in text and "stigmer is ready" in text
    assert image_report(st)["stale"] is True
    st.cli("server", "stop", check=True)

    # a terminal, answered "yes": rebuilt from this checkout, then started
    code, text = run_on_pty(["server", "start"], st.env, [(QUESTION, b"y\n")], timeout=900)
    assert code == 0, text
    assert "Building stigmer-stale-" in text and "stigmer is ready" in text
    report = image_report(st)
    root = buildinfo.checkout_root()
    assert root is not None
    assert report["stale"] is False and report["source_digest"] == buildinfo.source_digest(root)


def test_pre_commit_hook_script_warns_of_a_stale_image_and_passes(
    docker_client: docker.DockerClient,
    standin_base: str,
    docker_labels: dict[str, str],
    tmp_path: Path,
) -> None:
    root = buildinfo.checkout_root()
    assert root is not None
    (tmp_path / "Dockerfile").write_text(f"FROM {standin_base}\n")
    repo = f"stigmer-hook-{docker_labels['io.stigmer.test.id']}"
    for tag, digest in (("current", buildinfo.source_digest(root)), ("stale", "sha256:old")):
        docker_client.images.build(
            path=str(tmp_path),
            tag=f"{repo}:{tag}",
            labels={**docker_labels, buildinfo.LABEL_DIGEST: digest},
            rm=True,
            forcerm=True,
        )

    def check(image: str) -> subprocess.CompletedProcess[str]:
        script = root / "scripts" / "check-runner-image.py"
        return subprocess.run(
            [sys.executable, str(script), "--image", image],
            capture_output=True,
            text=True,
            timeout=60,
        )

    fresh = check(f"{repo}:current")
    assert fresh.returncode == 0 and "up to date" in fresh.stdout, fresh.stdout + fresh.stderr
    stale = check(f"{repo}:stale")
    assert stale.returncode == 0, stale.stderr
    assert "warning: the runner image" in stale.stderr and "is stale" in stale.stderr
    assert f"make build-agent-runner-image IMAGE={repo}:stale" in stale.stderr


def test_an_image_of_another_contract_is_refused_before_anything_starts(
    stack: Stack,
    runner_image: str,
    docker_labels: dict[str, str],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """Its runner could not decode this stack's workflow input: every run would stay PENDING."""
    tag = f"stigmer-othercontract-{docker_labels['io.stigmer.test.id']}:runner"
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {runner_image}\n")
    docker_client.images.build(
        path=str(tmp_path / "ctx"),
        tag=tag,
        labels={**docker_labels, buildinfo.LABEL_CONTRACT: "sha256:another"},
        rm=True,
        forcerm=True,
    )
    try:
        with docker_mode(stack, runner_image, docker_labels, STIGMER_RUNNER_IMAGE=tag) as st:
            started = st.cli("server", "start")
            assert started.returncode == 11, started.stdout + started.stderr
            assert "another contract" in started.stderr and "--rebuild" in started.stderr
            assert st.cli("server", "status").returncode == 5  # nothing was started
            assert image_report(st)["incompatible"] is True
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(tag, force=True)
