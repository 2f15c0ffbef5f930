"""Test helpers: a private CA, X.509 v3 certificates, and nginx as a TLS front.

``Pki(folder)`` makes a CA and issues server and client certificates (v3, as
the Temporal SDK's TLS stack demands). ``GrpcTlsFront`` runs Debian's nginx in
the foreground, terminating TLS (optionally requiring a client certificate)
in front of a plain gRPC server such as ``temporal server start-dev``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import port_listening


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


class Pki:
    """A private CA in ``folder`` that issues v3 certificates."""

    def __init__(self, folder: Path, name: str = "stigmer test CA") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca = folder / "ca.pem"
        self.ca.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        *,
        server: bool,
        ips: tuple[str, ...] = ("127.0.0.1",),
        dns: tuple[str, ...] = ("localhost",),
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [*(x509.IPAddress(ip_address(ip)) for ip in ips), *map(x509.DNSName, dns)]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        out = Issued(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(out.key, key)
        return out


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if not found:
        from tests.fixtures_docker import unavailable

        unavailable("Debian's nginx is not installed (apt-get install nginx-light; .ci/run does)")
    assert found
    return found


class GrpcTlsFront:
    """nginx on 127.0.0.1:``port`` terminating TLS for the gRPC server at ``upstream``."""

    def __init__(
        self, folder: Path, port: int, upstream: str, server: Issued, client_ca: Path | None
    ) -> None:
        self.folder = folder
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        verify = (
            f"ssl_client_certificate {client_ca};\n        ssl_verify_client on;"
            if client_ca
            else ""
        )
        temp = "\n    ".join(
            f"{kind}_temp_path {folder / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf = folder / "nginx.conf"
        self.conf.write_text(
            f"""
daemon off;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    {temp}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {server.cert};
        ssl_certificate_key {server.key};
        {verify}
        # Temporal's long polls last about a minute
        grpc_read_timeout 300s;
        grpc_send_timeout 300s;
        client_body_timeout 300s;
        location / {{ grpc_pass grpc://{upstream}; }}
    }}
}}
"""
        )

    def __enter__(self) -> GrpcTlsFront:
        self.proc = subprocess.Popen(
            [nginx_binary(), "-c", str(self.conf), "-p", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "stderr.log", "wb"),
        )
        deadline = time.monotonic() + 10
        while not port_listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "nginx did not start: " + (self.folder / "stderr.log").read_text()
                )
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def temporal_dev_server(port: int, ui_port: int) -> subprocess.Popen[bytes]:
    """``temporal server start-dev`` on 127.0.0.1:``port`` (in memory, headless)."""
    from stigmer.stack.temporal import temporal_binary

    proc = subprocess.Popen(
        [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--headless",
            "--log-level",
            "warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    # listening is not serving: a client that connects before the frontend is
    # healthy is refused ("Frontend is not healthy yet"); wait for one to connect
    while not (port_listening(port) and _serves(port)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("temporal server start-dev did not come up")
        time.sleep(0.1)
    return proc


def _serves(port: int) -> bool:
    """Whether a Temporal client can connect to 127.0.0.1:``port`` (its own loop, in a thread)."""
    import asyncio
    import concurrent.futures

    async def connect() -> bool:
        from temporalio.client import Client

        try:
            await Client.connect(f"127.0.0.1:{port}")
        except Exception:
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, connect()).result()
