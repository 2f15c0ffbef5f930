"""``python -m stigmer.server --host 127.0.0.1 --port 7234``: run the API under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stigmer-server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7234)
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        print(f"refusing to listen on non-loopback address {args.host}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    import uvicorn

    from stigmer.server.app import create_app

    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
