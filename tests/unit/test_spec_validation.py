"""Agent YAML validation (issue 15): each error at the exact element, with a fix; limits before building."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from stigmer.contract.limits import (
    MAX_FILE_BYTES,
    MAX_SPEC_DEPTH,
    shape_problem,
    size_problem,
    spec_depth,
)
from stigmer.errors import SpecError
from stigmer.spec.loader import dump_agent, load_path, load_text

ROOT = Path(__file__).resolve().parents[2]

HEAD = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata:
  name: a
spec:
"""


def problems(text: str) -> list[str]:
    """The problem lines of the SpecError that loading ``text`` raises (its message if none)."""
    with pytest.raises(SpecError) as info:
        load_text(text, "f.yaml")
    err = info.value
    assert err.fix and "nothing was stored" in err.fix
    return (err.details or err.message).splitlines()


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_typo_in_step_1_points_at_step_1_with_the_tool_it_meant() -> None:
    text = HEAD + (
        "  instructions: hi\n"
        "  tools: [read_file, write_file]\n"
        "  test_script:\n"
        "    - tool: read_file\n"
        "      args: {path: a}\n"
        "    - tool: write_flie\n"
        "      args: {path: b, content: c}\n"
        "    - answer: ok\n"
    )
    (p,) = problems(text)
    line = line_of(text, "write_flie")
    assert p.startswith(f"f.yaml:{line}:13: spec.test_script.1.tool: unknown tool 'write_flie'")
    assert "did you mean `write_file`?" in p


def test_an_unknown_tool_in_the_list_points_at_that_item() -> None:
    (p,) = problems(HEAD + "  instructions: hi\n  tools: [read_file, shel]\n")
    assert p.startswith("f.yaml:7:22: spec.tools.1: unknown tool 'shel' (did you mean `shell`?)")


@pytest.mark.parametrize(
    ("extra", "where", "hint"),
    [
        ("  modle: test\n", "7:3: spec.modle", "did you mean `model`?"),
        (
            "  model_settings:\n    temprature: 0.2\n",
            "8:5: spec.model_settings.temprature",
            "did you mean `temperature`?",
        ),
        (
            "  tools: [read_file]\n  test_script:\n    - {tool: read_file, args: {}}\n"
            "    - {answr: done}\n",
            "10:8: spec.test_script.1.answr",
            "did you mean `answer`?",
        ),
        ("  colour: red\n", "7:3: spec.colour", "(the fields here: description, instructions"),
    ],
)
def test_an_unknown_field_points_at_its_key_and_says_what_was_meant(
    extra: str, where: str, hint: str
) -> None:
    (p,) = problems(HEAD + "  instructions: hi\n" + extra)
    assert p.startswith(f"f.yaml:{where}: unknown field"), p
    assert hint in p


def test_a_missing_field_points_at_the_mapping_that_lacks_it() -> None:
    (p,) = problems(HEAD + "  description: x\n  model: test\n")
    assert p == ("f.yaml:5:1: spec.instructions: field required: add `instructions:` to spec"), (
        "at `spec:`, not at the description line"
    )
    (p,) = problems(
        "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {}\nspec: {instructions: x}\n"
    )
    assert p.startswith("f.yaml:3:1: metadata.name: field required: add `name:` to metadata")
    (p,) = problems("apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: a}\n")
    assert p.startswith("f.yaml:1:1: spec: field required: add `spec:` to the document")


def test_a_wrong_api_version_or_kind_says_what_to_write() -> None:
    text = "apiVersion: stigmer.ai/v2\nkind: Agnet\nmetadata: {name: a}\nspec: {instructions: x}\n"
    assert problems(text) == [
        "f.yaml:1:13: apiVersion: `stigmer.ai/v2` is not one stigmer reads: write `stigmer.ai/v1`",
        "f.yaml:2:7: kind: `Agnet` is not one stigmer reads: write `Agent`",
    ]


def test_duplicate_keys_are_refused_naming_both_lines() -> None:
    (p,) = problems(HEAD + "  instructions: one\n  model: test\n  instructions: two\n")
    assert p == "f.yaml:8:3: spec.instructions: duplicate key (also on line 6): keep one of the two"
    (p,) = problems(
        HEAD + "  instructions: x\n  tools: [read_file]\n  test_script:\n"
        "    - tool: read_file\n      args: {path: a, path: b}\n"
    )
    assert p.startswith(
        "f.yaml:10:23: spec.test_script.0.args.path: duplicate key (also on line 10)"
    )


def test_a_tag_yaml_cannot_build_safely_is_a_problem_at_its_line() -> None:
    (p,) = problems(HEAD + "  instructions: !!python/object:os.system x\n")
    assert p.startswith("f.yaml:6:17: could not determine a constructor"), p
    (p,) = problems(HEAD + "  instructions: x\n  ? [a, b]\n  : c\n")
    assert p.startswith("f.yaml:7:5: spec: a key must be plain text"), p


