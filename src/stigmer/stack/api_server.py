"""The stigmer-server component: the FastAPI app under uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from stigmer.contract.config import RuntimeConfig
from stigmer.contract.status import ComponentDetails
from stigmer.settings import Settings
from stigmer.stack.component import (
    FatalComponentError,
    ProcessComponent,
    import_off_loop,
    python_module_command,
)
from stigmer.stack.handover import server_config
from stigmer.stack.ports import port_fix, port_free, port_holder


class ApiServer(ProcessComponent):
    """``python -m stigmer.server``.

    Ready when ``GET /healthz`` reports the store open and Temporal reached by
    the server itself (``DescribeNamespace`` through ``connect_temporal``). A
    TLS or authentication failure the server reports is fatal: the start ends
    with its cause and the setting to change.
    """

    name = "stigmer-server"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._answering = True
        self._why: str | None = None

    def waiting_for(self) -> str | None:
        return self._why

    def unresponsive(self) -> bool:
        # degraded for want of Temporal or the store is not its own fault: a restart
        # would not help; not answering at all (hung) is
        return not self._answering

    @property
    def endpoint(self) -> str:
        return self.settings.server_endpoint

    def extra_status(self) -> ComponentDetails:
        return {"database": self.settings.public()["database_url"] or self.settings.database}

    def preflight(self) -> None:
        store = self.settings.sqlite_store
        if store is not None:
            from stigmer.errors import StoreDamagedError
            from stigmer.server.backup import check_and_back_up

            try:
                check_and_back_up(store, self.settings.backup_keep)
            except StoreDamagedError as exc:
                raise FatalComponentError(exc.message, exc.fix) from None
        port = self.settings.server_port
        if not port_free(port, self.settings.server_bind):
            holder = port_holder(port)
            raise FatalComponentError(
                f"port {port} (server_port) is already in use"
                + (f" by {holder}" if holder else ""),
                f"Free the port or choose another one: {port_fix('server_port')}",
            )

    def runtime_config(self) -> RuntimeConfig:
        return server_config(self.settings)

    def command(self) -> list[str]:
        return python_module_command("stigmer.server")

    async def ready(self) -> bool:
        # the standard library's client, in a thread: httpx (the supervisor's only
        # other use for it) costs a quarter of a second of CPU to import, at every start
        await import_off_loop("http.client", "ssl")
        try:
            status, health = await asyncio.to_thread(
                get_health, self.endpoint, self.settings.api_tls_ca_path
            )
        except Exception as exc:
            self._answering = False
            self._why = f"its /healthz does not answer ({type(exc).__name__})"
            return False
        self._answering = True
        problem = health.get("temporal_error") or {}
        self._why = (
            health.get("database_error")
            or (f"Temporal: {problem.get('message')}" if problem.get("message") else None)
            or (f"database: {health.get('database')}" if health.get("database") != "ok" else None)
        )
        if problem.get("permanent"):
            raise FatalComponentError(
                f"the API server cannot use Temporal: {problem.get('message')}", problem.get("fix")
            )
        return bool(status == 200 and health.get("status") == "ok")


def get_health(
    endpoint: str, ca_path: str | None, timeout: float = 2.0
) -> tuple[int, dict[str, Any]]:
    """``GET {endpoint}/healthz``: its status and JSON body.

    The supervisor's own child is checked with ``api_tls_ca_path`` when given,
    else only reached (TLS without verification).
    """
    import http.client
    import ssl

    url = urlsplit(endpoint)
    host = url.hostname or "127.0.0.1"
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        if ca_path:
            ctx = ssl.create_default_context(cafile=ca_path)
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, url.port or 443, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, url.port or 80, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        return resp.status, body if isinstance(body, dict) else {}
    finally:
        conn.close()
