"""Load agent YAML files, keeping line and column for every error.

``load_path(path)`` reads a file or every ``*.yaml``/``*.yml`` in a folder;
several documents per file are allowed. Errors name ``file:line:column`` and
the field, so an editor can jump to them: the exact element (a list item
too), the key of an unknown field (with the closest known one), the mapping
that lacks a required field. Duplicate keys are refused, and the limits of
:mod:`stigmer.contract.limits` are checked on the parser's events before a
document is built.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stigmer.contract.limits import (
    MAX_FILE_BYTES,
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    MAX_SPEC_NODES,
    SIZE_FIX,
    size_problem,
    spec_bytes,
)
from stigmer.errors import SpecError
from stigmer.spec.hints import did_you_mean
from stigmer.spec.models import AgentDoc
from stigmer.spec.schema import fields_at


@dataclass(frozen=True)
class LoadedAgent:
    doc: AgentDoc
    source: str  # "file:line"


#: libyaml's parser when PyYAML has it (a 5 MB file parses in milliseconds), else PyYAML's own
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"


def _tab_indented(text: str, line: int) -> bool:
    """Whether line ``line`` (0-based) of ``text`` is indented with a tab."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return False
    body = lines[line]
    indent = body[: len(body) - len(body.lstrip(" \t"))]
    return "\t" in indent


def _at(filename: str, mark: Any) -> str:
    return f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename


def _dotted(path: list[Any]) -> str:
    if len(path) > 8:
        path = [*path[:6], "[...]", path[-1]]
    return ".".join(str(p) for p in path) or "(document)"


class _Frame:
    """An open mapping or sequence in the event stream: its size so far and where it is."""

    __slots__ = ("anchor", "depth", "is_map", "key", "nodes", "pos", "value_next")

    def __init__(self, is_map: bool, anchor: str | None) -> None:
        self.is_map = is_map
        self.anchor = anchor
        self.nodes = 1  # itself
        self.depth = 1  # its own level and those below it
        self.pos = 0  # sequence: how many items were read
        self.key: Any = None  # mapping: the key being read, or whose value is next
        self.value_next = False

    def part(self) -> Any:
        """This frame's part of the path of what was read last."""
        return self.key if self.is_map else self.pos - 1

    def advance(self, scalar: str | None) -> None:
        if not self.is_map:
            self.pos += 1
        elif self.value_next:
            self.value_next = False
        else:
            self.key = scalar if scalar is not None else "?"
            self.value_next = True


