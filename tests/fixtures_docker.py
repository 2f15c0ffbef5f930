"""Fixtures for tests that need a Docker engine, the local registry or the base image.

Registered for the whole suite by ``tests/conftest.py`` (``pytest_plugins``).

Without a prerequisite (engine, registry on 127.0.0.1:5000, image python:3.11-slim)
the tests that need it are skipped with the reason; under CI (``CI=true``) a
missing prerequisite is a failure instead, since CI's ``.ci/run`` sets them up:

* ``scripts/ci/start-docker.sh``    -- starts dockerd
* ``scripts/ci/start-registry.sh``  -- starts a registry on 127.0.0.1:5000
* ``scripts/standin-base-image.sh`` -- builds a local stand-in for python:3.11-slim

Everything a test creates in Docker (images, containers, volumes, networks) must
carry the labels from the ``docker_labels`` fixture: ``io.stigmer.test=1``, the
session's run id and the test's own unique id. Whatever carries the test's id is
removed when the test ends, and whatever carries the run id when the session ends.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import docker
import pytest
from docker.errors import DockerException, ImageNotFound

if TYPE_CHECKING:
    from tests.conftest import Stack

TEST_LABEL = "io.stigmer.test"
RUN_LABEL = "io.stigmer.test.run"
ID_LABEL = "io.stigmer.test.id"

LOCAL_REGISTRY = "127.0.0.1:5000"
STANDIN_IMAGE = "python:3.11-slim"

#: One id per pytest session (per xdist worker), on everything this session creates.
RUN_ID = uuid.uuid4().hex[:12]


# urllib without proxies: the registry is on loopback.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip for ``reason``; under CI=true, fail instead (CI must provide it)."""
    if in_ci():
        pytest.fail(
            f"{reason} [CI=true: a missing Docker prerequisite is a failure]", pytrace=False
        )
    pytest.skip(reason)


def _label_filter(key: str, value: str) -> dict[str, list[str]]:
    return {"label": [f"{key}={value}"]}


def remove_labelled(client: docker.DockerClient, key: str, value: str) -> list[str]:
    """Remove containers, images, networks and volumes labelled ``key=value``.

    Returns a description of each thing removed (failures are reported, not raised).
    """
    done: list[str] = []
    flt = _label_filter(key, value)

    def attempt(what: str, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        try:
            fn(*args, **kwargs)
            done.append(what)
        except DockerException as exc:
            done.append(f"{what} (failed: {exc})")

    try:
        for c in client.containers.list(all=True, filters=flt):
            attempt(f"container {c.short_id}", c.remove, force=True, v=True)
        for img in client.images.list(filters=flt):
            attempt(f"image {img.short_id} {img.tags}", client.images.remove, img.id, force=True)
        for net in client.networks.list(filters=flt):
            attempt(f"network {net.name}", net.remove)
        for vol in client.volumes.list(filters=flt):
            attempt(f"volume {vol.name}", vol.remove, force=True)
    except DockerException as exc:
        done.append(f"listing {key}={value} failed: {exc}")
    return done


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A ``docker.DockerClient`` from the environment (DOCKER_HOST etc.) that answers ping()."""
    client: docker.DockerClient | None = None
    error: Exception | None = None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, ...
        error = exc
    if client is None or error is not None:  # (outside `except`: no chained traceback)
        unavailable(f"no Docker engine reachable: {error}")
    try:
        yield client
    finally:
        leftovers = remove_labelled(client, RUN_LABEL, RUN_ID)
        if leftovers:
            print(f"[docker_client] removed leftovers of run {RUN_ID}: {leftovers}")
        client.close()


@pytest.fixture
def docker_test_id() -> str:
    """A unique id for this test: use it in names and tags of what the test creates."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def docker_labels(
    docker_client: docker.DockerClient, docker_test_id: str
) -> Iterator[dict[str, str]]:
    """Labels to put on everything the test creates; those things are removed afterwards."""
    labels = {TEST_LABEL: "1", RUN_LABEL: RUN_ID, ID_LABEL: docker_test_id}
    yield labels
    leftovers = remove_labelled(docker_client, ID_LABEL, docker_test_id)
    if leftovers:
        print(f"[docker_labels] removed: {leftovers}")


