"""Sealed payloads: every payload that goes through Temporal is encrypted and authenticated.

A Temporal ``PayloadCodec`` (the pattern of Temporal's encryption sample) with
AES-256-GCM from ``cryptography``, keyed by the stack's key
(``credentials/stack-key.json``, handed to the API server and the runner in
their runtime configuration). A sealed payload has the encoding
``binary/encrypted``, the id of the key that sealed it and the id of the
workflow it belongs to; its data is a 12-byte nonce and the ciphertext of the
original payload, with the key id and the workflow id as associated data.

The codec takes Temporal's serialization context: a payload is sealed for its
workflow (a workflow's input, an activity's arguments and result), and a
worker opens it only within that same workflow. A sealed input or activity
argument copied into another workflow (a replay, or a splice of two runs'
payloads) is refused.

Opening refuses anything this stack did not seal: another encoding, an
unknown key id, a tag that does not verify. In a worker that refusal is a
non-retryable ``ApplicationError``, so a workflow started by someone without
the key fails at once, executing nothing, instead of retrying for ever.

Failures are sealed too (:func:`data_converter` moves their messages and stack
traces into encoded attributes), so the history holds no plaintext of a run.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    ExternalStorage,
    PayloadCodec,
    PayloadConverter,
    SerializationContext,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError

from stigmer.contract.config import StackKeys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
WORKFLOW_ID = "stigmer-workflow-id"
NOT_SEALED = "payload not sealed by this stack"


class PayloadNotSealed(ApplicationError):
    """A payload this stack did not seal (or cannot open): never retried."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"{NOT_SEALED} ({why}); it was refused and nothing was executed",
            type="PayloadNotSealed",
            non_retryable=True,
        )


class SealingCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM with the stack's keys: seals with the active one, opens with any.

    ``workflow_id``: the workflow this copy seals for and opens within (from
    the serialization context); without one it opens a payload for any
    workflow (the API's codec endpoint, decoding a failure for display).
    """

    def __init__(
        self,
        keys: StackKeys,
        workflow_id: str | None = None,
        _ciphers: dict[str, AESGCM] | None = None,
    ) -> None:
        self.keys = keys
        self.workflow_id = workflow_id
        self.active = keys.active
        self._ciphers = _ciphers or {
            kid: AESGCM(base64.b64decode(key.get_secret_value())) for kid, key in keys.keys.items()
        }

    def with_context(self, context: SerializationContext) -> SealingCodec:
        wid = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            wid = context.workflow_id
        if wid == self.workflow_id:
            return self
        # a copy for every workflow task and activity: the ciphers are shared, not rebuilt
        return SealingCodec(self.keys, wid, self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        kid = self.active.encode()
        wid = (self.workflow_id or "").encode()
        nonce = os.urandom(12)
        plain = payload.SerializeToString()
        data = nonce + self._ciphers[self.active].encrypt(nonce, plain, kid + b"\0" + wid)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: kid, WORKFLOW_ID: wid}, data=data)

    def open(self, payload: Payload) -> Payload:
        """The original payload.

        Raises:
            PayloadNotSealed: not sealed by this stack, or altered since.
        """
        encoding = payload.metadata.get("encoding", b"")
        if encoding != ENCODING:
            raise PayloadNotSealed(f"encoding {encoding.decode(errors='replace') or 'none'}")
        kid = payload.metadata.get(KEY_ID, b"")
        cipher = self._ciphers.get(kid.decode(errors="replace"))
        if cipher is None:
            raise PayloadNotSealed(f"unknown key id {kid.decode(errors='replace')!r}")
        wid = payload.metadata.get(WORKFLOW_ID, b"")
        if self.workflow_id is not None and wid != self.workflow_id.encode():
            raise PayloadNotSealed(
                f"it was sealed for workflow {wid.decode(errors='replace') or '(none)'!r}, "
                f"not for {self.workflow_id!r}: a payload copied from another workflow"
            )
        try:
            plain = cipher.decrypt(payload.data[:12], payload.data[12:], kid + b"\0" + wid)
        except (InvalidTag, ValueError):
            raise PayloadNotSealed("it does not verify with the stack's key") from None
        return Payload.FromString(plain)


#: A sealed payload at least this big is kept out of Temporal's history: stored by
#: the API (``/v1/blobs``), with a reference in the history (Temporal's external
#: storage: the claim-check pattern). Temporal refuses payloads over 2 MB, and
#: warns from 512 KB.
CLAIM_FROM = 128 * 1024
#: The largest payload stored so (the API's request body limit, less headroom).
MAX_STORED = 4 * 1024 * 1024 - 64 * 1024
#: The driver's name, written in each reference.
DRIVER_NAME = "stigmer-blobs"
#: The most stored bytes one call of the codec endpoint resolves (the rest are shown
#: as their references): a small request must not make the server hold gigabytes.
MAX_RESOLVED = 32 * 1024 * 1024
_SHA256 = re.compile("[0-9a-f]{64}")


class PayloadTooLarge(ApplicationError):
    """A payload over :data:`MAX_STORED`: the step that made it fails, never retried."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"a payload of {size} bytes is over the limit of {MAX_STORED} bytes (a tool's "
            "arguments or result, or the conversation so far): write big texts to workspace "
            "files in parts",
            type="PayloadTooLarge",
            non_retryable=True,
        )


class BlobDriver(StorageDriver):
    """Temporal external storage in the stigmer API's store, content-addressed.

    ``put(sha256, data)`` and ``get(sha256) -> data`` reach the store: over HTTP
    from a runner, directly in the API server. What is stored is the payload as
    the codec left it, sealed; a blob whose hash does not match is refused.
    """

    def __init__(
        self,
        put: Callable[[str, bytes], Awaitable[None]],
        get: Callable[[str], Awaitable[bytes]],
    ) -> None:
        self._put, self._get = put, get

    def name(self) -> str:
        return DRIVER_NAME

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            if len(data) > MAX_STORED:
                raise PayloadTooLarge(len(data))
            key = hashlib.sha256(data).hexdigest()
            await self._put(key, data)
            claims.append(StorageDriverClaim(claim_data={"sha256": key}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        out = []
        for claim in claims:
            key = claim.claim_data.get("sha256", "")
            if not _SHA256.fullmatch(key):
                raise PayloadNotSealed("a reference to a stored payload without a valid hash")
            try:
                data = await self._get(key)
            except LookupError:
                raise PayloadNotSealed(f"no stored payload {key[:12]}") from None
            if hashlib.sha256(data).hexdigest() != key:
                raise PayloadNotSealed(f"stored payload {key[:12]} does not match its hash")
            try:
                out.append(Payload.FromString(data))
            except DecodeError:
                raise PayloadNotSealed(f"stored payload {key[:12]} is not a payload") from None
        return out


def data_converter(
    keys: StackKeys,
    blobs: BlobDriver | None = None,
    pydantic: bool = False,
    payload_converter: type[PayloadConverter] | None = None,
) -> DataConverter:
    """The data converter of every stigmer Temporal client (PydanticAIPlugin keeps the codec).

    With ``blobs`` (the runner's and the API server's), big payloads are stored
    outside the history (:data:`CLAIM_FROM`). ``pydantic``: pydantic models as
    JSON, as pydantic-ai's plugin encodes them (the same ``json/plain`` payloads),
    for a client that does not load pydantic-ai (the API server: seconds of
    imports at every start). ``payload_converter``: that class instead (the
    runner's: pydantic-ai's own, once loaded, :mod:`stigmer.runner.loader`).
    """
    extra: dict[str, Any] = {}
    if payload_converter is not None:
        extra["payload_converter_class"] = payload_converter
    elif pydantic:
        from temporalio.contrib.pydantic import PydanticPayloadConverter

        extra["payload_converter_class"] = PydanticPayloadConverter
    return DataConverter(
        **extra,
        payload_codec=SealingCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
        external_storage=None
        if blobs is None
        else ExternalStorage(drivers=[blobs], payload_size_threshold=CLAIM_FROM),
    )


def stored_key(payload: Payload) -> str | None:
    """The SHA-256 a reference to a stored payload names (None: not such a reference)."""
    from google.protobuf import json_format
    from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference

    if (
        payload.metadata.get("messageType")
        != ExternalStorageReference.DESCRIPTOR.full_name.encode()
    ):
        return None
    try:
        ref = json_format.Parse(payload.data, ExternalStorageReference())
    except json_format.ParseError:
        return None
    if ref.driver_name != DRIVER_NAME:
        return None
    return ref.claim_data.get("sha256")


def decode_json_payloads(
    codec: SealingCodec, body: Any, fetch: Callable[[str], bytes | None] | None = None
) -> dict[str, Any]:
    """Temporal's remote codec protocol (``/decode``): ``{"payloads": [{metadata, data}]}``.

    Metadata values and data are base64, as the Temporal UI and CLI send them. A
    reference to a payload kept out of the history is resolved with ``fetch``
    (sha256 -> the stored bytes, or None).
    A payload this stack did not seal is handed back as it is, as Temporal's
    codec servers do (the SDK itself writes a few, such as local activity
    markers, unsealed): this endpoint only shows; the worker is what refuses.

    Raises:
        ValueError: a malformed body.
    """
    if not isinstance(body, dict) or not isinstance(body.get("payloads"), list):
        raise ValueError('the body must be {"payloads": [...]}')
    out = []
    resolved: dict[str, Payload | None] = {}
    budget = MAX_RESOLVED
    for item in body["payloads"]:
        if not isinstance(item, dict):
            raise ValueError("each payload is an object with metadata and data")
        try:
            payload = Payload(
                metadata={k: base64.b64decode(v) for k, v in (item.get("metadata") or {}).items()},
                data=base64.b64decode(item.get("data") or ""),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"a payload is not base64: {exc}") from None
        key = stored_key(payload) if fetch is not None else None
        if fetch is not None and key and _SHA256.fullmatch(key):
            if key not in resolved and budget > 0:  # each stored payload is read once
                stored = fetch(key)
                budget -= len(stored or b"")
                try:
                    ok = stored is not None and hashlib.sha256(stored).hexdigest() == key
                    resolved[key] = Payload.FromString(stored) if ok and stored else None
                except DecodeError:
                    resolved[key] = None
            # kept out of the history: shown all the same (else as the reference)
            payload = resolved.get(key) or payload
        try:
            opened = codec.open(payload)
        except PayloadNotSealed:
            opened = payload
        out.append(
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in opened.metadata.items()},
                "data": base64.b64encode(opened.data).decode(),
            }
        )
    return {"payloads": out}
