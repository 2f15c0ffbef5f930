"""The benchmark's outputs: the console table, the results file name and docs/performance.md."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

BEGIN = "<!-- BEGIN GENERATED: bench/run.py rewrites this block; edit outside it -->"
END = "<!-- END GENERATED -->"

RERUN = "make bench"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s" if abs(value) < 100 else f"{value:.0f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "exec/s":
        return f"{value:.2f}/s"
    return f"{value:.3g} {unit}"


def rows(figures: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for f in figures:
        unit = f["unit"]
        if not f.get("n"):
            cells = ["-", "-", "-"]
        else:
            cells = [fmt(f["median"], unit), fmt(f["min"], unit), fmt(f["max"], unit)]
        floor = fmt(f["floor_median"], unit) if f.get("floor_median") is not None else "-"
        ratio = f"{f['ratio']:.2f}x" if f.get("ratio") is not None else "-"
        target = f"<= {fmt(f['target'], unit)}" if f.get("target") is not None else "-"
        if f.get("pass") is True:
            result = "PASS"
        elif f.get("pass") is False:
            result = "MISS"
        else:
            result = "info" if f.get("n") else "n/a"
        out.append([f["label"], *cells, floor, ratio, target, result])
    return out


HEAD = ["figure", "median", "min", "max", "floor/peer", "ratio", "target", "result"]


def table(figures: list[dict[str, Any]]) -> str:
    body = rows(figures)
    widths = [max(len(r[i]) for r in [HEAD, *body]) for i in range(len(HEAD))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEAD), sep, *(line(r) for r in body)])


def markdown_table(figures: list[dict[str, Any]]) -> str:
    body = rows(figures)
    out = [
        "| " + " | ".join(HEAD) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(HEAD) - 1)) + "|",
    ]
    for r in body:
        label = r[0].replace("  · ", "&nbsp;&nbsp;· ")
        out.append("| " + " | ".join([label, *r[1:]]) + " |")
    return "\n".join(out)


def results_path(folder: Path, started: datetime) -> Path:
    """``<date>.json``; a second run on the same day gets ``<date>-2.json``, and so on."""
    day = started.strftime("%Y-%m-%d")
    path = folder / f"{day}.json"
    n = 2
    while path.exists():
        path = folder / f"{day}-{n}.json"
        n += 1
    return path


def details(data: dict[str, Any]) -> list[str]:
    figs = {f["key"]: f for f in data["figures"]}
    out: list[str] = []
    for mode in ("docker", "local"):
        f = figs.get(f"start_{mode}")
        if not f:
            continue
        out += [
            "",
            f"**`server start`, {mode} mode, per cycle** (wall s; each component's `ready_in_s` "
            "from its launch; offsets from the supervisor log, s after the CLI started):",
            "",
            "| cycle | wall | supervisor up | temporal ready (ready_in) | stigmer-server ready (ready_in) "
            "| agent-runner ready (ready_in) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for i, c in enumerate(f["extra"]["cycles"]):
            tl, ri = c["timeline"], c["ready_in_s"]

            def cell(name: str, tl: dict[str, Any] = tl, ri: dict[str, Any] = ri) -> str:
                at = tl.get(name)
                return f"{at:.2f} ({ri.get(name)})" if at is not None else "-"

            label = "warm-up (fresh home)" if i == 0 and not data["smoke"] else str(i)
            up = tl.get("supervisor_up")
            out.append(
                f"| {label} | {c['wall_s']:.2f} | {up:.2f} | "
                if up is not None
                else f"| {label} | {c['wall_s']:.2f} | - | "
            )
            out[-1] += f"{cell('temporal')} | {cell('stigmer-server')} | {cell('agent-runner')} |"
    mem = figs.get("runner_idle_memory")
    if mem:
        e = mem["extra"]
        out += [
            "",
            f"**Idle memory** (MB, median of {mem['n']}): runner usage {mem['median']:.1f}, "
            f"anonymous {e['runner_anon_mb']['median']:.1f}, sum of VmRSS {e['runner_vmrss_mb']['median']:.1f}; "
            f"bare worker usage {mem['floor_median']:.1f}, anonymous {e['bare_anon_mb']['median']:.1f}, "
            f"VmRSS {e['bare_vmrss_mb']['median']:.1f}.",
        ]
    run = figs.get("run_e2e")
    if run:
        ip = run["extra"]["inprocess"]
        out += [
            "",
            f"**`stigmer run`**: p50 {run['median']:.3f} s, p95 {run['extra']['p95']:.3f} s over "
            f"{run['n']} runs; in-process agent p50 {run['floor_median'] * 1000:.1f} ms "
            f"(first run {ip['first_s'] * 1000:.0f} ms, imports {ip['import_s']:.2f} s, "
            f"{ip['requests']} model requests, {ip['tool_calls']} tool calls).",
        ]
        cpu = run["extra"].get("cpu_ms_per_run") or {}
        if cpu:
            out += [
                "",
                "CPU per `stigmer run` (ms, mean over the runs): "
                + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
                + f"; total {sum(cpu.values()):.0f} ms on {data['machine'].get('cpus')} CPUs.",
            ]
        h = run["extra"].get("history")
        if h:
            kinds = ", ".join(f"{v} {k}" for k, v in sorted(h["by_type"].items()))
            out += [
                "",
                f"Temporal history of the last run: {h['events']} events, {h['workflow_tasks']} "
                f"workflow tasks, {h['activities']} activities ({kinds}); "
                f"{h['total_s'] * 1000:.0f} ms from start to completion, of which activities ran "
                f"{h['activity_exec_s'] * 1000:.0f} ms, workflow tasks waited "
                f"{h['wft_dispatch_s'] * 1000:.0f} ms for a worker and took "
                f"{h['wft_processing_s'] * 1000:.0f} ms.",
            ]
    rs = figs.get("runner_start")
    if rs and rs["extra"].get("create_and_start_api_s", {}).get("n"):
        out += [
            "",
            f"**Runner start**: the create+start API calls take "
            f"{rs['extra']['create_and_start_api_s']['median']:.2f} s of the "
            f"{rs['median']:.2f} s (median).",
        ]
    return out


#: The processes of a cluster: what each scales with (runner hosts, or a shared service).
SHARED = ("temporal", "stigmer-server", "postgres")


def at_scale(data: dict[str, Any]) -> list[str]:
    """ "At scale": per-process CPU per execution, what one core sustains, what limits N runners.

    Computed from the run section's CPU per execution (PostgreSQL's, when it was
    measured: a cluster shares a PostgreSQL store), with the formula shown.
    """
    figs = {f["key"]: f for f in data["figures"]}
    prefix = "run_cpu_ms_postgres_" if "run_cpu_ms_postgres" in figs else "run_cpu_ms_"
    per = {
        k.removeprefix(prefix): f["median"]
        for k, f in figs.items()
        if k.startswith(prefix) and isinstance(f.get("median"), (int, float)) and f["median"] > 0
    }
    if not per:
        return []
    total = sum(per.values())
    store = "PostgreSQL" if prefix.endswith("postgres_") else "SQLite"
    lines = [
        "",
        "### At scale",
        "",
        f"CPU per execution by process (the `stigmer run` figures on {store}, this run), and the "
        "executions per second one core of each sustains: `1000 / cpu_ms`.",
        "",
        "| process | CPU per execution | executions/s per core | scales with |",
        "|---|---:|---:|---|",
    ]
    for name, ms in sorted(per.items(), key=lambda kv: -kv[1]):
        scales = {
            "temporal": "shared: the Temporal service (its own cluster)",
            "stigmer-server": "shared: the API servers (several share one store)",
            "postgres": "shared: the one store",
            "agent-runner": "the runner hosts",
            "cli": "the clients (not a cluster cost)",
        }.get(name, "each host")
        lines.append(f"| {name} | {ms:.0f} ms | {1000 / ms:.1f} | {scales} |")
    lines.append(f"| all | {total:.0f} ms | {1000 / total:.1f} | |")
    runner = per.get("agent-runner")
    shared = {k: v for k, v in per.items() if k in SHARED}
    if runner and shared:
        limit, limit_ms = max(shared.items(), key=lambda kv: kv[1])
        n_star = limit_ms and runner / limit_ms
        lines += [
            "",
            "A cluster of N runner hosts with one core of runner each runs at most "
            f"`N x 1000 / {runner:.0f}` executions/s; each shared service caps it at "
            "`C x 1000 / cpu_ms` for its C cores. So throughput is "
            "`min(N x 1000 / runner_ms, C_temporal x 1000 / temporal_ms, "
            "C_api x 1000 / api_ms, C_pg x 1000 / postgres_ms)`. "
            f"Here the first shared limit is **{limit}** at {1000 / limit_ms:.1f} executions/s "
            f"per core: with one core of it, more than {n_star:.1f} runner cores add nothing, "
            f"and 1,000 executions a minute need about {1000 / 60 * total / 1000:.1f} cores in all "
            "before a model is called.",
        ]
    return lines


def generated(data: dict[str, Any], results_file: Path) -> str:
    m = data["machine"]
    k = data["knobs"]
    try:
        rel = results_file.resolve().relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        rel = results_file
    lines = [
        BEGIN,
        "",
        f"## Latest results ({data['started_at']}{', SMOKE run' if data['smoke'] else ''})",
        "",
        f"Rerun: `{RERUN}` (about {max(1, round(data['took_s'] / 60))} min here; "
        f"knobs in `bench/run.py`). Raw numbers: `{rel}`.",
        "",
        f"Machine: {m.get('cpu_model', '?')}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB RAM; "
        f"{m.get('platform')}; Docker engine {m.get('docker_server')} "
        f"({m.get('docker_storage_driver')}, cgroup {m.get('docker_cgroup')}), classic builder; "
        f"Python {m.get('python')} (bytecode: "
        + (
            "a private cache, the steady state of an install"
            if k.get("bytecode") == "private"
            else f"as the environment has it, {data.get('environment_bytecode')}"
        )
        + f"); {m.get('temporal_cli', 'temporal CLI ?')}; "
        f"git {m.get('git_revision')}{' (dirty tree)' if m.get('git_dirty') else ''}. "
        f"Load average (1/5/15 min) {data['load_start']} at start, {data['load_end']} at the end.",
        "",
        f"Counts: {k['reps']} floor and runner-start repetitions, {k['start_reps']} `server start` "
        f"cycles per mode after a warm-up, {k['cli_reps']} CLI calls each, {k['rebuild_reps']} "
        f"source-only rebuilds, {k['nocache_reps']} no-cache build(s), {k['mem_reps']} containers "
        f"each for memory after {k['idle_s']} s idle, {k['runs']} `stigmer run`, "
        f"{k.get('tput_reps', 1)} x {k['queued']} queued executions per throughput case, "
        f"1 vs {k['scale_runners']} runners.",
        "",
        markdown_table(data["figures"]),
        *details(data),
        *at_scale(data),
    ]
    if data.get("skipped"):
        lines += ["", "Not measured in this run:", ""]
        lines += [f"- `{k}`: {v}" for k, v in data["skipped"].items()]
    if data.get("errors"):
        lines += ["", "Errors in this run:", ""]
        lines += [f"- `{k}`: {v}" for k, v in data["errors"].items()]
    lines += ["", END]
    return "\n".join(lines)


SKELETON = """# Performance

How fast stigmer starts, builds, runs and scales, measured against the floor of
the tools underneath, with numbers anyone can rerun: `make bench`.

{generated}
"""


def update_docs(path: Path, data: dict[str, Any], results_file: Path) -> None:
    block = generated(data, results_file)
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
            path.write_text(pattern.sub(lambda _m: block, text, count=1))
            return
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SKELETON.format(generated=block))