def _check_limits(text: str, filename: str) -> None:
    """Refuse a document nested too deep, or whose aliases expand too far, before it is built.

    One pass over the parser's events, counting each document's values with
    every alias expanded (by the size recorded for its anchor), so a few
    hundred bytes of anchors that would expand to gigabytes are refused in
    milliseconds. Raises SpecError at the element that crosses the limit.
    """
    max_level = MAX_SPEC_DEPTH + 1  # the spec is one level below the document
    anchors: dict[str, tuple[int, int]] = {}
    stack: list[_Frame] = []
    nodes = 0
    aliases = False

    def path() -> list[Any]:
        return [f.part() for f in stack]

    def add(count: int, depth: int, event: Any, scalar: str | None = None) -> None:
        nonlocal nodes
        nodes += count
        if stack:
            top = stack[-1]
            top.nodes += count
            top.depth = max(top.depth, depth + 1)
            top.advance(scalar)
        where = _at(filename, event.start_mark)
        if nodes > MAX_SPEC_NODES:
            if aliases:
                raise SpecError(
                    f"{where}: {_dotted(path())}: the aliases of this document expand to more "
                    f"than {MAX_SPEC_NODES} values (the limit; anchors that repeat anchors grow "
                    "exponentially).",
                    "Write the values out, or alias fewer times; nothing was stored.",
                )
            raise SpecError(
                f"{where}: {_dotted(path())}: the document has more than {MAX_SPEC_NODES} values "
                "(the limit).",
                f"Make it smaller: {SIZE_FIX}; nothing was stored.",
            )
        if len(stack) + depth > max_level:
            raise SpecError(
                f"{where}: {_dotted(path())}: nested more than {MAX_SPEC_DEPTH} levels deep "
                "(the limit: the runner could not decode it).",
                "Flatten it (deep data can live in a workspace file the agent reads); "
                "nothing was stored.",
            )

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            anchors, stack, nodes, aliases = {}, [], 0, False
        elif isinstance(event, yaml.ScalarEvent):
            add(1, 0, event, event.value)
            if event.anchor:
                anchors[event.anchor] = (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                if any(f.anchor == event.anchor for f in stack):
                    raise SpecError(
                        f"{_at(filename, event.start_mark)}: {_dotted(path())}: the alias "
                        f"*{event.anchor} is inside its own anchor (a structure without end).",
                        "Alias something outside it; nothing was stored.",
                    )
                continue  # an undefined alias: composing the document names it
            aliases = True
            add(*anchors[event.anchor], event)
        elif isinstance(event, yaml.CollectionStartEvent):
            add(1, 1, event)
            if stack:  # add() counted the collection in its parent; its own frame takes over
                stack[-1].nodes -= 1
            stack.append(_Frame(isinstance(event, yaml.MappingStartEvent), event.anchor))
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = stack.pop()
            if frame.anchor:
                anchors[frame.anchor] = (frame.nodes, frame.depth)
            if stack:
                top = stack[-1]
                top.nodes += frame.nodes
                top.depth = max(top.depth, frame.depth + 1)


def _duplicates(node: yaml.Node, filename: str, path: list[Any], seen: set[int]) -> list[str]:
    """A problem for every key given twice in a mapping of ``node`` (both lines named)."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    out: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, yaml.Node] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                out.append(
                    f"{_at(filename, k.start_mark)}: {_dotted(path)}: a key must be plain text, "
                    "not a list or mapping: write it as a string"
                )
                continue
            if k.tag == _MERGE:
                out += _duplicates(v, filename, path, seen)
                continue
            if k.value in first:
                line = first[k.value].start_mark.line + 1
                out.append(
                    f"{_at(filename, k.start_mark)}: {_dotted([*path, k.value])}: duplicate key "
                    f"(also on line {line}): keep one of the two"
                )
            else:
                first[k.value] = k
            out += _duplicates(v, filename, [*path, k.value], seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out += _duplicates(v, filename, [*path, i], seen)
    return out


def _mark_tree(node: yaml.Node, memo: dict[int, Any]) -> Any:
    """The node's marks: its own, and each key's and value's (items' for a sequence)."""
    if id(node) in memo:
        return memo[id(node)]
    tree: Any
    if isinstance(node, yaml.MappingNode):
        tree = {"__mark__": node.start_mark, "__marks__": {}, "__children__": {}}
        memo[id(node)] = tree
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                tree["__marks__"][k.value] = (k.start_mark, v.start_mark)
                tree["__children__"][k.value] = _mark_tree(v, memo)
    elif isinstance(node, yaml.SequenceNode):
        tree = {"__mark__": node.start_mark, "__items__": []}
        memo[id(node)] = tree
        tree["__items__"] = [_mark_tree(v, memo) for v in node.value]
    else:
        tree = {"__mark__": node.start_mark}
    return tree


def _locate(marks: Any, loc: tuple[Any, ...], key: bool = False) -> tuple[yaml.Mark, int]:
    """The mark of the value at ``loc`` (of its key, with ``key=True``), and how much of loc it reached.

    ``loc`` not reached whole: the mark of the deepest element it reached.
    """
    cur = marks
    mark: yaml.Mark = marks["__mark__"]
    for i, part in enumerate(loc):
        name = str(part) if "__marks__" in cur and not isinstance(part, str) else part
        if "__marks__" in cur and name in cur["__marks__"]:
            key_mark, value_mark = cur["__marks__"][name]
            if key and i == len(loc) - 1:
                return key_mark, i + 1
            mark, cur = value_mark, cur["__children__"][name]
        elif "__items__" in cur and isinstance(part, int) and 0 <= part < len(cur["__items__"]):
            cur = cur["__items__"][part]
            mark = cur["__mark__"]
        else:
            return mark, i
    return mark, len(loc)


def _parent_key_mark(marks: Any, loc: tuple[Any, ...]) -> yaml.Mark:
    """Where the mapping at ``loc`` is named: its key (``spec:``), an item's dash, or the document."""
    if not loc:
        return marks["__mark__"]  # type: ignore[no-any-return]
    if isinstance(loc[-1], int):
        return _locate(marks, loc)[0]
    return _locate(marks, loc, key=True)[0]


