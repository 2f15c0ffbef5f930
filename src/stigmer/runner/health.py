"""The container health check: ``python -m stigmer.runner.health``.

Exit 0 when the heartbeat file (``STIGMER_RUNNER_HEARTBEAT_FILE``) was refreshed
within ``STIGMER_HEALTH_MAX_AGE`` seconds (default 30). The worker refreshes it
only while Temporal answers, so "the process exists" is not enough.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    path = os.environ.get("STIGMER_RUNNER_HEARTBEAT_FILE", "/tmp/stigmer-runner.heartbeat")
    max_age = float(os.environ.get("STIGMER_HEALTH_MAX_AGE", "30"))
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        print(f"unhealthy: no heartbeat at {path} (not connected to Temporal yet)")
        return 1
    if age > max_age:
        print(f"unhealthy: last heartbeat {age:.0f}s ago")
        return 1
    print(f"healthy: heartbeat {age:.0f}s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
