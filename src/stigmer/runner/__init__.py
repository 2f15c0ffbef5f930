"""The agent-runner: a Temporal worker on task queue ``agent_execution_runner``.

It imports neither the API server nor the store: everything it needs arrives
in env vars (:mod:`stigmer.stack.runner` sets them) and workflow inputs.
"""