def registry_request(
    method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to the local registry: (status, headers, body); raises OSError if unreachable."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _http.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


@pytest.fixture(scope="session")
def local_registry() -> str:
    """The address of the local registry, "127.0.0.1:5000", if it answers /v2/ with 200."""
    url = f"http://{LOCAL_REGISTRY}/v2/"
    try:
        status, _, _ = registry_request("GET", url)
    except (OSError, urllib.error.URLError) as exc:
        status, err = 0, str(exc)
    else:
        err = f"HTTP {status}"
    if status != 200:
        unavailable(
            f"no local registry at {url}: {err} (start one with scripts/ci/start-registry.sh)"
        )
    return LOCAL_REGISTRY


@pytest.fixture
def registry_cleanup(local_registry: str) -> Iterator[list[tuple[str, str]]]:
    """Append (repository, digest) of manifests pushed to the local registry; deleted afterwards."""
    pushed: list[tuple[str, str]] = []
    yield pushed
    for repo, digest in pushed:
        try:
            registry_request("DELETE", f"http://{local_registry}/v2/{repo}/manifests/{digest}")
        except OSError as exc:
            print(f"[registry_cleanup] could not delete {repo}@{digest}: {exc}")


@pytest.fixture(scope="session")
def standin_base(docker_client: docker.DockerClient) -> str:
    """The name of the base image python:3.11-slim, which must exist locally."""
    try:
        docker_client.images.get(STANDIN_IMAGE)
        found = True
    except ImageNotFound:
        found = False
    if not found:
        unavailable(
            f"image {STANDIN_IMAGE} not found locally; build the stand-in with "
            "scripts/standin-base-image.sh"
        )
    return STANDIN_IMAGE


ROOT = Path(__file__).resolve().parents[1]


#: A test runner image older than this (hours) is a crashed session's: removed by the next.
STALE_TEST_IMAGE_H = 6


def _remove_stale_test_images(client: docker.DockerClient) -> None:
    """Runner images of test sessions that ended without removing theirs (a crash, a kill)."""
    import time
    from datetime import datetime

    for image in client.images.list(filters={"label": f"{TEST_LABEL}=1"}):
        created = datetime.fromisoformat(image.attrs["Created"][:19]).timestamp()
        if time.time() - created > STALE_TEST_IMAGE_H * 3600 and any(
            t.startswith("stigmer-agent-runner:test-") for t in image.tags
        ):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=False)


@pytest.fixture(scope="session")
def runner_image(docker_client: docker.DockerClient, standin_base: str) -> Iterator[str]:
    """`make build-agent-runner-image` once per session, under a tag of this run; removed after."""
    import subprocess
    import time

    _remove_stale_test_images(docker_client)

    tag = f"stigmer-agent-runner:test-{RUN_ID}"
    flags = f"--label {TEST_LABEL}=1 --label {RUN_LABEL}={RUN_ID}"
    t0 = time.monotonic()
    proc = subprocess.run(
        ["make", "build-agent-runner-image", f"IMAGE={tag}", f"BUILD_FLAGS={flags}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    size = docker_client.images.get(tag).attrs["Size"]
    print(f"\n[runner_image] built {tag} in {time.monotonic() - t0:.1f}s, size {size / 1e6:.1f} MB")
    yield tag
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(tag, force=True)


@contextlib.contextmanager
def docker_mode(
    stack: Stack, runner_image: str, docker_labels: dict[str, str], **env: str
) -> Iterator[Stack]:
    """``stack`` in docker mode with a container name of its own (plus ``env``); after it,
    the stack is stopped and its containers (replicas too: name-2, ...) removed."""
    name = f"stigmer-agent-runner-{docker_labels['io.stigmer.test.id']}"
    stack.env |= {
        "STIGMER_RUNNER_MODE": "docker",
        "STIGMER_RUNNER_IMAGE": runner_image,
        "STIGMER_RUNNER_CONTAINER": name,
        "STIGMER_OFFLINE": "1",
        **env,
    }
    try:
        yield stack
    finally:
        stack.cli("server", "stop", timeout=90)
        client = docker.from_env()
        try:
            for c in client.containers.list(all=True, filters={"name": name}):
                c.remove(force=True)
        finally:
            client.close()
