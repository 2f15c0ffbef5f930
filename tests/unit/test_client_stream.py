"""A follower that loses its event stream says how long it reconnects, and means it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from stigmer.client import Client
from stigmer.errors import StackNotRunningError
from stigmer.settings import resolve

EVENT = {"seq": 1, "type": "phase", "payload": {"phase": "RUNNING"}}


def gone(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()  # nothing listens any more


class OneEventThenGone(BaseHTTPRequestHandler):
    """Streams one event and closes the stream (as an API server told to stop does)."""

    def do_GET(self) -> None:
        if "/events" in self.path:
            body = f"data: {json.dumps(EVENT)}\n\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            threading.Thread(target=gone, args=(self.server,)).start()
        else:
            self.send_response(503)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_lost_stream_is_said_once_and_given_up_after_its_patience(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OneEventThenGone)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = resolve(
        tmp_path, env={"STIGMER_API_URL": f"http://127.0.0.1:{port}", "STIGMER_API_TOKEN": "t"}
    )
    client = Client(settings, timeout=2)
    started = time.monotonic()
    seen = []
    with pytest.raises(StackNotRunningError):
        for event in client.stream("ex-1", patience=2.0):
            seen.append(event)
    took = time.monotonic() - started
    assert seen == [EVENT]
    assert 2.0 <= took < 8.0, took
    err = capsys.readouterr().err
    assert err.count("reconnecting for up to 2s") == 1, err
    assert "retrying for up to" not in err, err


class TakesStreamsAndClosesThem(BaseHTTPRequestHandler):
    """An API server that is stopping: it takes a stream and ends it at once."""

    def do_GET(self) -> None:
        self.send_response(200)
        if "/events" in self.path:
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = json.dumps({"id": "ex-1", "phase": "RUNNING"}).encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_streams_that_end_at_once_do_not_reset_the_patience(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TakesStreamsAndClosesThem)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = resolve(
        tmp_path, env={"STIGMER_API_URL": f"http://127.0.0.1:{port}", "STIGMER_API_TOKEN": "t"}
    )
    started = time.monotonic()
    try:
        with pytest.raises(StackNotRunningError):
            list(Client(settings, timeout=2).stream("ex-1", patience=2.0))
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 8.0


class Squatter(BaseHTTPRequestHandler):
    """Whatever holds the API's port while the stack restarts: it records the tokens."""

    tokens: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Squatter.tokens.append(self.headers.get("Authorization", ""))
        body = b'{"agents": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_token_waits_until_the_supervisor_says_its_api_server_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loopback is open to every local user: while this stack's API server is not up
    (a restart), something else may hold its port. The token goes there only once the
    supervisor (its socket is the owner's alone) says its API server runs."""
    import socketserver

    import stigmer.client

    monkeypatch.setattr(stigmer.client, "AWAY_PATIENCE_S", 1.0)
    api = ThreadingHTTPServer(("127.0.0.1", 0), Squatter)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{api.server_address[1]}"
    settings = resolve(tmp_path / "home", env={"STIGMER_API_TOKEN": "sekrit"})
    settings.paths.control_socket.parent.mkdir(parents=True, exist_ok=True)
    state = {"now": "restarting"}

    class Supervisor(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            self.wfile.write(json.dumps({"api": url, "state": state["now"]}).encode() + b"\n")

    sup = socketserver.ThreadingUnixStreamServer(str(settings.paths.control_socket), Supervisor)
    threading.Thread(target=sup.serve_forever, daemon=True).start()
    Squatter.tokens = []
    try:
        client = Client(settings, timeout=2)
        with pytest.raises(StackNotRunningError):
            client.list_agents()
        assert Squatter.tokens == []  # never sent while the API server was not running
        state["now"] = "running"
        assert client.list_agents() == []
        assert Squatter.tokens == ["Bearer sekrit"]
    finally:
        for server in (api, sup):
            server.shutdown()
            server.server_close()


class NotStigmer(BaseHTTPRequestHandler):
    """Another service on the API's port: its answers are not stigmer's."""

    answers: ClassVar[dict[str, bytes]] = {
        "/v1/agents": b"<html>hello</html>",
        "/v1/executions/ex-1/events": b"data: [1, 2]\n\n",
        "/v1/executions/ex-2/events": b'data: {"seq": "1"}\n\n',
        "/v1/executions/ex-3/events": b"data: \xff\xfe\n\n",
    }

    def do_GET(self) -> None:
        body = self.answers.get(self.path.partition("?")[0], b"")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_answers_that_are_not_stigmers_are_a_clean_error(tmp_path: Path) -> None:
    """Not a traceback ("a bug in stigmer"): an ApiError that says what may listen there."""
    from stigmer.errors import ApiError

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotStigmer)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = resolve(
        tmp_path, env={"STIGMER_API_URL": f"http://127.0.0.1:{port}", "STIGMER_API_TOKEN": "t"}
    )
    try:
        client = Client(settings, timeout=2)
        with pytest.raises(ApiError, match="not stigmer's API"):
            client.list_agents()
        for ex in ("ex-1", "ex-2", "ex-3"):
            with pytest.raises(ApiError, match="not stigmer's API"):
                list(client.stream(ex, patience=1.0))
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("token", ["line one\nline two", "tab\there", "nul\0"])
def test_a_token_with_a_control_character_is_a_config_error(tmp_path: Path, token: str) -> None:
    from stigmer.errors import ConfigError

    file = tmp_path / "token"
    file.write_text(token + "\n")
    for env in ({"STIGMER_API_TOKEN": token}, {"STIGMER_API_TOKEN_FILE": str(file)}):
        settings = resolve(tmp_path, env={"STIGMER_API_URL": "http://127.0.0.1:9", **env})
        with pytest.raises(ConfigError, match="control character") as err:
            Client(settings)
        assert token not in str(err.value.message) + str(err.value.fix)
