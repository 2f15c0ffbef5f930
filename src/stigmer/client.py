"""The CLI's client for the stigmer API (``http://127.0.0.1:$STIGMER_SERVER_PORT``).

The token comes from ``$STIGMER_HOME/credentials/api-token``. Every failure
becomes a :class:`~stigmer.errors.StigmerError` that says what to do.
"""

from __future__ import annotations

import json as _json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from stigmer import _http
from stigmer.contract.ids import new_execution_id
from stigmer.contract.phases import TERMINAL_PHASES
from stigmer.credentials import read_token
from stigmer.errors import (
    ApiError,
    ApiUnavailableError,
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    RequestRejectedError,
    StackNotRunningError,
    StigmerError,
)
from stigmer.settings import Settings, command_for

if TYPE_CHECKING:
    import ssl

#: Seconds a GET keeps retrying an API that answers 502/503/504.
UNAVAILABLE_PATIENCE_S = 30.0
#: Seconds a request keeps retrying an API that should answer and does not (restarting).
AWAY_PATIENCE_S = 20.0
#: Seconds a follower keeps reconnecting to an API it lost (a `server restart` with a
#: tool running: its stop_grace, then the start).
STREAM_PATIENCE_S = 60.0
#: Seconds a stream must stay open (or bring an event) for a later loss to count anew.
STREAM_STEADY_S = 5.0


def _seg(value: str) -> str:
    """One path segment from a name or id as given: every character is the value's.

    ``?``, ``#``, ``/``, ``%``, ``..``, spaces and control characters are escaped, so
    an odd id is looked up (and not found) instead of changing the request.
    """
    if value in (".", ".."):  # a path step, not a segment, to whatever normalizes the path
        return value.replace(".", "%2E")
    return quote(value, safe="", errors="surrogateescape")


