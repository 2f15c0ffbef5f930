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
#: The longest line of a body read line by line (one event of a stream).
MAX_BODY_LINE = 64 * 1024 * 1024


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
        """The whole body."""
        return b"".join(self._body.chunks())

    def __iter__(self) -> Iterator[bytes]:
        """The body's lines, each with its line end (the last one may have none)."""
        pending = b""
        for data in self._body.chunks():
            pending += data
            if b"\n" not in data:
                if len(pending) > MAX_BODY_LINE:
                    raise ProtocolError(f"a line of the body is over {MAX_BODY_LINE} bytes")
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending


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
        while True:
            status, reason = _status_line(file)
            headers_in = _headers(file)
            if not 100 <= status < 200:
                break  # an interim answer (100 Continue) comes before the real one
        if method == "HEAD" or status in (204, 304):
            body_reader = _Body(file, 0, False)
        elif "chunked" in headers_in.get("transfer-encoding", "").lower():
            body_reader = _Body(file, None, True)
        elif "content-length" in headers_in:
            length = headers_in["content-length"].strip()
            if not length.isdigit():
                raise ProtocolError(f"Content-Length {length!r} is not a number")
            body_reader = _Body(file, int(length), False)
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
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in fields.items()]
        for line in lines:
            if any(c in line for c in "\r\n\0"):
                raise ValueError(f"a request line or header holds a line break: {line[:40]!r}")
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
                size_line = _line(file, "chunk size")
                size_text = size_line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
                if size < 0:
                    raise ProtocolError(f"bad chunk size {size_text[:20]!r}")
                if size == 0:
                    _headers(file)  # trailers, up to the blank line
                    return
                yield _exactly(file, size)
                if _line(file, "chunk end") not in (b"\r\n", b"\n"):
                    raise ProtocolError("a chunk does not end where its size says")
        elif self._length is not None:
            left = self._length
            while left:
                data = file.read1(min(left, 65536))
                if not data:
                    raise ConnectionError(
                        f"the server closed the connection {left} bytes before the body's end"
                    )
                left -= len(data)
                yield data
        else:
            while data := file.read1(65536):
                yield data


def _line(file: BinaryIO, what: str) -> bytes:
    line = file.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError(f"the {what} line is over {MAX_LINE} bytes")
    if not line.endswith(b"\n"):
        where = "within" if line else "before"
        raise ConnectionError(f"the server closed the connection {where} the {what} line")
    return line


def _exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise ConnectionError("the server closed the connection within a chunk")
    return data


def _status_line(file: BinaryIO) -> tuple[int, str]:
    line = _line(file, "status").decode("latin-1").rstrip("\r\n")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:60]!r}")
    return int(code), reason


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
