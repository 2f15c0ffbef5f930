"""A real model path: the openai provider against an OpenAI-compatible server on 127.0.0.1.

The server is a small stand-in written here (public LLM APIs cannot be reached);
it speaks the chat-completions streaming protocol the openai SDK uses.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.conftest import Stack, stack_data_converter

SECRET = "sk-local-compatible-key-777"


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        chunks = [
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "Hello from "},
                        "finish_reason": None,
                    }
                ],
            },
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": "a compatible server."},
                        "finish_reason": None,
                    }
                ],
            },
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            },
        ]
        for c in chunks:
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


def test_agent_on_an_openai_compatible_server(stack: Stack, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack.env["MY_LLM_KEY"] = SECRET
        stack.start()
        f = tmp_path / "a.yaml"
        f.write_text(
            "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: compat}\nspec:\n"
            "  instructions: Be brief.\n  model: openai:my-local-model\n"
            f"  base_url: http://127.0.0.1:{server.server_port}/v1\n"
            "  api_key: {secret: MY_LLM_KEY}\n  model_settings: {temperature: 0.1}\n"
        )
        stack.cli("apply", "-f", str(f), check=True)
        proc = stack.cli("run", "compat", "say hello", "--output", "json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["phase"] == "COMPLETED"
        assert result["output"] == "Hello from a compatible server."
        req = FakeOpenAI.requests[-1]
        assert req["path"] == "/v1/chat/completions"
        assert req["auth"] == f"Bearer {SECRET}"
        assert req["body"]["model"] == "my-local-model" and req["body"]["temperature"] == 0.1
        assert any(m.get("content") == "say hello" for m in req["body"]["messages"])
        spec = json.loads(
            stack.cli("agent", "get", "compat", "--output", "json", check=True).stdout
        )
        assert SECRET not in json.dumps(spec)  # only the reference is stored
        # the workflow's memo names the provider; the runner imported its SDK when it
        # created the workflow instance, not in the workflow's first task
        assert workflow_memo(stack, result["workflow_id"]) == {"provider": "openai"}
        runner_log = stack.log("agent-runner")
        assert "imported the openai provider's SDK before its first task" in runner_log
    finally:
        server.shutdown()


def workflow_memo(st: Stack, workflow_id: str) -> dict[str, Any]:
    """A workflow's memo, read with the stack's key (it is sealed like the input)."""
    import asyncio

    from temporalio.client import Client

    async def read() -> dict[str, Any]:
        client = await Client.connect(
            f"127.0.0.1:{st.ports['temporal']}", data_converter=stack_data_converter(st)
        )
        return dict(await (await client.get_workflow_handle(workflow_id).describe()).memo())

    return asyncio.run(read())


def test_default_model_is_listed_and_used(stack: Stack, tmp_path: Path) -> None:
    """An agent without `model` runs on `default_model` (here an ollama: model at a local URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack.env["STIGMER_DEFAULT_MODEL"] = "ollama:house-model"
        stack.env["OLLAMA_BASE_URL"] = f"http://127.0.0.1:{server.server_port}/v1"
        stack.start()
        f = tmp_path / "a.yaml"
        f.write_text(
            "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: plain}\n"
            "spec:\n  instructions: Be brief.\n"
        )
        stack.cli("apply", "-f", str(f), check=True)
        listed = stack.cli("agent", "list", check=True).stdout
        assert "ollama:house-model" in listed, listed
        agents = json.loads(stack.cli("agent", "list", "-o", "json", check=True).stdout)["agents"]
        assert [a["model"] for a in agents] == ["ollama:house-model"]
        proc = stack.cli("run", "plain", "hi", "--output", "json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["output"] == "Hello from a compatible server."
        assert FakeOpenAI.requests[-1]["body"]["model"] == "house-model"
        ex = json.loads(
            stack.cli("execution", "get", json.loads(proc.stdout)["id"], "-o", "json").stdout
        )
        assert ex["model"] == "ollama:house-model"
    finally:
        server.shutdown()


class RefusingOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that refuses every key (HTTP 401)."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(
            {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_model_key_failures_name_the_setting_to_fix(stack: Stack, tmp_path: Path) -> None:
    """A missing provider key and a refused one fail the run at once, saying what to set."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
            stack.env.pop(name, None)
        stack.env["MY_LLM_KEY"] = SECRET
        stack.start()
        f = tmp_path / "a.yaml"
        f.write_text(
            "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: nokey}\nspec:\n"
            "  instructions: Be brief.\n  model: anthropic:claude-sonnet-4-5\n"
            "---\n"
            "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: badkey}\nspec:\n"
            "  instructions: Be brief.\n  model: openai:my-local-model\n"
            f"  base_url: http://127.0.0.1:{server.server_port}/v1\n"
            "  api_key: {secret: MY_LLM_KEY}\n"
        )
        stack.cli("apply", "-f", str(f), check=True)

        proc = stack.cli("run", "nokey", "hi")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        out = proc.stdout
        assert "ANTHROPIC_API_KEY" in out and "stigmer config set anthropic_api_key" in out, out
        assert "AnthropicProvider(" not in out, out  # pydantic-ai's advice is not stigmer's
        assert "error (ProviderKeyMissing)" in out, out
        # the reason is shown once: the FAILED line does not repeat it
        assert out.count("needs an API key") == 1, out

        proc = stack.cli("run", "badkey", "hi", "--output", "json")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        error = json.loads(proc.stdout)["error"]
        assert f"127.0.0.1:{server.server_port}" in error and "spec.api_key" in error, error
        assert SECRET not in proc.stdout
    finally:
        server.shutdown()
