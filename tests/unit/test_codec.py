"""The codec that seals Temporal payloads: what it opens and what it refuses."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from stigmer.codec import PayloadNotSealed, SealingCodec
from stigmer.contract.config import StackKeys


def keys(**named: bytes) -> StackKeys:
    active = list(named)[-1]
    return StackKeys(
        active=active, keys={k: base64.b64encode(v).decode() for k, v in named.items()}
    )  # type: ignore[misc]


def plain(text: str = "hello") -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


def in_workflow(codec: SealingCodec, workflow_id: str) -> SealingCodec:
    return codec.with_context(
        WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)
    )


def test_a_payload_opens_only_in_its_own_workflow() -> None:
    codec = SealingCodec(keys(k1=os.urandom(32)))
    a, b = in_workflow(codec, "agent-execution/a"), in_workflow(codec, "agent-execution/b")
    sealed = asyncio.run(a.encode([plain()]))[0]
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert b"hello" not in sealed.data
    assert asyncio.run(a.decode([sealed]))[0] == plain()
    assert codec.open(sealed) == plain()  # without a context (the codec endpoint): shown
    with pytest.raises(PayloadNotSealed, match="sealed for workflow"):
        b.open(sealed)
    forged = Payload(
        metadata={**sealed.metadata, "stigmer-workflow-id": b"agent-execution/b"}, data=sealed.data
    )
    with pytest.raises(PayloadNotSealed, match="does not verify"):
        b.open(forged)  # the workflow id is authenticated, not only compared


def test_unsealed_foreign_and_altered_payloads_are_refused_for_good() -> None:
    codec = in_workflow(SealingCodec(keys(k1=os.urandom(32))), "w")
    other = in_workflow(SealingCodec(keys(k1=os.urandom(32))), "w")
    with pytest.raises(PayloadNotSealed, match="encoding json/plain") as err:
        codec.open(plain())
    assert err.value.non_retryable
    with pytest.raises(PayloadNotSealed, match="does not verify"):
        codec.open(other.seal(plain()))
    sealed = codec.seal(plain())
    tampered = Payload(
        metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    )
    with pytest.raises(PayloadNotSealed):
        codec.open(tampered)


def test_rotated_keys_open_what_older_ones_sealed() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    old = in_workflow(SealingCodec(keys(k1=k1)), "w")
    new = in_workflow(SealingCodec(keys(k1=k1, k2=k2)), "w")
    sealed_old = old.seal(plain("old"))
    assert new.open(sealed_old) == plain("old")
    assert new.seal(plain()).metadata["encryption-key-id"] == b"k2"
