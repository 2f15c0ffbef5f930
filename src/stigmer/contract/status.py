"""The status the supervisor sends over its control socket and the CLI reads.

Plain ``TypedDict`` s (standard library only): ``stigmer server status`` reads
them on its hot path, and JSON is what travels. One constructor per shape, so
a stopped stack and a running one have the same fields.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, cast

from stigmer.contract.registry import COMPONENTS

#: ``waiting``: what it runs on (the Docker engine) does not answer; not a crash,
#: and what it ran may still work (``ready`` says); ``waiting_for`` says what for
State = Literal[
    "starting", "running", "restarting", "waiting", "stopping", "stopped", "failed", "orphaned"
]


class ComponentDetails(TypedDict, total=False):
    """Fields only some components have."""

    #: agent-runner: ``docker`` or ``local``; its task queue and worker identity
    mode: str
    task_queue: str
    identity: str
    #: agent-runner in docker mode: the image and container name
    image: str
    container: str
    #: agent-runner in dev mode (``server start --dev``): the src folder it runs, and how
    #: often it was restarted because a source changed (not counted as crashes)
    dev_source: str
    dev_restarts: int
    #: temporal: the Web UI (managed), the namespace, the database file; external or not
    ui_url: str
    namespace: str
    database: str
    external: bool


class CrashInfo(TypedDict):
    """A component's last real crash; kept in ``status`` after it recovered."""

    error: str
    fix: str | None
    exit_code: int | None
    #: when (seconds since the epoch)
    at: float


class ComponentStatus(ComponentDetails):
    """One component: what the supervisor knows about it now."""

    name: str
    state: State
    ready: bool
    #: False for an external Temporal: watched, never started or stopped
    managed: bool
    pid: int | None
    container_id: str | None
    restarts: int
    started_at: float | None
    uptime_s: float | None
    ready_in_s: float | None
    endpoint: str | None
    #: why it is not working now; cleared once it is ready again (``last_crash`` keeps it)
    last_error: str | None
    last_crash: CrashInfo | None
    last_exit_code: int | None
    #: what to do about ``last_error`` (a command or a setting to change), if known
    fix: str | None
    #: while not ready: what it waits for ("Temporal at X is not reachable: ...")
    waiting_for: str | None


class DevInfo(TypedDict):
    """Dev mode (``server start --dev``): what the runner runs, and its restarts on change."""

    source: str
    #: restarts of the runner(s) because a source changed
    restarts: int
    #: the files of the last change (relative to ``source``), and when (epoch seconds)
    last_change: list[str] | None
    last_change_at: float | None


class SupervisorInfo(TypedDict):
    pid: int
    started_at: float


class Endpoints(TypedDict):
    api: str
    temporal: str
    temporal_ui: str | None
    namespace: str


class StackStatus(TypedDict, total=False):
    """The whole stack (``server status --json`` prints this)."""

    running: bool
    ready: bool
    version: str
    home: str
    supervisor: SupervisorInfo | None
    components: list[ComponentStatus]
    endpoints: Endpoints | None
    data_dir: str | None
    workspace: str | None
    #: which components this host runs (``server start --only``)
    only: list[str]
    #: dev mode (``server start --dev``), else None
    dev: DevInfo | None
    #: set by ``server start``: the runner image it resolved, how long it took
    runner_image: dict[str, Any] | None
    took_s: float
    already_running: bool


#: The fields of a component's status that are empty until something is known.
_UNKNOWN = (
    "pid",
    "container_id",
    "started_at",
    "uptime_s",
    "ready_in_s",
    "endpoint",
    "last_error",
    "last_crash",
    "last_exit_code",
    "fix",
    "waiting_for",
)


def component_status(name: str, state: State = "stopped", **fields: Any) -> ComponentStatus:
    """A component's status with every field present (``stopped`` and empty by default)."""
    base = {"name": name, "state": state, "ready": False, "managed": True, "restarts": 0}
    return cast(ComponentStatus, {**base, **dict.fromkeys(_UNKNOWN), **fields})


def stack_status(
    home: str, version: str, components: list[ComponentStatus] | None = None, **fields: Any
) -> StackStatus:
    """A stack status (stopped, with every component stopped, unless ``fields`` say otherwise)."""
    comps = components if components is not None else [component_status(n) for n in COMPONENTS]
    base = {"running": False, "ready": False, "version": version, "home": home}
    empty = dict.fromkeys(("supervisor", "endpoints", "data_dir", "workspace", "dev"))
    return cast(StackStatus, {**base, "components": comps, **empty, **fields})


def all_ready(components: list[ComponentStatus]) -> bool:
    return bool(components) and all(c["state"] == "running" and c["ready"] for c in components)


def find_component(status: StackStatus, name: str) -> ComponentStatus | None:
    """The component called ``name`` (a host may run only some of them)."""
    return next((c for c in status.get("components", []) if c["name"] == name), None)