def test_a_misspelled_required_field_is_one_problem_and_problems_come_in_line_order() -> None:
    text = HEAD.replace("spec:\n", "spec:\n  toolz: [shell]\n") + "  instructon: hi\n"
    got = problems(text)
    assert len(got) == 2, got  # not also "field required: add `instructions:`"
    assert [p.split(": ")[0] for p in got] == sorted(
        (p.split(": ")[0] for p in got), key=lambda at: int(at.split(":")[1])
    )
    assert any(
        "instructon: unknown field (did you mean `instructions`? it is required)" in p for p in got
    ), got


def test_a_tab_in_the_indentation_is_named_as_such() -> None:
    with pytest.raises(SpecError) as err:
        load_text("apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata:\n\tname: x\n", "f.yaml")
    assert err.value.message == "f.yaml:4:1: invalid YAML: a tab in the indentation"
    assert "spaces" in (err.value.fix or "")


def test_an_unclosed_quote_names_where_it_opened() -> None:
    text = HEAD + '  instructions: "never closed\n  model: test\n  tools: [shell]\n'
    with pytest.raises(SpecError) as err:
        load_text(text, "f.yaml")
    assert "found unexpected end of stream" in err.value.message
    opened = text.splitlines().index('  instructions: "never closed') + 1
    assert f"while scanning a quoted scalar at line {opened}, column 17" in err.value.message


def test_merge_keys_still_work() -> None:
    text = HEAD + (
        "  instructions: x\n  tools: [write_file]\n  test_script:\n"
        "    - tool: write_file\n      args: &base {path: a, content: b}\n"
        "    - tool: write_file\n      args: {<<: *base, path: c}\n"
    )
    (agent,) = load_text(text, "f.yaml")
    assert agent.doc.spec.test_script is not None
    assert agent.doc.spec.test_script[1].args == {"path": "c", "content": "b"}


