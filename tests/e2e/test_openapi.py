"""The live API against its own published OpenAPI document, fuzzed with Schemathesis.

Every operation, with the admin token; the event endpoint, with the runner
token, against a real execution. No answer may be a 5xx, and every answer must
fit the document: status code, content type and body.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import Stack

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def schemathesis(
    stack: Stack, token: str, tmp_path: Path, *args: str, config: str = ""
) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / f"schemathesis-{len(list(tmp_path.glob('*.toml')))}.toml"
    cfg.write_text(config)
    return subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(cfg),
            "run",
            f"http://127.0.0.1:{stack.ports['server']}/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-database",
            "none",
            "--no-color",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )


def test_the_api_fits_its_openapi_document(stack: Stack, tmp_path: Path) -> None:
    stack.start()
    base = f"http://127.0.0.1:{stack.ports['server']}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/openapi.json", timeout=10) as resp:
        doc = json.loads(resp.read())
    assert "/v1/executions/{execution_id}/events" in doc["paths"]
    agent = tmp_path / "a.yaml"
    agent.write_text(
        "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: fuzzed}\n"
        "spec: {instructions: x, model: test, test_script: [{answer: ok}]}\n"
    )
    stack.cli("apply", "-f", str(agent), check=True)
    run = json.loads(stack.cli("run", "fuzzed", "hi", "-o", "json", check=True).stdout)
    admin = (stack.home / "credentials" / "api-token").read_text().strip()
    runner = (stack.home / "credentials" / "runner-token").read_text().strip()

    every = schemathesis(
        stack, admin, tmp_path, "--exclude-name", "POST /v1/executions/{execution_id}/events"
    )
    assert every.returncode == 0, every.stdout[-6000:] + every.stderr[-2000:]
    events = schemathesis(
        stack,
        runner,
        tmp_path,
        "--include-name",
        "POST /v1/executions/{execution_id}/events",
        config=(
            "[[operations]]\n"
            'include-name = "POST /v1/executions/{execution_id}/events"\n'
            f'parameters = {{ execution_id = "{run["id"]}" }}\n'
        ),
    )
    assert events.returncode == 0, events.stdout[-6000:] + events.stderr[-2000:]
    # nothing the fuzzing sent was stored in the finished execution's log
    after = stack.cli("execution", "logs", run["id"], "-o", "json", check=True).stdout
    assert [json.loads(line)["seq"] for line in after.splitlines()] == list(
        range(1, len(after.splitlines()) + 1)
    )
    assert json.loads(after.splitlines()[-1])["payload"]["phase"] == "COMPLETED"
