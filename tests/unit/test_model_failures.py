"""A model failure is told in stigmer's terms: which server or key, and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_ai.exceptions import (
    ModelAuthenticationError,
    ModelConnectionError,
    ModelNotFoundError,
    ModelTimeoutError,
    UserError,
)
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from stigmer.runner import runtime
from stigmer.runner.models import _missing_key, failure_hint
from stigmer.runner.workflows import _describe, _kind


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> runtime.Runtime:
    r = runtime.Runtime(workspace=tmp_path, provider_urls={"ollama": "http://10.0.0.7:11434/v1"})
    monkeypatch.setattr(runtime, "_current", [r])
    return r


def wrapped(exc: BaseException) -> ActivityError:
    """As the workflow sees an activity's failure: an ActivityError caused by it."""
    outer = ActivityError(
        "Activity task failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="a",
        activity_id="1",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    outer.__cause__ = exc
    return outer


def test_unreachable_server_names_the_url_and_the_setting(rt: runtime.Runtime) -> None:
    exc = wrapped(ModelConnectionError("llama3.2", "Connection error."))
    hint = failure_hint("ollama:llama3.2", None, None, exc)
    assert hint is not None
    assert "http://10.0.0.7:11434/v1" in hint and "ollama_base_url (OLLAMA_BASE_URL)" in hint
    assert "stigmer server restart" in hint


def test_unreachable_base_url_points_at_the_agent(rt: runtime.Runtime) -> None:
    exc = ModelConnectionError("m", "Connection error.")
    hint = failure_hint("openai:m", "http://127.0.0.1:9/v1", None, exc)
    assert hint is not None
    assert "http://127.0.0.1:9/v1" in hint and "spec.base_url" in hint and "stigmer apply" in hint


def test_unreachable_public_api_is_a_network_problem(rt: runtime.Runtime) -> None:
    hint = failure_hint(
        "openai:gpt-4o", None, None, ModelConnectionError("gpt-4o", "Connection error.")
    )
    assert hint is not None and "OpenAI's API" in hint and "network" in hint


def test_refused_key_names_the_key_setting(rt: runtime.Runtime) -> None:
    exc = ModelAuthenticationError("gpt-4o", "Incorrect API key provided")
    hint = failure_hint("openai:gpt-4o", None, None, exc)
    assert hint is not None and "openai_api_key" in hint and "Incorrect API key" in hint


def test_unknown_model_says_to_fix_the_agent(rt: runtime.Runtime) -> None:
    hint = failure_hint("anthropic:nope", None, None, ModelNotFoundError("nope", "model not found"))
    assert hint is not None and "no model nope" in hint and "stigmer apply -f FILE" in hint
    # a 404 of a server at a wrong URL looks the same
    hint = failure_hint("ollama:m", None, None, ModelNotFoundError("m", "404"))
    assert hint is not None and "A wrong ollama_base_url" in hint


def test_other_failures_keep_their_own_message(rt: runtime.Runtime) -> None:
    assert failure_hint("openai:gpt-4o", None, None, UserError("something else")) is None


def test_missing_key_names_env_and_setting() -> None:
    msg = _missing_key("anthropic:claude-sonnet-4-5", {})
    assert msg is not None
    assert "ANTHROPIC_API_KEY" in msg and "stigmer config set anthropic_api_key KEY" in msg
    assert _missing_key("anthropic:claude-sonnet-4-5", {"anthropic": "k"}) is None
    assert _missing_key("ollama:llama3.2", {}) is None  # no key to have
    assert _missing_key("test", {}) is None


def test_an_application_errors_type_is_the_kind_not_part_of_the_message() -> None:
    exc = ApplicationError("model x needs a key", type="ProviderKeyMissing", non_retryable=True)
    assert _kind(exc) == "ProviderKeyMissing"
    assert _describe(exc) == "model x needs a key"
    assert _kind(ValueError("v")) == "ValueError"
    # an error pydantic-ai rebuilt in the workflow keeps its own class as the kind
    rebuilt = ModelConnectionError("m", "Connection error.")
    rebuilt.__cause__ = wrapped(ApplicationError("Connection error.", type="ModelAPIError"))
    assert _kind(rebuilt) == "ModelConnectionError"


def test_credentials_in_a_url_are_not_published(rt: runtime.Runtime) -> None:
    exc = ModelConnectionError("m", "Connection error.")
    hint = failure_hint("openai:m", "http://bob:hunter2@10.0.0.9:8000/v1", None, exc)
    assert hint is not None and "hunter2" not in hint and "bob" not in hint
    assert "***@10.0.0.9:8000/v1" in hint
    rt.provider_urls["ollama"] = "http://u:p4ss@10.0.0.7:11434/v1"
    hint = failure_hint("ollama:x", None, None, exc)
    assert hint is not None and "p4ss" not in hint


def test_a_timeout_is_not_an_unreachable_server(rt: runtime.Runtime) -> None:
    hint = failure_hint("ollama:x", None, None, ModelTimeoutError("x", "Request timed out."))
    assert hint is not None and "did not answer in time" in hint
    assert "model_settings.timeout" in hint and "Start it" not in hint


def test_a_refused_base_url_key_names_the_secret_to_set(rt: runtime.Runtime) -> None:
    exc = ModelAuthenticationError("m", "Incorrect API key provided")
    hint = failure_hint("openai:m", "http://h:1/v1", "MY_LLM_KEY", exc)
    assert hint is not None and "MY_LLM_KEY" in hint and "stigmer server restart" in hint
    hint = failure_hint("openai:m", "http://h:1/v1", None, exc)
    assert hint is not None and "add spec.api_key" in hint
    hint = failure_hint("openai:gpt-4o", None, None, exc)
    assert hint is not None and "OPENAI_API_KEY" in hint


def test_the_kind_is_the_activitys_application_error_type() -> None:
    inner = ApplicationError("test_script step 1 failed", type="TestScriptStopped")
    exc = wrapped(inner)
    assert _kind(exc) == "TestScriptStopped"
    assert _describe(exc) == "test_script step 1 failed"  # not "Activity task failed: ..."


def test_a_hint_that_fails_falls_back_to_the_plain_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from stigmer.contract.workflow import ExecutionInput
    from stigmer.runner.workflows import _hint
    from stigmer.spec.models import AgentSpec

    monkeypatch.setattr(runtime, "_current", [])  # not configured: runtime.current() raises
    inp = ExecutionInput(
        execution_id="ex-1",
        agent_name="a",
        spec=AgentSpec(instructions="x"),
        message="m",
        model="ollama:x",
    )
    assert _hint(inp, ModelConnectionError("x", "Connection error.")) is None
