"""Model resolution: the offline ``test`` model and the providers.

``resolve_model(ctx, model_id)`` is the agent's ``ResolveModelId`` hook; it
runs on the worker with the run's deps, so per-run settings (the test script,
an OpenAI-compatible ``base_url``) need no registration:

* ``test``: a deterministic ``FunctionModel`` that plays ``spec.test_script``;
* any model with ``spec.base_url``: an OpenAI-compatible server, key from
  ``spec.api_key`` (a secret reference) if given;
* any other ``provider:model``: pydantic-ai's own provider, given the key and
  server URL the runner was configured with (``anthropic_api_key``,
  ``ollama_base_url``, ...; :data:`stigmer.contract.registry.PROVIDERS`). Keys
  never go through the process environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

from stigmer.runner import runtime
from stigmer.runner.tools import RunDeps

TEMPLATE = re.compile(r"\{\{\s*([a-z]+)(?:\.(\d+))?\s*\}\}")


def _calls(messages: list[ModelMessage]) -> list[tuple[str, dict[str, Any], str]]:
    """Every tool result so far, in order, as (tool name, call args, result text)."""
    args: dict[str, dict[str, Any]] = {}
    out: list[tuple[str, dict[str, Any], str]] = []
    for m in messages:
        if isinstance(m, ModelResponse):
            for call in m.parts:
                if isinstance(call, ToolCallPart):
                    args[call.tool_call_id] = call.args_as_dict()
        elif isinstance(m, ModelRequest):
            for part in m.parts:
                if isinstance(part, ToolReturnPart):
                    c = part.content
                    text = c if isinstance(c, str) else json.dumps(c, default=str)
                    out.append((part.tool_name, args.get(part.tool_call_id, {}), text))
    return out


def _prompt(messages: list[ModelMessage]) -> str:
    for m in messages:
        if isinstance(m, ModelRequest):
            for part in m.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _strip_tool_result(text: str) -> str:
    """A shell result without its leading ``exit code N`` line (templates want the output)."""
    return text.split("\n", 1)[1] if text.startswith("exit code ") and "\n" in text else text


@dataclass(frozen=True)
class Turn:
    """What a template can see: the tool results so far, the files read, the user's message."""

    results: list[str]
    reads: list[tuple[str, str]]
    prompt: str

    @classmethod
    def of(cls, messages: list[ModelMessage]) -> Turn:
        calls = _calls(messages)
        return cls(
            results=[text for _, _, text in calls],
            reads=[
                (str(a.get("path", "?")), text) for name, a, text in calls if name == "read_file"
            ],
            prompt=_prompt(messages),
        )


def render(value: Any, turn: Turn, item: str | None = None) -> Any:
    """Fill ``{{ last }}``, ``{{ result.N }}``, ``{{ all }}``, ``{{ reads }}``, ``{{ item }}``, ``{{ message }}``."""
    if isinstance(value, dict):
        return {k: render(v, turn, item) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, turn, item) for v in value]
    if not isinstance(value, str):
        return value
    results = turn.results

    def sub(m: re.Match[str]) -> str:
        name, idx = m.group(1), m.group(2)
        if name == "last":
            return _strip_tool_result(results[-1]) if results else ""
        if name == "result" and idx is not None:
            i = int(idx)
            return _strip_tool_result(results[i]) if i < len(results) else ""
        if name == "all":
            return "\n\n".join(
                f"## Result {i + 1}\n{_strip_tool_result(r)}" for i, r in enumerate(results)
            )
        if name == "reads":
            return "\n\n".join(f"## {path}\n\n{text.strip()}" for path, text in turn.reads)
        if name == "item":
            return item or ""
        if name == "message":
            return turn.prompt
        return m.group(0)

    return TEMPLATE.sub(sub, value)


def script_model(script: list[dict[str, Any]] | None) -> FunctionModel:
    """The ``test`` model: plays ``script`` one step per model turn, deterministically."""
    steps = list(script or [])

    def play(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        n = sum(1 for m in messages if isinstance(m, ModelResponse))
        turn = Turn.of(messages)
        if n >= len(steps):
            text = "Done." if steps else f"(test model) You said: {turn.prompt}"
            return ModelResponse(parts=[TextPart(text)], model_name="test")
        step = steps[n]
        if step.get("answer") is not None:
            return ModelResponse(parts=[TextPart(render(step["answer"], turn))], model_name="test")
        tool, args = step["tool"], step.get("args") or {}
        if step.get("each"):
            items = [
                line.strip().rstrip("/")
                for line in render(step["each"], turn).splitlines()
                if line.strip() and not line.strip().endswith("/")
            ]
            parts = [
                ToolCallPart(tool, render(args, turn, item), tool_call_id=f"t{n}_{i}")
                for i, item in enumerate(items)
            ]
            if not parts:
                return ModelResponse(parts=[TextPart("Nothing to do.")], model_name="test")
            return ModelResponse(parts=parts, model_name="test")
        return ModelResponse(
            parts=[ToolCallPart(tool, render(args, turn), tool_call_id=f"t{n}")],
            model_name="test",
        )

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        # event stream handlers make model requests streamed: replay the same turn as chunks
        response = play(messages, info)
        calls = [p for p in response.parts if isinstance(p, ToolCallPart)]
        if calls:
            yield {
                i: DeltaToolCall(
                    name=c.tool_name, json_args=c.args_as_json_str(), tool_call_id=c.tool_call_id
                )
                for i, c in enumerate(calls)
            }
        else:
            yield "".join(p.content for p in response.parts if isinstance(p, TextPart))

    return FunctionModel(play, stream_function=stream, model_name="test")


def resolve_model(ctx: Any, model_id: str) -> Model | None:
    """``ResolveModelId`` hook: build the run's model from ``model_id`` and ``ctx.deps``."""
    deps: RunDeps = ctx.deps
    if model_id == "test":
        return script_model(deps.test_script)
    rt = runtime.current()
    if deps.base_url:
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        key = rt.secrets.get(deps.api_key_env) if deps.api_key_env else None
        name = model_id.partition(":")[2] or model_id
        return OpenAIChatModel(
            name, provider=OpenAIProvider(base_url=deps.base_url, api_key=key or "none")
        )
    from pydantic_ai.models import infer_model
    from pydantic_ai.providers import Provider, infer_provider_class

    def provider(name: str) -> Provider[Any]:
        options = {"api_key": rt.provider_keys.get(name), "base_url": rt.provider_urls.get(name)}
        return infer_provider_class(name)(**{k: v for k, v in options.items() if v})

    return infer_model(model_id, provider_factory=provider)
