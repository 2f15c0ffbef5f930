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

import functools
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from temporalio.exceptions import ApplicationError

from stigmer.contract.registry import PROVIDERS
from stigmer.runner import runtime
from stigmer.runner.tools import RunDeps

TEMPLATE = re.compile(r"\{\{\s*([a-z]+)(?:\.(\d+))?\s*\}\}")


@dataclass(frozen=True)
class Call:
    """One tool call of the run so far and what came back."""

    tool_call_id: str
    tool: str
    args: dict[str, Any]
    text: str
    ok: bool
    #: a person denied it (spec.approval): the model goes on with the denial as the result
    denied: bool = False


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, default=str)


def _calls(messages: Sequence[ModelMessage]) -> list[Call]:
    """Every tool result so far, in order, failed ones too (their text is the error)."""
    args: dict[str, dict[str, Any]] = {}
    out: list[Call] = []
    for m in messages:
        if isinstance(m, ModelResponse):
            for call in m.parts:
                if isinstance(call, ToolCallPart):
                    args[call.tool_call_id] = call.args_as_dict()
        elif isinstance(m, ModelRequest):
            for part in m.parts:
                denied = False
                if isinstance(part, ToolReturnPart):
                    ok = part.outcome == "success"
                    denied = part.outcome == "denied"
                    text = _text(part.content)
                elif isinstance(part, RetryPromptPart) and part.tool_name:
                    ok, text = False, _text(part.content)
                else:
                    continue
                cid = part.tool_call_id
                out.append(Call(cid, part.tool_name or "?", args.get(cid, {}), text, ok, denied))
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
            results=[c.text for c in calls],
            reads=[
                (str(c.args.get("path", "?")), c.text)
                for c in calls
                if c.tool == "read_file" and c.ok
            ],
            prompt=_prompt(messages),
        )


STEP_OF_CALL = re.compile(r"^t(\d+)(?:_\d+)?$")


