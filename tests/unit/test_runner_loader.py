"""The runner polls before pydantic-ai is imported; the agent's code loads in the background."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from stigmer.runner.loader import AgentLoader, load_agent_code


def test_the_worker_imports_no_pydantic_ai_before_it_polls() -> None:
    # everything the worker needs to connect, build its Worker and poll
    code = (
        "import sys\n"
        "import stigmer.runner.worker, stigmer.runner.workflows, stigmer.runner.loader\n"
        "import stigmer.runner.lost, stigmer.runner.activities, stigmer.codec\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic_ai', 'openai', 'anthropic'))\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_loaded_code_is_what_the_plugin_registers() -> None:
    code = load_agent_code()
    names = set(code.activities)
    assert "agent__stigmer_agent__model_request" in names
    assert any("__toolset__workspace__" in n for n in names), names
    for defn in code.activities.values():
        assert defn.is_async, defn.name
    assert code.failure_types  # pydantic-ai's AgentRunError and the like fail the workflow


def test_a_load_that_fails_is_raised_to_every_waiter() -> None:
    def broken() -> object:
        raise ImportError("no module named pydantic_ai")

    loader = AgentLoader(broken)  # type: ignore[arg-type]
    loader.start()
    with pytest.raises(ImportError, match="pydantic_ai"):
        loader.wait(timeout=10)
    assert loader.done


def test_the_load_runs_once_in_a_thread_of_its_own() -> None:
    calls: list[str] = []

    def load() -> object:
        calls.append(threading.current_thread().name)
        return "code"

    loader = AgentLoader(load)  # type: ignore[arg-type]
    loader.start()
    loader.start()
    assert loader.wait(timeout=10) == "code"
    assert loader.wait(timeout=10) == "code"
    assert calls == ["agent-loader"]


def test_run_says_why_an_execution_stays_pending(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` on this host's stack: a runner that is not ready is named, with its error."""
    import time

    from stigmer.cli import running
    from stigmer.settings import resolve
    from stigmer.stack import control

    failed = {
        "components": [
            {"name": "temporal", "state": "running", "ready": True},
            {
                "name": "agent-runner",
                "state": "failed",
                "ready": False,
                "last_error": "its agent code does not load: RuntimeError: x\nmore",
            },
        ]
    }
    monkeypatch.setattr(control, "supervisor_status", lambda paths, timeout=2: failed)
    monkeypatch.setattr(running, "PENDING_HINT_AFTER", 0.01)

    class Api:
        settings = resolve(tmp_path / "home", env={})

    timer = running._pending_hint(Api(), None)
    assert timer is not None
    timer.join(5)
    err = capsys.readouterr().err
    assert "still PENDING" in err and "agent-runner is failed" in err and "RuntimeError: x" in err
    assert "more" not in err  # the first line of the error only

    class Remote:
        settings = resolve(tmp_path / "home", env={"STIGMER_API_URL": "https://api.example:7234"})

    assert running._pending_hint(Remote(), None) is None  # its runners are elsewhere
    time.sleep(0.05)


def test_the_workflow_memo_names_the_provider_whose_sdk_the_model_uses() -> None:
    from temporalio.converter import PayloadConverter

    from stigmer.contract.workflow import PROVIDER_MEMO, ExecutionInput, provider_of
    from stigmer.runner.loader import memo_provider
    from stigmer.spec.models import AgentSpec

    def inp(model: str, **spec: Any) -> ExecutionInput:
        return ExecutionInput(
            execution_id="e1",
            agent_name="a",
            spec=AgentSpec(instructions="x", **spec),
            message="m",
            model=model,
        )

    assert provider_of(inp("test")) == "test"
    assert provider_of(inp("anthropic:claude-x")) == "anthropic"
    assert provider_of(inp("ollama:llama3")) == "ollama"
    assert provider_of(inp("anthropic:x", base_url="http://127.0.0.1:1/v1")) == "openai"
    assert provider_of(inp("test", base_url="http://127.0.0.1:1/v1")) == "test"  # `--model test`
    payload = PayloadConverter.default.to_payload("anthropic")
    assert memo_provider({PROVIDER_MEMO: payload}) == "anthropic"
    assert memo_provider({}) is None  # started by an API server older than the memo
    odd = PayloadConverter.default.to_payload({"not": "a name"})
    assert memo_provider({PROVIDER_MEMO: odd}) is None


def test_a_new_workflow_instance_imports_its_providers_sdk_outside_workflow_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The import happens in create_instance (the worker's loop), before the workflow's first task."""
    from types import SimpleNamespace

    from temporalio.converter import PayloadConverter

    from stigmer.contract.workflow import PROVIDER_MEMO
    from stigmer.runner import loader as loader_mod
    from stigmer.runner import models

    done = AgentLoader(lambda: SimpleNamespace(failure_types=()))  # type: ignore[arg-type, return-value]
    done.wait(10)
    monkeypatch.setattr(loader_mod, "loader", done)
    order: list[str] = []
    monkeypatch.setattr(models, "import_provider", lambda name: order.append(name) or True)

    class Inner:
        def create_instance(self, det: Any) -> str:
            order.append("instance")
            return "instance"

    runner = loader_mod.LoadedWorkflowRunner(Inner())  # type: ignore[arg-type]
    memo = {PROVIDER_MEMO: PayloadConverter.default.to_payload("openai")}
    det = SimpleNamespace(
        info=SimpleNamespace(raw_memo=memo, workflow_id="agent-execution/e1"),
        worker_level_failure_exception_types=[],
    )
    assert runner.create_instance(det) == "instance"  # type: ignore[arg-type]
    assert order == ["openai", "instance"]


def test_import_provider_imports_the_providers_modules_once() -> None:
    code = (
        "import sys\n"
        "from stigmer.runner.models import import_provider\n"
        "assert import_provider('test') is False\n"
        "assert 'openai' not in sys.modules\n"
        "assert import_provider('openai') is True\n"
        "assert 'openai' in sys.modules and 'pydantic_ai.models.openai' in sys.modules\n"
        "assert import_provider('openai') is False\n"
        "assert import_provider('no-such-provider') is True\n"  # no error: the run says so
        "assert import_provider('no-such-provider') is False\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
