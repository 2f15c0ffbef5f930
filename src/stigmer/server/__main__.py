"""``python -m stigmer.server``: run the API under uvicorn.

Configured by its runtime configuration only (``STIGMER_CONFIG``, written by
the supervisor; :mod:`stigmer.contract.config`), which it deletes once read.
"""

from __future__ import annotations

import ipaddress
import logging
import sys

from stigmer.contract.config import load_runtime_config
from stigmer.errors import StigmerError
from stigmer.hardening import not_dumpable


def main(argv: list[str] | None = None) -> int:
    not_dumpable()  # it holds the tokens' hashes, the stack key and the store's URL
    try:
        cfg = load_runtime_config(role="stigmer-server", consume=True)
    except StigmerError as exc:
        print(f"{exc.message}\n{exc.fix or ''}".strip(), file=sys.stderr)
        return exc.exit_code
    assert cfg.server is not None
    host = cfg.server.host
    if not ipaddress.ip_address(host).is_loopback:
        print(f"refusing to listen on non-loopback address {host}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    import uvicorn
    from sqlalchemy.exc import DBAPIError

    from stigmer.server.app import create_app

    try:
        app = create_app(cfg)
    except DBAPIError as exc:
        cause = str(exc.orig or exc).strip().splitlines()
        print(
            f"database_url: the store does not answer: {cause[0] if cause else exc}",
            file=sys.stderr,
        )
        return 1
    uvicorn.run(
        app,
        host=host,
        port=cfg.server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
