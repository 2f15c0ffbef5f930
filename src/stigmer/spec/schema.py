"""The agent YAML's JSON Schema (``stigmer agent schema``), and hints drawn from it.

The schema is generated from the pydantic models, so a field added there is
in it, in the editors' completion and in the "did you mean" hints at once.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from stigmer.spec.models import AgentDoc

#: Where the checked-in copy of the schema is published (``schema/agent.schema.json``).
SCHEMA_URL = "https://raw.githubusercontent.com/stigmer/stigmer/main/schema/agent.schema.json"


@functools.cache
def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one agent YAML document."""
    schema = AgentDoc.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_URL,
        **schema,
        "title": "stigmer agent (apiVersion: stigmer.ai/v1, kind: Agent)",
    }


def schema_text() -> str:
    """The schema as the command prints it and the repository keeps it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _resolve(node: dict[str, Any], want: str) -> dict[str, Any]:
    """``node`` with ``$ref`` followed and, in an ``anyOf``, the variant that has ``want``."""
    defs = json_schema().get("$defs", {})
    for _ in range(16):
        if "$ref" in node:
            node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        elif "anyOf" in node:
            variants = [_resolve(v, want) for v in node["anyOf"]]
            node = next((v for v in variants if want in v), variants[0] if variants else {})
        else:
            break
    return node


def fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names the schema allows in the mapping at ``loc`` (``("spec",)``), or []."""
    node: dict[str, Any] = json_schema()
    for part in loc:
        if isinstance(part, int):
            node = _resolve(node, "items").get("items", {})
        else:
            node = _resolve(node, "properties")
            props = node.get("properties", {})
            extra = node.get("additionalProperties")
            node = props.get(part) or (extra if isinstance(extra, dict) else {})
    return list(_resolve(node, "properties").get("properties", {}))
