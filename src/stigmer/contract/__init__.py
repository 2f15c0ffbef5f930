"""The contract between stigmer's processes: every fact two processes must agree on.

The CLI, the supervisor, the API server and the agent-runner may each run on
another host. What they share is defined here once, typed, and imported by all
of them; no process rebuilds it from environment variables.

=====================  =====================================================
module                 what it defines
=====================  =====================================================
``registry``           the components, the model providers, the tools
``phases``             execution phases and the transitions between them
``status``             the component and stack status the supervisor sends
``config``             the runtime configuration a child process is handed
``temporal``           ``connect_temporal()``, the one way to reach Temporal
``workflow``           ``ExecutionInput``, the workflow name, id and task queue
``events``             the execution event types, payloads and timestamps
``limits``             the limits on an agent spec (size, depth, values)
=====================  =====================================================

``registry``, ``phases``, ``status`` and ``limits`` use the standard library only (the CLI
imports them on its hot path); the others use pydantic. Nothing here imports
Temporal, Docker or the store at module level.
"""
