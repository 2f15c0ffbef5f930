"""What the API server and the runner agree on to start and run an execution."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stigmer.spec.models import AgentSpec

#: The Temporal task queue every agent-runner polls.
TASK_QUEUE = "agent_execution_runner"
#: The workflow type the API server starts and the runner registers.
WORKFLOW_NAME = "AgentExecutionWorkflow"


WORKFLOW_ID_PREFIX = "agent-execution/"


def workflow_id(execution_id: str) -> str:
    """The Temporal workflow id of an execution (``temporal workflow show -w ID``)."""
    return f"{WORKFLOW_ID_PREFIX}{execution_id}"


def execution_of(workflow_id: str) -> str | None:
    """The execution id of an execution's workflow id (None for any other workflow)."""
    if workflow_id.startswith(WORKFLOW_ID_PREFIX):
        return workflow_id[len(WORKFLOW_ID_PREFIX) :] or None
    return None


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


#: The signal that carries a person's decision on a call waiting for approval.
APPROVAL_SIGNAL = "approval"


#: The workflow memo key that names the provider whose SDK the execution's model uses
#: (:func:`provider_of`). The runner reads it when it creates the workflow instance,
#: outside workflow code, and imports that SDK there: in a workflow task, an import of
#: over 2 s (the openai SDK on a busy host) is a deadlock to Temporal.
PROVIDER_MEMO = "provider"


def provider_of(inp: ExecutionInput) -> str:
    """The provider whose SDK ``inp``'s model uses (``openai`` for any ``spec.base_url``)."""
    provider = inp.model.partition(":")[0]
    if inp.spec.base_url and provider != "test":  # the offline model needs no SDK
        return "openai"
    return provider


class ApprovalDecision(BaseModel):
    """A decision on a call that waits for approval (the :data:`APPROVAL_SIGNAL`'s argument).

    ``scope`` ``run`` with ``approve``: this call and every later call of the
    run is approved without asking. ``execution_id`` names the execution it was
    made for: a sealed decision copied into another execution's workflow is ignored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    execution_id: str
    #: the id the call waits under (``approval_requested``'s ``call_id``)
    call_id: str
    decision: Literal["approve", "deny"]
    reason: str | None = None
    by: str
    scope: Literal["call", "run"] = "call"