def _stop_at_failed_call(messages: list[ModelMessage], steps: list[dict[str, Any]]) -> None:
    """Raise if a call of the last turn failed and its step does not say ``on_error: continue``.

    The call ids the script gives (``t<step>`` or ``t<step>_<item>``) name the step.
    The error is non-retryable: the model request fails, and with it the run.
    """
    requests = [m for m in messages if isinstance(m, ModelRequest)]
    failed = [c for c in _calls(requests[-1:]) if not c.ok and not c.denied]
    for call in failed:
        m = STEP_OF_CALL.match(call.tool_call_id)
        if m is None or int(m.group(1)) >= len(steps):
            continue
        k = int(m.group(1))
        if steps[k].get("on_error") == "continue":
            continue
        raise ApplicationError(
            f"test_script step {k + 1} of {len(steps)} ({call.tool}) failed: "
            f"{call.text.strip().rstrip('.')}. The test model stops at a failed call; "
            "`on_error: continue` on the step makes it go on",
            type="TestScriptStopped",
            non_retryable=True,
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
        _stop_at_failed_call(messages, steps)
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


#: the runner image's zip of the provider SDKs (openai, anthropic), beside its
#: site-packages (scripts/pack-site-packages.py writes it)
PROVIDER_SDKS_ZIP = "provider-sdks.zip"


@functools.cache
def provider_sdks() -> None:
    """Put the image's zip of provider SDKs on ``sys.path``, once; elsewhere nothing.

    It is not on ``sys.path`` from the start: zipimport keeps the file list of
    every zip there (10,000 files here), and ``importlib.metadata`` lists them
    again, which would cost a runner that never calls a provider some 10 MB.
    Outside the image (a local runner, a test) the SDKs are installed as usual.
    """
    import sys
    import sysconfig

    path = str(Path(sysconfig.get_paths()["purelib"]) / PROVIDER_SDKS_ZIP)
    if Path(path).is_file():
        sys.path.append(path)


#: What a model of each provider imports when a run resolves it (in workflow code).
PROVIDER_MODULES: dict[str, tuple[str, ...]] = {
    "openai": ("pydantic_ai.models.openai", "pydantic_ai.providers.openai"),
    "anthropic": ("pydantic_ai.models.anthropic", "pydantic_ai.providers.anthropic"),
    "ollama": ("pydantic_ai.models.openai", "pydantic_ai.providers.ollama"),
}


_IMPORTED: set[str] = set()


def import_provider(name: str) -> bool:
    """Import what a model of provider ``name`` needs (nothing for ``test``), if installed.

    Returns whether anything was left to import.

    Called where an import may take seconds: when the worker creates a workflow
    instance (:class:`stigmer.runner.loader.LoadedWorkflowRunner`, from the
    workflow's :data:`~stigmer.contract.workflow.PROVIDER_MEMO`), before the
    workflow's code resolves the model. There, an import of over 2 s (the openai SDK
    on a busy host) would be a deadlock to Temporal, which interrupts it and leaves
    the SDK half-imported for the next runs.
    """
    import importlib
    import sys

    if name == "test" or not name or name in _IMPORTED:
        return False
    modules = PROVIDER_MODULES.get(name)
    _IMPORTED.add(name)  # tried once: a missing SDK is the run's to say
    if modules is not None and all(m in sys.modules for m in modules):
        return False
    provider_sdks()
    if modules is None:  # a provider stigmer does not name: pydantic-ai's own lookup
        import contextlib

        from pydantic_ai.providers import infer_provider_class

        # unknown, or its SDK is missing: the run says so itself
        with contextlib.suppress(Exception):
            infer_provider_class(name)  # imports its module, and so its SDK
        return True
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:  # that provider's SDK is not installed: the run says so
            continue
    return True


def preload_providers() -> None:
    """Import every provider's model modules now (those whose SDK is installed).

    For a worker with the workflow sandbox, which creates workflow instances its
    own way (:func:`import_provider` is not called there): it passes the SDKs
    through (pydantic-ai's plugin), and a run would otherwise import one in its
    first workflow task.
    """
    for name in PROVIDER_MODULES:
        import_provider(name)


def resolve_model(ctx: Any, model_id: str) -> Model | None:
    """``ResolveModelId`` hook: build the run's model from ``model_id`` and ``ctx.deps``."""
    deps: RunDeps = ctx.deps
    if model_id == "test":
        return script_model(deps.test_script)
    rt = runtime.current()
    provider_sdks()
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

    missing = _missing_key(model_id, rt.provider_keys)
    if missing:
        raise ApplicationError(missing, type="ProviderKeyMissing", non_retryable=True)

    def provider(name: str) -> Provider[Any]:
        options = {"api_key": rt.provider_keys.get(name), "base_url": rt.provider_urls.get(name)}
        return infer_provider_class(name)(**{k: v for k, v in options.items() if v})

    return infer_model(model_id, provider_factory=provider)


def _restart_hint() -> str:
    return (
        "then `stigmer server restart` (on a runner host of its own: in that host's configuration)"
    )


def _missing_key(model_id: str, keys: dict[str, str]) -> str | None:
    """What to do when ``model_id``'s provider needs an API key this runner was not given."""
    p = PROVIDERS.get(model_id.partition(":")[0])
    if p is None or p.key_setting is None or keys.get(p.name):
        return None
    return (
        f"model {model_id} needs an API key for {p.help}, and this runner has none. "
        f"Set {p.key_env} where `stigmer server start` runs, or `stigmer config set "
        f"{p.key_setting} KEY`, {_restart_hint()}; or run the agent on the offline model "
        "(`model: test`)"
    )


def _without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part: it is published with the failure."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unparsable URL)"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def endpoint(model_id: str, base_url: str | None) -> tuple[str, str]:
    """Where a request of ``model_id`` goes (credentials cut), and the setting that says so."""
    if base_url:
        return _without_userinfo(base_url), "the agent's spec.base_url"
    p = PROVIDERS.get(model_id.partition(":")[0])
    if p is None or p.base_url_setting is None:
        return (p.help if p else model_id), ""
    url = runtime.current().provider_urls.get(p.name) or p.default_base_url or "?"
    return _without_userinfo(url), f"{p.base_url_setting} ({p.base_url_env})"


APPLY = "`stigmer apply -f FILE` the agent"


def failure_hint(
    model_id: str, base_url: str | None, api_key_secret: str | None, exc: BaseException
) -> str | None:
    """A model failure said in stigmer's terms: which server or key, and what to change.

    ``None`` for a failure that is not about reaching the model or its key.
    """
    from pydantic_ai.exceptions import (
        ModelAuthenticationError,
        ModelConnectionError,
        ModelNotFoundError,
        ModelTimeoutError,
    )

    cur: BaseException | None = exc
    while cur is not None and not isinstance(
        cur, ModelConnectionError | ModelAuthenticationError | ModelNotFoundError
    ):
        cur = cur.__cause__
    if cur is None:
        return None
    detail = str(cur).strip().rstrip(".") or type(cur).__name__
    where, setting = endpoint(model_id, base_url)
    p = PROVIDERS.get(model_id.partition(":")[0])
    if isinstance(cur, ModelTimeoutError):
        return (
            f"the model server of {model_id} at {where} did not answer in time ({detail}). "
            f"For a slow model, raise the agent's model_settings.timeout and {APPLY}"
        )
    if isinstance(cur, ModelConnectionError):
        if not setting:
            return (
                f"could not reach {where} for {model_id} ({detail}). "
                "Check the runner host's network and proxy settings"
            )
        then = f"then {APPLY}" if base_url else _restart_hint()
        return (
            f"could not reach the model server of {model_id} at {where} ({detail}). "
            f"Start it, or point {setting} at it, {then}"
        )
    if isinstance(cur, ModelAuthenticationError):
        if base_url and api_key_secret:
            fix = (
                f"Check the key in {api_key_secret} (the secret spec.api_key names), set "
                f"where `stigmer server start` runs, {_restart_hint()}"
            )
        elif base_url:
            fix = f"The agent sends no key: add spec.api_key ({{secret: NAME}}) and {APPLY}"
        elif p and p.key_setting:
            fix = (
                f"Check {p.key_setting} (`stigmer config set {p.key_setting} KEY`; "
                f"{p.key_env} in the environment of `stigmer server start` wins), "
                f"{_restart_hint()}"
            )
        else:
            fix = "Check the key and the account's access to this model"
        return f"{where} refused the request of {model_id} ({detail}). {fix}"
    name = model_id.partition(":")[2] or model_id
    url_hint = f" A wrong {setting} also gives this." if setting else ""
    return f"{where} has no model {name} ({detail}). Fix the agent's model and {APPLY}.{url_hint}"
