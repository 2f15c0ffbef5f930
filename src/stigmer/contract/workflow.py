"""What the API server and the runner agree on to start and run an execution."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stigmer.spec.models import AgentSpec

#: The Temporal task queue every agent-runner polls.
TASK_QUEUE = "agent_execution_runner"
#: The workflow type the API server starts and the runner registers.
WORKFLOW_NAME = "AgentExecutionWorkflow"


def workflow_id(execution_id: str) -> str:
    """The Temporal workflow id of an execution (``temporal workflow show -w ID``)."""
    return f"agent-execution/{execution_id}"


class ExecutionInput(BaseModel):
    """The workflow input: a snapshot of the agent spec, so the runner never fetches it.

    ``model`` is resolved by the API server (the run's ``--model``, else the
    spec's, else ``default_model``): the runner runs what it is given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    execution_id: str
    agent_name: str
    spec: AgentSpec
    message: str
    model: str
    #: ``--env KEY=VALUE`` of this run, for the tools
    env: dict[str, str] = Field(default_factory=dict)