def _largest(value: Any, path: tuple[Any, ...]) -> tuple[int, tuple[Any, ...]]:
    """The size (as JSON) and path of the biggest single value of ``value``."""
    best = (spec_bytes(value), path)
    children: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for k, v in children:
        size = spec_bytes(v)
        if size * 2 > best[0]:  # most of it is in there: look closer
            return _largest(v, (*path, k))
    return best


def _position(problem: str) -> tuple[int, int]:
    """(line, column) of a ``file:line:column: ...`` problem, for sorting (else last)."""
    m = re.search(r":(\d+):(\d+): ", problem)
    return (int(m.group(1)), int(m.group(2))) if m else (1 << 30, 0)


def _typos_explain_missing(errs: list[Any]) -> list[Any]:
    """Without a "field required" that an unknown field beside it misspells.

    ``instructon:`` is one mistake, not two: it stays as the unknown field
    (whose did-you-mean names ``instructions``), said to be the required one.
    """
    missing = {
        (tuple(e["loc"][:-1]), str(e["loc"][-1])): e
        for e in errs
        if e["type"] == "missing" and e["loc"]
    }
    out = []
    explained = set()
    for e in errs:
        if e["type"] == "extra_forbidden" and e["loc"]:
            parent = tuple(e["loc"][:-1])
            known = fields_at(parent)
            close = difflib.get_close_matches(str(e["loc"][-1]), list(known), n=1, cutoff=0.6)
            if close and (parent, close[0]) in missing:
                explained.add((parent, close[0]))
                e = {**e, "required": close[0]}
        out.append(e)
    return [
        e
        for e in out
        if not (e["type"] == "missing" and (tuple(e["loc"][:-1]), str(e["loc"][-1])) in explained)
    ]


def _problem(err: Any, marks: Any, filename: str) -> str:
    """One pydantic error as ``file:line:column: field: message``, at the element it is about."""
    loc = tuple(p for p in err["loc"] if p not in ("str", "SecretRef", "function-after"))
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("str[", "function-"))))
    field = _dotted(list(loc))
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        where = _parent_key_mark(marks, loc[:-1])
        parent = _dotted(list(loc[:-1])) if loc[:-1] else "the document"
        return f"{_at(filename, where)}: {field}: field required: add `{loc[-1]}:` to {parent}"
    if kind == "extra_forbidden":
        mark, _ = _locate(marks, loc, key=True)
        known = fields_at(loc[:-1])
        hint = did_you_mean(str(loc[-1]), known) if known else ""
        if known and not hint:
            hint = f" (the fields here: {', '.join(known)})"
        if err.get("required"):  # it stands for a required field, missing otherwise
            hint = f" (did you mean `{err['required']}`? it is required)"
        return f"{_at(filename, mark)}: {field}: unknown field{hint}"
    mark, _ = _locate(marks, loc)
    if kind == "literal_error" and loc in (("apiVersion",), ("kind",)):
        wanted = err.get("ctx", {}).get("expected", "").replace("'", "`")
        got = err.get("input")
        shown = "that" if got is None else f"`{got}`"
        return f"{_at(filename, mark)}: {field}: {shown} is not one stigmer reads: write {wanted}"
    return f"{_at(filename, mark)}: {field}: {msg}"


def _too_big(filename: str, size: int) -> SpecError:
    return SpecError(
        f"{filename}:1:1: the file is {size} bytes; an agent file may have at most "
        f"{MAX_FILE_BYTES} (and each spec {MAX_SPEC_BYTES} as JSON).",
        f"Make it smaller: {SIZE_FIX}; nothing was stored.",
    )


