"""The limits on an agent spec, the same for the CLI (before it sends) and the API server.

A spec travels in every run's workflow input (``ExecutionInput``, with the
message of up to 256 KiB), and its instructions in every model request.
Temporal refuses payloads over 2 MB and warns from 512 KB, and the runner
decodes the input with parsers that stop at some nesting depth. Within these
limits every spec the API stores can run:

* :data:`MAX_SPEC_BYTES`: the spec as JSON (``json.dumps``), 512 KiB;
* :data:`MAX_SPEC_DEPTH`: nesting levels of the spec (``args`` of a test step
  is at level 4);
* :data:`MAX_SPEC_NODES`: values (scalars, lists, mappings) of the spec; in
  YAML, of one document once its aliases are expanded: the "billion laughs"
  shape, a few hundred bytes of anchors that expand to gigabytes, is refused
  before it is built;
* :data:`MAX_FILE_BYTES`: an agent file, read whole.

Standard library only: the CLI imports it on its hot path.
"""

from __future__ import annotations

import json
from typing import Any

MAX_SPEC_BYTES = 512 * 1024
MAX_SPEC_DEPTH = 32
MAX_SPEC_NODES = 100_000
MAX_FILE_BYTES = 8 * 1024 * 1024

#: What a spec over the size limit is told to do.
SIZE_FIX = "keep big texts in workspace files and have the agent read them"


def spec_depth(value: Any, level: int = 0) -> int:
    """The nesting depth of ``value`` (a scalar: 0), counted no further than past the limit."""
    if level > MAX_SPEC_DEPTH:
        return level
    if isinstance(value, dict):
        return max([spec_depth(v, level + 1) for v in value.values()] or [level + 1])
    if isinstance(value, list):
        return max([spec_depth(v, level + 1) for v in value] or [level + 1])
    return level


def spec_values(value: Any, limit: int = MAX_SPEC_NODES) -> int:
    """How many values ``value`` holds (itself included), counted no further than past ``limit``."""
    count = 0
    todo = [value]
    while todo and count <= limit:
        v = todo.pop()
        count += 1
        if isinstance(v, dict):
            todo += v.values()
        elif isinstance(v, list):
            todo += v
    return count


def spec_bytes(spec: Any) -> int:
    """The size of ``spec`` as JSON, as the limit counts it."""
    return len(json.dumps(spec, default=str))


def shape_problem(spec: Any) -> str | None:
    """Why ``spec`` is nested too deep or holds too many values, or None."""
    if spec_depth(spec) > MAX_SPEC_DEPTH:
        return (
            f"the spec is nested more than {MAX_SPEC_DEPTH} levels deep (the runner could not "
            "decode it): flatten it"
        )
    if spec_values(spec) > MAX_SPEC_NODES:
        return f"the spec holds more than {MAX_SPEC_NODES} values: {SIZE_FIX}"
    return None


def size_problem(spec: Any) -> str | None:
    """Why ``spec`` is too big to run, or None."""
    size = spec_bytes(spec)
    if size > MAX_SPEC_BYTES:
        return (
            f"the spec is {size} bytes as JSON; the limit is {MAX_SPEC_BYTES} (it travels in "
            f"every run's workflow input): {SIZE_FIX}"
        )
    return None
