"""Which sources a built runner image must share with the stack (its contract digest)."""

from __future__ import annotations

from pathlib import Path

from stigmer.images.buildinfo import contract_digest, contract_sources


def test_the_contract_is_what_crosses_processes_and_nothing_else() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in contract_sources()}
    assert {"contract/workflow.py", "contract/events.py", "spec/models.py"} <= names
    # the YAML loader, the JSON schema and the hints run in the CLI and the API
    # server only: a new error message there must not refuse built images
    assert not names & {"spec/loader.py", "spec/schema.py", "spec/hints.py"}
    assert all(isinstance(p, Path) and p.suffix == ".py" for p in contract_sources())
    assert contract_digest().startswith("sha256:") and contract_digest() == contract_digest()
