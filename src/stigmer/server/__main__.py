"""``python -m stigmer.server``: run the API under uvicorn.

Configured by its runtime configuration only (``STIGMER_CONFIG``, written by
the supervisor; :mod:`stigmer.contract.config`), which it deletes once read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from stigmer.contract.config import load_runtime_config
from stigmer.errors import StigmerError
from stigmer.files import write_private
from stigmer.hardening import exit_now, not_dumpable


def main(argv: list[str] | None = None) -> int:
    not_dumpable()  # it holds the tokens' hashes, the stack key and the store's URL
    try:
        cfg = load_runtime_config(role="stigmer-server", consume=True)
    except StigmerError as exc:
        print(f"{exc.message}\n{exc.fix or ''}".strip(), file=sys.stderr)
        return exc.exit_code
    assert cfg.server is not None
    server = cfg.server
    host = server.host
    tls = server.tls_cert_pem is not None and server.tls_key_pem is not None
    if not ipaddress.ip_address(host).is_loopback and not tls:
        if not server.insecure_bind:
            print(
                f"refusing to listen on {host} without TLS: set server_tls_cert_path and "
                "server_tls_key_path, or --insecure-bind",
                file=sys.stderr,
            )
            return 2
        print(f"warning: listening on {host} without TLS (--insecure-bind)", file=sys.stderr)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    quiet_alembic()
    import uvicorn
    from sqlalchemy.exc import DBAPIError

    from stigmer.server.app import create_app

    try:
        app = create_app(cfg)
    except DBAPIError as exc:
        cause = str(exc.orig or exc).strip().splitlines()
        why = cause[0] if cause else str(exc)
        url = server.store_url.get_secret_value()
        if url.startswith("sqlite:"):
            from stigmer.server.backup import RESTORE_FIX

            where = url.removeprefix("sqlite:///")
            print(f"the store {where} cannot be used: {why}\n{RESTORE_FIX}", file=sys.stderr)
        else:
            print(f"database_url: the store does not answer: {why}", file=sys.stderr)
        return 1

    class StreamsClosingServer(uvicorn.Server):
        """Ends the open event streams as soon as it is told to stop.

        A stream stays open while its execution runs; uvicorn waits for open
        connections up to ``timeout_graceful_shutdown`` and then cancels them
        with a traceback in the log: 5 s more for every `server stop` with a
        follower attached. The followers reconnect (to the next server).
        """

        def handle_exit(self, sig: int, frame: Any) -> None:
            with contextlib.suppress(RuntimeError):  # no loop running yet
                asyncio.get_running_loop().call_soon_threadsafe(app.state.wakeups.close_streams)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    if tls:
        load_tls(config, server.tls_cert_pem or "", server.tls_key_pem.get_secret_value())  # type: ignore[union-attr]
    StreamsClosingServer(config).run()
    return 0


def quiet_alembic() -> None:
    """Keep alembic's "Running upgrade A -> B" lines, not what it says at every start.

    ("setup plugin alembic.autogenerate...", seven of them, "Context impl SQLiteImpl.",
    "Will assume non-transactional DDL.")
    """
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    def useful(record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not str(record.msg).startswith(
            ("Context impl", "Will assume")
        )

    logging.getLogger("alembic.runtime.migration").addFilter(useful)


def load_tls(config: Any, cert_pem: str, key_pem: str) -> None:
    """Load the certificate into uvicorn's config; the key is on disk only for that moment.

    (uvicorn and ``ssl`` read files: they go in a private temporary folder,
    deleted as soon as the TLS context holds them.)
    """
    with tempfile.TemporaryDirectory(prefix="stigmer-tls-") as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        write_private(cert, cert_pem)
        write_private(key, key_pem)
        config.ssl_certfile, config.ssl_keyfile = str(cert), str(key)
        config.load()


if __name__ == "__main__":
    exit_now(main())
