"""The one place where flags, env vars, the config file and defaults are resolved.

Precedence, highest first:

1. a command-line flag (for example ``stigmer server start --server-port 9000``);
2. an environment variable (``STIGMER_SERVER_PORT=9000``);
3. the config file ``$STIGMER_HOME/config.yaml`` (``server_port: 9000``);
4. the built-in default (7234).

``STIGMER_HOME`` itself comes from ``--home`` or the env var, else ``~/.stigmer``;
it cannot be set in the config file, which lives inside it.

This module is imported by every CLI command, so it uses the standard library
only (YAML is imported lazily, when a config file exists); ``stigmer server
status`` must stay fast.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigmer.errors import ConfigError

#: The Temporal task queue the agent-runner polls. A constant, not a setting:
#: the API server and every runner must agree on it.
TASK_QUEUE = "agent_execution_runner"

#: Names of the stack's components, in start order (stop runs in reverse).
COMPONENTS = ("temporal", "stigmer-server", "agent-runner")

RUNNER_MODES = ("auto", "docker", "local")


@dataclass(frozen=True)
class Key:
    """One setting: its config-file key, env var, type, default and help."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    secret: bool = False
    minimum: float | None = None
    pattern: str | None = None

    @property
    def env(self) -> str:
        return "STIGMER_" + self.name.upper()

    def parse(self, raw: Any, origin: str) -> Any:
        """Turn a raw value (string from env/CLI, YAML scalar) into this key's type.

        Raises:
            ConfigError: the value does not fit the type or the choices.
        """
        if raw is None:
            if self.default is None:
                return None
            raise ConfigError(
                f"{self.name} is empty (from {origin}).",
                f"Give it a value, or remove it to use the default ({self.default}).",
            )
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value: Any = raw
                elif str(raw).strip().lower() in ("1", "true", "yes", "on"):
                    value = True
                elif str(raw).strip().lower() in ("0", "false", "no", "off", ""):
                    value = False
                else:
                    raise ValueError(raw)
            elif self.type is int:
                if isinstance(raw, bool):
                    raise ValueError(raw)
                value = int(str(raw).strip())
            elif self.type is float:
                value = float(str(raw).strip())
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError(raw)
            else:
                value = str(raw)
        except ValueError:
            raise ConfigError(
                f"Invalid value {raw!r} for {self.name} (from {origin}): expected {self.type.__name__}.",
                f"Set {self.name} to a valid {self.type.__name__}, for example "
                f"`stigmer config set {self.name} {self.default}`.",
            ) from None
        if self.choices and value not in self.choices:
            raise ConfigError(
                f"Invalid value {raw!r} for {self.name} (from {origin}).",
                f"Use one of: {', '.join(self.choices)}.",
            )
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(
                f"Invalid value {raw!r} for {self.name} (from {origin}): it must be at least {self.minimum:g}.",
                f"Use a value of {self.minimum:g} or more (default {self.default}).",
            )
        if self.pattern and not re.fullmatch(self.pattern, str(value)):
            raise ConfigError(
                f"Invalid value {raw!r} for {self.name} (from {origin}).",
                f"It must match {self.pattern} (default {self.default}).",
            )
        if self.type is int and self.name.endswith("_port") and not (0 < value < 65536):
            raise ConfigError(
                f"Invalid port {value} for {self.name} (from {origin}).",
                "Use a port between 1 and 65535.",
            )
        return value


