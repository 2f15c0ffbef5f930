"""`stigmer server reset` on a real stack: refused without --yes, then a home that starts afresh."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Stack

AGENT = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata:
  name: forgotten
spec:
  instructions: say hi
  model: test
  test_script:
    - answer: hi
"""


def test_reset_yes_leaves_a_home_that_starts_fresh(stack: Stack, tmp_path: Path) -> None:
    stack.start()
    (tmp_path / "a.yaml").write_text(AGENT)
    stack.cli("apply", "-f", str(tmp_path / "a.yaml"), check=True)
    ran = json.loads(stack.cli("run", "forgotten", "hello", "--output", "json", check=True).stdout)
    assert ran["phase"] == "COMPLETED"
    token = (stack.home / "credentials" / "api-token").read_text()
    key = (stack.home / "credentials" / "stack-key.json").read_text()
    (stack.home / "data" / "workspace" / "mine.txt").write_text("kept")

    # without --yes and without a terminal: refused, and the stack goes on
    refused = stack.cli("server", "reset")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--yes" in refused.stderr
    assert stack.status()["ready"]
    assert (stack.home / "data" / "stigmer.db").exists()

    done = stack.cli("server", "reset", "--yes", "--json", check=True)
    result = json.loads(done.stdout)
    assert result["stopped"], result
    assert stack.our_processes() == []
    assert stack.status()["running"] is False
    for gone in ("data/stigmer.db", "data/temporal.db", "logs", "run/stack.json"):
        assert not (stack.home / gone).exists(), gone
    assert (stack.home / "config.yaml").exists()
    assert (stack.home / "data" / "workspace" / "mine.txt").read_text() == "kept"

    # the next start begins afresh, with the same tokens and key
    assert stack.start()["ready"]
    agents = json.loads(stack.cli("agent", "list", "--output", "json", check=True).stdout)
    assert agents["agents"] == []
    runs = json.loads(stack.cli("execution", "list", "--output", "json", check=True).stdout)
    assert runs["executions"] == []
    assert (stack.home / "credentials" / "api-token").read_text() == token
    assert (stack.home / "credentials" / "stack-key.json").read_text() == key
    stack.cli("apply", "-f", str(tmp_path / "a.yaml"), check=True)
    again = json.loads(stack.cli("run", "forgotten", "again", "--output", "json").stdout)
    assert again["phase"] == "COMPLETED"
