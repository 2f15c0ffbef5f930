"""The stigmer-server component: the FastAPI app under uvicorn on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from stigmer.settings import Settings
from stigmer.stack.component import FatalComponentError, ProcessComponent, python_module_command
from stigmer.stack.ports import port_free, port_holder


class ApiServer(ProcessComponent):
    """``python -m stigmer.server``; ready when ``GET /healthz`` reports the database open."""

    name = "stigmer-server"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._http: Any = None

    @property
    def endpoint(self) -> str:
        return self.settings.api_url

    def extra_status(self) -> dict[str, Any]:
        db = self.settings.database
        if "@" in db:  # never show a password from a database URL
            scheme, _, rest = db.partition("://")
            db = f"{scheme}://****@{rest.rpartition('@')[2]}"
        return {"database": db}

    def preflight(self) -> None:
        port = self.settings.server_port
        if not port_free(port):
            holder = port_holder(port)
            raise FatalComponentError(
                f"port {port} (server_port) is already in use" + (f" by {holder}" if holder else "")
            )

    def command(self) -> list[str]:
        return python_module_command(
            "stigmer.server", "--host", "127.0.0.1", "--port", str(self.settings.server_port)
        )

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["STIGMER_DATABASE_URL"] = self.settings.database
        env["STIGMER_API_TOKEN_FILE"] = str(self.paths.api_token)
        env["STIGMER_TEMPORAL_ADDRESS"] = self.settings.temporal_target
        env["STIGMER_TEMPORAL_NAMESPACE"] = self.settings.temporal_namespace
        env["STIGMER_DEFAULT_MODEL"] = self.settings.default_model
        env["STIGMER_TEMPORAL_TLS"] = "1" if self.settings.temporal_tls else "0"
        if self.settings.temporal_api_key:
            env["STIGMER_TEMPORAL_API_KEY"] = self.settings.temporal_api_key
        return env

    async def ready(self) -> bool:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=2.0)
        try:
            resp = await self._http.get(f"{self.endpoint}/healthz")
            return resp.status_code == 200 and resp.json().get("database") == "ok"
        except Exception:
            return False

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await super().close()
