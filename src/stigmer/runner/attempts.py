"""How many attempts a tool call gets (counted in :mod:`stigmer.runner.lost`).

Apart from it so that the agent's definition (:mod:`stigmer.runner.agent`) can
name them without importing the interceptor and what it loads.
"""

from __future__ import annotations

#: attempts of a tool call that may fail or time out (a worker shutdown does not count)
TOOL_ATTEMPTS = 3
#: Temporal's limit for a tool call, shutdowns included
TOOL_ATTEMPTS_WITH_SHUTDOWNS = TOOL_ATTEMPTS + 30
