"""The contract's own promises: one table of exit codes, no import cycle, one registry each."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stigmer.errors import EXIT_CODES, StigmerError, error_classes

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", section, re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_every_exit_code_is_unique_and_documented() -> None:
    assert readme_exit_codes() == EXIT_CODES
    by_code: dict[int, list[type[StigmerError]]] = {}
    for cls in error_classes():
        assert cls.exit_code in EXIT_CODES, (
            f"{cls.__name__}: exit code {cls.exit_code} undocumented"
        )
        by_code.setdefault(cls.exit_code, []).append(cls)
    for code, classes in by_code.items():
        # one meaning per code: classes that share one refine the same error
        roots = [c for c in classes if not any(p in classes for p in c.__mro__[1:])]
        assert len(roots) == 1, f"exit code {code} means several things: {classes}"


def _module_graph() -> dict[str, set[str]]:
    mods: dict[str, tuple[Path, bool]] = {}
    for p in (SRC / "stigmer").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join([*pkg, *([node.module] if node.module else [])])
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
                ]
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def test_src_has_no_import_cycle() -> None:
    """Every import counts, also those inside functions: a lazy import is still a dependency."""
    graph = _module_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_contract_needs_only_the_standard_library_and_pydantic() -> None:
    """Imported by every process: nothing of Temporal, Docker or the store at module level."""
    code = (
        "import sys\n"
        "import stigmer.contract.config, stigmer.contract.events, stigmer.contract.registry\n"
        "import stigmer.contract.status, stigmer.contract.temporal, stigmer.contract.workflow\n"
        "heavy = [m for m in ('temporalio', 'docker', 'sqlalchemy', 'fastapi', 'httpx', "
        "'pydantic_ai') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_cli_hot_path_does_not_import_pydantic() -> None:
    code = (
        "import sys\n"
        "import stigmer.settings, stigmer.client, stigmer.contract.status, stigmer.stack.control\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tools_and_providers_have_one_registry() -> None:
    from stigmer.contract.registry import PROVIDERS, TOOL_NAMES
    from stigmer.runner.tools import ALL_TOOLS
    from stigmer.settings import KEYS_BY_NAME

    assert list(ALL_TOOLS) == list(TOOL_NAMES)
    for p in PROVIDERS.values():
        for key, env in ((p.key_setting, p.key_env), (p.base_url_setting, p.base_url_env)):
            if key:
                assert env in KEYS_BY_NAME[key].envs


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read the configuration"),
        ("{not json", "is not a valid stigmer configuration"),
        (
            '{"role": "agent-runner", "temporal": {"address": "x:1"}, "default_model": "test"}',
            "needs its `runner` and `api` sections",
        ),
    ],
)
def test_a_child_with_a_bad_configuration_says_so_and_exits(
    tmp_path: Path, content: str | None, needle: str
) -> None:
    cfg = tmp_path / "config.json"
    for module in ("stigmer.runner", "stigmer.server"):
        if content is not None:
            cfg.write_text(content)  # each child deletes it once read
        proc = subprocess.run(
            [sys.executable, "-m", module],
            env={"STIGMER_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, (module, proc.stdout, proc.stderr)
        assert needle in proc.stdout + proc.stderr, (module, proc.stdout + proc.stderr)


def test_config_list_shows_effective_values_and_working_env_names(tmp_path: Path) -> None:
    stigmer = str(Path(sys.executable).parent / "stigmer")
    env = {
        "STIGMER_HOME": str(tmp_path / "h"),
        "PATH": "/usr/bin:/bin",
        "ANTHROPIC_API_KEY": "sk-x",
    }
    out = subprocess.run(
        [stigmer, "config", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    rows = {r["key"]: r for r in json.loads(out.stdout)["settings"]}
    from stigmer.images.resolve import registry_tag

    assert rows["runner_tag"]["value"] == registry_tag()[0]
    assert rows["anthropic_api_key"]["value"] == "****"
    assert rows["anthropic_api_key"]["source"] == "env ANTHROPIC_API_KEY"
    assert rows["anthropic_api_key"]["envs"] == ["STIGMER_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"]
    assert rows["workspace"]["value"] == str(tmp_path / "h" / "data" / "workspace")


def test_runner_replica_names() -> None:
    from stigmer.contract.registry import runner_name, runner_replica

    assert [runner_name(i) for i in (1, 2, 10)] == [
        "agent-runner",
        "agent-runner-2",
        "agent-runner-10",
    ]
    assert [runner_replica(runner_name(i)) for i in (1, 2, 10)] == [1, 2, 10]
    for other in (
        "agent-runner-1",
        "agent-runner-02",
        "agent-runner-x",
        "temporal",
        "agent-runner-",
    ):
        assert runner_replica(other) is None, other
