"""The whole stack against an external Temporal that only takes mTLS with a private CA.

A ``temporal server start-dev`` on loopback behind Debian's nginx, which
terminates TLS and requires a client certificate signed by the test's CA
(``ssl_verify_client on``, ``grpc_pass``). Every process reaches Temporal
through the same contract (``connect_temporal``): the supervisor's probe, the
API server and the worker, in both runner modes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Stack, free_ports, new_stack, tear_down
from tests.tls_front import GrpcTlsFront, Pki, temporal_dev_server

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Front:
    address: str
    pki: Pki
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


@pytest.fixture(scope="module")
def mtls_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    folder = tmp_path_factory.mktemp("mtls")
    pki = Pki(folder / "pki")
    server = pki.issue("server", server=True)
    client = pki.issue("client", server=False)
    rogue = Pki(folder / "rogue", name="another CA").issue("rogue-client", server=False)
    temporal_port, ui_port, front_port = free_ports(3)
    temporal = temporal_dev_server(temporal_port, ui_port)
    try:
        with GrpcTlsFront(
            folder / "nginx", front_port, f"127.0.0.1:{temporal_port}", server, pki.ca
        ):
            yield Front(
                f"127.0.0.1:{front_port}", pki, client.cert, client.key, rogue.cert, rogue.key
            )
    finally:
        temporal.terminate()
        temporal.wait(20)


def tls_env(front: Front, cert: Path, key: Path) -> dict[str, str]:
    return {
        "STIGMER_TEMPORAL_ADDRESS": front.address,
        "STIGMER_TEMPORAL_TLS": "1",
        "STIGMER_TEMPORAL_TLS_CA_PATH": str(front.pki.ca),
        "STIGMER_TEMPORAL_TLS_CERT_PATH": str(cert),
        "STIGMER_TEMPORAL_TLS_KEY_PATH": str(key),
    }


@pytest.fixture(params=["local", "docker"])
def tls_stack(
    request: pytest.FixtureRequest, tmp_path: Path, mtls_temporal: Front
) -> Iterator[Stack]:
    mode = request.param
    extra = tls_env(mtls_temporal, mtls_temporal.client_cert, mtls_temporal.client_key)
    if mode == "docker":
        labels = request.getfixturevalue("docker_labels")
        extra |= {
            "STIGMER_RUNNER_IMAGE": request.getfixturevalue("runner_image"),
            "STIGMER_RUNNER_CONTAINER": f"stigmer-agent-runner-{labels['io.stigmer.test.id']}",
            "STIGMER_OFFLINE": "1",
        }
    st = new_stack(tmp_path / "home", mode, **extra)
    yield st
    tear_down(st)


def test_stack_runs_an_agent_through_an_mtls_front(tls_stack: Stack) -> None:
    st = tls_stack.start()
    assert st["ready"], st
    temporal = next(c for c in st["components"] if c["name"] == "temporal")
    assert temporal["managed"] is False
    ws = tls_stack.home / "data" / "workspace" / "notes"
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "a.txt").write_text("Alpha over TLS.\n")
    tls_stack.cli("apply", "-f", str(ROOT / "examples" / "summarize-folder.yaml"), check=True)
    proc = tls_stack.cli(
        "run", "summarize-folder", "Summarize the notes folder", "--output", "json", timeout=180
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["phase"] == "COMPLETED"
    report = tls_stack.home / "data" / "workspace" / "reports" / "notes-summary.md"
    assert "Alpha over TLS." in report.read_text()
    # the API server reached Temporal itself, over the same TLS
    assert "reached Temporal at" in tls_stack.log("stigmer-server")


def test_client_certificate_of_another_ca_fails_fast_naming_tls(
    tmp_path: Path, mtls_temporal: Front
) -> None:
    st = new_stack(
        tmp_path / "home",
        "local",
        **tls_env(mtls_temporal, mtls_temporal.rogue_cert, mtls_temporal.rogue_key),
    )
    try:
        t0 = time.monotonic()
        proc = st.cli("server", "start", timeout=60)
        took = time.monotonic() - t0
        assert proc.returncode != 0, proc.stdout
        assert took < 15, f"took {took:.1f}s to fail"
        text = proc.stderr
        assert "TLS" in text and "certificate" in text, text
        assert "temporal_tls_cert_path" in text, text
        assert st.status()["running"] is False
        assert st.our_processes() == []
    finally:
        tear_down(st)


def test_missing_tls_file_is_refused_before_anything_starts(
    tmp_path: Path, mtls_temporal: Front
) -> None:
    env = tls_env(mtls_temporal, mtls_temporal.client_cert, tmp_path / "no-such.key")
    st = new_stack(tmp_path / "home", "local", **env)
    try:
        proc = st.cli("server", "start")
        assert proc.returncode == 2, proc.stderr
        assert "temporal_tls_key_path" in proc.stderr and "no-such.key" in proc.stderr
        assert st.our_processes() == []
    finally:
        tear_down(st)
