"""Bad agent input: line and column, a non-zero exit, and nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Stack

GOOD = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata:
  name: fine
spec:
  instructions: be fine
  model: test
"""


@pytest.fixture
def up(stack: Stack) -> Stack:
    stack.start()
    return stack


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: x\nspec: {}\n",
            ":12:5: invalid YAML",
        ),
        (GOOD + "  colour: red\n", ":16:3: spec.colour: unknown field"),
        (GOOD.replace("  instructions: be fine\n", ""), "spec.instructions: field required"),
        (
            GOOD.replace("model: test", "model: foo:bar"),
            ":15:10: spec.model: unknown model provider 'foo'",
        ),
        (GOOD.replace("name: fine", "name: Not_A_Slug"), ":12:9: metadata.name"),
        (
            GOOD + "  tools: [read_file]\n  test_script:\n"
            "    - {tool: read_file, args: {path: x}, on_error: skip}\n",
            "spec.test_script.0.on_error: Input should be 'stop' or 'continue'",
        ),
        (
            GOOD + "  test_script:\n    - {answer: hi, on_error: continue}\n",
            "`on_error` goes with `tool`",
        ),
    ],
    ids=[
        "syntax",
        "unknown-field",
        "missing-instructions",
        "unknown-provider",
        "bad-name",
        "bad-on-error",
        "on-error-on-answer",
    ],
)
def test_invalid_yaml_is_refused_with_position(
    up: Stack, tmp_path: Path, text: str, needle: str
) -> None:
    f = tmp_path / "agent.yaml"
    # a valid agent first in the same file (8 lines): nothing of the file may be stored
    f.write_text(GOOD.replace("name: fine", "name: first-ok") + "---\n" + text)
    proc = up.cli("apply", "-f", str(f))
    assert proc.returncode != 0
    assert str(f) in proc.stderr
    assert needle in proc.stderr.replace(str(f), ""), proc.stderr
    listed = json.loads(up.cli("agent", "list", "--output", "json", check=True).stdout)
    assert listed["agents"] == []


def test_several_documents_and_update(up: Stack, tmp_path: Path) -> None:
    f = tmp_path / "two.yaml"
    f.write_text(GOOD + "---\n" + GOOD.replace("name: fine", "name: second"))
    first = up.cli("apply", "-f", str(f), check=True).stdout
    assert "agent/fine created" in first and "agent/second created" in first
    f.write_text(GOOD.replace("be fine", "be better"))
    assert "agent/fine updated" in up.cli("apply", "-f", str(f), check=True).stdout
    got = json.loads(up.cli("agent", "get", "fine", "--output", "json", check=True).stdout)
    assert got["spec"]["instructions"] == "be better" and got["generation"] == 2
    assert "kind: Agent" in up.cli("agent", "get", "fine", check=True).stdout
    up.cli("agent", "delete", "second", check=True)
    names = [
        a["name"] for a in json.loads(up.cli("agent", "list", "--output", "json").stdout)["agents"]
    ]
    assert names == ["fine"]


def test_unknown_agent_and_provider(up: Stack, tmp_path: Path) -> None:
    run = up.cli("run", "ghost", "hi")
    assert (
        run.returncode != 0
        and "no agent named 'ghost'" in run.stderr
        and "stigmer apply" in run.stderr
    )
    f = tmp_path / "a.yaml"
    f.write_text(GOOD)
    up.cli("apply", "-f", str(f), check=True)
    bad = up.cli("run", "fine", "hi", "--model", "nope:model")
    assert bad.returncode != 0 and "unknown model provider 'nope'" in bad.stderr
    nofile = up.cli("apply", "-f", str(tmp_path / "missing.yaml"))
    assert nofile.returncode != 0 and "no such file" in nofile.stderr


def test_commands_need_the_stack(stack: Stack) -> None:
    proc = stack.cli("agent", "list")
    assert proc.returncode != 0
    assert f"stigmer --home {stack.home} server start" in proc.stderr


def test_workspace_flag_chooses_the_folder(stack: Stack, tmp_path: Path) -> None:
    ws = tmp_path / "my-workspace"
    st = stack.start("--workspace", str(ws))
    assert st["workspace"] == str(ws)
    f = tmp_path / "w.yaml"
    f.write_text(
        GOOD.replace(
            "  model: test\n",
            "  model: test\n  tools: [write_file]\n  test_script:\n"
            "    - {tool: write_file, args: {path: hello.txt, content: hi}}\n    - {answer: ok}\n",
        )
    )
    stack.cli("apply", "-f", str(f), check=True)
    stack.cli("run", "fine", "go", check=True)
    assert (ws / "hello.txt").read_text() == "hi"


def test_text_that_is_not_utf8_is_refused_and_nothing_is_stored(up: Stack, tmp_path: Path) -> None:
    import http.client

    f = tmp_path / "a.yaml"
    f.write_text(GOOD)
    up.cli("apply", "-f", str(f), check=True)
    # argv bytes 0xff 0xfe: Python sees lone surrogates
    for argv in (
        ("run", "fine", "\udcff\udcfe bad"),
        ("run", "fine", "hi", "-e", "K=\udcff"),
        ("run", "fi\udcffne", "hi"),
    ):
        r = up.cli(*argv)
        assert r.returncode != 0 and "not valid UTF-8" in r.stderr, (argv, r.stderr)
    # the API refuses it too, before storing anything
    token = (up.home / "credentials" / "api-token").read_text().strip()
    conn = http.client.HTTPConnection("127.0.0.1", up.ports["server"], timeout=10)
    conn.request(
        "POST",
        "/v1/executions",
        body=b'{"agent": "fine", "message": "\\udcff bad"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    assert resp.status == 422, resp.read()
    conn.close()
    listing = json.loads(up.cli("execution", "list", "--output", "json", check=True).stdout)
    assert listing["executions"] == []
