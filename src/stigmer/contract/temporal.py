"""``connect_temporal``: the one way every process reaches Temporal.

The supervisor's readiness probe, the API server and the worker all connect
through it, with the same TLS, API key and namespace check. A failure is a
:class:`~stigmer.errors.TemporalError` that says what went wrong (TLS, the
certificate, authentication, the namespace, or just "not reachable yet") and
which setting to change. TLS, authentication and namespace errors are
permanent: retrying does not help, so callers stop and report them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from stigmer.contract.config import StackKeys, TemporalTarget, reveal
from stigmer.errors import TemporalError

#: Words in an error that mean the TLS handshake or a certificate failed.
_TLS_WORDS = (
    "certificate",
    "tls",
    "ssl",
    "handshake",
    "unknownissuer",
    "invalidcertificate",
    "badsignature",
    "notvalidforname",
    "peer sent no certificates",
)
_AUTH_WORDS = ("unauthenticated", "permissiondenied", "permission denied", "unauthorized")


def tls_config(target: TemporalTarget) -> Any:
    """The ``tls`` argument of ``Client.connect`` for ``target`` (False, True or a TLSConfig)."""
    if not target.uses_tls:
        return False
    if not (target.ca_pem or target.cert_pem or target.server_name):
        return True
    from temporalio.service import TLSConfig

    key = reveal(target.key_pem)
    return TLSConfig(
        server_root_ca_cert=target.ca_pem.encode() if target.ca_pem else None,
        client_cert=target.cert_pem.encode() if target.cert_pem else None,
        client_private_key=key.encode() if key else None,
        domain=target.server_name,
    )


def classify(exc: BaseException, target: TemporalTarget) -> TemporalError:
    """Turn a connection or RPC failure into a TemporalError naming the setting to change."""
    full = " ".join(str(exc).split()) or type(exc).__name__
    low = full.lower().replace("_", "")
    text = full if len(full) <= 300 else full[:300] + "..."
    where = f"Temporal at {target.address}"
    if any(w in low for w in _AUTH_WORDS):
        return TemporalError(
            f"{where} refused our credentials: {text}",
            "Check temporal_api_key (STIGMER_TEMPORAL_API_KEY), or the client certificate "
            "(temporal_tls_cert_path, temporal_tls_key_path).",
            kind="auth",
            setting="temporal_api_key",
        )
    # a TLS front (nginx) answers a refused or missing client certificate with a plain
    # HTTP 400 page, which the gRPC client fails to decode
    front_refused = target.uses_tls and ("status code 400" in low or "400 bad request" in low)
    if any(w in low for w in _TLS_WORDS) or front_refused:
        if front_refused or "certificate required" in low or "no certificates" in low:
            what = (
                "refused our client certificate"
                if target.cert_pem
                else "asks for a client certificate (mutual TLS), and none is set"
            )
            fix, setting = (
                "Use a client certificate signed by a CA the server trusts: "
                "temporal_tls_cert_path and temporal_tls_key_path (STIGMER_TEMPORAL_TLS_CERT_PATH, "
                "STIGMER_TEMPORAL_TLS_KEY_PATH).",
                "temporal_tls_cert_path",
            )
        elif "issuer" in low or "self signed" in low or "unknown ca" in low:
            what, fix, setting = (
                "presented a certificate we do not trust",
                "Set temporal_tls_ca_path (STIGMER_TEMPORAL_TLS_CA_PATH) to the CA that signed "
                "the server's certificate.",
                "temporal_tls_ca_path",
            )
        elif "name" in low:
            what, fix, setting = (
                "presented a certificate for another name",
                "Set temporal_tls_server_name to the name in the server's certificate, or "
                "connect by that name (temporal_address).",
                "temporal_tls_server_name",
            )
        else:
            what, fix, setting = (
                "failed the TLS handshake",
                "Check temporal_tls (on for a TLS server), temporal_tls_ca_path, "
                "temporal_tls_cert_path and temporal_tls_key_path.",
                "temporal_tls_ca_path",
            )
        return TemporalError(f"TLS: {where} {what}: {text}", fix, kind="tls", setting=setting)
    if "namespace" in low and ("not found" in low or "notfound" in low):
        return TemporalError(
            f"{where} has no namespace {target.namespace!r}.",
            "Create it (`temporal operator namespace create`) or set temporal_namespace.",
            kind="namespace",
            setting="temporal_namespace",
        )
    return TemporalError(
        f"{where} is not reachable: {text}",
        "Check that Temporal runs there (temporal_address, STIGMER_TEMPORAL_ADDRESS); "
        "a TLS server also needs temporal_tls.",
        kind="unreachable",
        setting="temporal_address",
    )


async def connect_temporal(
    target: TemporalTarget,
    *,
    identity: str,
    keys: StackKeys | None = None,
    blobs: Any = None,
    plugins: Sequence[Any] = (),
    timeout: float = 5.0,
    check_namespace: bool = True,
    pydantic: bool = False,
    payload_converter: Any = None,
) -> Any:
    """A ``temporalio.client.Client`` for ``target``; with ``check_namespace``, proven to work.

    With ``keys``, every payload is sealed and opened with the stack's keys
    (:mod:`stigmer.codec`): what a worker or the API server uses; with ``blobs``
    (a :class:`stigmer.codec.BlobDriver`) too, big ones are kept out of the history. The proof is a
    ``DescribeNamespace`` call: a client that connects but cannot use the
    namespace (a refused certificate, a wrong key) fails here, not at the first
    workflow.

    Raises:
        TemporalError: classified (see :func:`classify`).
    """
    from temporalio.client import Client

    extra: dict[str, Any] = {}
    if keys is not None:
        from stigmer.codec import data_converter

        extra["data_converter"] = data_converter(
            keys, blobs, pydantic=pydantic, payload_converter=payload_converter
        )
    try:
        client = await Client.connect(
            target.address,
            namespace=target.namespace,
            tls=tls_config(target),
            api_key=reveal(target.api_key),
            identity=identity,
            plugins=list(plugins),
            connect_timeout=timedelta(seconds=timeout),
            **extra,
        )
    except TemporalError:
        raise
    except Exception as exc:
        raise classify(exc, target) from None
    if check_namespace:
        await describe_namespace(client, target, timeout)
    return client


async def describe_namespace(client: Any, target: TemporalTarget, timeout: float = 5.0) -> Any:
    """``DescribeNamespace`` for the target's namespace; raises a classified TemporalError."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    try:
        return await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=target.namespace),
            timeout=timedelta(seconds=timeout),
        )
    except Exception as exc:
        raise classify(exc, target) from None
