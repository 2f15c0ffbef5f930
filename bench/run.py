"""The stigmer benchmark: ``make bench`` (or ``uv run python bench/run.py``).

Measures, side by side in the same run, each figure of issues 6 and 17 and the
floor or peer it is compared with (see docs/performance.md): the in-process
agent, bare pydantic-ai on Temporal (bench/temporal_peer.py), the CLI as
`uv tool install` puts it, prints one table, and writes
``bench/results/<date>.json`` and ``docs/performance.md`` (its generated part).

Knobs (environment variables; defaults in brackets, smoke defaults after "/"):

  BENCH_SMOKE=1           tiny counts, every code path once (tests/bench runs this)
  BENCH_REPS              docker run/temporal floors, runner start->polling [10 / 1]
  BENCH_START_REPS        `server start` cycles per mode, after one warm-up [5 / 1]
  BENCH_CLI_REPS          CLI invocations per command [20 / 2]
  BENCH_REBUILD_REPS      source-only rebuilds [5 / 1]
  BENCH_NOCACHE_REPS      full --no-cache builds (0: skip) [2 / 0]
  BENCH_IDLE_S            idle seconds before reading runner memory [30 / 2]
  BENCH_MEM_REPS          runner and bare-worker containers measured [3 / 1]
  BENCH_RUNS              `stigmer run` end-to-end runs [50 / 3]
  BENCH_QUEUED            executions queued per throughput batch [50 / 4]
  BENCH_SCALE_RUNNERS     runner containers in the scale-out case [3 / 2]
  BENCH_TPUT_REPS         throughput batches per case [3 / 1]
  BENCH_BYTECODE          private: Python writes bytecode to a private cache, as on a
                          user's machine (default); env: leave PYTHONDONTWRITEBYTECODE &
                          co as they are in the environment
  BENCH_ONLY              comma list of sections: image,rebuild,floors,start-docker,
                          cli,runner-start,memory,run,throughput,run-postgres,start-local,
                          installed-cli
  BENCH_IMAGE             use this runner image instead of building one (no size/rebuild)
  BENCH_MAX_LOAD          wait (up to BENCH_LOAD_WAIT_S [300]) for the 1-min load to drop below
  BENCH_RESULTS_DIR       where the JSON goes [bench/results]
  BENCH_DOCS              the page to update [docs/performance.md]; empty: none
  BENCH_LABELS            extra docker labels k=v,k=v on everything created
  BENCH_STRICT=1          exit 2 when a target is missed

Exit status: 0 done (targets met or not), 1 a measurement failed, 2 strict and a miss.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import report

SMOKE = os.environ.get("BENCH_SMOKE", "").strip().lower() in ("1", "true", "yes")


def knob(name: str, default: float, smoke: float) -> Any:
    raw = os.environ.get(name, "").strip()
    value = float(raw) if raw else (smoke if SMOKE else default)
    return int(value) if float(value).is_integer() else value


REPS = knob("BENCH_REPS", 10, 1)
START_REPS = knob("BENCH_START_REPS", 5, 1)
CLI_REPS = knob("BENCH_CLI_REPS", 20, 2)
REBUILD_REPS = knob("BENCH_REBUILD_REPS", 5, 1)
NOCACHE_REPS = knob("BENCH_NOCACHE_REPS", 2, 0)
IDLE_S = knob("BENCH_IDLE_S", 30, 2)
MEM_REPS = knob("BENCH_MEM_REPS", 3, 1)
RUNS = knob("BENCH_RUNS", 50, 3)
QUEUED = knob("BENCH_QUEUED", 50, 4)
SCALE = knob("BENCH_SCALE_RUNNERS", 3, 2)
TPUT_REPS = knob("BENCH_TPUT_REPS", 3, 1)
BYTECODE = os.environ.get("BENCH_BYTECODE", "private").strip() or "private"
SECTIONS = (
    "image",
    "rebuild",
    "floors",
    "start-docker",
    "cli",
    "runner-start",
    "memory",
    "run",
    "throughput",
    "run-postgres",
    "start-local",
    "installed-cli",
)
ONLY = {s.strip() for s in os.environ.get("BENCH_ONLY", "").split(",") if s.strip()} or set(
    SECTIONS
)
BASE_IMAGE = os.environ.get("PYTHON_IMAGE", "python:3.11-slim")
UV = os.environ.get("UV", "uv")

AGENT = "bench-two-tools"
SCRIPT = [
    {"tool": "list_files", "args": {"path": "bench"}},
    {"tool": "read_file", "args": {"path": "bench/input.txt"}},
    {"answer": "Read: {{ last }}"},
]
INSTRUCTIONS = "Benchmark agent: list the bench folder, read its input file, answer."


@dataclass
class Figure:
    """One row of the table. Values in ``unit``; the target is an upper bound on ``median``."""

    key: str
    label: str
    unit: str
    values: list[float]
    floor: list[float] | None = None
    floor_label: str | None = None
    target: float | None = None
    info: bool = False  # a breakdown or peer row: no target
    stats: dict[str, float] | None = None  # override median/min/max (derived figures)
    floor_value: float | None = None  # override the floor's median (a sum of floors)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        s = bl.summary(self.values)
        if self.stats:
            s.update(self.stats)
        return s

    def floor_median(self) -> float | None:
        if self.floor_value is not None:
            return self.floor_value
        if self.floor:
            return bl.summary(self.floor)["median"]
        return None

    def to_dict(self) -> dict[str, Any]:
        s = self.summary()
        fm = self.floor_median()
        ratio = s["median"] / fm if fm and s.get("n") else None
        passed = None
        if self.target is not None and s.get("n"):
            passed = s["median"] <= self.target
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            **{k: s.get(k) for k in ("n", "median", "min", "max", "p95", "samples")},
            "floor_label": self.floor_label,
            "floor_median": fm,
            "floor": bl.summary(self.floor) if self.floor else None,
            "ratio": ratio,
            "target": self.target,
            "pass": passed,
            "info": self.info,
            "note": self.note,
            "extra": self.extra,
        }


class Bench:
    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.t0 = time.monotonic()
        self.started = datetime.now(UTC)
        self.cleanup = bl.Cleanup()
        self.work = Path(tempfile.mkdtemp(prefix=f"stigmer-bench-{self.id}-"))
        self.cleanup.paths.append(self.work)
        self.labels = {"io.stigmer.test": "1", "io.stigmer.bench": self.id}
        for pair in os.environ.get("BENCH_LABELS", "").split(","):
            k, sep, v = pair.strip().partition("=")
            if sep and k:
                self.labels[k] = v
        self.figures: list[Figure] = []
        self.errors: dict[str, str] = {}
        self.sections: dict[str, Any] = {}
        self.image = os.environ.get("BENCH_IMAGE", "").strip() or None
        self.floors: dict[str, float] = {}
        self.docker: Any = None
        self.stack_env: dict[str, str] | None = None
        self.stack_ports: dict[str, int] = {}
        self.stack_home: Path | None = None
        self.probe: bl.TemporalProbe | None = None
        self._stack_pids: dict[str, Any] = {}
        self._inproc: dict[str, Any] | None = None
        self._peer: dict[str, Any] | None = None
        self.skipped: dict[str, str] = {}  # section -> why it measured nothing
        self.database: Any = None  # the PostgreSQL database of the run-postgres section
        # Bytecode: the venv may hold no .pyc files (uv does not compile them, and an
        # environment with PYTHONDONTWRITEBYTECODE=1 never writes them), which makes
        # every Python process compile its imports from source. A user's install
        # writes them on first use; measure that steady state, in a private cache
        # (PYTHONPYCACHEPREFIX) so the shared venv is left untouched.
        self.env_bytecode = {
            k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        }
        if BYTECODE == "private":
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
            os.environ["PYTHONPYCACHEPREFIX"] = str(self.work / "pycache")

    # ------------------------------------------------------------ plumbing ---

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def section(self, name: str, fn: Callable[[], None], needs_stack: bool = False) -> None:
        if name not in ONLY:
            return
        if needs_stack and self.stack_env is None:
            self.errors[name] = "skipped: the docker-mode stack is not running"
            bl.log(f"== {name}: skipped (no stack)")
            return
        t0 = time.monotonic()
        load = bl.loadavg()
        bl.log(f"== {name} (load {load})")
        try:
            fn()
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            bl.log(f"!! {name} failed: {exc}")
            traceback.print_exc()
        self.sections[name] = {
            "took_s": round(time.monotonic() - t0, 2),
            "load_before": load,
            "load_after": bl.loadavg(),
        }

    def label_flags(self) -> str:
        return " ".join(f"--label {k}={v}" for k, v in self.labels.items())

    def clean_env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "BENCH_"))}

    def build(
        self, tag: str, cwd: Path, extra_flags: str = "", pythonpath: Path | None = None
    ) -> tuple[float, str]:
        """`make build-agent-runner-image` in ``cwd``; (seconds, build log)."""
        env = dict(os.environ)
        make_uv = UV
        if pythonpath is not None:  # a copy of the checkout: buildinfo from the copy
            env["PYTHONPATH"] = str(pythonpath)
            make_uv = f"{UV} --project {bl.ROOT}"
        argv = [
            "make",
            "--no-print-directory",
            "-C",
            str(cwd),
            "build-agent-runner-image",
            f"IMAGE={tag}",
            f"PYTHON_IMAGE={BASE_IMAGE}",
            f"BUILD_FLAGS={self.label_flags()} {extra_flags}".strip(),
            f"UV={make_uv}",
        ]
        self.cleanup.images.append(tag)
        took, proc = bl.run(argv, env=env, timeout=1500)
        iid = bl.image_id(tag)
        if iid:
            self.cleanup.images.append(iid)
        out = proc.stdout + proc.stderr
        # a stage before the last one that this build made (not from the cache)
        # stays behind as an untagged image: ours, removed at the end
        self.cleanup.images.extend(bl.builder_stage_ids(out))
        return took, out

    # ------------------------------------------------------------ sections ---

    def s_image(self) -> None:
        if self.image:
            bl.log(f"using the given image {self.image} (not built, size not measured)")
            return
        tag = f"stigmer-agent-runner:bench-{self.id}"
        took, _ = self.build(tag, bl.ROOT)
        self.image = tag
        self.add(
            Figure(
                "image_build_cached",
                "runner image build from this checkout (layer cache as found)",
                "s",
                [took],
                info=True,
            )
        )
        size = bl.image_size(tag) / bl.MB
        base = bl.image_size(BASE_IMAGE) / bl.MB
        self.add(
            Figure(
                "image_size",
                "runner image size",
                "MB",
                [size],
                floor=[base],
                floor_label=f"base image {BASE_IMAGE}",
                target=200,
                extra={"added_mb": size - base},
            )
        )

    def s_rebuild(self) -> None:
        ctx = self.work / "ctx"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        ctx.mkdir(parents=True)
        from stigmer.images.buildinfo import BUILD_INPUTS

        for name in (".dockerignore", "Makefile", "pyproject.toml", "README.md", *BUILD_INPUTS):
            (ctx / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bl.ROOT / name, ctx / name)
        shutil.copytree(bl.ROOT / "src" / "stigmer", ctx / "src" / "stigmer", ignore=ignore)
        touched = ctx / "src" / "stigmer" / "runner" / "health.py"
        src = ctx / "src"
        tag = f"stigmer-agent-runner:bench-{self.id}-rebuild"
        times = []
        for i in range(REBUILD_REPS):
            with touched.open("a") as fh:
                fh.write(f"# bench {self.id} source-only change {i}\n")
            took, _ = self.build(tag, ctx, pythonpath=src)
            times.append(took)
            bl.log(f"source-only rebuild {i + 1}/{REBUILD_REPS}: {took:.1f}s")
        readme = []
        if not SMOKE:  # README.md is part of the dependency layer's COPY
            with (ctx / "README.md").open("a") as fh:
                fh.write(f"\n<!-- bench {self.id} -->\n")
            took, _ = self.build(tag, ctx, pythonpath=src)
            readme.append(took)
            bl.log(f"rebuild after a README.md change: {took:.1f}s")
        nocache = []
        for i in range(NOCACHE_REPS):
            ntag = f"stigmer-agent-runner:bench-{self.id}-nocache"
            took, _ = self.build(ntag, ctx, "--no-cache", pythonpath=src)
            nocache.append(took)
            bl.log(f"full --no-cache build {i + 1}/{NOCACHE_REPS}: {took:.1f}s")
        self.add(
            Figure(
                "rebuild_source_only",
                "rebuild after a source-only change",
                "s",
                times,
                floor=nocache or None,
                floor_label="full --no-cache build"
                if nocache
                else "full --no-cache build (skipped)",
                target=15,
            )
        )
        if readme:
            self.add(
                Figure(
                    "rebuild_readme",
                    "  · rebuild after a README.md change",
                    "s",
                    readme,
                    info=True,
                    note="README.md is copied into the dependency layer",
                )
            )
        if nocache:
            self.add(Figure("build_nocache", "full --no-cache build", "s", nocache, info=True))

    def s_floors(self) -> None:
        assert self.image
        import temporalio.client  # noqa: F401  (imported before the clock starts)

        bl.run(["docker", "run", "--rm", self.image, "true"], timeout=120)  # warm-up
        runs = [
            bl.run(["docker", "run", "--rm", self.image, "true"], timeout=120)[0]
            for _ in range(max(REPS, 3) if not SMOKE else 1)
        ]
        self.floors["docker_run_true"] = bl.summary(runs)["median"]
        self.add(
            Figure("docker_run_true", "floor: docker run --rm IMAGE true", "s", runs, info=True)
        )
        db = self.work / "temporal-floor.db"
        times = [self.temporal_alone(db) for _ in range(REPS + (0 if SMOKE else 1))]
        if not SMOKE:
            times = times[1:]  # the first one creates the database
        self.floors["temporal_alone"] = bl.summary(times)["median"]
        self.add(
            Figure(
                "temporal_alone",
                "floor: temporal server start-dev to ready",
                "s",
                times,
                info=True,
                note="spawn to the first DescribeNamespace answer",
            )
        )

    def temporal_alone(self, db: Path) -> float:
        port, ui = bl.free_ports(2)
        err = open(self.work / "temporal-floor.err", "ab")  # noqa: SIM115
        argv = [
            str(bl.VENV_BIN / "temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-ip",
            "127.0.0.1",
            "--ui-port",
            str(ui),
            "--db-filename",
            str(db),
            "--ui-disable-news-fetch",
            "--log-format",
            "json",
            "--log-level",
            "warn",
            "--sqlite-pragma",
            "journal_mode=wal",
        ]
        import subprocess

        t0 = time.perf_counter()
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
        )
        self.cleanup.procs.append(p)
        try:
            ready = bl.poll_until(
                lambda: bl.namespace_ready(f"127.0.0.1:{port}") or p.poll() is not None,
                timeout=60,
                interval=0.02,
            )
            took = time.perf_counter() - t0
            if not ready or p.poll() is not None:
                raise RuntimeError("temporal server start-dev did not become ready")
            return took
        finally:
            bl.stop_process(p)
            err.close()

    def stack_env_for(
        self, mode: str, name: str | None = None
    ) -> tuple[Path, dict[str, str], dict[str, int]]:
        home = self.work / f"home-{name or mode}"
        server, temporal, ui = bl.free_ports(3)
        env = self.clean_env() | {
            "STIGMER_HOME": str(home),
            "STIGMER_SERVER_PORT": str(server),
            "STIGMER_TEMPORAL_PORT": str(temporal),
            "STIGMER_TEMPORAL_UI_PORT": str(ui),
            "STIGMER_RUNNER_MODE": mode,
            "STIGMER_STOP_GRACE": "5",
            "STIGMER_OFFLINE": "1",
            "STIGMER_DEFAULT_MODEL": "test",
        }
        if mode == "docker":
            assert self.image
            env["STIGMER_RUNNER_IMAGE"] = self.image
            env["STIGMER_RUNNER_CONTAINER"] = f"stigmer-bench-{self.id}-{name or 'runner'}"
            self.cleanup.containers.append(env["STIGMER_RUNNER_CONTAINER"])
        self.cleanup.homes.append((home, env))
        return home, env, {"server": server, "temporal": temporal, "ui": ui}

    def start_cycles(
        self,
        mode: str,
        keep_running: bool,
        stigmer: str = bl.STIGMER,
        key: str | None = None,
        target: float | None = None,
        what: str = "",
    ) -> None:
        home, env, ports = self.stack_env_for(mode, key)
        cycles = START_REPS + (0 if SMOKE else 1)
        starts: list[dict[str, Any]] = []
        stops: list[float] = []
        for i in range(cycles):
            t_wall = time.time()
            busy = bl.machine_busy_cpu_s()
            took, proc = bl.run([stigmer, "server", "start", "--json"], env=env, timeout=240)
            busy = bl.machine_busy_cpu_s() - busy
            st = json.loads(proc.stdout)
            starts.append(
                {
                    "wall_s": took,
                    "machine_cpu_s": busy,
                    "took_s": st.get("took_s"),
                    "ready_in_s": {c["name"]: c.get("ready_in_s") for c in st["components"]},
                    "timeline": supervisor_timeline(home, t_wall),
                }
            )
            bl.log(f"start {mode} {i + 1}/{cycles}: {took:.2f}s {starts[-1]['ready_in_s']}")
            if keep_running and i == cycles - 1:
                break
            stops.append(bl.run([stigmer, "server", "stop"], env=env, timeout=240)[0])
        first = starts[0]
        counted = starts if SMOKE else starts[1:]
        floor = self.floors.get("temporal_alone")
        floor_label = "temporal start-dev alone"
        if mode == "docker" and "docker_run_true" in self.floors and floor is not None:
            floor += self.floors["docker_run_true"]
            floor_label += " + docker run --rm IMAGE true"
        key = key or f"start_{mode}"
        self.add(
            Figure(
                key,
                f"stigmer server start to ready ({mode} mode{what})",
                "s",
                [s["wall_s"] for s in counted],
                floor_value=floor,
                floor_label=floor_label if floor is not None else None,
                target=target if target is not None else (1.2 if mode == "docker" else 5),
                note="whole CLI process, image present, home started before",
                extra={
                    "first_start_fresh_home_s": first["wall_s"],
                    "cycles": starts,
                    "stops_s": stops,
                },
            )
        )
        cpus = os.cpu_count() or 1
        self.add(
            Figure(
                f"{key}_cpu",
                f"  · CPU the start used, whole machine (floor on {cpus} CPUs: it / {cpus})",
                "s",
                [s["machine_cpu_s"] for s in counted],
                info=True,
                note="/proc/stat busy time during the CLI's run: every process, the engine's too",
            )
        )
        for name, label in (
            ("supervisor_up", "supervisor up"),
            ("temporal", "temporal ready"),
            ("stigmer-server", "stigmer-server ready"),
            ("agent-runner", "agent-runner ready"),
        ):
            vals = [s["timeline"].get(name) for s in counted]
            vals = [v for v in vals if v is not None]
            ready_in = [s["ready_in_s"].get(name) for s in counted if s["ready_in_s"].get(name)]
            self.add(
                Figure(
                    f"{key}_{name}",
                    f"  · {label} (s after the CLI started)",
                    "s",
                    vals,
                    info=True,
                    note=(
                        f"ready_in_s (from its launch) median {bl.summary(ready_in)['median']:.2f}"
                        if ready_in
                        else ""
                    ),
                    extra={"ready_in_s": bl.summary(ready_in) if ready_in else None},
                )
            )
        if keep_running:
            self.stack_env, self.stack_ports, self.stack_home = env, ports, home
            self.probe = bl.TemporalProbe(f"127.0.0.1:{ports['temporal']}")
            self.probe.connect()

    def s_start_docker(self) -> None:
        self.start_cycles("docker", keep_running=True)

    def s_start_local(self) -> None:
        self.start_cycles("local", keep_running=False)

    def s_cli(self) -> None:
        assert self.stack_env
        cmds = {
            "python_pass": ([bl.PYTHON, "-c", "pass"], None),
            "cli_version": ([bl.STIGMER, "--version"], None),
            "cli_status": ([bl.STIGMER, "server", "status"], self.stack_env),
            "docker_version": (["docker", "version"], None),
        }
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for key, (argv, env) in cmds.items():  # warm-up (page cache)
            bl.run(argv, env=env, check=key != "cli_status")
        for _ in range(CLI_REPS):
            for key, (argv, env) in cmds.items():
                took, proc = bl.run(argv, env=env, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr[-500:]}")
                times[key].append(took * 1000)
        py = times["python_pass"]
        self.add(Figure("python_pass", "floor: python -c pass", "ms", py, info=True))
        self.add(
            Figure(
                "cli_version",
                "stigmer --version",
                "ms",
                times["cli_version"],
                floor=py,
                floor_label="python -c pass",
                target=150,
            )
        )
        self.add(
            Figure(
                "cli_status",
                "stigmer server status (stack running)",
                "ms",
                times["cli_status"],
                floor=py,
                floor_label="python -c pass",
                target=300,
            )
        )
        self.add(
            Figure(
                "docker_version", "peer: docker version", "ms", times["docker_version"], info=True
            )
        )
        # the same without any bytecode cache: what a venv without .pyc files costs
        # when PYTHONDONTWRITEBYTECODE=1 (as in this machine's environment)
        empty = self.work / "no-pycache"
        empty.mkdir(exist_ok=True)
        cold = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(empty)}
        for key, argv, env in (
            ("cli_version_nopyc", [bl.STIGMER, "--version"], dict(os.environ)),
            ("cli_status_nopyc", [bl.STIGMER, "server", "status"], dict(self.stack_env)),
        ):
            vals = [bl.run(argv, env=env | cold)[0] * 1000 for _ in range(max(2, CLI_REPS // 4))]
            what = "--version" if "version" in key else "server status"
            self.add(
                Figure(
                    key,
                    f"  · stigmer {what} with no bytecode cache at all",
                    "ms",
                    vals,
                    info=True,
                    note="PYTHONDONTWRITEBYTECODE=1 and no .pyc: every import compiled",
                )
            )

    def s_installed_cli(self) -> None:
        """The CLI as a user installs it: ``uv tool install`` of a wheel of this checkout.

        A fresh tool dir; measured as a user runs it: ``--version``, ``server
        status`` and ``run`` against the bench's stack, and ``server start``
        (docker mode, image present) of a home of its own, each beside the
        checkout venv's CLI measured the same way in this run.
        """
        assert self.stack_env
        self.prepare_agent()  # (again: an unchanged apply changes nothing)
        root = Path(__file__).resolve().parents[1]
        dist = self.work / "dist"
        bl.run([UV, "build", "--wheel", "--quiet", "--out-dir", str(dist), str(root)], timeout=600)
        wheel = next(dist.glob("stigmer-*.whl"))
        tools = self.work / "uv-tools"
        tool_env = self.clean_env() | {
            "UV_TOOL_DIR": str(tools / "tools"),
            "UV_TOOL_BIN_DIR": str(tools / "bin"),
        }
        took, _ = bl.run(
            [UV, "tool", "install", "--python", sys.executable, str(wheel)],
            env=tool_env,
            timeout=900,
        )
        stigmer = str(tools / "bin" / "stigmer")
        bl.log(f"uv tool install of {wheel.name}: {took:.1f}s")
        self.add(
            Figure(
                "installed_install_s",
                "uv tool install (wheel, fresh tool dir)",
                "s",
                [took],
                info=True,
            )
        )
        cmds = {
            "version": ["--version"],
            "status": ["server", "status"],
        }
        for key, args in cmds.items():
            times: dict[str, list[float]] = {"venv": [], "installed": []}
            for exe in (bl.STIGMER, stigmer):
                bl.run([exe, *args], env=self.stack_env)  # warm-up: bytecode, page cache
            for _ in range(CLI_REPS):
                for which, exe in (("venv", bl.STIGMER), ("installed", stigmer)):
                    times[which].append(bl.run([exe, *args], env=self.stack_env)[0] * 1000)
            self.add(
                Figure(
                    f"installed_{key}",
                    f"installed CLI: stigmer {' '.join(args)}",
                    "ms",
                    times["installed"],
                    floor=times["venv"],
                    floor_label="the checkout venv's CLI",
                    info=True,
                )
            )
        argv = ["run", AGENT, "bench", "--output", "json"]
        runs: dict[str, list[float]] = {"venv": [], "installed": []}
        for _ in range(max(2, RUNS // 5)):
            for which, exe in (("venv", bl.STIGMER), ("installed", stigmer)):
                runs[which].append(bl.run([exe, *argv], env=self.stack_env, timeout=120)[0])
        self.add(
            Figure(
                "installed_run",
                "installed CLI: stigmer run e2e p50",
                "s",
                runs["installed"],
                floor=runs["venv"],
                floor_label="the checkout venv's CLI",
                info=True,
            )
        )
        self.start_cycles(
            "docker",
            keep_running=False,
            stigmer=stigmer,
            key="start_docker_installed",
            target=1.5,
            what=", uv tool-installed CLI",
        )

    def stack_container(self) -> Any:
        assert self.stack_env
        if self.docker is None:
            self.docker = bl.docker_client()
        return self.docker.containers.get(self.stack_env["STIGMER_RUNNER_CONTAINER"])

    def clone(
        self,
        suffix: str,
        identity: str,
        task_queue: str = "agent_execution_runner",
        command: list[str] | None = None,
        mounts: list[Any] | None = None,
    ) -> tuple[Any, float]:
        """Start a container like the stack's runner; (container, perf_counter before create)."""
        assert self.stack_env and self.stack_home
        name = f"stigmer-bench-{self.id}-{suffix}"
        config = bl.runner_config_json(self.stack_home, self.stack_env, identity, task_queue)
        kwargs = bl.clone_kwargs(self.stack_container(), name, self.labels)
        if command:
            kwargs["command"] = command
        if mounts:
            kwargs["mounts"] = [*kwargs["mounts"], *mounts]
        self.cleanup.containers.append(name)
        from stigmer.stack.agent_runner_docker import run_with_config

        t0 = time.perf_counter()
        return run_with_config(self.docker, config, **kwargs), t0

    def wait_polling(self, c: Any, tq: str, ident: str, timeout: float = 120) -> float:
        """perf_counter() when ``ident`` (container ``c``) polls ``tq``; fails fast if it exits."""
        assert self.probe
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.probe.wait_poller(tq, ident, timeout=2)
            if seen is not None:
                return seen
            c.reload()
            if c.status not in ("created", "running"):
                raise RuntimeError(
                    f"container {c.name} {c.status} before polling:\n"
                    + c.logs(tail=30).decode("utf-8", "replace")
                )
        raise RuntimeError(f"container {c.name} did not poll {tq} within {timeout:.0f}s")

    def s_runner_start(self) -> None:
        assert self.probe
        tq = f"bench-{self.id}-idle"
        times, api = [], []
        for i in range(REPS):
            ident = f"bench-{self.id}-start-{i}"
            c, t0 = self.clone(f"start-{i}", ident, tq)
            t_api = time.perf_counter()
            try:
                seen = self.wait_polling(c, tq, ident, timeout=90)
            finally:
                c.remove(force=True)
            times.append(seen - t0)
            api.append(t_api - t0)
            bl.log(f"runner start->polling {i + 1}/{REPS}: {seen - t0:.2f}s")
        self.add(
            Figure(
                "runner_start",
                "runner container start to polling",
                "s",
                times,
                floor_value=self.floors.get("docker_run_true"),
                floor_label="docker run --rm IMAGE true",
                target=2,
                note="create (stack's config) until Temporal lists the poller",
                extra={"create_and_start_api_s": bl.summary(api)},
            )
        )

    def s_memory(self) -> None:
        assert self.probe
        from docker.types import Mount

        script = Mount(
            "/opt/bench/bare_worker.py",
            str(Path(__file__).resolve().parent / "bare_worker.py"),
            type="bind",
            read_only=True,
        )
        started = []
        for i in range(MEM_REPS):
            for kind in ("runner", "bare"):
                ident = f"bench-{self.id}-mem-{kind}-{i}"
                tq = f"bench-{self.id}-{kind}"
                bare = kind == "bare"
                c, _ = self.clone(
                    f"mem-{kind}-{i}",
                    ident,
                    tq,
                    ["python", "/opt/bench/bare_worker.py"] if bare else None,
                    [script] if bare else None,
                )
                started.append((kind, c, ident, tq))
        for _kind, c, ident, tq in started:
            self.wait_polling(c, tq, ident)
        bl.log(f"all {len(started)} containers polling; idle {IDLE_S}s")
        time.sleep(IDLE_S)
        mem: dict[str, list[dict[str, int]]] = {"runner": [], "bare": []}
        for kind, c, _ident, _tq in started:
            c.reload()
            m = bl.cgroup_memory(c.id) or {}
            m["vmrss"] = bl.container_vmrss(c.id) or 0
            mem[kind].append(m)
        for _kind, c, _ident, _tq in started:
            with contextlib.suppress(Exception):
                c.remove(force=True)

        def mb(kind: str, key: str) -> list[float]:
            return [m.get(key, 0) / bl.MB for m in mem[kind]]

        self.add(
            Figure(
                "runner_idle_memory",
                f"runner idle memory after {IDLE_S}s (docker stats usage)",
                "MB",
                mb("runner", "usage"),
                floor=mb("bare", "usage"),
                floor_label="bare temporalio worker, same image",
                target=60,
                extra={
                    "runner_anon_mb": bl.summary(mb("runner", "anon")),
                    "runner_vmrss_mb": bl.summary(mb("runner", "vmrss")),
                    "bare_anon_mb": bl.summary(mb("bare", "anon")),
                    "bare_vmrss_mb": bl.summary(mb("bare", "vmrss")),
                    "raw": mem,
                },
            )
        )
        self.add(
            Figure(
                "runner_idle_rss",
                "  · runner anonymous RSS (cgroup rss)",
                "MB",
                mb("runner", "anon"),
                floor=mb("bare", "anon"),
                floor_label="bare worker",
                info=True,
            )
        )

    # -- executions ---------------------------------------------------------

    def api(self) -> Any:
        import httpx

        assert self.stack_home
        token = (self.stack_home / "credentials" / "api-token").read_text().strip()
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.stack_ports['server']}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def prepare_agent(self) -> None:
        assert self.stack_env and self.stack_home
        import yaml

        doc = {
            "apiVersion": "stigmer.ai/v1",
            "kind": "Agent",
            "metadata": {"name": AGENT},
            "spec": {
                "description": "benchmark: two tool calls with the test model",
                "instructions": INSTRUCTIONS,
                "model": "test",
                "tools": ["list_files", "read_file"],
                "test_script": SCRIPT,
            },
        }
        path = self.work / "agent.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        bl.run([bl.STIGMER, "apply", "-f", str(path)], env=self.stack_env)
        ws = self.stack_home / "data" / "workspace" / "bench"
        ws.mkdir(parents=True, exist_ok=True)
        (ws / "input.txt").write_text("hello from the benchmark\n")
        os.chmod(ws, 0o755)
        os.chmod(ws / "input.txt", 0o644)

    def timed_runs(self) -> tuple[list[tuple[float, float, str]], dict[str, float]]:
        """RUNS `stigmer run` back to back after a warm-up: (wall, took, id) each; CPU ms/run."""
        assert self.stack_env
        argv = [bl.STIGMER, "run", AGENT, "bench", "--output", "json"]
        for _ in range(1 if SMOKE else 3):  # warm-up: sandbox imports, sticky cache
            bl.run(argv, env=self.stack_env, timeout=120)
        runs: list[tuple[float, float, str]] = []
        cpu0 = self.cpu_snapshot()
        for i in range(RUNS):
            t_wall = time.time()
            took, proc = bl.run(argv, env=self.stack_env, timeout=120)
            out = json.loads(proc.stdout)
            if out.get("phase") != "COMPLETED":
                raise RuntimeError(f"run {i} ended {out.get('phase')}: {out}")
            runs.append((t_wall, took, out["id"]))
        cpu1 = self.cpu_snapshot()
        cpu_ms: dict[str, float] = {}
        for k, before in cpu0.items():
            after = cpu1.get(k)
            if before is not None and after is not None:
                cpu_ms[k] = (after - before) * 1000 / RUNS
        return runs, cpu_ms

    def inprocess_peer(self) -> dict[str, Any]:
        """The same agent in-process, no Temporal (measured once, shared by the run figures)."""
        if self._inproc is not None:
            return self._inproc
        ws = self.work / "ws-inprocess"
        (ws / "bench").mkdir(parents=True)
        (ws / "bench" / "input.txt").write_text("hello from the benchmark\n")
        _, proc = bl.run(
            [
                bl.PYTHON,
                str(Path(__file__).parent / "inprocess_agent.py"),
                json.dumps(SCRIPT),
                "--runs",
                str(RUNS),
                "--workspace",
                str(ws),
            ],
            timeout=300,
        )
        inproc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        if inproc.get("tool_calls") != 2:
            raise RuntimeError(
                f"the in-process agent made {inproc.get('tool_calls')} tool calls, not 2"
            )
        self._inproc = inproc
        return inproc

    def temporal_peer(self) -> dict[str, Any]:
        """The same agent run durably with bare pydantic-ai on Temporal (same dev server).

        Its worker and client are one process (``bench/temporal_peer.py``); the
        dev server's CPU is read around it, while the stack is idle.
        """
        if self._peer is not None:
            return self._peer
        ws = self.work / "ws-peer"
        (ws / "bench").mkdir(parents=True)
        (ws / "bench" / "input.txt").write_text("hello from the benchmark\n")
        temporal_pid = self._stack_pids.get("temporal")
        t_cpu0 = bl.proc_cpu_s(temporal_pid) if temporal_pid else None
        _, proc = bl.run(
            [
                bl.PYTHON,
                str(Path(__file__).parent / "temporal_peer.py"),
                json.dumps(SCRIPT),
                "--address",
                f"127.0.0.1:{self.stack_ports['temporal']}",
                "--runs",
                str(RUNS),
                "--workspace",
                str(ws),
            ],
            timeout=600,
        )
        t_cpu1 = bl.proc_cpu_s(temporal_pid) if temporal_pid else None
        peer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        if peer.get("tool_calls") != 2:
            raise RuntimeError(f"the Temporal peer made {peer.get('tool_calls')} tool calls, not 2")
        runs = len(peer["runs_s"])
        # the dev server's CPU over the peer's warm-up and runs, per timed run (an upper bound)
        warm = runs + 4
        peer["cpu_ms"] = {
            "peer worker+client": peer["cpu_s"] * 1000 / runs,
            **(
                {"temporal": (t_cpu1 - t_cpu0) * 1000 / warm}
                if t_cpu0 is not None and t_cpu1 is not None
                else {}
            ),
        }
        self._peer = peer
        return peer

    def cpu_figures(self, key: str, label: str, cpu_ms: dict[str, float]) -> None:
        """CPU per run: all processes, then one row per process."""
        if not cpu_ms:
            return
        self.add(
            Figure(key, f"  · {label}, all processes", "ms", [sum(cpu_ms.values())], info=True)
        )
        for name, ms in cpu_ms.items():
            self.add(Figure(f"{key}_{name}", f"    {name}", "ms", [ms], info=True))

    def s_run(self) -> None:
        assert self.stack_env
        self.prepare_agent()
        runs, cpu_ms = self.timed_runs()
        hist = []
        assert self.probe
        for _, _, ex_id in runs[-min(RUNS, 10) :]:
            with contextlib.suppress(Exception):
                hist.append(bl.history_breakdown(self.probe, f"agent-execution/{ex_id}"))
        # the server's view of each run, for the breakdown
        parts: dict[str, list[float]] = {
            "cli_to_created": [],
            "created_to_running": [],
            "running_to_completed": [],
            "completed_to_exit": [],
            "server_s": [],
        }
        with self.api() as api:
            for t_wall, took, ex_id in runs:
                ex = api.get(f"/v1/executions/{ex_id}").json()
                events = api.get(f"/v1/executions/{ex_id}/events").json()["events"]
                phases = {
                    e["payload"].get("phase"): bl.parse_stamp(e["at"])
                    for e in events
                    if e["type"] == "phase"
                }
                created = bl.parse_stamp(ex["created_at"])
                updated = bl.parse_stamp(ex["updated_at"])
                parts["cli_to_created"].append(created - t_wall)
                parts["server_s"].append(updated - created)
                if "RUNNING" in phases and "COMPLETED" in phases:
                    parts["created_to_running"].append(phases["RUNNING"] - created)
                    parts["running_to_completed"].append(phases["COMPLETED"] - phases["RUNNING"])
                    parts["completed_to_exit"].append(t_wall + took - phases["COMPLETED"])
        inproc = self.inprocess_peer()
        walls = [t for _, t, _ in runs]
        peer = inproc["runs_s"]
        run_s = bl.summary(walls)
        peer_s = bl.summary(peer)
        self.add(
            Figure(
                "run_e2e",
                "stigmer run e2e (test model, 2 tool calls) p50",
                "s",
                walls,
                floor=peer,
                floor_label="same pydantic-ai agent in-process, no Temporal",
                info=True,
                extra={
                    "p95": run_s["p95"],
                    "inprocess": inproc | {"runs_s": None},
                    "cpu_ms_per_run": cpu_ms,
                    "history": hist[-1] if hist else None,
                },
            )
        )
        self.add(
            Figure(
                "run_e2e_p95",
                "  · stigmer run e2e p95",
                "s",
                walls,
                stats={"median": run_s["p95"]},
                floor_value=peer_s["p95"],
                floor_label="in-process p95",
                info=True,
            )
        )
        self.add(
            Figure(
                "run_overhead_p50",
                "stigmer run overhead p50 (run p50 - in-process p50)",
                "s",
                [w - peer_s["median"] for w in walls],
                stats={"median": run_s["median"] - peer_s["median"]},
                target=0.150,
            )
        )
        labels = {
            "cli_to_created": "CLI start -> execution stored",
            "created_to_running": "stored -> workflow RUNNING",
            "running_to_completed": "RUNNING -> COMPLETED (agent, activities)",
            "completed_to_exit": "COMPLETED -> CLI exit",
        }
        for key, label in labels.items():
            if parts[key]:
                self.add(Figure(f"run_{key}", f"  · {label}", "s", parts[key], info=True))
        if hist:
            n_act = bl.summary([h["activities"] for h in hist])["median"]
            n_wft = bl.summary([h["workflow_tasks"] for h in hist])["median"]
            for key, label in (
                ("activity_exec_s", f"    in {n_act:.0f} activities (sum of their run times)"),
                ("wft_dispatch_s", f"    in {n_wft:.0f} workflow tasks: dispatch (sum)"),
                ("wft_processing_s", f"    in {n_wft:.0f} workflow tasks: processing (sum)"),
            ):
                self.add(Figure(f"run_hist_{key}", label, "s", [h[key] for h in hist], info=True))
        self.cpu_figures("run_cpu_ms", "CPU per run (SQLite)", cpu_ms)
        self.peer_figures(walls, cpu_ms)

    def peer_figures(self, walls: list[float], cpu_ms: dict[str, float]) -> None:
        """stigmer run against bare pydantic-ai on Temporal: run p50 and CPU per execution."""
        peer = self.temporal_peer()
        peer_walls = peer["runs_s"]
        self.add(
            Figure(
                "peer_run_p50",
                "bare pydantic-ai on Temporal, same agent, p50",
                "s",
                peer_walls,
                floor=self.inprocess_peer()["runs_s"],
                floor_label="the same agent in-process",
                info=True,
            )
        )
        ratio = bl.summary(walls)["median"] / bl.summary(peer_walls)["median"]
        self.add(
            Figure(
                "run_vs_peer",
                "stigmer run p50 / bare pydantic-ai-on-Temporal p50",
                "x",
                [ratio],
                target=1.3,
            )
        )
        ours = sum(cpu_ms.values())
        theirs = sum(peer["cpu_ms"].values())
        self.cpu_figures("peer_cpu_ms", "CPU per run of the peer", peer["cpu_ms"])
        self.add(
            Figure(
                "cpu_per_run",
                "CPU per execution, all processes",
                "ms",
                [ours],
                floor_value=theirs,
                floor_label="bare pydantic-ai on Temporal",
                target=150,
            )
        )
        self.add(
            Figure(
                "cpu_vs_peer",
                "CPU per execution / the peer's",
                "x",
                [ours / theirs if theirs else float("nan")],
                target=1.5,
            )
        )

    def cpu_snapshot(self) -> dict[str, float | None]:
        """CPU seconds so far of each stack process, the runner container and our CLI children."""
        assert self.stack_env
        if not self._stack_pids:  # once, before the first reading of our children's CPU
            _, proc = bl.run([bl.STIGMER, "server", "status", "--json"], env=self.stack_env)
            st = json.loads(proc.stdout)
            self._stack_pids = {c["name"]: c.get("pid") for c in st["components"]}
            self._stack_pids["supervisor"] = st["supervisor"]["pid"]
        pids = self._stack_pids
        return {
            "temporal": bl.proc_cpu_s(pids["temporal"]) if pids.get("temporal") else None,
            "stigmer-server": bl.proc_cpu_s(pids["stigmer-server"])
            if pids.get("stigmer-server")
            else None,
            "agent-runner": bl.container_cpu_s(self.stack_container().id),
            "supervisor": bl.proc_cpu_s(pids["supervisor"]),
            "cli": bl.children_cpu_s(),
            # every process of the PostgreSQL server (its backends stay: the API pools them)
            **({"postgres": bl.processes_cpu_s("postgres")} if self.database else {}),
        }

    def s_run_postgres(self) -> None:
        """The run figures again, the same stack restarted on PostgreSQL (database_url)."""
        assert self.stack_env
        sys.path.insert(0, str(bl.ROOT))
        from tests.fixtures_pg import create_database, drop_database, pg_available

        why = pg_available()
        if why:  # not an error: the page says which figures are missing, and why
            self.skipped["run-postgres"] = why
            bl.log(f"run-postgres skipped: {why}")
            return
        self.database = create_database()
        self.cleanup.callbacks.append(lambda db=self.database: drop_database(db))
        env = self.stack_env
        bl.run([bl.STIGMER, "server", "stop"], env=env, timeout=240)
        env["STIGMER_DATABASE_URL"] = self.database.url
        bl.run([bl.STIGMER, "server", "start", "--json"], env=env, timeout=240)
        self._stack_pids = {}
        self.prepare_agent()
        runs, cpu_ms = self.timed_runs()
        walls = [t for _, t, _ in runs]
        peer_s = bl.summary(self.inprocess_peer()["runs_s"])
        sqlite = next((f for f in self.figures if f.key == "run_overhead_p50"), None)
        self.add(
            Figure(
                "run_overhead_p50_postgres",
                "stigmer run overhead p50 on PostgreSQL (run p50 - in-process p50)",
                "s",
                [w - peer_s["median"] for w in walls],
                stats={"median": bl.summary(walls)["median"] - peer_s["median"]},
                floor_value=sqlite.summary()["median"] if sqlite else None,
                floor_label="the same on SQLite",
                target=0.300,
                extra={"cpu_ms_per_run": cpu_ms},
            )
        )
        self.cpu_figures("run_cpu_ms_postgres", "CPU per run (PostgreSQL)", cpu_ms)

    def submit_batch(self, api: Any, n: int, tag: str) -> tuple[float, list[str]]:
        t0 = time.time()

        def one(i: int) -> str:
            r = api.post(
                "/v1/executions",
                json={"agent": AGENT, "message": f"{tag} {i}", "env": {}, "model": None},
            )
            r.raise_for_status()
            return r.json()["id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(one, range(n)))
        return t0, ids

    def wait_batch(
        self, api: Any, ids: list[str], timeout: float = 600
    ) -> dict[str, dict[str, Any]]:
        want = set(ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = api.get("/v1/executions", params={"agent": AGENT, "limit": 1000}).json()[
                "executions"
            ]
            done = {
                e["id"]: e
                for e in items
                if e["id"] in want and e["phase"] in ("COMPLETED", "FAILED", "CANCELLED")
            }
            if len(done) == len(want):
                return done
            time.sleep(0.2)
        raise RuntimeError(f"{len(want)} executions not all done within {timeout:.0f}s")

    def batch(self, api: Any, n: int, tag: str) -> float:
        t0, ids = self.submit_batch(api, n, tag)
        done = self.wait_batch(api, ids)
        failed = [i for i, e in done.items() if e["phase"] != "COMPLETED"]
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} executions did not complete: {failed[:3]}")
        end = max(bl.parse_stamp(e["updated_at"]) for e in done.values())
        return n / (end - t0)

    def s_throughput(self) -> None:
        assert self.stack_env and self.probe
        if "run" not in ONLY:
            self.prepare_agent()
        results: dict[int, list[float]] = {1: [], SCALE: []}
        clones = []
        try:
            with self.api() as api:
                self.batch(api, 2, "warm-up")
                for r in range(TPUT_REPS):
                    results[1].append(self.batch(api, QUEUED, "tput-1"))
                    bl.log(
                        f"throughput, 1 runner ({r + 1}/{TPUT_REPS}): {results[1][-1]:.2f} exec/s"
                    )
                for i in range(SCALE - 1):
                    ident = f"bench-{self.id}-tput-{i}"
                    c, _ = self.clone(f"tput-{i}", ident)
                    clones.append((c, ident))
                for c, ident in clones:
                    self.wait_polling(c, "agent_execution_runner", ident)
                self.batch(api, 2 * SCALE, "warm-up")
                for r in range(TPUT_REPS):
                    results[SCALE].append(self.batch(api, QUEUED, f"tput-{SCALE}"))
                    bl.log(
                        f"throughput, {SCALE} runners ({r + 1}/{TPUT_REPS}): "
                        f"{results[SCALE][-1]:.2f} exec/s"
                    )
        finally:
            for c, _ in clones:
                with contextlib.suppress(Exception):
                    c.remove(force=True)
        one = bl.summary(results[1])["median"]
        many = bl.summary(results[SCALE])["median"]
        self.add(
            Figure(
                "throughput_1",
                f"throughput, {QUEUED} queued, 1 runner",
                "exec/s",
                results[1],
                info=True,
            )
        )
        self.add(
            Figure(
                f"throughput_{SCALE}",
                f"throughput, {QUEUED} queued, {SCALE} runner containers",
                "exec/s",
                results[SCALE],
                floor=results[1],
                floor_label="1 runner",
                info=True,
                note=f"scale-out ratio {many / one:.2f}x on {os.cpu_count()} CPUs",
                extra={"scale_out_ratio": many / one},
            )
        )

    def stop_stack(self) -> None:
        if self.stack_env is None:
            return
        took, _ = bl.run(
            [bl.STIGMER, "server", "stop"], env=self.stack_env, timeout=240, check=False
        )
        self.sections["stop-docker"] = {"took_s": round(took, 2)}
        if self.probe:
            self.probe.close()
        self.stack_env = None

    # ------------------------------------------------------------------ run ---

    def main(self) -> int:
        max_load = os.environ.get("BENCH_MAX_LOAD")
        load_start = bl.loadavg()
        if max_load:
            load_start = bl.wait_for_load(
                float(max_load), float(os.environ.get("BENCH_LOAD_WAIT_S", "300"))
            )
        bl.log(
            f"bench {self.id}{' (smoke)' if SMOKE else ''}: work dir {self.work}, load {load_start}"
        )
        machine = bl.machine()
        try:
            self.docker = bl.docker_client()
        except Exception as exc:
            print(f"no Docker engine: {exc}", file=sys.stderr)
            return 1
        if bl.image_id(BASE_IMAGE) is None:
            print(f"base image {BASE_IMAGE} is not present locally", file=sys.stderr)
            return 1
        try:
            self.section("image", self.s_image)
            if self.image is None:
                self.image = os.environ.get("BENCH_IMAGE") or None
            if self.image is None:
                self.errors["all"] = "no runner image: the image section failed or was not run"
            else:
                self.section("rebuild", self.s_rebuild)
                self.section("floors", self.s_floors)
                self.section("start-docker", self.s_start_docker)
                self.section("cli", self.s_cli, needs_stack=True)
                self.section("runner-start", self.s_runner_start, needs_stack=True)
                self.section("memory", self.s_memory, needs_stack=True)
                self.section("run", self.s_run, needs_stack=True)
                self.section("throughput", self.s_throughput, needs_stack=True)
                self.section("run-postgres", self.s_run_postgres, needs_stack=True)
                self.section("installed-cli", self.s_installed_cli, needs_stack=True)
                self.stop_stack()
                self.section("start-local", self.s_start_local)
        finally:
            bl.log("cleaning up")
            with contextlib.suppress(Exception):
                self.stop_stack()
            self.cleanup.run()
            bl.log("cleaned up")
        took = time.monotonic() - self.t0
        data: dict[str, Any] = {
            "bench_id": self.id,
            "smoke": SMOKE,
            "started_at": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "took_s": round(took, 1),
            "machine": machine,
            "load_start": load_start,
            "load_end": bl.loadavg(),
            "knobs": {
                "reps": REPS,
                "start_reps": START_REPS,
                "cli_reps": CLI_REPS,
                "rebuild_reps": REBUILD_REPS,
                "nocache_reps": NOCACHE_REPS,
                "idle_s": IDLE_S,
                "mem_reps": MEM_REPS,
                "runs": RUNS,
                "queued": QUEUED,
                "scale_runners": SCALE,
                "tput_reps": TPUT_REPS,
                "bytecode": BYTECODE,
                "only": sorted(ONLY),
            },
            "image": self.image,
            "environment_bytecode": self.env_bytecode,
            "sections": self.sections,
            "errors": self.errors,
            "skipped": self.skipped,
            "figures": [bl.round_all(f.to_dict()) for f in self.figures],
        }
        results_dir = Path(os.environ.get("BENCH_RESULTS_DIR") or bl.ROOT / "bench" / "results")
        results_dir.mkdir(parents=True, exist_ok=True)
        out = report.results_path(results_dir, self.started)
        out.write_text(json.dumps(data, indent=2) + "\n")
        table = report.table(data["figures"])
        print(table)
        print(f"\nresults: {out}  ({took / 60:.1f} min, load {load_start} -> {data['load_end']})")
        docs = os.environ.get("BENCH_DOCS", str(bl.ROOT / "docs" / "performance.md"))
        if docs:
            report.update_docs(Path(docs), data, out)
            print(f"page:    {docs}")
        if self.errors:
            print(f"errors: {json.dumps(self.errors, indent=2)}", file=sys.stderr)
            return 1
        missed = [f["label"] for f in data["figures"] if f["pass"] is False]
        if missed and os.environ.get("BENCH_STRICT", "").lower() in ("1", "true", "yes"):
            return 2
        return 0


def supervisor_timeline(home: Path, since: float) -> dict[str, float]:
    """Offsets (s after ``since``) of the supervisor's up / ready lines of the last start."""
    path = home / "logs" / "supervisor.log"
    out: dict[str, float] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        stamp, _, text = line.partition(" ")
        try:
            t = bl.parse_stamp(stamp)
        except ValueError:
            continue
        if t < since - 0.5:
            continue
        text = text.removeprefix("INFO ").strip()
        if text.startswith("supervisor ") and " up (pid" in text:
            out = {"supervisor_up": t - since}
        elif text.endswith(" is ready"):
            out.setdefault(text.removesuffix(" is ready"), t - since)
        elif " launched (pid" in text:
            out.setdefault(text.split(" launched")[0] + "_launched", t - since)
    return out


def main() -> int:
    if len(sys.argv) > 1:
        # knobs are environment variables; any argument gets the usage, not a 15-minute run
        print(__doc__)
        return 0 if sys.argv[1] in ("-h", "--help") else 2
    bench = Bench()

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return bench.main()
    except KeyboardInterrupt:
        bl.log("interrupted: cleaning up")
        bench.cleanup.run()
        return 130


if __name__ == "__main__":
    sys.exit(main())
