"""Authoring agents against a real stack (issue 15): bad input from the CLI and straight to the API,
``apply --dry-run``, ``agent get -o yaml`` round trip, ``init DIR`` then apply and run.

One local-mode stack for the module; each test leaves no agent behind.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STIGMER, Stack, new_stack, tear_down

GOOD = """\
apiVersion: stigmer.ai/v1
kind: Agent
metadata:
  name: first-ok
spec:
  instructions: be fine
  model: test
---
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = new_stack(tmp_path_factory.mktemp("authoring") / "home", "local")
    st.start()
    yield st
    tear_down(st)


@pytest.fixture
def clean(up: Stack) -> Iterator[Stack]:
    yield up
    for a in agents(up):
        up.cli("agent", "delete", a["name"], check=True)


def agents(st: Stack) -> list[dict[str, Any]]:
    return json.loads(st.cli("agent", "list", "--output", "json", check=True).stdout)["agents"]  # type: ignore[no-any-return]


def api(st: Stack, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    token = (st.home / "credentials" / "api-token").read_text().strip()
    conn = http.client.HTTPConnection("127.0.0.1", st.ports["server"], timeout=60)
    try:
        conn.request(
            method,
            path,
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data


# -- the bad inputs, as YAML and as the JSON an API client would send ----------------


def _head(name: str) -> str:
    return f"apiVersion: stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: {name}\nspec:\n"


TYPO = _head("typo") + (
    "  instructions: hi\n  model: test\n  tools: [read_file, write_file]\n  test_script:\n"
    "    - tool: read_file\n      args: {path: a}\n"
    "    - tool: write_flie\n      args: {path: b, content: c}\n"
)
MISSING = _head("missing") + "  description: no instructions\n  model: test\n"
DUPLICATE = _head("dup") + "  instructions: one\n  model: test\n  instructions: two\n"


def _bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, n in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{n}: &{n} [{','.join(['*' + prev] * 9)}]")
    return _head("bomb") + "  instructions: hi\n  env:\n" + "".join(f"    {ln}\n" for ln in lines)


BOMB = _bomb()
DEEP = _head("deep") + (
    "  instructions: hi\n  tools: [read_file]\n  test_script:\n    - tool: read_file\n"
    "      args: " + "{k: " * 250 + "x" + "}" * 250 + "\n"
)
BIG = _head("big") + "  model: test\n  instructions: " + "x" * (5 * 1024 * 1024) + "\n"

# (document, the line:column the error names (in the document), what it says, what the fix says)
BAD = {
    "typo-in-step-1": (TYPO, "12:13", "did you mean `write_file`?", "Fix them"),
    "missing-field": (MISSING, "5:1", "spec.instructions: field required", "add `instructions:`"),
    "duplicate-key": (DUPLICATE, "8:3", "duplicate key (also on line 14)", "keep one of the two"),
    "anchors-bomb": (BOMB, "", "aliases of this document expand to more than", "alias fewer"),
    "nested-250": (DEEP, "10:", "nested more than 32 levels deep", "Flatten it"),
    "5-mb-spec": (BIG, "7:17", "the limit is 524288", "keep big texts in workspace files"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("dry_run", [False, True], ids=["apply", "dry-run"])
def test_bad_input_names_its_line_and_fix_and_nothing_is_stored(
    clean: Stack, tmp_path: Path, case: str, dry_run: bool
) -> None:
    text, where, what, fix = BAD[case]
    f = tmp_path / "agent.yaml"
    f.write_text(GOOD + text)  # a valid agent first: nothing of the file may be stored
    t0 = time.monotonic()
    proc = clean.cli("apply", "-f", str(f), *(["--dry-run"] if dry_run else []))
    elapsed = time.monotonic() - t0
    assert proc.returncode not in (0, None), proc.stdout
    err = proc.stderr.replace("\n", " ")
    shift = GOOD.count("\n")  # the document's lines, in the file
    if where:
        line, col = where.split(":")
        assert f"{f}:{int(line) + shift}:{col}" in err, proc.stderr
    else:
        assert f"{f}:" in err
    assert what in err and "Fix:" in proc.stderr and fix in err, proc.stderr
    assert agents(clean) == []
    if case == "anchors-bomb" and elapsed >= 2:
        # the CLI's own start-up can take that long on a machine this loaded: then the
        # bomb may cost no more than a file that is bad in a trivial way
        f.write_text(GOOD + MISSING)
        t0 = time.monotonic()
        assert clean.cli("apply", "-f", str(f)).returncode != 0
        baseline = time.monotonic() - t0
        assert elapsed - baseline < 0.5, f"the bomb took {elapsed:.2f}s, a bad file {baseline:.2f}s"


def _spec(text: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(text)["spec"]  # type: ignore[no-any-return]


def _deep(levels: int) -> Any:
    inner: Any = "x"
    for _ in range(levels):
        inner = {"k": inner}
    return inner


def _api_bodies() -> dict[str, tuple[bytes, int, str]]:
    """The same inputs as the API gets them: (body, status, what the answer says)."""
    typo = json.dumps({"spec": _spec(TYPO)}).encode()
    missing = json.dumps({"spec": _spec(MISSING)}).encode()
    duplicate = b'{"spec": {"instructions": "one", "model": "test", "instructions": "two"}}'
    # the bomb expanded (JSON has no aliases): 6 levels are 531441 values, 3.7 MB
    lol: Any = ["lol"] * 9
    for _ in range(5):
        lol = [lol] * 9
    bomb6 = json.dumps({"spec": {"instructions": "hi", "test_script": [{"answer": "x", "a": lol}]}})
    many = json.dumps({"spec": {"instructions": "hi", "env": {"A": "b"}, "x": [1] * 150_000}})
    deep = {"instructions": "hi", "tools": ["read_file"]}
    deep["test_script"] = [{"tool": "read_file", "args": _deep(250)}]
    return {
        "typo-in-step-1": (typo, 422, "unknown tool 'write_flie' (did you mean `write_file`?)"),
        "missing-field": (missing, 422, "Field required"),
        "duplicate-key": (duplicate, 422, "duplicate key 'instructions'"),
        # 531441 values in 3.7 MB: within the body limit, over the values limit
        "anchors-bomb-expanded": (bomb6.encode(), 422, "holds more than 100000 values"),
        "many-values": (many.encode(), 422, "holds more than 100000 values"),
        "nested-250": (json.dumps({"spec": deep}).encode(), 422, "nested more than 32 levels"),
        "nested-100000": (b'{"spec": ' + b'{"k": ' * 100_000 + b"1" + b"}" * 100_001, 400, ""),
        "1-mb-spec": (
            json.dumps({"spec": {"instructions": "x" * (1024 * 1024)}}).encode(),
            413,
            "the limit is 524288",
        ),
        "5-mb-spec": (json.dumps({"spec": _spec(BIG)}).encode(), 413, "larger than"),
    }


API_BODIES = _api_bodies()


@pytest.mark.parametrize("case", list(API_BODIES))
@pytest.mark.parametrize("dry_run", ["", "?dry_run=true"], ids=["put", "dry-run"])
def test_the_same_bad_input_straight_to_the_api_is_a_4xx(
    clean: Stack, case: str, dry_run: str
) -> None:
    body, status, what = API_BODIES[case]
    got, answer = api(clean, "PUT", f"/v1/agents/{case}{dry_run}", body)
    assert got == status, (got, str(answer)[:500])
    assert what in json.dumps(answer), answer
    assert api(clean, "GET", "/v1/agents") == (200, {"agents": []})


def test_a_stored_agent_that_breaks_the_limits_does_not_break_the_api(clean: Stack) -> None:
    """Written past the API (an older version, by hand): the listing, runs and delete still work."""
    from stigmer.server import db
    from stigmer.server.store import Store

    f = clean.home / "fine.yaml"
    f.write_text(GOOD.removesuffix("---\n"))
    clean.cli("apply", "-f", str(f), check=True)
    store = Store(db.make_engine(f"sqlite:///{clean.home / 'data' / 'stigmer.db'}"))
    spec = {"instructions": "hi", "tools": ["read_file"], "model": "test"}
    spec["test_script"] = [{"tool": "read_file", "args": _deep(250)}]
    store.put_agent("too-deep", spec)
    store.engine.dispose()
    status, listing = api(clean, "GET", "/v1/agents")
    assert status == 200, listing
    assert [a["name"] for a in listing["agents"]] == ["first-ok"]
    assert api(clean, "GET", "/v1/agents/too-deep")[0] == 409
    run = clean.cli("run", "too-deep", "hi")
    assert run.returncode != 0 and "cannot run" in run.stderr, run.stderr
    assert "too-deep" in clean.log("stigmer-server") + clean.log("stigmer-server", "err")
    assert api(clean, "DELETE", "/v1/agents/too-deep")[0] == 200


# -- apply --dry-run -------------------------------------------------------------------


def test_dry_run_says_created_updated_unchanged_and_stores_nothing(
    clean: Stack, tmp_path: Path
) -> None:
    f = tmp_path / "a.yaml"
    two = GOOD + GOOD.replace("first-ok", "second").removesuffix("---\n")
    f.write_text(two)
    out = clean.cli("apply", "-f", str(f), "--dry-run", check=True).stdout
    assert "agent/first-ok would be created" in out and "agent/second would be created" in out
    assert "nothing was stored" in out
    assert agents(clean) == []
    clean.cli("apply", "-f", str(f), check=True)
    f.write_text(two.replace("be fine", "be better", 1))
    got = json.loads(clean.cli("apply", "-f", str(f), "--dry-run", "--json", check=True).stdout)
    assert got == {
        "agents": [
            {"name": "first-ok", "status": "updated", "source": f"{f}:1"},
            {"name": "second", "status": "unchanged", "source": f"{f}:9"},
        ],
        "dry_run": True,
    }
    stored = {a["name"]: a for a in agents(clean)}
    assert stored["first-ok"]["spec"]["instructions"] == "be fine"
    assert stored["first-ok"]["generation"] == 1
    text = clean.cli("apply", "-f", str(f), "--dry-run", check=True).stdout
    assert "agent/first-ok would be updated" in text and "agent/second unchanged" in text


# -- agent get -o yaml -------------------------------------------------------------------


def test_agent_get_yaml_applies_back_unchanged(clean: Stack, tmp_path: Path) -> None:
    spec = {
        "description": "yes",
        "instructions": "Line one: with a colon\n  indented line\n*starred\n\nlast\n",
        "model": "test",
        "tools": ["write_file"],
        "env": {"VERSION": "1.0", "FLAG": "no", "EMPTY": "", "T": {"secret": "SOME_TOKEN"}},
        "test_script": [
            {"tool": "write_file", "args": {"path": "a: b.txt", "content": "*x\n- y\n"}},
            {"answer": "# done"},
        ],
    }
    f = tmp_path / "tricky.yaml"
    f.write_text(
        json.dumps(
            {
                "apiVersion": "stigmer.ai/v1",
                "kind": "Agent",
                "metadata": {"name": "tricky"},
                "spec": spec,
            }
        )
    )
    assert "agent/tricky created" in clean.cli("apply", "-f", str(f), check=True).stdout
    out = clean.cli("agent", "get", "tricky", "-o", "yaml", check=True).stdout
    assert "  instructions: |" in out and "{" not in out.split("instructions:")[0]
    assert clean.cli("agent", "get", "tricky", check=True).stdout == out  # text is YAML too
    back = tmp_path / "back.yaml"
    back.write_text(out)
    assert "agent/tricky unchanged" in clean.cli("apply", "-f", str(back), check=True).stdout
    (stored,) = agents(clean)
    assert stored["generation"] == 1
    assert stored["spec"]["instructions"] == spec["instructions"]
    assert stored["spec"]["env"] == spec["env"]


# -- init DIR, then apply and run ---------------------------------------------------------


def test_init_dir_then_apply_and_run_completes(clean: Stack, tmp_path: Path) -> None:
    proj = tmp_path / "my-project"
    out = clean.cli("init", str(proj), check=True).stdout
    assert f"wrote {proj / 'agent.yaml'}" in out and "stigmer apply -f" in out
    assert (proj / "agent.schema.json").read_text() == clean.cli(
        "agent", "schema", check=True
    ).stdout
    afile = tmp_path / "a-file"
    afile.write_text("x")
    bad = clean.cli("init", str(afile))
    assert bad.returncode == 2 and "is a file, not a folder" in bad.stderr, bad.stderr
    again = json.loads(clean.cli("init", str(proj), "--json", check=True).stdout)
    assert again["written"] == [] and again["agent"]["written"] == []  # kept, not overwritten
    assert "agent/my-agent created" in clean.cli("apply", "-f", str(proj), check=True).stdout
    run = json.loads(
        clean.cli(
            "run", "my-agent", "Summarize the notes folder", "--output", "json", check=True
        ).stdout
    )
    assert run["phase"] == "COMPLETED", run
    assert agents(clean)[0]["model"] == "test"
    summary = (clean.home / "data" / "workspace" / "reports" / "summary.md").read_text()
    assert summary.startswith("# Summary of notes/") and "durability" in summary


def test_a_spec_at_the_limits_runs(clean: Stack, tmp_path: Path) -> None:
    """The limits keep a spec runnable: one just under each, with the longest message, completes."""
    from stigmer.contract.limits import MAX_SPEC_BYTES, MAX_SPEC_DEPTH

    spec: dict[str, Any] = {
        "instructions": "",
        "model": "test",
        "tools": ["write_file"],
        # args at level 4 of the spec: the deepest value the limit lets through (the
        # runner decodes it and the tool refuses the argument it does not know)
        "test_script": [
            {"tool": "write_file", "args": {"x": _deep(28)}, "on_error": "continue"},
            {"tool": "write_file", "args": {"path": "deep.txt", "content": "ok"}},
            {"answer": "done"},
        ],
    }
    # less what the stored form adds (the defaults: description, env, local_shell, ...)
    spec["instructions"] = "x" * (MAX_SPEC_BYTES - len(json.dumps(spec)) - 200)
    doc = {"apiVersion": "stigmer.ai/v1", "kind": "Agent", "metadata": {"name": "at-limits"}}
    f = tmp_path / "limits.yaml"
    f.write_text(json.dumps({**doc, "spec": spec}))
    clean.cli("apply", "-f", str(f), check=True)
    (stored,) = agents(clean)
    from stigmer.contract.limits import spec_bytes, spec_depth

    assert MAX_SPEC_BYTES - 1024 < spec_bytes(stored["spec"]) <= MAX_SPEC_BYTES
    assert spec_depth(stored["spec"]) == MAX_SPEC_DEPTH
    proc = subprocess.run(  # the longest message a run takes, on stdin
        [STIGMER, "run", "at-limits", "-", "--output", "json"],
        input="m" * (256 * 1024),
        env=clean.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert json.loads(proc.stdout)["phase"] == "COMPLETED"
    assert (clean.home / "data" / "workspace" / "deep.txt").read_text() == "ok"


def test_dry_run_with_the_stack_stopped_checks_the_files_here(tmp_path: Path) -> None:
    idle = new_stack(tmp_path / "home")  # never started
    f = tmp_path / "a.yaml"
    f.write_text(GOOD.removesuffix("---\n"))
    proc = idle.cli("apply", "-f", str(f), "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "agent/first-ok valid" in proc.stdout and "stack is not running" in proc.stdout
    got = json.loads(idle.cli("apply", "-f", str(f), "--dry-run", "--json", check=True).stdout)
    assert got["server_checked"] is False and got["agents"][0]["status"] == "valid"
    f.write_text(GOOD.removesuffix("---\n").replace("instructions:", "instructons:", 1))
    bad = idle.cli("apply", "-f", str(f), "--dry-run")
    assert bad.returncode == 2 and "instructions" in bad.stderr, bad.stderr
    f.write_text(
        GOOD.removesuffix("---\n")
    )  # without --dry-run, a stopped stack is an error that says so
    stopped = idle.cli("apply", "-f", str(f))
    # the fix names this home (pasted as printed, it starts this stack)
    assert stopped.returncode == 5, stopped.stderr
    assert f"`stigmer --home {idle.home} server start`" in stopped.stderr, stopped.stderr
