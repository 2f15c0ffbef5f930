"""The HTTP/1.1 the CLI speaks to the stigmer API: one request per connection.

The standard library's ``http.client`` imports the ``email`` package to parse
headers: about 40 % of the imports of a ``stigmer run`` (docs/performance.md),
for a command whose own work is a few milliseconds. This module sends a request
and reads the answer of an HTTP/1.1 server (the API's is uvicorn) with nothing
but :mod:`socket`: a status line, headers, and a body by ``Content-Length``,
``Transfer-Encoding: chunked``, or until the server closes. Every request says
``Connection: close``. What it does not understand it refuses
(:class:`ProtocolError`) rather than guesses.
"""

from __future__ import annotations

import contextlib
import socket

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator
    from io import BufferedReader as BinaryIO

#: The longest status or header line, and the most headers, taken from a server.
MAX_LINE = 65536
MAX_HEADERS = 100
#: The longest line of a body read line by line (one event of a stream), and the
#: longest body read whole: the API's answers are far smaller.
MAX_BODY_LINE = MAX_BODY = 64 * 1024 * 1024
#: The most interim (1xx) answers taken before the real one.
MAX_INTERIM = 10
#: Bytes read from the socket at a time (a chunk is read in pieces of this size).
PIECE = 65536


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


class Response:
    """The status and headers of an answer; its body is read once, with
    :meth:`read` or line by line (iterating)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: _Body) -> None:
        self.status = status
        self.reason = reason
        #: header names in lower case; a repeated header's values joined by ", "
        self.headers = headers
        self._body = body

    def read(self) -> bytes:
        """The whole body.

        Raises:
            ProtocolError: it is over :data:`MAX_BODY` bytes.
        """
        body = bytearray()
        for data in self._body.chunks():
            body += data
            if len(body) > MAX_BODY:
                raise ProtocolError(f"the body is over {MAX_BODY} bytes")
        return bytes(body)

    def __iter__(self) -> Iterator[bytes]:
        """The body's lines, each with its line end (the last one may have none).

        Raises:
            ProtocolError: a line is over :data:`MAX_BODY_LINE` bytes.
        """
        pending = bytearray()  # appended in place: a long line costs linear time
        for data in self._body.chunks():
            start = len(pending)
            pending += data
            end = pending.find(b"\n", start)
            if end < 0:
                if len(pending) > MAX_BODY_LINE:
                    raise ProtocolError(f"a line of the body is over {MAX_BODY_LINE} bytes")
                continue
            done = pending.rfind(b"\n") + 1
            lines = bytes(pending[: done - 1]).split(b"\n")  # at \n only, as readline
            del pending[:done]
            for line in lines:
                yield line + b"\n"
            if len(pending) > MAX_BODY_LINE:
                raise ProtocolError(f"a line of the body is over {MAX_BODY_LINE} bytes")
        if pending:
            yield bytes(pending)


class Connection:
    """One connection to ``host:port`` (TLS when ``tls`` is given), for one request."""

    def __init__(
        self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.tls = tls
        #: the socket, once connected (its timeout may be changed while reading)
        self.sock: socket.socket | None = None
        self._file: BinaryIO | None = None

    def request(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        """Send the request and read the answer's status and headers.

        Raises:
            OSError: could not connect, send or read (TimeoutError after ``timeout``).
            ProtocolError: the answer is not HTTP/1.x.
            ValueError: a header or the target holds a line break.
        """
        head = self._head(method, target, body, headers)
        # an ASCII name as bytes: a str is encoded with the idna codec (its import ~2 ms)
        host = self.host.encode("ascii") if self.host.isascii() else self.host
        sock = socket.create_connection((host, self.port), timeout=self.timeout)  # type: ignore[arg-type]
        self.sock = sock
        if self.tls is not None:
            self.sock = sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        sock.sendall(head + body if body else head)
        self._file = file = sock.makefile("rb")
        for _ in range(MAX_INTERIM + 1):
            status, reason = _status_line(file)
            headers_in = _headers(file)
            if not 100 <= status < 200 or status == 101:
                break  # an interim answer (100 Continue) comes before the real one
        else:
            raise ProtocolError(f"over {MAX_INTERIM} interim answers")
        if status == 101:
            raise ProtocolError("the server switched protocols (101)")
        if method == "HEAD" or status in (204, 304):
            body_reader = _Body(file, 0, False)
        elif "transfer-encoding" in headers_in:
            codings = headers_in["transfer-encoding"].lower().split(",")
            if codings[-1].strip() != "chunked":
                raise ProtocolError(f"Transfer-Encoding {headers_in['transfer-encoding']!r}")
            body_reader = _Body(file, None, True)
        elif "content-length" in headers_in:
            body_reader = _Body(file, _number(headers_in["content-length"], 10, 19), False)
        else:
            body_reader = _Body(file, None, False)  # until the server closes
        return Response(status, reason, headers_in, body_reader)

    def _head(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.tls is not None else 80
        fields = {
            "Host": host if self.port == default_port else f"{host}:{self.port}",
            "Accept-Encoding": "identity",
            "Connection": "close",
        }
        if body is not None or method in ("POST", "PUT", "PATCH"):
            fields["Content-Length"] = str(len(body or b""))
        fields.update(headers)
        if not target.isascii() or any(c <= " " or c == "\x7f" for c in target):
            raise ValueError("the request target holds a space, a control or a non-ASCII character")
        lines = [f"{method} {target} HTTP/1.1"]
        for name, value in fields.items():
            if any(c in value for c in "\r\n\0") or not name.isascii() or ":" in name:
                # (the value is not shown: it may be the token)
                raise ValueError(f"the {name!r} header holds a line break or a NUL")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def close(self) -> None:
        for it in (self._file, self.sock):
            if it is not None:
                with contextlib.suppress(OSError):
                    it.close()
        self._file = self.sock = None


class _Body:
    """Reads a body of ``length`` bytes, chunked, or until the server closes (``length`` None)."""

    def __init__(self, file: BinaryIO, length: int | None, chunked: bool) -> None:
        self._file = file
        self._length = length
        self._chunked = chunked
        self._used = False

    def chunks(self) -> Iterator[bytes]:
        if self._used:
            raise ProtocolError("the body was read already")
        self._used = True
        file = self._file
        if self._chunked:
            while True:
                size_text = _line(file, "chunk size").split(b";", 1)[0].strip()
                size = _number(size_text.decode("latin-1"), 16, 16)
                if size == 0:
                    _headers(file)  # trailers, up to the blank line
                    return
                yield from _pieces(file, size)
                if _line(file, "chunk end") not in (b"\r\n", b"\n"):
                    raise ProtocolError("a chunk does not end where its size says")
        elif self._length is not None:
            yield from _pieces(file, self._length)
        else:
            while data := file.read1(PIECE):
                yield data


def _line(file: BinaryIO, what: str) -> bytes:
    line = file.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError(f"the {what} line is over {MAX_LINE} bytes")
    if not line.endswith(b"\n"):
        where = "within" if line else "before"
        raise ConnectionError(f"the server closed the connection {where} the {what} line")
    return line


def _pieces(file: BinaryIO, size: int) -> Iterator[bytes]:
    """``size`` bytes, as they come (never more than :data:`PIECE` at a time)."""
    left = size
    while left:
        data = file.read1(min(left, PIECE))
        if not data:
            raise ConnectionError(f"the server closed the connection {left} bytes before the end")
        left -= len(data)
        yield data


def _number(text: str, base: int, digits: int) -> int:
    """A size or code as HTTP writes it: ASCII digits of ``base``, at most ``digits`` of them."""
    text = text.strip()
    allowed = "0123456789abcdefABCDEF"[: 10 if base == 10 else 22]
    if not text or len(text) > digits or any(c not in allowed for c in text):
        raise ProtocolError(f"{text[:24]!r} is not a number HTTP/1.1 allows here")
    return int(text, base)


def _status_line(file: BinaryIO) -> tuple[int, str]:
    line = _line(file, "status").decode("latin-1").rstrip("\r\n")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3:
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:60]!r}")
    return _number(code, 10, 3), reason


def _headers(file: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(file, "header").decode("latin-1").rstrip("\r\n")
        if not line:
            return headers
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or line[0] in " \t":
            raise ProtocolError(f"not a header line: {line[:60]!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise ProtocolError(f"over {MAX_HEADERS} headers")