class Client:
    """Calls to the stigmer API: this home's (the one its supervisor vouches for), or ``api_url``.

    Built on :mod:`stigmer._http` (HTTP/1.1 on a socket, without ``http.client``'s
    imports): the CLI makes a handful of requests per command, and this keeps its
    start-up (``stigmer run``) short.
    ``timeout`` (seconds) bounds connecting and each read, except while
    following an event stream, which waits as long as the execution runs.
    An ``https`` API is checked with ``api_tls_ca_path`` (else the system's CAs).
    """

    @classmethod
    def resolved(cls) -> Client:
        """A client for the settings in effect (flag > env > config file > default)."""
        from stigmer.settings import resolve

        return cls(resolve())

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.settings = settings
        #: the execution as it ended, from the end of the last :meth:`stream`
        self.ended: dict[str, Any] | None = None
        vouched = not settings.api_url
        self._vouched = vouched
        self._answered = False
        self._said_away = False
        self._said_lost = False
        #: the API went away since it was vouched for: ask its supervisor again before
        #: the token goes to that address (another user may hold the port meanwhile)
        self._recheck = False
        if vouched:
            self.base, state = self._endpoint(settings)
            self._recheck = state != "running"  # (re)starting: nothing of ours may listen yet
        else:
            self.base = settings.api_endpoint
        url = urlsplit(self.base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StigmerError(
                f"The stigmer API URL {self.base!r} is not an http:// or https:// URL.",
                "Fix api_url (STIGMER_API_URL), or unset it to use this host's stack.",
            )
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._prefix = url.path.rstrip("/")
        self._tls = self._tls_context(settings, vouched) if url.scheme == "https" else None
        self.timeout = timeout
        token = self._token(settings)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    @staticmethod
    def _token(settings: Settings) -> str | None:
        """The bearer token, from api_token, api_token_file or this home's token file.

        Raises:
            ConfigError: it holds a line break or another control character (it
                would end the header it goes in).
        """
        token: str | None
        if settings.api_token:
            token, where = settings.api_token, "api_token (STIGMER_API_TOKEN)"
        elif settings.api_token_file:
            where = settings.api_token_file
            token = read_token(Path(where).expanduser())
        else:
            where = str(settings.paths.api_token)
            token = read_token(settings.paths.api_token)
        if token and not token.isprintable():
            raise ConfigError(
                f"The API token in {where} holds a line break or a control character.",
                "Put the token alone on one line, as `stigmer token create admin` prints it.",
            )
        return token

    @staticmethod
    def _tls_context(settings: Settings, vouched: bool) -> ssl.SSLContext:
        """The check of an https API: ``api_tls_ca_path``, else the system's CAs.

        This host's own API, which its supervisor vouches for, is reached at its
        own address, which its certificate may not name: without a CA given, the
        certificate must be exactly the one in ``server_tls_cert_path`` (pinned).
        """
        import ssl  # only for https: about 8 ms of every command's start-up otherwise

        if settings.api_tls_ca_path:
            return ssl.create_default_context(cafile=settings.api_tls_ca_path)
        if vouched and settings.server_tls_cert_path:
            pinned = ssl.create_default_context(cafile=settings.server_tls_cert_path)
            pinned.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf is the anchor
            pinned.check_hostname = False  # the address it was reached at is the supervisor's word
            return pinned
        return ssl.create_default_context()

    @staticmethod
    def _endpoint(settings: Settings) -> tuple[str, str | None]:
        """The URL of this home's API and its state, as its running supervisor tells them.

        Loopback is open to every local user: something else may listen on the
        configured port while the stack is down. The supervisor's socket is the
        owner's alone, so only an API it vouches for gets the token.

        Raises:
            StackNotRunningError: no supervisor answers, or this host runs no API.
        """
        from stigmer.stack.rpc import rpc

        answer = rpc(settings.paths, "api", timeout=3.0)
        url = answer.get("api") if answer else None
        if not isinstance(url, str):
            raise StackNotRunningError(
                f"stigmer is not running in {settings.home}"
                + ("." if answer is None else " with an API server on this host."),
                f"Start it: `{command_for(settings.home, 'server start')}` (check "
                f"`{command_for(settings.home, 'server status')}`).",
            )
        state = answer.get("state") if answer else None
        return url, state if isinstance(state, str) else None

    def _vouch_again(self) -> None:
        """Before the token goes out again after the API went away (a restart): its
        supervisor must say that its API server runs, at the same address. Running
        means it bound the port; until then another local user could hold it.

        Raises:
            StackNotRunningError: not yet (the callers retry within their patience).
        """
        if not (self._vouched and self._recheck):
            return
        try:
            url, state = self._endpoint(self.settings)
        except StackNotRunningError:
            raise self._not_running() from None
        if url != self.base or state != "running":
            raise self._not_running()
        self._recheck = False

    def close(self) -> None:
        """Nothing to release: each request uses its own connection."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _not_running(self) -> StackNotRunningError:
        return StackNotRunningError(
            f"The stigmer API at {self.base} is not answering (home {self.settings.home}).",
            f"Start the stack: `{command_for(self.settings.home, 'server start')}` (and check "
            f"`{command_for(self.settings.home, 'server status')}`).",
        )

    def _untrusted(self, exc: BaseException) -> ConfigError | None:
        """The error for an https API whose certificate failed the check, else None."""
        if self._tls is None:
            return None
        import ssl

        if not isinstance(exc, ssl.SSLCertVerificationError):
            return None
        return ConfigError(
            f"The API at {self.base} presented a certificate this CLI does not trust: "
            f"{exc.verify_message or exc}.",
            "Set api_tls_ca_path (STIGMER_API_TLS_CA_PATH) to the CA that signed the API's "
            "certificate; for this host's own API, server_tls_cert_path must be the "
            "certificate it serves.",
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[_http.Connection, _http.Response]:
        """Send one request on a new connection; the caller reads and closes.

        Raises:
            OSError: could not connect or send (refused, reset, timed out).
        """
        self._vouch_again()
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        body = None if json_body is None else _json.dumps(json_body).encode()
        hdrs = dict(self._headers)
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = _http.Connection(self._host, self._port, self.timeout, self._tls)
        try:
            return conn, conn.request(method, target, body, hdrs)
        except BaseException:
            conn.close()
            raise

    def request(self, method: str, path: str, idempotent: bool = False, **send: Any) -> Any:
        """``method path`` and its decoded JSON body (None when empty).

        ``send``: the keyword arguments of :meth:`_send` (``params``, ``json_body``).
        A GET (or an ``idempotent`` POST) the API cannot serve for a moment (its
        store or Temporal restarting: 502, 503, 504) is retried for up to
        :data:`UNAVAILABLE_PATIENCE_S`; an API that does not answer at all, while
        it should (this home's supervisor runs, or it answered before), for up to
        :data:`AWAY_PATIENCE_S`.

        Raises:
            StackNotRunningError: nothing answers at the API address.
            NotFoundError: 404. ApiError: any other error status, or a timeout.
        """
        retry = method == "GET" or idempotent
        deadline = time.monotonic() + UNAVAILABLE_PATIENCE_S
        away_until = time.monotonic() + AWAY_PATIENCE_S
        delay = 0.2
        while True:
            try:
                answer = self._request_once(method, path, **send)
                self._answered = True
                return answer
            except ApiUnavailableError:
                if not retry or time.monotonic() + delay > deadline:
                    raise
            except StackNotRunningError:
                # nothing answers: the API restarting (its supervisor, or an earlier
                # answer, says it exists), or no stack at all (said at once)
                if not (retry and (self._vouched or self._answered)):
                    raise
                if time.monotonic() + delay > away_until:
                    raise
                if not self._said_away:
                    self._said_away = True
                    print(
                        f"stigmer: the API at {self.base} is not answering; retrying for up "
                        f"to {AWAY_PATIENCE_S:.0f}s",
                        file=sys.stderr,
                    )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _request_once(self, method: str, path: str, **send: Any) -> Any:
        try:
            conn, resp = self._send(method, path, **send)
            try:
                data = resp.read()
            finally:
                conn.close()
        except TimeoutError:
            raise ApiError(
                f"The stigmer API at {self.base} timed out on {method} {path}.",
                "Retry; see `stigmer server logs -c stigmer-server`.",
            ) from None
        except (OSError, _http.ProtocolError) as exc:
            self._recheck = True
            raise (self._untrusted(exc) or self._not_running()) from None
        return self._check(method, path, resp.status, data)

    def _not_stigmers(self, method: str, path: str) -> ApiError:
        return ApiError(
            f"{self.base} answered {method} {path} with something that is not stigmer's API.",
            "Check server_port (or api_url): another service may listen there.",
        )

    def _check(self, method: str, path: str, status: int, data: bytes) -> Any:
        if status < 400:
            try:
                return _json.loads(data) if data else None
            except ValueError:  # not JSON, or not UTF-8
                raise self._not_stigmers(method, path) from None
        try:
            detail = _json.loads(data).get("detail")
        except (ValueError, AttributeError):
            detail = data.decode("utf-8", errors="replace")
        if status == 401:
            if not self._headers:
                raise AuthError(
                    f"There is no API token in {self.settings.paths.api_token}.",
                    "The server writes it when it starts: `stigmer server restart`.",
                )
            raise AuthError(
                "The stigmer API refused the token.",
                f"The token in {self.settings.paths.api_token} does not match the running server; "
                "restart it: `stigmer server restart`.",
            )
        if status == 404:
            raise NotFoundError(str(detail), None)
        if status == 409:
            raise ConflictError(str(detail), None)
        if status in (502, 503, 504):
            raise ApiUnavailableError(
                f"{method} {path}: the API cannot serve now ({status}): {detail}",
                "Retry in a moment; see `stigmer server status`.",
            )
        if isinstance(detail, list):
            detail = "; ".join(
                f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail
            )
        if status in (400, 413, 422):
            raise RequestRejectedError(f"{detail}", None)
        raise ApiError(f"{method} {path} failed ({status}): {detail}", None)

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request`` whose answer must be a JSON object (else the server is not stigmer's)."""
        data = self.request(method, path, **kwargs)
        if not isinstance(data, dict):
            raise self._not_stigmers(method, path)
        return data

    def _list(self, method: str, path: str, field: str, **kwargs: Any) -> list[dict[str, Any]]:
        items = self._object(method, path, **kwargs).get(field)
        return items if isinstance(items, list) else []

    # -- tokens -------------------------------------------------------------

    def create_token(self, role: str, label: str = "") -> dict[str, Any]:
        return self._object("POST", "/v1/tokens", json_body={"role": role, "label": label})

    def create_login_code(self) -> dict[str, Any]:
        """A one-time login code of the web console, and the URL that uses it."""
        made = self._object("POST", "/v1/ui/login-codes")
        return made | {"url": self.base + str(made.get("path", ""))}

    # -- agents -------------------------------------------------------------

    def put_agent(self, name: str, spec: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Create or update; with ``dry_run`` the server only validates and says what it would do."""
        params = {"dry_run": "true"} if dry_run else None
        return self._object(
            "PUT", f"/v1/agents/{_seg(name)}", json_body={"spec": spec}, params=params
        )

    def list_agents(self) -> list[dict[str, Any]]:
        return self._list("GET", "/v1/agents", "agents")

    def _no_such_agent(self, name: str) -> NotFoundError:
        """Not found, with the closest agent's name when one is close (one more request)."""
        from stigmer.errors import StigmerError
        from stigmer.spec.hints import did_you_mean

        try:
            hint = did_you_mean(name, [a.get("name") for a in self.list_agents()])
        except StigmerError:
            hint = ""
        return NotFoundError(
            f"There is no agent named {name!r}{hint}.",
            "List them with `stigmer agent list`; create one with `stigmer apply -f FILE`.",
        )

    def get_agent(self, name: str) -> dict[str, Any]:
        try:
            return self._object("GET", f"/v1/agents/{_seg(name)}")
        except NotFoundError:
            raise self._no_such_agent(name) from None

    def delete_agent(self, name: str) -> None:
        try:
            self.request("DELETE", f"/v1/agents/{_seg(name)}")
        except NotFoundError:
            raise self._no_such_agent(name) from None

    # -- executions ---------------------------------------------------------

    def run(
        self, agent: str, message: str, env: dict[str, str], model: str | None
    ) -> dict[str, Any]:
        try:
            return self._object(
                "POST",
                "/v1/executions",
                # an id of our own: the POST can be retried, and stays one execution
                json_body={
                    "id": new_execution_id(),
                    "agent": agent,
                    "message": message,
                    "env": env,
                    "model": model,
                },
                idempotent=True,
            )
        except NotFoundError:
            raise self._no_such_agent(agent) from None

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        try:
            return self._object("GET", f"/v1/executions/{_seg(execution_id)}")
        except NotFoundError:
            raise _no_such_execution(execution_id) from None

    def list_executions(self, agent: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if agent:
            params["agent"] = agent
        return self._list("GET", "/v1/executions", "executions", params=params)

    def cancel(self, execution_id: str) -> dict[str, Any]:
        try:
            return self._object(
                "POST", f"/v1/executions/{_seg(execution_id)}/cancel", idempotent=True
            )
        except ConflictError as exc:
            raise ConflictError(exc.message, "Nothing to cancel.") from None
        except NotFoundError:
            raise _no_such_execution(execution_id) from None

    def approvals(self, execution_id: str) -> dict[str, Any]:
        """``{"phase", "pending": [...]}``: the execution's calls that wait for a decision."""
        try:
            return self._object("GET", f"/v1/executions/{_seg(execution_id)}/approvals")
        except NotFoundError:
            raise _no_such_execution(execution_id) from None

    def decide(
        self,
        execution_id: str,
        call_id: str,
        decision: str,
        reason: str | None = None,
        scope: str = "call",
    ) -> dict[str, Any]:
        """Approve or deny a call that waits (the first decision on a call counts)."""
        body: dict[str, Any] = {"decision": decision, "scope": scope}
        if reason:
            body["reason"] = reason
        try:
            return self._object(
                "POST",
                # every character of the id is the id's: `?` or `%65` must not change it
                f"/v1/executions/{_seg(execution_id)}/approvals/{_seg(call_id)}",
                json_body=body,
                idempotent=True,
            )
        except NotFoundError:
            raise _no_such_execution(execution_id) from None

    def rerun(self, execution_id: str) -> dict[str, Any]:
        """A new execution with the same agent snapshot and input as ``execution_id``."""
        try:
            return self._object(
                "POST",
                f"/v1/executions/{_seg(execution_id)}/rerun",
                json_body={"id": new_execution_id()},
                idempotent=True,
            )
        except NotFoundError:
            raise _no_such_execution(execution_id) from None

    def events(self, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self._list(
            "GET", f"/v1/executions/{_seg(execution_id)}/events", "events", params={"after": after}
        )

    def stream(
        self, execution_id: str, after: int = 0, patience: float = STREAM_PATIENCE_S
    ) -> Iterator[dict[str, Any]]:
        """Events after ``after`` as they come (SSE), until the final phase.

        Reconnects from the last seen sequence number when the connection drops
        (the API server restarted: a cut stream can also end like a complete
        one), so no event is missed or repeated. The stream is over when a
        final-phase event arrived, or when it ends and the execution has ended.
        The execution as it ended, which the server sends after the final
        event, is then :attr:`ended` (None from a server that does not).

        Raises:
            StackNotRunningError: the API stayed unreachable for ``patience`` seconds.
            NotFoundError, ApiError: the API refused the request.
        """
        last = after
        failures = 0
        lost_at: float | None = None  # when the stream was lost, if it is
        opened: float | None = None  # when the current stream was opened
        final = False
        self.ended = None
        path = f"/v1/executions/{_seg(execution_id)}/events"
        while True:
            conn: _http.Connection | None = None
            try:
                conn, resp = self._send(
                    "GET",
                    path,
                    params={"after": last, "stream": 1},
                    headers={"Accept": "text/event-stream"},
                )
                if resp.status >= 400:
                    self._check("GET", path, resp.status, resp.read())
                opened = time.monotonic()
                if conn.sock is not None:
                    conn.sock.settimeout(None)  # an execution may run for hours
                data: list[str] = []
                kind = ""
                for raw in resp:
                    try:
                        line = raw.decode("utf-8").rstrip("\r\n")
                    except UnicodeDecodeError:
                        raise self._not_stigmers("GET", path) from None
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        event = _json_object("\n".join(data))
                        data = []
                        if kind == "execution":  # the execution as it ended: the stream's end
                            if event is not None and event.get("id") == execution_id:
                                self.ended = event
                            return
                        kind = ""
                        if event is None or type(event.get("seq")) is not int:
                            raise self._not_stigmers("GET", path)
                        if final or event["seq"] <= last:
                            continue
                        last = event["seq"]
                        failures = 0
                        lost_at = None
                        yield event
                        # the server sends the ended execution next, then closes the stream
                        final = _is_final(event)
                if final:
                    return
                conn.close()
                conn = None
                # ended without a final phase: over only if the execution has ended
                # (a stream resumed after the final event); else the server was cut off
                self._recheck = True  # the server ended the stream: it may be gone
                try:  # once: a refusal is a lost stream, retried below
                    ended = self._request_once("GET", f"/v1/executions/{_seg(execution_id)}")
                except NotFoundError:
                    raise _no_such_execution(execution_id) from None
                if isinstance(ended, dict) and ended.get("phase") in TERMINAL_PHASES:
                    return
                lost_at, opened = self._lost(lost_at, opened, patience), None
                failures += 1
            except (
                OSError,
                _http.ProtocolError,
                StackNotRunningError,
                ApiUnavailableError,
            ) as exc:
                if final:  # cut after the final event: the follower has it all
                    return
                untrusted = self._untrusted(exc)
                if untrusted is not None:
                    raise untrusted from None
                self._recheck = True
                lost_at, opened = self._lost(lost_at, opened, patience), None
                failures += 1
            finally:
                if conn is not None:
                    conn.close()
            if lost_at is not None and time.monotonic() - lost_at > patience:
                raise self._not_running()
            time.sleep(min(0.2 * failures, 2.0))

    def _lost(self, lost_at: float | None, opened: float | None, patience: float) -> float:
        """Since when a follower has lost its stream: now, unless it was already lost
        and the stream opened since then ended within :data:`STREAM_STEADY_S`
        (an API server that takes streams and closes them at once is not back).
        Said once, with the patience."""
        now = time.monotonic()
        if lost_at is not None and (opened is None or now - opened < STREAM_STEADY_S):
            return lost_at
        if not self._said_lost:
            self._said_lost = self._said_away = True  # requests do not say it again
            print(
                f"stigmer: lost the event stream from {self.base}; reconnecting for up "
                f"to {patience:.0f}s",
                file=sys.stderr,
            )
        return now


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, or None when it is not one."""
    try:
        value = _json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _no_such_execution(execution_id: str) -> NotFoundError:
    return NotFoundError(
        f"There is no execution {execution_id!r}.", "List them with `stigmer execution list`."
    )


def _is_final(event: dict[str, Any]) -> bool:
    return event.get("type") == "phase" and event.get("payload", {}).get("phase") in TERMINAL_PHASES