def bomb(levels: int) -> str:
    """The "billion laughs" shape: each anchor is a list of nine aliases of the one before."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for n in "bcdefghijk"[: levels - 1]:
        lines.append(f"{n}: &{n} [{','.join(['*' + prev] * 9)}]")
        prev = n
    return "\n".join(lines) + "\n"


def test_an_anchors_bomb_is_refused_at_once_without_building_it() -> None:
    body = bomb(9)
    text = (
        "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata: {name: a}\nspec:\n"
        "  instructions: hi\n  env:\n" + "".join(f"    {line}\n" for line in body.splitlines())
    )
    assert len(text) < 700
    tracemalloc.start()
    t0 = time.monotonic()
    msg = problems(text)[0]
    elapsed = time.monotonic() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2, elapsed
    assert peak < 20 * 1024 * 1024, peak
    assert msg.startswith("f.yaml:") and "the aliases of this document expand to more than" in msg
    line = int(msg.split(":")[1])
    assert text.splitlines()[line - 1].lstrip().startswith(("e:", "f:")), msg


def test_a_recursive_alias_is_refused() -> None:
    (p,) = problems(HEAD + "  instructions: x\n  env: &e {A: *e}\n")
    assert p.startswith("f.yaml:7:15: spec.env.A: the alias *e is inside its own anchor")


def nested_args(levels: int) -> str:
    """A spec whose ``args`` is a mapping nested ``levels`` deep, as one flow line."""
    inner = "x"
    for _ in range(levels):
        inner = "{k: " + inner + "}"
    return HEAD + (
        f"  instructions: hi\n  tools: [read_file]\n  test_script:\n"
        f"    - tool: read_file\n      args: {inner}\n"
    )


def test_nesting_250_deep_is_refused_at_its_line() -> None:
    text = nested_args(250)
    msg = problems(text)[0]
    assert msg.startswith("f.yaml:10:"), msg
    assert "spec.test_script.0.args.k" in msg and f"more than {MAX_SPEC_DEPTH} levels" in msg


def test_the_depth_limit_is_the_servers() -> None:
    # args is at level 4 of the spec (spec, test_script, step, args)
    deepest_ok = MAX_SPEC_DEPTH - 3
    (agent,) = load_text(nested_args(deepest_ok), "f.yaml")
    spec = agent.doc.spec.model_dump(mode="json", exclude_none=True)
    assert spec_depth(spec) == MAX_SPEC_DEPTH and shape_problem(spec) is None
    problems(nested_args(deepest_ok + 1))
    deeper = yaml.safe_load(nested_args(deepest_ok + 1))["spec"]
    assert shape_problem(deeper) is not None


def test_a_5_mb_spec_is_refused_at_its_biggest_field() -> None:
    text = HEAD + "  model: test\n  instructions: " + "x" * (5 * 1024 * 1024) + "\n"
    t0 = time.monotonic()
    (p,) = problems(text)
    assert time.monotonic() - t0 < 5
    assert p.startswith("f.yaml:7:17: spec: the spec is "), p
    assert "the limit is 524288" in p and "(spec.instructions is" in p
    assert "keep big texts in workspace files" in p


def test_a_file_over_the_limit_is_not_even_read(tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    with f.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(SpecError) as info:
        load_path(f)
    assert info.value.message.startswith(f"{f}:1:1: the file is {MAX_FILE_BYTES + 1} bytes")


def test_the_server_refuses_what_the_cli_refuses() -> None:
    from pydantic import ValidationError

    from stigmer.server.schemas import AgentPut

    deep: Any = "x"
    for _ in range(250):
        deep = {"k": deep}
    with pytest.raises(ValidationError, match="nested more than 32 levels"):
        AgentPut.model_validate({"spec": {"instructions": "x", "env": deep}})
    with pytest.raises(ValidationError, match="holds more than"):
        AgentPut.model_validate({"spec": {"instructions": "x", "args": [1] * 200_000}})
    assert size_problem({"instructions": "x" * (5 * 1024 * 1024)})


# -- agent get -o yaml ---------------------------------------------------------

TRICKY = [
    "line one\nline two\n",
    "no final newline\nsecond",
    "ends with blank lines\n\n\n",
    "  indented first line\nsecond\n",
    "trailing spaces   \nhere  \n",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "1.0",
    "0x10",
    "1e3",
    "2024-01-01",
    "key: value",
    ": colon",
    "*star",
    "&amp",
    "- dash",
    "# hash",
    "!tag",
    "%percent",
    "@at",
    "`tick",
    '"quoted"',
    "'single'",
    "{flow}",
    "[list]",
    "",
    " ",
    "tab\there",
    "ünïcödé ✓",
    "ends with colon:",
    "a\r\nwindows\r\n",
    "ctrl \x07 bell",
    "x" * 300,
]


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_agent_yaml_round_trips_unchanged(text: str) -> None:
    spec = {
        "description": text,
        "instructions": text or "x",
        "model": "test",
        "tools": ["write_file"],
        "env": {"A": text, "B": {"secret": "TOKEN"}},
        "test_script": [
            {"tool": "write_file", "args": {"path": text, "content": text, "n": [1, 1.5, True]}},
            {"answer": text},
        ],
    }
    from stigmer.spec.models import AgentSpec

    stored = AgentSpec.model_validate(spec).model_dump(mode="json", exclude_none=True)
    out = dump_agent("a", stored)
    (agent,) = load_text(out, "f.yaml")
    assert agent.doc.spec.model_dump(mode="json", exclude_none=True) == stored
    assert not out.lstrip().startswith("{") and "\nspec:\n  description:" in out
    # PyYAML keeps a quoted style for what a block would change (trailing spaces, \r)
    if "\n" in text and "\r" not in text and " \n" not in text:
        assert "instructions: |" in out, out


def test_agent_yaml_is_block_style() -> None:
    spec = {"instructions": "one\ntwo\n", "tools": ["read_file"], "env": {"A": "b"}}
    out = dump_agent("a", spec)
    assert out == (
        "apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: a\nspec:\n"
        "  instructions: |\n    one\n    two\n  tools:\n  - read_file\n  env:\n    A: b\n"
    )


# -- the JSON Schema -----------------------------------------------------------


def test_the_checked_in_schema_is_the_commands_output() -> None:
    from typer.testing import CliRunner

    from stigmer.cli.app import app

    result = CliRunner().invoke(app, ["agent", "schema"])
    assert result.exit_code == 0, result.output
    assert (ROOT / "schema" / "agent.schema.json").read_text() == result.stdout, (
        "regenerate it: stigmer agent schema > schema/agent.schema.json"
    )


def _validator() -> Any:
    import jsonschema

    schema = json.loads((ROOT / "schema" / "agent.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def agent_files() -> list[Path]:
    return [
        *sorted((ROOT / "examples").glob("*.yaml")),
        ROOT / "src/stigmer/cli/samples/agent.yaml",
    ]


@pytest.mark.parametrize("path", agent_files(), ids=lambda p: p.name)
def test_the_schema_takes_every_example(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs
    for doc in docs:
        errors = list(_validator().iter_errors(doc))
        assert errors == [], [e.message for e in errors]
    assert "# yaml-language-server: $schema=" in path.read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("typo", "fixed"),
    [
        ("  tools:", "  toolz:"),
        ("    - tool: list_files", "    - tool: list_flies"),
        ("      args: {path: notes}", "      arsg: {path: notes}"),
        ("kind: Agent", "kind: Agnet"),
    ],
)
def test_the_schema_refuses_an_example_with_a_typo(typo: str, fixed: str) -> None:
    text = (ROOT / "examples" / "summarize-folder.yaml").read_text()
    assert typo in text
    doc = yaml.safe_load(text.replace(typo, fixed, 1))
    assert list(_validator().iter_errors(doc)) != []
