"""The runner under rootful Podman, through its Docker-compatible socket.

Podman's service (``podman system service``, started by scripts/ci/start-podman.sh
on ``/run/stigmer-ci-podman.sock``, or ``STIGMER_PODMAN_SOCK``) stands in for
dockerd: ``DOCKER_HOST`` points at it, and the stack runs in docker mode. The
image is pulled from the local registry (127.0.0.1:5000, which Podman's own
registries.conf marks insecure). Skipped with the reason when Podman is not
there; a failure under CI=true, whose .ci/run starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import psutil
import pytest

from stigmer.stack.agent_runner_docker import LABEL_HOME, container_user
from tests.conftest import Stack, tear_down
from tests.docker.test_runner_container import run_workflow
from tests.fixtures_docker import unavailable

ROOT = Path(__file__).resolve().parents[2]
PODMAN_SOCK = os.environ.get("STIGMER_PODMAN_SOCK", "/run/stigmer-ci-podman.sock")


@pytest.fixture(scope="session")
def podman_client() -> Iterator[docker.DockerClient]:
    """A docker SDK client on Podman's Docker-compatible socket, checked to be Podman."""
    if shutil.which("podman") is None:
        unavailable("podman is not installed (Debian: `apt-get install podman`)")
    client: docker.DockerClient | None = None
    error: Exception | None = None
    try:
        client = docker.DockerClient(base_url=f"unix://{PODMAN_SOCK}", timeout=120)
        version = client.version()
    except Exception as exc:
        error = exc
    if client is None or error is not None:
        unavailable(
            f"no Podman service answers at unix://{PODMAN_SOCK}: {error} "
            "(start it with scripts/ci/start-podman.sh)"
        )
    names = [c.get("Name", "") for c in version.get("Components") or []]
    if not any("Podman" in n for n in names):
        unavailable(f"unix://{PODMAN_SOCK} is not Podman (components: {names})")
    try:
        yield client
    finally:
        client.close()


def push_to_registry(
    docker_client: docker.DockerClient,
    image: str,
    registry: str,
    test_id: str,
    cleanup: list[tuple[str, str]],
) -> tuple[str, str]:
    """Push ``image`` to the local registry; (repository, tag) it has there."""
    repo = f"stigmer-test-{test_id}/agent-runner"
    repository, tag = f"{registry}/{repo}", f"podman-{test_id}"
    docker_client.images.get(image).tag(repository, tag)
    try:
        digest = None
        for chunk in docker_client.images.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in chunk, chunk
            digest = (chunk.get("aux") or {}).get("Digest") or digest
        assert digest, "the push reported no digest"
        cleanup.append((repo, digest))
    finally:
        docker_client.images.remove(f"{repository}:{tag}")
    return repository, tag


def conmon_of(container_id: str) -> list[psutil.Process]:
    """Podman's monitor processes (conmon) of a container, by its id in their command line."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == "conmon" and container_id in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_runner_under_podman(
    podman_client: docker.DockerClient,
    docker_client: docker.DockerClient,
    runner_image: str,
    local_registry: str,
    registry_cleanup: list[tuple[str, str]],
    docker_test_id: str,
    stack: Stack,
) -> None:
    repository, tag = push_to_registry(
        docker_client, runner_image, local_registry, docker_test_id, registry_cleanup
    )
    local = f"stigmer-agent-runner:podman-{docker_test_id}"
    name = f"stigmer-agent-runner-podman-{docker_test_id}"
    stack.env |= {
        "DOCKER_HOST": f"unix://{PODMAN_SOCK}",
        "STIGMER_RUNNER_MODE": "docker",
        "STIGMER_RUNNER_IMAGE": local,
        "STIGMER_RUNNER_REGISTRY": repository,
        "STIGMER_RUNNER_TAG": tag,
        "STIGMER_RUNNER_CONTAINER": name,
    }
    cid = None
    try:
        # `server start` in docker mode on Podman: the image is pulled from the registry
        st = stack.start()
        assert st["ready"], st
        assert st["runner_image"]["source"] == "pulled", st["runner_image"]
        runner = next(c for c in st["components"] if c["name"] == "agent-runner")
        assert runner["mode"] == "docker" and runner["container_id"]
        c = podman_client.containers.get(name)
        cid = c.id
        assert podman_client.images.get(local).id == c.image.id
        # hardened as under Docker
        host = c.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert any("no-new-privileges" in o for o in host["SecurityOpt"]), host["SecurityOpt"]
        assert c.attrs["Config"]["User"] not in ("", "0", "root", "0:0")
        assert host["NetworkMode"] == "host"
        assert [m["Destination"] for m in c.attrs["Mounts"]] == ["/workspace"]
        # its init, seen from the host (an exec session would leave a conmon behind)
        pid = c.attrs["State"]["Pid"]
        assert pid and pid == runner["pid"], (pid, runner["pid"])
        status = Path(f"/proc/{pid}/status").read_text()
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines())}
        for cap in ("CapEff", "CapPrm", "CapBnd"):
            assert int(caps[cap], 16) == 0, f"{cap} {caps[cap]}: no capability is kept"
        assert caps["NoNewPrivs"] == "1"
        assert "Connected to Temporal server" in stack.log("agent-runner")

        # an example run COMPLETED
        ws = stack.home / "data" / "workspace"
        (ws / "notes").mkdir(parents=True, exist_ok=True)
        (ws / "notes" / "alpha.txt").write_text("Alpha is where it starts.\n")
        stack.cli("apply", "-f", str(ROOT / "examples" / "summarize-folder.yaml"), check=True)
        out = stack.cli("run", "summarize-folder", "Summarize the notes", "--output", "json")
        assert out.returncode == 0, out.stdout + out.stderr
        result = json.loads(out.stdout)
        assert result["phase"] == "COMPLETED", result
        report = ws / "reports" / "notes-summary.md"
        assert "Alpha is where it starts." in report.read_text()

        # workspace files are the user's: as root, the container's own uid (as under Docker)
        uid, _ = container_user()
        probe: dict[str, Any] = asyncio.run(
            run_workflow(stack, "StigmerWorkspaceProbe", "podman-run.txt")
        )
        assert probe["euid"] == uid
        assert (ws / "podman-run.txt").stat().st_uid == uid
        assert report.stat().st_uid == uid

        # `server stop` leaves nothing behind: no container, no process
        stack.cli("server", "stop", check=True)
        left = podman_client.containers.list(
            all=True, filters={"label": f"{LABEL_HOME}={stack.home}"}
        )
        assert left == [], left
        with pytest.raises(docker.errors.NotFound):
            podman_client.containers.get(name)
        assert stack.our_processes() == []
        assert conmon_of(cid) == []
    finally:
        tear_down(stack)
        with contextlib.suppress(docker.errors.NotFound):
            podman_client.containers.get(name).remove(force=True)
        for ref in (local, f"{repository}:{tag}"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                podman_client.images.remove(ref, force=True)


def test_podman_limits_are_ours_at_most() -> None:
    """What the runner container asks of Podman: never above our own hard limits (no engine)."""
    import resource

    from stigmer.stack.agent_runner_docker import podman_ulimits

    limits = {u["Name"]: u for u in podman_ulimits()}
    assert set(limits) == {"nofile", "nproc"}
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        assert limits[name]["Soft"] == limits[name]["Hard"] > 0
        assert hard == resource.RLIM_INFINITY or limits[name]["Hard"] <= hard
    assert limits["nproc"]["Hard"] <= int(Path("/proc/sys/kernel/pid_max").read_text())
