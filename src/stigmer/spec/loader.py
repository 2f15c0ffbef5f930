"""Load agent YAML files, keeping line and column for every error.

``load_path(path)`` reads a file or every ``*.yaml``/``*.yml`` in a folder;
several documents per file are allowed. Errors name ``file:line:column`` and
the field, so an editor can jump to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stigmer.errors import SpecError
from stigmer.spec.models import AgentDoc


@dataclass(frozen=True)
class LoadedAgent:
    doc: AgentDoc
    source: str  # "file:line"


def _mark_tree(node: yaml.Node) -> Any:
    """The node's value, with the start mark of every key and value kept beside it."""
    if isinstance(node, yaml.MappingNode):
        return {
            "__marks__": {k.value: (k.start_mark, v.start_mark) for k, v in node.value},
            **{k.value: _mark_tree(v) for k, v in node.value},
        }
    if isinstance(node, yaml.SequenceNode):
        return {"__items__": [_mark_tree(v) for v in node.value], "__mark__": node.start_mark}
    return node.start_mark


def _locate(marks: Any, loc: tuple[Any, ...], fallback: yaml.Mark, key: bool = False) -> yaml.Mark:
    """The mark of the value at ``loc`` (of its key, with ``key=True``), else the nearest parent."""
    cur = marks
    mark = fallback
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and "__marks__" in cur and part in cur["__marks__"]:
            key_mark, value_mark = cur["__marks__"][part]
            if key and i == len(loc) - 1:
                return key_mark  # type: ignore[no-any-return]
            mark = value_mark
            cur = cur[part]
        elif isinstance(cur, dict) and "__items__" in cur and isinstance(part, int):
            items = cur["__items__"]
            if part < len(items):
                cur = items[part]
                mark = cur if isinstance(cur, yaml.Mark) else cur.get("__mark__", mark)
            else:
                break
        else:
            break
        if isinstance(cur, yaml.Mark):
            mark = cur
    return mark


def load_text(text: str, filename: str) -> list[LoadedAgent]:
    """Parse and validate every document in ``text``.

    Raises:
        SpecError: a YAML syntax error, or a schema error; each names
            ``filename:line:column`` and the field.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise SpecError(
            f"{where}: invalid YAML: {exc.problem or exc.context}",
            "Fix the syntax at that position (indentation, a missing colon or quote).",
        ) from None
    out: list[LoadedAgent] = []
    problems: list[str] = []
    for node in nodes:
        if node is None:
            continue
        data = yaml.safe_load(yaml.serialize(node))
        marks = _mark_tree(node)
        start = node.start_mark
        if not isinstance(data, dict):
            problems.append(
                f"{filename}:{start.line + 1}:{start.column + 1}: a document must be a mapping"
            )
            continue
        try:
            doc = AgentDoc.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(
                    p for p in err["loc"] if p not in ("str", "SecretRef", "function-after")
                )
                loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("str[")))
                mark = _locate(marks, loc, start, key=err["type"] == "extra_forbidden")
                field = ".".join(str(p) for p in loc) or "(document)"
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown field"
                elif err["type"] == "missing":
                    msg = "field required"
                problems.append(f"{filename}:{mark.line + 1}:{mark.column + 1}: {field}: {msg}")
            continue
        out.append(LoadedAgent(doc, f"{filename}:{start.line + 1}"))
    if problems:
        raise SpecError(
            f"{filename}: {len(problems)} problem(s) in the agent definition.",
            "Fix them and apply again; nothing was stored.",
            details="\n".join(problems),
        )
    return out


def load_path(path: str | Path) -> list[LoadedAgent]:
    """Agents from a file or a folder (``*.yaml``, ``*.yml``, sorted); names must be unique.

    Raises:
        SpecError: the path is missing, holds no agent, a file is invalid, or a name repeats.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        if not files:
            raise SpecError(
                f"{p}: no *.yaml or *.yml files in this folder.", "Point -f at an agent file."
            )
    elif p.is_file():
        files = [p]
    else:
        raise SpecError(f"{p}: no such file or folder.", "Check the path given to -f.")
    agents: list[LoadedAgent] = []
    errors: list[SpecError] = []
    for f in files:
        try:
            agents += load_text(f.read_text(), str(f))
        except SpecError as exc:
            errors.append(exc)
        except UnicodeDecodeError:
            errors.append(SpecError(f"{f}: not a text file.", "Point -f at a YAML file."))
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise SpecError(
            f"{len(errors)} agent files have problems.",
            "Fix them and apply again; nothing was stored.",
            details="\n".join(f"{e.message}\n{e.details or ''}".strip() for e in errors),
        )
    if not agents:
        raise SpecError(
            f"{p}: no agent documents found.",
            "An agent file starts with `apiVersion: stigmer.ai/v1`.",
        )
    return _unique(agents)


def _unique(agents: list[LoadedAgent]) -> list[LoadedAgent]:
    """``agents``, if no name is defined twice; else a SpecError naming both places."""
    seen: dict[str, str] = {}
    for a in agents:
        if a.doc.name in seen:
            raise SpecError(
                f"agent {a.doc.name!r} is defined twice: {seen[a.doc.name]} and {a.source}.",
                "Give each agent a unique metadata.name.",
            )
        seen[a.doc.name] = a.source
    return agents


def load_paths(paths: list[str]) -> list[LoadedAgent]:
    """Agents from several files or folders (``apply -f A -f B``); names unique across all.

    Raises:
        SpecError: as :func:`load_path`, for any of them.
    """
    agents: list[LoadedAgent] = []
    for p in paths:
        agents += load_path(p)
    return _unique(agents)