def load_text(text: str, filename: str) -> list[LoadedAgent]:
    """Parse and validate every document in ``text``.

    Limits (:mod:`stigmer.contract.limits`) are checked first, on the parser's
    events, before any document is built: the text's size, each document's
    nesting depth and its values with aliases expanded; then each spec's size
    as JSON.

    Raises:
        SpecError: a YAML syntax error, a duplicate key, a limit, or a schema
            error; each names ``filename:line:column`` and the field.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise _too_big(filename, size)
    try:
        _check_limits(text, filename)
        nodes = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and _tab_indented(text, mark.line):
            raise SpecError(
                f"{_at(filename, mark)}: invalid YAML: a tab in the indentation",
                "YAML indents with spaces only: replace the tabs at the start of that line "
                "(and the lines around it) with spaces; nothing was stored.",
            ) from None
        # where what went wrong began (a quote opened lines before the end it ran into)
        began = ""
        ctx = exc.context_mark
        if (
            exc.problem
            and exc.context
            and ctx is not None
            and mark is not None
            and (ctx.line, ctx.column) != (mark.line, mark.column)
        ):
            began = f", {exc.context} at line {ctx.line + 1}, column {ctx.column + 1}"
        raise SpecError(
            f"{_at(filename, mark)}: invalid YAML: {exc.problem or exc.context}{began}",
            "Fix the syntax at that position (indentation, a missing colon or quote); "
            "nothing was stored.",
        ) from None
    except yaml.YAMLError as exc:  # libyaml's reader: a character YAML does not allow
        raise SpecError(
            f"{filename}: invalid YAML: {exc}", "Fix the file's text; nothing was stored."
        ) from None
    out: list[LoadedAgent] = []
    problems: list[str] = []
    for node in nodes:
        if node is None:
            continue
        start = node.start_mark
        dupes = _duplicates(node, filename, [], set())
        if dupes:
            problems += dupes
            continue
        try:
            data = yaml.constructor.SafeConstructor().construct_document(node)
        except yaml.MarkedYAMLError as exc:  # a tag such as !!python/object, a bad !!int
            mark = exc.problem_mark or exc.context_mark
            problems.append(f"{_at(filename, mark)}: {exc.problem or exc.context}")
            continue
        marks = _mark_tree(node, {})
        if not isinstance(data, dict):
            problems.append(f"{_at(filename, start)}: a document must be a mapping")
            continue
        try:
            doc = AgentDoc.model_validate(data)
        except ValidationError as exc:
            errs = _typos_explain_missing(list(exc.errors()))
            problems += sorted((_problem(err, marks, filename) for err in errs), key=_position)
            spec = data.get("spec")
        else:
            spec = doc.spec.model_dump(mode="json", exclude_none=True)
        too_big = size_problem(spec) if isinstance(spec, dict) else None
        if too_big:
            raw = data["spec"]
            largest, where = _largest(raw, ("spec",))
            mark, _ = _locate(marks, where)
            part = f" ({_dotted(list(where))} is {largest} bytes)" if len(where) > 1 else ""
            problems.append(f"{_at(filename, mark)}: spec: {too_big}{part}")
        if not problems:
            out.append(LoadedAgent(doc, f"{filename}:{start.line + 1}"))
    if problems:
        raise SpecError(
            f"{filename}: {len(problems)} problem(s) in the agent definition.",
            "Fix them and apply again (each line names the place and the fix); nothing was stored.",
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
            if f.stat().st_size > MAX_FILE_BYTES:  # not even read
                raise _too_big(str(f), f.stat().st_size)
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


class _BlockDumper(yaml.SafeDumper):
    """Block style throughout; a text of several lines as a literal block (``|``)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML itself falls back to a quoted style where a block cannot hold the text
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def dump_agent(name: str, spec: dict[str, Any]) -> str:
    """The agent as a YAML document that :func:`load_text` reads back to the same spec."""
    doc = {"apiVersion": "stigmer.ai/v1", "kind": "Agent", "metadata": {"name": name}, "spec": spec}
    return yaml.dump(
        doc,
        Dumper=_BlockDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=2**30,  # a long line stays one line
    )