KEYS: tuple[Key, ...] = (
    Key("server_port", int, 7234, "Port of the stigmer API server on 127.0.0.1."),
    Key("temporal_port", int, 7233, "gRPC port of the managed Temporal dev server on 127.0.0.1."),
    Key("temporal_ui_port", int, 8233, "Port of the managed Temporal Web UI on 127.0.0.1."),
    Key(
        "temporal_address",
        str,
        None,
        "host:port of an external Temporal (a cluster or Temporal Cloud). "
        "When set, no Temporal is started.",
    ),
    Key("temporal_namespace", str, "default", "Temporal namespace for executions."),
    Key("temporal_tls", bool, False, "Use TLS to reach an external Temporal."),
    Key("temporal_tls_ca_path", str, None, "CA bundle for an external Temporal's TLS."),
    Key("temporal_tls_cert_path", str, None, "Client certificate (mTLS) for an external Temporal."),
    Key("temporal_tls_key_path", str, None, "Client key (mTLS) for an external Temporal."),
    Key(
        "temporal_api_key",
        str,
        None,
        "API key for an external Temporal (Temporal Cloud); implies TLS.",
        secret=True,
    ),
    Key(
        "temporal_retention_days",
        int,
        30,
        "How long the managed Temporal keeps closed executions (namespace retention).",
        minimum=1,
    ),
    Key(
        "runner_mode",
        str,
        "auto",
        "How the agent-runner runs: docker, local (a host process), or auto.",
        choices=RUNNER_MODES,
    ),
    Key(
        "runner_image",
        str,
        "stigmer-agent-runner:local",
        "Local tag of the agent-runner image.",
        pattern=r"[a-z0-9][a-z0-9._/:@-]*",
    ),
    Key(
        "runner_registry",
        str,
        "ghcr.io/stigmer/agent-runner",
        "Registry repository the runner image is pulled from when it is not local.",
    ),
    Key("runner_tag", str, None, "Registry tag to pull; default v<CLI version>."),
    Key(
        "runner_container",
        str,
        "stigmer-agent-runner",
        "Name of the runner container.",
        pattern=r"[a-zA-Z0-9][a-zA-Z0-9_.-]*",
    ),
    Key("offline", bool, False, "Never pull images; use what is local."),
    Key(
        "runner_memory",
        str,
        "2g",
        "Memory limit of the runner container (docker syntax: 512m, 2g).",
        pattern=r"[0-9]+[bkmgBKMG]?",
    ),
    Key("runner_pids_limit", int, 512, "Process limit of the runner container.", minimum=16),
    Key(
        "workflow_sandbox",
        bool,
        False,
        "Run agent workflows in Temporal's workflow sandbox (catches non-deterministic "
        "calls at run time; ~40 ms slower per run).",
    ),
    Key(
        "default_model",
        str,
        "test",
        "provider:model for agents whose spec names no model (test is offline).",
    ),
    Key(
        "anthropic_api_key",
        str,
        None,
        "Key for anthropic: models (else ANTHROPIC_API_KEY).",
        secret=True,
    ),
    Key("openai_api_key", str, None, "Key for openai: models (else OPENAI_API_KEY).", secret=True),
    Key(
        "workspace",
        str,
        None,
        "Folder the agents' tools work in (mounted at /workspace); default data/workspace.",
    ),
    Key("database_url", str, None, "SQLAlchemy URL of the store; default SQLite under data/."),
    Key("start_timeout", float, 90.0, "Seconds `server start` waits for readiness.", minimum=1),
    Key(
        "stop_grace",
        float,
        10.0,
        "Seconds a component gets to stop before it is killed.",
        minimum=0,
    ),
    Key(
        "restart_limit",
        int,
        5,
        "Crash restarts allowed within restart_window before `failed`.",
        minimum=1,
    ),
    Key("restart_window", float, 120.0, "Seconds over which restart_limit is counted.", minimum=1),
    Key(
        "log_max_bytes",
        int,
        10 * 1024 * 1024,
        "Size at which a component log is rotated (0: never).",
        minimum=0,
    ),
    Key("log_backups", int, 3, "Rotated log files kept per component stream.", minimum=0),
)

KEYS_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}


def home_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """``STIGMER_HOME``: the ``--home`` flag, else the env var, else ``~/.stigmer``."""
    raw = flag or os.environ.get("STIGMER_HOME") or "~/.stigmer"
    return Path(raw).expanduser().absolute()


@dataclass(frozen=True)
class Paths:
    """Every file the stack keeps, all under ``STIGMER_HOME``."""

    home: Path

    @property
    def config(self) -> Path:
        return self.home / "config.yaml"

    @property
    def credentials(self) -> Path:
        return self.home / "credentials"

    @property
    def api_token(self) -> Path:
        """The API bearer token, mode 0600, generated on first start."""
        return self.credentials / "api-token"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def workspace(self) -> Path:
        return self.data / "workspace"

    @property
    def temporal_db(self) -> Path:
        return self.data / "temporal.db"

    @property
    def store_db(self) -> Path:
        return self.data / "stigmer.db"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        """Pid files, locks, the control socket and the stack's effective settings."""
        return self.home / "run"

    @property
    def start_lock(self) -> Path:
        return self.run / "stack.lock"

    @property
    def supervisor_lock(self) -> Path:
        return self.run / "supervisor.lock"

    @property
    def stack_file(self) -> Path:
        """The settings the running stack was started with (JSON, mode 0600)."""
        return self.run / "stack.json"

    @property
    def control_socket(self) -> Path:
        """The supervisor's control socket (AF_UNIX; never a network port).

        Unix socket paths are capped near 104 bytes, so a long home falls back to
        a per-home name in the temp dir.
        """
        path = self.run / "supervisor.sock"
        if len(str(path)) < 100:
            return path
        import hashlib
        import tempfile

        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"stigmer-{os.getuid()}-{digest}.sock"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log_file(self, name: str, stream: str = "out") -> Path:
        """``logs/<name>.log`` (stdout) or ``logs/<name>.err.log`` (stderr)."""
        return self.logs / (f"{name}.log" if stream == "out" else f"{name}.err.log")

    def ensure(self) -> None:
        """Create the folders (private where they hold secrets or sockets)."""
        for d in (self.home, self.data, self.workspace, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.credentials, self.run):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)


