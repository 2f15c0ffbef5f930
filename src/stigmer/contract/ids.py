"""Execution ids: made by the client that submits a run, so a retried submission is one execution.

Standard library only: the CLI makes one on every ``stigmer run``.
"""

from __future__ import annotations

import os
import time

#: ``ex-``, milliseconds since the epoch in hex (11 digits: sortable by creation
#: time), then at least 6 random hex digits.
EXECUTION_ID_PATTERN = r"^ex-[0-9a-f]{11}[0-9a-f]{6,32}$"


def new_execution_id() -> str:
    """A fresh execution id, sortable by creation time."""
    return f"ex-{int(time.time() * 1000):011x}{os.urandom(3).hex()}"
