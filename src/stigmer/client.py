"""The CLI's client for the stigmer API (``http://127.0.0.1:$STIGMER_SERVER_PORT``).

The token comes from ``$STIGMER_HOME/credentials/api-token``. Every failure
becomes a :class:`~stigmer.errors.StigmerError` that says what to do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from stigmer.errors import StackNotRunningError, StigmerError
from stigmer.settings import Settings, read_api_token


class ApiError(StigmerError):
    """The API answered with an error."""

    exit_code = 1


class NotFoundError(ApiError):
    exit_code = 4


class Client:
    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.base = settings.api_url
        token = read_api_token(settings.paths)
        self.http = httpx.Client(
            base_url=self.base,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _not_running(self) -> StackNotRunningError:
        return StackNotRunningError(
            f"The stigmer API at {self.base} is not answering (home {self.settings.home}).",
            "Start the stack: `stigmer server start` (and check `stigmer server status`).",
        )

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise self._not_running() from None
        except httpx.TimeoutException:
            raise ApiError(
                f"The stigmer API at {self.base} timed out on {method} {path}.",
                "Retry; see `stigmer server logs -c stigmer-server`.",
            ) from None
        return self._check(resp)

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code < 400:
            return resp.json() if resp.content else None
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        if resp.status_code == 401:
            raise ApiError(
                "The stigmer API refused the token.",
                f"The token in {self.settings.paths.api_token} does not match the running server; "
                "restart it: `stigmer server restart`.",
            )
        if resp.status_code == 404:
            raise NotFoundError(str(detail), None)
        if isinstance(detail, list):
            detail = "; ".join(
                f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail
            )
        raise ApiError(
            f"{resp.request.method} {resp.request.url.path} failed ({resp.status_code}): {detail}",
            None,
        )

    # -- agents -------------------------------------------------------------

    def put_agent(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", f"/v1/agents/{name}", json={"spec": spec})

    def list_agents(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/agents")["agents"]

    def get_agent(self, name: str) -> dict[str, Any]:
        try:
            return self.request("GET", f"/v1/agents/{name}")
        except NotFoundError:
            raise NotFoundError(
                f"There is no agent named {name!r}.",
                "List them with `stigmer agent list`; create one with `stigmer apply -f FILE`.",
            ) from None

    def delete_agent(self, name: str) -> None:
        try:
            self.request("DELETE", f"/v1/agents/{name}")
        except NotFoundError:
            raise NotFoundError(
                f"There is no agent named {name!r}.", "See `stigmer agent list`."
            ) from None

    # -- executions ---------------------------------------------------------

    def run(
        self, agent: str, message: str, env: dict[str, str], model: str | None
    ) -> dict[str, Any]:
        try:
            return self.request(
                "POST",
                "/v1/executions",
                json={"agent": agent, "message": message, "env": env, "model": model},
            )
        except NotFoundError:
            raise NotFoundError(
                f"There is no agent named {agent!r}.",
                "List them with `stigmer agent list`; create one with `stigmer apply -f FILE`.",
            ) from None

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        try:
            return self.request("GET", f"/v1/executions/{execution_id}")
        except NotFoundError:
            raise NotFoundError(
                f"There is no execution {execution_id!r}.",
                "List them with `stigmer execution list`.",
            ) from None

    def list_executions(self, agent: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if agent:
            params["agent"] = agent
        return self.request("GET", "/v1/executions", params=params)["executions"]

    def cancel(self, execution_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/executions/{execution_id}/cancel")

    def events(self, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self.request(
            "GET", f"/v1/executions/{execution_id}/events", params={"after": after}
        )["events"]

    def stream(
        self, execution_id: str, after: int = 0, retries: int = 30
    ) -> Iterator[dict[str, Any]]:
        """Events after ``after`` as they come (SSE), until the final phase.

        Reconnects from the last seen sequence number when the connection drops,
        so no event is missed or repeated.
        """
        last = after
        failures = 0
        while True:
            try:
                with self.http.stream(
                    "GET",
                    f"/v1/executions/{execution_id}/events",
                    params={"after": last, "stream": 1},
                    headers={"Accept": "text/event-stream"},
                    timeout=httpx.Timeout(10.0, read=None),
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        self._check(resp)
                    data: list[str] = []
                    for line in resp.iter_lines():
                        if line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif line == "" and data:
                            event = json.loads("\n".join(data))
                            data = []
                            if event["seq"] <= last:
                                continue
                            last = event["seq"]
                            failures = 0
                            yield event
                    return  # the server ends the stream after the final phase
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                failures += 1
                if failures > retries:
                    raise self._not_running() from None
                time.sleep(min(0.2 * failures, 2.0))
