"""`stigmer image prune` against the real engine, seeing only this test's own objects.

Other tests and sessions share the engine, and their runner images carry the
same labels as ours. So this test configures a repository of its own
(runner_image, runner_registry) and passes `--label io.stigmer.test.id=<its
id>`: prune can see nothing the test did not make, untagged images included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from stigmer.images import buildinfo
from stigmer.stack.agent_runner_docker import LABEL_COMPONENT, LABEL_HOME
from tests.conftest import STIGMER
from tests.fixtures_docker import ID_LABEL
from tests.pty_cli import run_on_pty


def build(
    client: docker.DockerClient, ctx: Path, base: str, tag: str, labels: dict[str, str]
) -> str:
    """A tiny image FROM ``base`` with ``labels`` (a label step only: no layer), tagged ``tag``."""
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {base}\n")
    image, _ = client.images.build(path=str(ctx), tag=tag, labels=labels, rm=True, forcerm=True)
    return str(image.id)


def exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


@pytest.fixture
def fake_supervisor(tmp_path: Path) -> Iterator[Path]:
    """A process that looks like a stack's supervisor (its command line), for a home of its own.

    `image prune` finds running stacks by that command line; this one runs a
    configured image that no container uses yet, as a stack between two runner
    launches does.
    """
    home = tmp_path / "running-home"
    (home / "run").mkdir(parents=True)
    code = "import time; time.sleep(300)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "stigmer.stack.supervisor", "--home", str(home)]
    )
    try:
        yield home
    finally:
        proc.kill()
        proc.wait(10)


def test_prune_removes_our_old_images_and_stopped_containers_and_keeps_the_rest(
    docker_client: docker.DockerClient,
    standin_base: str,
    docker_labels: dict[str, str],
    docker_test_id: str,
    fake_supervisor: Path,
    tmp_path: Path,
) -> None:
    repo = f"stigmer-prune-{docker_test_id}"
    other_repo = f"stigmer-prune-other-{docker_test_id}"

    def ours(digest: str) -> dict[str, str]:
        return {**docker_labels, buildinfo.LABEL_DIGEST: f"sha256:{digest}"}

    # everything made here carries docker_labels: the fixture removes it, also on failure
    ctx = tmp_path / "ctx"
    built: dict[str, str] = {}
    # an older build of the configured tag: untagged once the tag is built again
    built["untagged"] = build(docker_client, ctx, standin_base, f"{repo}:current", ours("a"))
    built["current"] = build(docker_client, ctx, standin_base, f"{repo}:current", ours("b"))
    built["old"] = build(docker_client, ctx, standin_base, f"{repo}:old", ours("c"))
    built["in-stack"] = build(docker_client, ctx, standin_base, f"{repo}:in-stack", ours("d"))
    built["used"] = build(docker_client, ctx, standin_base, f"{repo}:used", ours("f"))
    built["foreign"] = build(docker_client, ctx, standin_base, f"{repo}:foreign", docker_labels)
    built["elsewhere"] = build(docker_client, ctx, standin_base, f"{other_repo}:x", ours("e"))
    assert len(set(built.values())) == len(built)
    assert docker_client.images.get(built["untagged"]).tags == []
    (fake_supervisor / "run" / "stack.json").write_text(
        json.dumps({"values": {"runner_image": f"{repo}:in-stack"}})
    )

    def runner_container(name: str, home: Path) -> Any:
        return docker_client.containers.create(
            f"{repo}:old",
            ["true"],
            name=f"{name}-{docker_test_id}",
            labels={**docker_labels, LABEL_HOME: str(home), LABEL_COMPONENT: "agent-runner"},
        )

    stopped = runner_container("stopped-runner", tmp_path / "gone-home")
    of_running = runner_container("running-stack-runner", fake_supervisor)
    # a container of another program, from our image: it keeps the image it uses
    other = docker_client.containers.create(
        f"{repo}:used", ["true"], name=f"other-{docker_test_id}", labels=docker_labels
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")} | {
        "STIGMER_HOME": str(tmp_path / "home"),
        "STIGMER_RUNNER_IMAGE": f"{repo}:current",
        "STIGMER_RUNNER_REGISTRY": f"127.0.0.1:5000/{repo}",
    }
    only_ours = ["--label", f"{ID_LABEL}={docker_test_id}"]

    def prune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STIGMER, "image", "prune", *only_ours, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    # the stopped container of a running stack is kept, and so is the image it
    # uses; it is dropped after this first look, to see that image go next
    dry = prune("--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True
    remove = {i["id"] for i in plan["remove"]}
    kept = {i["id"]: i["reason"] for i in plan["kept"]}
    assert remove == {stopped.id, built["untagged"]}, plan
    assert set(kept) == {
        of_running.id,
        built["current"],
        built["in-stack"],
        built["old"],
        built["used"],
    }
    assert "runs" in kept[of_running.id]
    assert "configured image" in kept[built["current"]]
    assert "stack running in" in kept[built["in-stack"]]
    assert "used by container running-stack-runner" in kept[built["old"]]
    assert f"used by container other-{docker_test_id}" in kept[built["used"]]
    # nothing removed by the dry run
    stopped.reload()
    for ref in (f"{repo}:old", f"{repo}:current", f"{repo}:in-stack"):
        assert exists(docker_client, ref)

    of_running.remove()
    dry = json.loads(prune("--dry-run", "--json").stdout)
    remove = {i["id"] for i in dry["remove"]}
    assert remove == {stopped.id, built["old"], built["untagged"]}, dry
    assert dry["remove"][0]["kind"] == "container", "containers first: they free images"
    stopped.reload()
    assert exists(docker_client, f"{repo}:old")

    # without --yes and without a terminal: refused, nothing removed
    refused = prune()
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--yes" in refused.stderr and f"{repo}:old" in refused.stderr
    assert exists(docker_client, f"{repo}:old")
    stopped.reload()

    # on a terminal it asks; "no" removes nothing
    code, text = run_on_pty(["image", "prune", *only_ours], env, [(b"[y/N]", b"n\n")], timeout=120)
    assert code == 0, text
    assert f"{repo}:old" in text and "Nothing was removed" in text
    assert exists(docker_client, f"{repo}:old")
    stopped.reload()

    done = prune("--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["dry_run"] is False and result["failed"] == []
    assert {i["id"] for i in result["remove"]} == remove
    with pytest.raises(docker.errors.NotFound):
        stopped.reload()
    assert not exists(docker_client, f"{repo}:old")
    assert not exists(docker_client, built["untagged"])
    for ref in (f"{repo}:current", f"{repo}:in-stack", f"{repo}:used", f"{repo}:foreign"):
        assert exists(docker_client, ref), f"{ref} must be kept"
    for ref in (f"{other_repo}:x", standin_base):
        assert exists(docker_client, ref), f"{ref} must be kept"
    other.reload()

    again = prune("--yes")
    assert again.returncode == 0 and "Nothing to remove" in again.stdout, again.stdout