@dataclass
class Settings:
    """Resolved settings plus where each value came from.

    ``sources[name]`` is one of ``flag``, ``env``, ``config`` or ``default``.
    """

    home: Path
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    @property
    def paths(self) -> Paths:
        return Paths(self.home)

    @property
    def temporal_managed(self) -> bool:
        return not self.values.get("temporal_address")

    @property
    def temporal_target(self) -> str:
        """host:port clients use: the external address, else the managed server."""
        return self.values.get("temporal_address") or f"127.0.0.1:{self.values['temporal_port']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.values['server_port']}"

    @property
    def workspace_dir(self) -> Path:
        """The agents' workspace: the ``workspace`` setting, else ``data/workspace``."""
        ws = self.values.get("workspace")
        return Path(ws).expanduser().absolute() if ws else self.paths.workspace

    @property
    def database(self) -> str:
        return self.values.get("database_url") or f"sqlite:///{self.paths.store_db}"

    def public(self) -> dict[str, Any]:
        """Values with secrets masked, for display."""
        return {k: ("****" if KEYS_BY_NAME[k].secret and v else v) for k, v in self.values.items()}

    def to_json(self) -> dict[str, Any]:
        return {"home": str(self.home), "values": self.values, "sources": self.sources}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        return cls(Path(data["home"]), dict(data["values"]), dict(data.get("sources", {})))


def read_config_file(path: Path) -> dict[str, Any]:
    """Read ``config.yaml``; a missing file is an empty config.

    Raises:
        ConfigError: the YAML is broken, not a mapping, or names an unknown key.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: the config file is not UTF-8 text.", f"Fix or delete {path}."
        ) from None
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not body or body == ["{}"]:  # the file as first written: no need to load a YAML parser
        return {}
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(
            f"{where}: the config file is not valid YAML ({getattr(exc, 'problem', exc)}).",
            f"Fix or delete {path}; `stigmer config list` shows the keys.",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the config file must be a mapping of key: value.",
            f"Fix or delete {path}.",
        )
    unknown = sorted(set(data) - set(KEYS_BY_NAME))
    if unknown:
        raise ConfigError(
            f"{path}: unknown config key(s): {', '.join(map(str, unknown))}.",
            f"Known keys: {', '.join(KEYS_BY_NAME)}.",
        )
    return data


def resolve(
    home: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every key by flag > env > config > default.

    Args:
        home: the ``--home`` flag, if given.
        flags: values from command-line flags; ``None`` values are ignored.
        env: the environment (defaults to ``os.environ``).

    Raises:
        ConfigError: a value is invalid, or the config file is broken.
    """
    env = os.environ if env is None else env
    root = home_dir(home)
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"STIGMER_HOME {root} is a file, not a folder.",
            "Point STIGMER_HOME (or --home) at a folder, or remove that file.",
        )
    config = read_config_file(Paths(root).config)
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        if key.name in flags:
            values[key.name] = key.parse(flags[key.name], "a flag")
            sources[key.name] = "flag"
        elif env.get(key.env) not in (None, ""):
            values[key.name] = key.parse(env[key.env], f"env {key.env}")
            sources[key.name] = "env"
        elif key.name in config:
            values[key.name] = key.parse(config[key.name], str(Paths(root).config))
            sources[key.name] = "config"
        else:
            values[key.name] = key.default
            sources[key.name] = "default"
    return Settings(root, values, sources)


CONFIG_HEADER = """\
# stigmer configuration. Precedence: flag > env (STIGMER_<KEY>) > this file > default.
# `stigmer config list` shows every key, its value and where it comes from.
"""


def write_config_file(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``config.yaml`` atomically with mode 0600."""
    import yaml

    body = yaml.safe_dump(dict(data), sort_keys=True) if data else "{}\n"
    write_private(path, CONFIG_HEADER + body)


def ensure_config_file(paths: Paths) -> bool:
    """Create an empty ``config.yaml`` (mode 0600) if missing. Returns True if created."""
    if paths.config.exists():
        return False
    write_private(paths.config, CONFIG_HEADER + "{}\n")
    return True


def ensure_api_token(paths: Paths) -> str:
    """Return the API bearer token, generating it (mode 0600) on first use."""
    paths.ensure()
    try:
        token = paths.api_token.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    write_private(paths.api_token, token + "\n")
    return token


def read_api_token(paths: Paths) -> str | None:
    try:
        return paths.api_token.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
