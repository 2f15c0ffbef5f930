"""The runner image and the docker runner, against real dockerd and a real registry on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import pytest

from stigmer import __version__
from stigmer.images import buildinfo
from tests.conftest import STIGMER, Stack, free_port, free_ports, stack_data_converter
from tests.fixtures_docker import RUN_ID, docker_mode

ROOT = Path(__file__).resolve().parents[2]
#: a guard against bloat; issue 17's target (200 MB) is met and reported in `make bench`
SIZE_LIMIT = 210 * 1000 * 1000


@pytest.fixture
def dstack(stack: Stack, runner_image: str, docker_labels: dict[str, str]) -> Iterator[Stack]:
    """A stack in docker mode with a container name of its own."""
    with docker_mode(stack, runner_image, docker_labels) as st:
        yield st


def container(client: docker.DockerClient, st: Stack) -> Any:
    return client.containers.get(st.env["STIGMER_RUNNER_CONTAINER"])


async def run_workflow(st: Stack, name: str, arg: str) -> Any:
    from temporalio.client import Client

    client = await Client.connect(
        f"127.0.0.1:{st.ports['temporal']}", data_converter=stack_data_converter(st)
    )
    return await client.execute_workflow(
        name,
        arg,
        id=f"test-{uuid.uuid4().hex[:8]}",
        task_queue="agent_execution_runner",
        execution_timeout=timedelta(seconds=60),
    )


def test_image_size_user_labels_volume_and_healthcheck(
    docker_client: docker.DockerClient, runner_image: str
) -> None:
    image = docker_client.images.get(runner_image)
    size = image.attrs["Size"]
    print(f"runner image size: {size / 1e6:.1f} MB (limit {SIZE_LIMIT / 1e6:.0f} MB)")
    assert size <= SIZE_LIMIT
    cfg = image.attrs["Config"]
    assert cfg["User"] == "1000:1000"
    assert "/workspace" in (cfg.get("Volumes") or {})
    hc = cfg["Healthcheck"]
    assert "stigmer.runner.health" in " ".join(hc["Test"])
    assert hc["StartPeriod"] > 0
    labels = cfg["Labels"]
    assert labels[buildinfo.LABEL_VERSION] == __version__
    assert labels[buildinfo.LABEL_SOURCE].startswith("https://")
    assert labels[buildinfo.LABEL_REVISION]
    assert labels[buildinfo.LABEL_CREATED]
    assert labels[buildinfo.LABEL_DIGEST] == buildinfo.source_digest(ROOT)
    assert cfg["Entrypoint"][0].endswith("dumb-init")
    # by default it runs as uid 1000, and the runner reports its version
    out = docker_client.containers.run(
        runner_image, ["python", "-c", "import os; print(os.getuid())"], remove=True
    )
    assert out.decode().strip() == "1000"
    ver = docker_client.containers.run(
        runner_image, ["python", "-m", "stigmer.runner", "--version"], remove=True
    )
    assert ver.decode().strip() == __version__


#: run in the image as the runner runs (uid 1000, read-only root, /tmp a tmpfs):
#: every module the runner imports has bytecode, and the provider SDKs, read from
#: the image's zip of them, build their models and answer a request
IMAGE_IMPORTS_CHECK = r"""
import importlib.util, json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import stigmer.codec, stigmer.runner.worker, stigmer.runner.workflows, stigmer.runner.activities
import stigmer.runner.agent, stigmer.runner.models, stigmer.runner.tools, stigmer.runner.publish
from pydantic_ai import Agent

idle = sorted({m.split(".")[0] for m in sys.modules} & {"openai", "anthropic"})
stigmer.runner.models.provider_sdks()  # what resolving a provider's model does first
from pydantic_ai.models import infer_model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers import infer_provider_class
from pydantic_ai.providers.openai import OpenAIProvider

models = {
    name: type(infer_model(name, provider_factory=lambda p: infer_provider_class(p)(api_key="k"))).__name__
    for name in ("openai:gpt-4o", "anthropic:claude-sonnet-4-5")
}


