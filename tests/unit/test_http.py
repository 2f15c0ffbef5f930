"""stigmer._http: the CLI's HTTP/1.1 client, against a socket that answers what each test says."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from stigmer import _http


@pytest.fixture
def serve() -> Iterator[object]:
    """``serve(answer)``: a port whose one connection gets ``answer`` (bytes), then EOF.

    The request received is ``serve.got`` (bytes) once the connection is done.
    """
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    class Serve:
        got = b""

        def __call__(self, answer: bytes) -> int:
            srv = socket.create_server(("127.0.0.1", 0))
            listeners.append(srv)

            def one() -> None:
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        part = conn.recv(65536)
                        if not part:
                            break
                        data += part
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = next(
                        (
                            int(line.split(b":", 1)[1])
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        ),
                        0,
                    )
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    Serve.got = head + b"\r\n\r\n" + rest
                    conn.sendall(answer)

            t = threading.Thread(target=one, daemon=True)
            t.start()
            threads.append(t)
            return int(srv.getsockname()[1])

    yield Serve()
    for t in threads:
        t.join(timeout=5)
    for srv in listeners:
        srv.close()


def ask(port: int, method: str = "GET", body: bytes | None = None) -> _http.Response:
    conn = _http.Connection("127.0.0.1", port, timeout=5)
    return conn.request(method, "/v1/x?a=1", body, {"Authorization": "Bearer t"})


def test_content_length_body_and_the_request_sent(serve) -> None:
    port = serve(b'HTTP/1.1 201 Created\r\nContent-Length: 7\r\nX-A: 1\r\nx-a: 2\r\n\r\n{"a":1}')
    resp = ask(port, "POST", b'{"m":"hi"}')
    assert (resp.status, resp.reason) == (201, "Created")
    assert resp.headers["x-a"] == "1, 2"
    assert resp.read() == b'{"a":1}'
    head, _, body = serve.got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/x?a=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in lines
    assert b"Connection: close" in lines and b"Authorization: Bearer t" in lines
    assert b"Content-Length: 10" in lines and body == b'{"m":"hi"}'


def test_a_post_without_a_body_says_length_0(serve) -> None:
    port = serve(b"HTTP/1.1 204 No Content\r\n\r\n")
    resp = ask(port, "POST")
    assert resp.status == 204 and resp.read() == b""
    assert b"Content-Length: 0" in serve.got


def test_chunked_lines_that_span_chunks(serve) -> None:
    chunks = [b"event: x\nda", b'ta: {"seq"', b": 1}\n\n", b"data: 2\n"]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nT: 1\r\n\r\n"
    port = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    lines = list(ask(port))
    assert lines == [b"event: x\n", b'data: {"seq": 1}\n', b"\n", b"data: 2\n"]


def test_a_body_until_the_server_closes_and_an_interim_answer(serve) -> None:
    port = serve(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nline 1\nno end")
    resp = ask(port)
    assert resp.status == 200
    assert list(resp) == [b"line 1\n", b"no end"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", _http.ProtocolError),  # not HTTP
        (b"HTTP/1.1 2000 OK\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", _http.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 200 OK\r\n X: folded\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 2\xb20 OK\r\n\r\n", _http.ProtocolError),  # a superscript digit
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", _http.ProtocolError),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 12, _http.ProtocolError),
        (b"", ConnectionError),  # closed without an answer
        (b"HTTP/1.1 200 OK\r\nContent-Le", ConnectionError),
    ],
)
def test_what_is_not_http_is_refused(serve, answer: bytes, error: type[Exception]) -> None:
    port = serve(answer)
    with pytest.raises(error):
        ask(port).read()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
        # sizes a server may name but not send: refused or read as they come, never allocated
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\nab",
    ],
)
def test_a_cut_or_broken_body_is_an_error_not_a_short_answer(serve, answer: bytes) -> None:
    port = serve(answer)
    with pytest.raises((ConnectionError, _http.ProtocolError)):
        ask(port).read()


def test_a_line_break_in_a_header_is_refused_before_connecting() -> None:
    conn = _http.Connection("127.0.0.1", 1, timeout=1)
    with pytest.raises(ValueError, match="line break"):
        conn.request("GET", "/", None, {"Authorization": "Bearer t\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="space, a control"):
        conn.request("GET", "/a b", None, {})
    assert conn.sock is None


def test_a_timeout_is_a_timeout_error() -> None:
    srv = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) and never answers
    try:
        conn = _http.Connection("127.0.0.1", srv.getsockname()[1], timeout=0.3)
        with pytest.raises(TimeoutError):
            conn.request("GET", "/", None, {})
        conn.close()
        assert conn.sock is None
    finally:
        srv.close()


def test_a_refused_connection_is_an_os_error() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.close()
    with pytest.raises(ConnectionRefusedError):
        ask(port)


def test_an_ipv6_host_is_bracketed_in_host() -> None:
    conn = _http.Connection("::1", 8080, timeout=1)
    head = conn._head("GET", "/", None, {})
    assert b"Host: [::1]:8080\r\n" in head


def test_a_long_line_in_small_pieces_costs_linear_time_and_has_a_limit(serve, monkeypatch) -> None:
    monkeypatch.setattr(_http, "MAX_BODY_LINE", 4 * 1024 * 1024)
    piece = b"40\r\n" + b"x" * 64 + b"\r\n"  # 64 bytes a chunk, no line end
    body = piece * (5 * 1024 * 1024 // 64)
    port = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    import time

    t0 = time.process_time()
    with pytest.raises(_http.ProtocolError, match="line of the body is over"):
        list(ask(port))
    assert time.process_time() - t0 < 5  # quadratic appends took minutes for 4 MiB


def test_a_body_read_whole_has_a_limit(serve, monkeypatch) -> None:
    monkeypatch.setattr(_http, "MAX_BODY", 1000)
    port = serve(b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 5000)
    with pytest.raises(_http.ProtocolError, match="body is over"):
        ask(port).read()


def test_a_lone_cr_does_not_end_a_line(serve) -> None:
    port = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\ndata: a\rb\r\n\n")
    assert list(ask(port)) == [b"data: a\rb\r\n", b"\n"]


def test_the_token_is_not_in_the_error_for_a_header_with_a_line_break() -> None:
    conn = _http.Connection("127.0.0.1", 1, timeout=1)
    with pytest.raises(ValueError) as err:
        conn.request("GET", "/", None, {"Authorization": "Bearer s3cr3t-token\nX: y"})
    assert "s3cr3t" not in str(err.value) and "Authorization" in str(err.value)
