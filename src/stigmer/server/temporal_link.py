"""The API server's own link to Temporal: one sealed client, and whether it works now."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from stigmer.codec import BlobDriver
from stigmer.contract.config import RuntimeConfig
from stigmer.contract.temporal import connect_temporal, describe_namespace
from stigmer.errors import TemporalError

log = logging.getLogger("stigmer.server")

#: Seconds between the server's own checks that it reaches Temporal.
TEMPORAL_CHECK_EVERY = 5.0


class TemporalLink:
    """The server's Temporal client, and whether it works now.

    :meth:`watch` connects through ``connect_temporal`` (retrying while Temporal
    is not reachable) and then checks the namespace every few seconds, so
    ``/healthz`` says whether this server, not just its supervisor, reaches
    Temporal. A permanent failure (TLS, the certificate, authentication, the
    namespace) is reported as such, with the setting to change.
    """

    def __init__(self, cfg: RuntimeConfig, blobs: BlobDriver | None = None) -> None:
        self.target = cfg.temporal
        self.keys = cfg.stack_keys
        self.blobs = blobs
        self._client: Any = None
        self._connected = asyncio.Event()
        self.ok = False
        self.error: TemporalError | None = None

    def health(self) -> dict[str, Any]:
        err = self.error
        return {
            "temporal": "ok" if self.ok else ("error" if err else "connecting"),
            "temporal_error": None
            if err is None
            else {
                "kind": err.kind,
                "message": err.message,
                "fix": err.fix,
                "setting": err.setting,
                "permanent": err.permanent,
            },
        }

    async def watch(self) -> None:
        delay = 0.2
        while self._client is None:
            try:
                self._client = await connect_temporal(
                    self.target,
                    identity="stigmer-server",
                    keys=self.keys,
                    blobs=self.blobs,
                    # pydantic models as the runner's pydantic-ai plugin encodes them,
                    # without importing pydantic-ai here (seconds at every start)
                    pydantic=True,
                )
            except TemporalError as exc:
                self.error = exc
                if exc.permanent:
                    log.error("%s %s", exc.message, exc.fix)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._connected.set()
        self.ok, self.error = True, None
        log.info(
            "reached Temporal at %s (namespace %s)", self.target.address, self.target.namespace
        )
        while True:
            await asyncio.sleep(TEMPORAL_CHECK_EVERY)
            try:
                await describe_namespace(self._client, self.target)
                self.ok, self.error = True, None
            except TemporalError as exc:
                self.ok, self.error = False, exc

    async def client(self) -> Any:
        """The connected client (waits up to 30 s for the first connection).

        Raises:
            TemporalError: not connected within that time.
        """
        try:
            async with asyncio.timeout(30):
                await self._connected.wait()
        except TimeoutError:
            raise self.error or TemporalError(
                f"Temporal at {self.target.address} did not answer within 30s."
            ) from None
        return self._client