class Chat(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply = json.dumps({
            "id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "from the zip"}}],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


server = ThreadingHTTPServer(("127.0.0.1", 0), Chat)
threading.Thread(target=server.serve_forever, daemon=True).start()
provider = OpenAIProvider(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="k")
reply = Agent(OpenAIChatModel("m", provider=provider)).run_sync("hi").output

try:  # a traceback through zipped code shows its source lines (as the runner logs them)
    infer_model("openai:gpt-4o", provider_factory=lambda p: 1 / 0)
except ZeroDivisionError:
    import traceback
    tb = traceback.format_exc()
zip_frames = [line for line in tb.splitlines() if "site-packages.zip/pydantic_ai" in line]

no_bytecode, zipped = [], 0
for mod in list(sys.modules.values()):
    path = getattr(mod, "__file__", None) or ""
    if "site-packages/" not in path or not path.endswith((".py", ".pyc")):
        continue
    if ".zip/" in path:  # zipimport names a module by what it read: X.pyc, or X.py
        zipped += 1
        if path.endswith(".py"):
            no_bytecode.append(path)
    elif not os.path.exists(importlib.util.cache_from_source(path)):
        no_bytecode.append(path)
print(json.dumps({"idle": idle, "models": models, "reply": reply, "no_bytecode": no_bytecode, "zipped": zipped,
                  "zip_frames": zip_frames, "traceback": tb}))
"""


def test_runner_imports_have_bytecode_and_zipped_providers_work(
    docker_client: docker.DockerClient, runner_image: str
) -> None:
    out = docker_client.containers.run(
        runner_image,
        ["python", "-c", IMAGE_IMPORTS_CHECK],
        remove=True,
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
        network_mode="none",
    )
    got = json.loads(out.decode().strip().splitlines()[-1])
    assert got["idle"] == []  # the provider SDKs load when a run first uses one
    assert got["models"]["openai:gpt-4o"].startswith("OpenAI")
    assert got["models"]["anthropic:claude-sonnet-4-5"] == "AnthropicModel"
    assert got["reply"] == "from the zip"
    assert got["zipped"] > 100  # pydantic-ai, pydantic, openai, ... come from the zip
    assert got["zip_frames"], got["traceback"]
    # each frame of zipped code is followed by its source line
    lines = got["traceback"].splitlines()
    at = lines.index(got["zip_frames"][0])
    source = lines[at + 1].strip()
    assert source and not source.startswith("File "), got["traceback"]
    assert got["no_bytecode"] == [], "scripts/pack-site-packages.py misses what the runner imports"


def test_docker_runner_is_hardened_healthy_and_restarted(
    docker_client: docker.DockerClient, dstack: Stack
) -> None:
    st = dstack.start()
    runner = next(c for c in st["components"] if c["name"] == "agent-runner")
    assert runner["container_id"] and runner["mode"] == "docker"
    c = container(docker_client, dstack)
    host = c.attrs["HostConfig"]
    assert c.attrs["Config"]["User"] not in ("", "0", "root", "0:0")
    assert host["CapDrop"] == ["ALL"]
    assert any("no-new-privileges" in o for o in host["SecurityOpt"])
    assert host["ReadonlyRootfs"] is True
    assert host["RestartPolicy"]["Name"] in ("", "no")
    assert host["NetworkMode"] == "host"
    for m in c.attrs["Mounts"]:
        assert "docker.sock" not in m["Source"], m
    # only the workspace is mounted: the configuration came on stdin
    assert [m["Destination"] for m in c.attrs["Mounts"]] == ["/workspace"]
    env = " ".join(c.attrs["Config"]["Env"])
    for name in ("api-token", "runner-token"):
        token = (dstack.home / "credentials" / name).read_text().strip()
        assert token not in env, "a token must not be in the container's env"
    assert "Connected to Temporal server" in dstack.log("agent-runner")

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        c.reload()
        if c.attrs["State"].get("Health", {}).get("Status") == "healthy":
            break
        time.sleep(1)
    assert c.attrs["State"]["Health"]["Status"] == "healthy"

    assert asyncio.run(run_workflow(dstack, "StigmerPing", "hi")).startswith("pong: hi")

    c.kill()
    after = dstack.wait_for(
        lambda s: (
            next(x for x in s["components"] if x["name"] == "agent-runner")["restarts"] == 1
            and s["ready"]
        ),
        what="runner container restart",
    )
    new = next(x for x in after["components"] if x["name"] == "agent-runner")
    assert new["container_id"] != runner["container_id"]
    logs = dstack.cli("server", "logs", "-c", "agent-runner", check=True).stdout
    assert logs.count("Connected to Temporal server") >= 2

    dstack.cli("server", "stop", check=True)
    with pytest.raises(docker.errors.NotFound):
        container(docker_client, dstack)
    assert dstack.our_processes() == []


REPLICA_AGENT = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata: {name: replicas}
spec:
  instructions: Say where you run.
  model: test
  tools: [shell]
  test_script:
    - tool: shell
      args: {command: "sleep 1; hostname"}
    - answer: "{{ last }}"
"""


def test_runner_replicas_are_containers_each_fed_and_supervised(
    docker_client: docker.DockerClient, dstack: Stack, tmp_path: Path
) -> None:
    dstack.env["STIGMER_RUNNER_REPLICAS"] = "3"
    st = dstack.start()
    names = ["agent-runner", "agent-runner-2", "agent-runner-3"]
    runners = {c["name"]: c for c in st["components"] if c["name"].startswith("agent-runner")}
    assert sorted(runners) == names and st["ready"]
    base = dstack.env["STIGMER_RUNNER_CONTAINER"]
    containers = [docker_client.containers.get(n) for n in (base, f"{base}-2", f"{base}-3")]
    identities = {runners[n]["identity"] for n in names}
    assert len(identities) == 3, "each replica is a worker of its own"
    for c in containers:  # hardened alike, and each got its configuration on stdin
        host = c.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
        assert [m["Destination"] for m in c.attrs["Mounts"]] == ["/workspace"]
    agent = tmp_path / "replicas.yaml"
    agent.write_text(REPLICA_AGENT)
    dstack.cli("apply", "-f", str(agent), check=True)
    ids = [
        dstack.cli("run", "replicas", str(i), "--detach", check=True).stdout.strip()
        for i in range(9)
    ]
    for ex_id in ids:
        done = dstack.cli("execution", "logs", "-f", ex_id, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    # a killed replica is restarted on its own; the others keep going
    containers[1].kill()
    after = dstack.wait_for(
        lambda s: (
            {x["name"]: x["restarts"] for x in s["components"]}.get("agent-runner-2") == 1
            and s["ready"]
        ),
        what="replica 2 restarted",
    )
    restarts = {x["name"]: x["restarts"] for x in after["components"]}
    assert restarts["agent-runner"] == 0 and restarts["agent-runner-3"] == 0
    logs = dstack.cli("server", "logs", "-c", "agent-runner-3", check=True).stdout
    assert "Connected to Temporal server" in logs
    unknown = dstack.cli("server", "logs", "-c", "agent-runner-x")
    assert unknown.returncode != 0 and "agent-runner-N" in unknown.stderr
    dstack.cli("server", "stop", check=True)
    for c in containers:
        with pytest.raises(docker.errors.NotFound):
            c.reload()


def test_pull_from_registry_at_cli_version(
    docker_client: docker.DockerClient,
    dstack: Stack,
    runner_image: str,
    local_registry: str,
    registry_cleanup: list[tuple[str, str]],
    docker_test_id: str,
) -> None:
    repo = f"{local_registry}/stigmer-test-{docker_test_id}/agent-runner"
    from stigmer.images.resolve import registry_tag

    tag, _ = registry_tag()  # v<version> for a release; test-<sha> for a dev build
    docker_client.images.get(runner_image).tag(repo, tag)
    for line in docker_client.api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    digest = docker_client.images.get_registry_data(f"{repo}:{tag}").id
    registry_cleanup.append((f"stigmer-test-{docker_test_id}/agent-runner", digest))
    docker_client.images.remove(f"{repo}:{tag}")
    local = f"stigmer-agent-runner:pulled-{docker_test_id}"
    dstack.env |= {
        "STIGMER_RUNNER_REGISTRY": repo,
        "STIGMER_RUNNER_IMAGE": local,
        "STIGMER_OFFLINE": "0",
    }
    try:
        st = dstack.start()
        assert st["runner_image"]["source"] == "pulled"
        assert st["runner_image"]["registry_ref"] == f"{repo}:{tag}"
        assert docker_client.images.get(local)
        assert "Connected to Temporal server" in dstack.log("agent-runner")
        dstack.cli("server", "stop", check=True)
        # without a terminal, a pull first says what it pulls and why (issue 13 case 17)
        docker_client.images.remove(local)
        docker_client.images.remove(f"{repo}:{tag}")
        pulled = dstack.cli("image", "pull", check=True)
        assert pulled.stderr.startswith(
            f"Pulling {repo}:{tag}, the image for this CLI's version, to tag it {local}"
        ), pulled.stderr
        assert f"Pulled {repo}:{tag} and tagged it {local}" in pulled.stdout
    finally:
        dstack.cli("server", "stop")
        for ref in (local, f"{repo}:{tag}"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(ref)


@pytest.mark.parametrize("mode", ["docker", "auto"])
def test_no_image_anywhere_fails_and_leaves_nothing(
    docker_client: docker.DockerClient,
    dstack: Stack,
    local_registry: str,
    docker_test_id: str,
    mode: str,
) -> None:
    """In auto mode too (issue 13 case 13): an engine without the image fails the start."""
    repo = f"{local_registry}/stigmer-missing-{docker_test_id}/agent-runner"
    image = f"stigmer-agent-runner:missing-{docker_test_id}"
    dstack.env |= {
        "STIGMER_RUNNER_MODE": mode,
        "STIGMER_RUNNER_REGISTRY": repo,
        "STIGMER_RUNNER_IMAGE": image,
        "STIGMER_OFFLINE": "0",
    }
    proc = dstack.cli("server", "start")
    assert proc.returncode == 11, proc.stderr
    assert "local runner" not in proc.stderr.lower()  # no silent fallback
    # the pull says what it pulls and why before anything else (case 17)
    assert proc.stderr.startswith(f"Pulling {repo}:")
    assert f"because the runner image {image} is not present locally" in proc.stderr
    # the fix builds the configured image with its labels (case 14), or runs without Docker
    assert f"make -C {ROOT} build-agent-runner-image IMAGE={image}" in proc.stderr
    assert "docker build" not in proc.stderr
    assert "`stigmer server start --runner local`" in proc.stderr
    assert repo in proc.stderr
    assert "manifest unknown" in proc.stderr
    assert dstack.our_processes() == []
    assert not (dstack.home / "run" / "stack.json").exists()
    with pytest.raises(docker.errors.NotFound):
        container(docker_client, dstack)
    if mode == "auto":
        # the alternative the fix names works as printed
        local = dstack.cli("server", "start", "--runner", "local", "--json", check=True)
        runner = next(
            c for c in json.loads(local.stdout)["components"] if c["name"] == "agent-runner"
        )
        assert runner["mode"] == "local"


def test_printed_build_fix_builds_an_image_without_warnings(
    docker_client: docker.DockerClient, dstack: Stack, runner_image: str, docker_test_id: str
) -> None:
    """Issue 13 case 14: the missing-image fix, run as printed, gives an image that warns of nothing."""
    image = f"stigmer-agent-runner:fix-{docker_test_id}"
    dstack.env["STIGMER_RUNNER_IMAGE"] = image
    proc = dstack.cli("server", "start", "--offline")
    assert proc.returncode == 11
    fix = next(ln for ln in proc.stderr.splitlines() if ln.startswith("Fix:"))
    command = fix.split("`")[1]
    assert command == f"make -C {ROOT} build-agent-runner-image IMAGE={image}"
    try:
        # from another folder, as a user would paste it; the runner_image fixture built the
        # same layers, so this reuses them
        built = subprocess.run(
            command, shell=True, cwd="/", capture_output=True, text=True, timeout=900
        )
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        status = dstack.cli("image", "status", "--json", check=True)
        report = json.loads(status.stdout)["local"]
        assert report["version"] == __version__
        assert report["stale"] is False
        assert report["warnings"] == [], report["warnings"]
        assert "warning" not in status.stderr
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image, force=True)


@pytest.mark.parametrize("mode", ["auto", "docker"])
def test_docker_context_that_does_not_exist_is_refused(
    stack: Stack, tmp_path: Path, mode: str
) -> None:
    """Issue 13 case 10: refused as the docker CLI refuses it, not replaced by the default socket."""
    env = {"DOCKER_CONTEXT": f"nope-{uuid.uuid4().hex[:8]}", "STIGMER_RUNNER_MODE": mode}
    if shutil.which("docker"):
        cli = subprocess.run(
            ["docker", "version"], env={**stack.env, **env}, capture_output=True, text=True
        )
        assert cli.returncode != 0 and "context not found" in cli.stderr
    proc = stack.cli("server", "start", env=env)
    assert proc.returncode == 2, proc.stderr
    assert f'Docker context "{env["DOCKER_CONTEXT"]}" (from DOCKER_CONTEXT) does not exist' in (
        proc.stderr
    )
    assert "`docker context ls`" in proc.stderr and "unset DOCKER_CONTEXT" in proc.stderr
    assert "local runner" not in proc.stderr.lower()
    assert stack.our_processes() == []
    assert not (stack.home / "run" / "stack.json").exists()
    image = stack.cli("image", "status", env=env)
    assert image.returncode == 2 and "does not exist" in image.stderr
    # the current context of the docker config file is checked the same way
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    current = stack.cli(
        "server", "start", env={"DOCKER_CONFIG": str(config), "STIGMER_RUNNER_MODE": mode}
    )
    assert current.returncode == 2
    assert 'Docker context "gone" (from currentContext in' in current.stderr
    assert "`docker context use default`" in current.stderr
    assert stack.our_processes() == []


def test_offline_never_pulls_with_the_registry_stopped(dstack: Stack, tmp_path: Path) -> None:
    port = free_port()
    stopped = f"127.0.0.1:{port}/stigmer/agent-runner"  # nothing listens: a stopped registry
    dstack.env["STIGMER_RUNNER_REGISTRY"] = stopped
    # image local + offline: starts without touching the registry
    st = dstack.start("--offline")
    assert st["runner_image"]["source"] == "local"
    dstack.cli("server", "stop", check=True)
    # image absent + offline: refused before any pull
    dstack.env["STIGMER_RUNNER_IMAGE"] = "stigmer-agent-runner:absent-offline"
    offline = dstack.cli("server", "start", "--offline")
    assert offline.returncode != 0
    assert "offline" in offline.stderr.lower()
    assert "could not be reached" not in offline.stderr
    # absent and online: the pull is tried and the unreachable registry is named
    online = dstack.cli("server", "start", env={"STIGMER_OFFLINE": "0"})
    assert online.returncode != 0
    assert stopped in online.stderr
    assert dstack.our_processes() == []


def test_docker_host_pointing_at_nothing(stack: Stack, tmp_path: Path) -> None:
    bad = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    proc = stack.cli("server", "start", "--runner", "docker", env=bad)
    assert proc.returncode != 0
    # the engine DOCKER_HOST names is what to fix, not an install of Docker
    assert "No Docker engine answered" in proc.stderr
    assert f"there is no socket at {tmp_path}/nothing.sock" in proc.stderr
    assert "unset DOCKER_HOST" in proc.stderr and "--runner local" in proc.stderr
    assert stack.our_processes() == []
    # auto mode too: an engine named on purpose is to be fixed, not replaced by a host process
    auto = stack.cli("server", "start", "--runner", "auto", env=bad)
    assert auto.returncode == 10 and "No Docker engine answered" in auto.stderr, auto.stderr
    assert stack.our_processes() == []
    local = stack.cli("server", "start", "--runner", "local", "--json", env=bad, check=True)
    assert json.loads(local.stdout)["ready"]
    stack.cli("server", "stop", check=True)


def test_auto_mode_without_the_default_socket_uses_a_local_runner(stack: Stack) -> None:
    """No DOCKER_HOST, no context, no socket where Docker puts it: a host process, said so."""
    if os.getuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare: the default socket is hidden in a mount namespace")
    env = {k: v for k, v in stack.env.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(stack.home.parent / "no-docker-config")  # no current context
    hide = 'mount -t tmpfs tmpfs /run && exec "$@"'  # /var/run/docker.sock is under /run
    unshare = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", hide, "sh"]
    auto = subprocess.run(
        [*unshare, STIGMER, "server", "start", "--runner", "auto", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert auto.returncode == 0, auto.stderr
    assert "using the local runner" in auto.stderr.lower()
    assert "Docker is not running" in auto.stderr
    runner = next(c for c in json.loads(auto.stdout)["components"] if c["name"] == "agent-runner")
    assert runner["mode"] == "local"
    stack.cli("server", "stop", check=True)


def test_leftover_container_replaced_and_foreign_one_left_alone(
    docker_client: docker.DockerClient,
    dstack: Stack,
    runner_image: str,
    docker_labels: dict[str, str],
) -> None:
    name = dstack.env["STIGMER_RUNNER_CONTAINER"]
    leftover = docker_client.containers.run(
        runner_image,
        ["true"],
        name=name,
        detach=True,
        labels={**docker_labels, "io.stigmer.home": str(dstack.home)},
    )
    leftover.wait()
    st = dstack.start()
    runner = next(c for c in st["components"] if c["name"] == "agent-runner")
    assert runner["container_id"] != leftover.short_id
    dstack.cli("server", "stop", check=True)

    foreign = docker_client.containers.run(
        runner_image,
        ["python", "-c", "import time; time.sleep(300)"],
        name=name,
        detach=True,
        labels={**docker_labels, "io.stigmer.home": "/some/other/home"},
    )
    try:
        proc = dstack.cli("server", "start")
        assert proc.returncode != 0
        assert name in proc.stderr and "/some/other/home" in proc.stderr
        foreign.reload()
        assert foreign.status == "running"
        assert dstack.our_processes() == []
    finally:
        foreign.remove(force=True)


def test_workspace_files_owned_by_invoking_user(
    docker_client: docker.DockerClient, dstack: Stack, tmp_path: Path
) -> None:
    # as root: the container runs as a uid no account of this host has, and can write
    import pwd

    from stigmer.stack.agent_runner_docker import container_user

    uid, _ = container_user()
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    dstack.start()
    result = asyncio.run(run_workflow(dstack, "StigmerWorkspaceProbe", "root-run.txt"))
    assert result["euid"] == uid
    path = dstack.home / "data" / "workspace" / "root-run.txt"
    assert path.exists() and path.stat().st_uid == uid
    dstack.cli("server", "stop", check=True)


@pytest.fixture(scope="session")
def world_venv() -> Iterator[Path]:
    """stigmer installed into a venv any user can run (ours lives under root's pyenv)."""
    base = Path(f"/tmp/stigmer-test-venv-{RUN_ID}")
    python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin") or "/usr/bin/python3"
    env = {**os.environ, "UV_LINK_MODE": "copy"}
    subprocess.run(["uv", "venv", "-q", "--python", python, str(base)], check=True, env=env)
    subprocess.run(
        ["uv", "pip", "install", "-q", "--python", str(base / "bin" / "python"), str(ROOT)],
        check=True,
        env=env,
        timeout=600,
    )
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("uv") is None,
    reason="needs root, useradd and uv",
)
def test_workspace_files_owned_by_non_root_user(
    docker_client: docker.DockerClient, runner_image: str, docker_test_id: str, world_venv: Path
) -> None:
    user = f"st{docker_test_id[:8]}"
    subprocess.run(["useradd", "--create-home", "-G", "docker", user], check=True)
    try:
        pw = pwd.getpwnam(user)
        home = Path(pw.pw_dir) / "stigmer-home"
        server, temporal, ui = free_ports(3)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": pw.pw_dir,
            "STIGMER_HOME": str(home),
            "STIGMER_SERVER_PORT": str(server),
            "STIGMER_TEMPORAL_PORT": str(temporal),
            "STIGMER_TEMPORAL_UI_PORT": str(ui),
            "STIGMER_RUNNER_MODE": "docker",
            "STIGMER_RUNNER_IMAGE": runner_image,
            "STIGMER_RUNNER_CONTAINER": f"stigmer-agent-runner-{docker_test_id}",
            "STIGMER_OFFLINE": "1",
        }
        st = Stack(home, {"server": server, "temporal": temporal, "ui": ui}, env)

        def as_user(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    "runuser",
                    "-u",
                    user,
                    "--",
                    "env",
                    *[f"{k}={v}" for k, v in env.items()],
                    str(world_venv / "bin" / "stigmer"),
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )

        started = as_user("server", "start", "--json")
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            result = asyncio.run(run_workflow(st, "StigmerWorkspaceProbe", "user-run.txt"))
            path = home / "data" / "workspace" / "user-run.txt"
            assert path.exists()
            assert path.stat().st_uid == pw.pw_uid, (path.stat(), result)
            assert result["euid"] == pw.pw_uid
        finally:
            stop = as_user("server", "stop")
            assert stop.returncode == 0, stop.stderr
    finally:
        subprocess.run(["pkill", "-KILL", "-u", user], check=False)
        subprocess.run(["userdel", "--remove", user], check=False)


def test_stale_image_reported(
    docker_client: docker.DockerClient,
    runner_image: str,
    docker_labels: dict[str, str],
    tmp_path: Path,
) -> None:
    # the digest follows the lock file
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for f in buildinfo.BUILD_INPUTS:
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, copy / f)
    before = buildinfo.source_digest(copy)
    with open(copy / "uv.lock", "a") as fh:
        fh.write("\n# changed\n")
    assert buildinfo.source_digest(copy) != before

    # an image whose digest label does not match this checkout is reported stale
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f"FROM {runner_image}\nLABEL io.stigmer.source-digest=sha256:old\n"
    )
    stale_tag = f"stigmer-agent-runner:stale-{docker_labels['io.stigmer.test.id']}"
    docker_client.images.build(
        path=str(tmp_path / "ctx"), tag=stale_tag, labels=docker_labels, rm=True, forcerm=True
    )
    env = {**os.environ, "STIGMER_HOME": str(tmp_path / "h"), "STIGMER_RUNNER_IMAGE": stale_tag}
    out = subprocess.run(
        [STIGMER, "image", "status", "--json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["local"]["stale"] is True
    # the fix rebuilds the configured image, not the default one (issue 13 case 14)
    assert any(
        f"make -C {ROOT} build-agent-runner-image IMAGE={stale_tag}" in w
        for w in report["local"]["warnings"]
    ), report["local"]["warnings"]


def test_a_container_name_of_another_stack_is_exit_8_and_left_alone(
    docker_client: docker.DockerClient,
    standin_base: str,
    docker_labels: dict[str, str],
    stack: Stack,
) -> None:
    """Another stack's running runner holds the container name: the start refuses at
    once with a taken resource's exit status (8), names that stack, and starts nothing
    (the name is claimed before the image is looked at: no image is needed here)."""
    name = f"stigmer-agent-runner-{docker_labels['io.stigmer.test.id']}"
    stack.env |= {
        "STIGMER_RUNNER_MODE": "docker",
        "STIGMER_RUNNER_IMAGE": f"stigmer-agent-runner:absent-{docker_labels['io.stigmer.test.id']}",
        "STIGMER_RUNNER_CONTAINER": name,
        "STIGMER_OFFLINE": "1",
    }
    other = docker_client.containers.run(
        standin_base,
        ["sleep", "300"],
        name=name,
        labels=docker_labels | {"io.stigmer.home": "/elsewhere/home"},
        detach=True,
    )
    try:
        proc = stack.cli("server", "start", timeout=60)
        assert proc.returncode == 8, proc.stderr
        assert "/elsewhere/home" in proc.stderr and "STIGMER_RUNNER_CONTAINER" in proc.stderr
        other.reload()
        assert other.status == "running"  # left alone
        assert stack.our_processes() == []
    finally:
        other.remove(force=True)
