"""The benchmark (`make bench`, bench/run.py) once, with tiny counts, so that it cannot rot.

Runs ``BENCH_SMOKE=1 python bench/run.py`` end to end: builds the runner image
under a tag of its own, a source-only rebuild, the floors, a docker-mode and a
local-mode stack, the CLI, a runner container, idle memory, a few `stigmer run`,
a tiny throughput batch. The numbers are not checked against the targets (a
smoke run on a busy machine proves nothing about them); that every figure was
measured, and the table, the JSON and the page were written, is.

Needs a Docker engine and the base image (fixtures in tests/fixtures_docker.py):
skipped with the reason without them, a failure under CI=true. Everything it
creates in Docker carries this test's labels, so the fixtures remove leftovers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: every figure a smoke run must produce, with a number
EXPECTED = (
    "image_size",
    "rebuild_source_only",
    "docker_run_true",
    "temporal_alone",
    "start_docker",
    "start_docker_stigmer-server",
    "cli_version",
    "cli_status",
    "python_pass",
    "docker_version",
    "runner_start",
    "runner_idle_memory",
    "run_e2e",
    "run_overhead_p50",
    "run_cpu_ms",
    "throughput_1",
    "throughput_2",
    "start_local",
    "peer_run_p50",
    "run_vs_peer",
    "cpu_per_run",
    "cpu_vs_peer",
    "installed_version",
    "installed_status",
    "installed_run",
    "start_docker_installed",
)


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_bench_smoke(
    docker_client: object,
    standin_base: str,
    docker_labels: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "STIGMER_"))}
    env |= {
        "BENCH_SMOKE": "1",
        "BENCH_RESULTS_DIR": str(tmp_path / "results"),
        "BENCH_DOCS": str(tmp_path / "performance.md"),
        "BENCH_LABELS": ",".join(f"{k}={v}" for k, v in docker_labels.items()),
        "PYTHON_IMAGE": standin_base,
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=860,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + "\n" + proc.stderr[-8000:]
    print(proc.stdout)

    [results] = list((tmp_path / "results").glob("*.json"))
    data = json.loads(results.read_text())
    assert data["smoke"] is True and not data["errors"], data["errors"]
    figures = {f["key"]: f for f in data["figures"]}
    expected = list(EXPECTED)
    from tests.fixtures_pg import pg_available

    if pg_available() is None:  # .ci/run starts PostgreSQL
        expected += ["run_overhead_p50_postgres", "run_cpu_ms_postgres"]
        assert figures["run_cpu_ms_postgres_postgres"]["median"] > 0
    else:
        assert "run-postgres" in data["skipped"]
    missing = [k for k in expected if k not in figures]
    assert not missing, f"figures not measured: {missing}"
    for key in expected:
        f = figures[key]
        assert f["n"] >= 1 and isinstance(f["median"], (int, float)), f
        if f["target"] is not None:
            assert f["pass"] in (True, False), f
    assert figures["run_e2e"]["extra"]["inprocess"]["tool_calls"] == 2
    assert figures["image_size"]["floor_median"] > 0

    # the console table and the page
    assert "runner image size" in proc.stdout and "target" in proc.stdout
    page = (tmp_path / "performance.md").read_text()
    assert "BEGIN GENERATED" in page and "| stigmer --version |" in page
    assert "### At scale" in page and "executions/s per core" in page

    # nothing of this run is left in Docker
    bench_id = data["bench_id"]
    left = docker_client.containers.list(  # type: ignore[attr-defined]
        all=True, filters={"label": f"io.stigmer.bench={bench_id}"}
    )
    assert not left, [c.name for c in left]
    images = docker_client.images.list(  # type: ignore[attr-defined]
        filters={"label": f"io.stigmer.bench={bench_id}"}
    )
    assert not images, [i.tags for i in images]
