"""Smoke test of the Docker plumbing: build FROM python:3.11-slim, push to the local
registry, drop the local copy, pull it back, run it, clean up.

Needs a Docker engine, the registry on 127.0.0.1:5000 and the base image (see
tests/docker/conftest.py); skipped without them, failed without them under CI=true.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import docker
import pytest
from docker.errors import ImageNotFound

REPO = "stigmer-smoke"

_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def registry_request(
    method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _http.open(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def say(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


@pytest.mark.docker
def test_build_push_pull_run_roundtrip(
    docker_client: docker.DockerClient,
    local_registry: str,
    standin_base: str,
    docker_labels: dict[str, str],
    docker_test_id: str,
    registry_cleanup: list[tuple[str, str]],
    tmp_path,
) -> None:
    repository = f"{local_registry}/{REPO}"
    tag = docker_test_id
    ref = f"{repository}:{tag}"

    # 1. build
    (tmp_path / "Dockerfile").write_text(
        f"FROM {standin_base}\nRUN python3 -c \"print('hi')\" > /hi.txt\n"
    )
    image, build_log = docker_client.images.build(
        path=str(tmp_path), tag=ref, labels=docker_labels, rm=True, forcerm=True, pull=False
    )
    built_id = image.id
    steps = [c["stream"].strip() for c in build_log if c.get("stream", "").startswith("Step ")]
    say(f"built {ref} ({image.short_id}) FROM {standin_base}: {steps}")
    assert ref in image.tags
    for key, value in docker_labels.items():
        assert image.labels.get(key) == value

    # 2. push to the local registry
    digest = None
    for chunk in docker_client.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            pytest.fail(f"push of {ref} failed: {chunk.get('errorDetail') or chunk['error']}")
        aux = chunk.get("aux") or {}
        if aux.get("Digest"):
            digest = aux["Digest"]
    assert digest, f"push of {ref} reported no digest"
    registry_cleanup.append((REPO, digest))
    status, body = registry_request("GET", f"http://{local_registry}/v2/{REPO}/tags/list")
    assert status == 200 and tag in json.loads(body)["tags"], (status, body)
    say(f"pushed {ref} to {local_registry}: manifest {digest}")

    # 3. remove it locally
    docker_client.images.remove(ref, force=True)
    with pytest.raises(ImageNotFound):
        docker_client.images.get(ref)
    say(f"removed {ref} locally")

    # 4. pull it back: the same image (same config digest = same id) with our labels
    pulled = docker_client.images.pull(repository, tag=tag)
    assert pulled.id == built_id, (pulled.id, built_id)
    assert pulled.labels.get("io.stigmer.test") == "1"
    say(f"pulled {ref} back: {pulled.short_id}, same id as built")

    # 5. run it
    container = docker_client.containers.run(
        ref, ["cat", "/hi.txt"], detach=True, labels=docker_labels, network_mode="none"
    )
    try:
        result = container.wait(timeout=120)
        output = container.logs(stdout=True, stderr=True).decode().strip()
    finally:
        container.remove(force=True)
    assert result["StatusCode"] == 0, (result, output)
    assert output == "hi", output
    say(f"ran container {container.short_id}: /hi.txt says {output!r}; container removed")

    # 6. clean up: local image and the manifest in the registry
    docker_client.images.remove(ref, force=True)
    status, body = registry_request(
        "DELETE", f"http://{local_registry}/v2/{REPO}/manifests/{digest}"
    )
    assert status == 202, (status, body)
    status, _ = registry_request(
        "GET",
        f"http://{local_registry}/v2/{REPO}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert status == 404, status
    say(f"removed {ref} locally and deleted {REPO}@{digest} from the registry")
