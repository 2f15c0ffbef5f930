"""The agent-runner: a Temporal worker on task queue ``agent_execution_runner``.

It imports neither the API server nor the store: everything it needs arrives
in its runtime configuration (:mod:`stigmer.contract.config`, written by the
supervisor) and in workflow inputs.
"""
