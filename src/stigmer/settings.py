"""The one place where flags, env vars, the config file and defaults are resolved.

Precedence, highest first:

1. a command-line flag (for example ``stigmer server start --server-port 9000``);
2. an environment variable (``STIGMER_SERVER_PORT=9000``; a few keys also
   accept the name their users know, like ``ANTHROPIC_API_KEY``);
3. the config file ``$STIGMER_HOME/config.yaml`` (``server_port: 9000``);
4. the built-in default (7234).

``STIGMER_HOME`` itself comes from ``--home`` or the env var, else ``~/.stigmer``;
it cannot be set in the config file, which lives inside it.

:class:`Settings` is typed: each key is a field, declared once with its
default, help and rules (:func:`setting`), and :data:`KEYS` is derived from
the fields. This module is imported by every CLI command, so it uses the
standard library only (YAML is imported lazily, when a config file exists):
``stigmer run`` and ``stigmer server status`` must stay fast.

Child processes never read settings: the supervisor turns them into each
child's runtime configuration (:mod:`stigmer.contract.config`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stigmer.contract.registry import COMPONENTS, PROVIDERS, parse_model
from stigmer.errors import ConfigError
from stigmer.files import write_private

RUNNER_MODES = ("auto", "docker", "local")

#: The Python type each annotation stands for (``from __future__`` makes them strings).
_TYPES: dict[str, type] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "str | None": str,
    "int | None": int,
}


class Key:
    """One setting: its config-file key, env vars, type, default and rules.

    (Plain classes here and in :class:`Settings`, not dataclasses: every CLI
    command imports this module, and ``dataclasses`` brings ``inspect``, ``ast``
    and more, a sixth of ``stigmer run``'s imports.)
    """

    __slots__ = (
        "aliases",
        "check",
        "choices",
        "default",
        "effective",
        "help",
        "minimum",
        "name",
        "pattern",
        "secret",
        "type",
    )

    def __init__(
        self,
        name: str,
        type: type,
        default: Any,
        help: str,
        choices: tuple[str, ...] | None = None,
        secret: bool = False,
        minimum: float | None = None,
        pattern: str | None = None,
        aliases: tuple[str, ...] = (),
        effective: Callable[[Settings], Any] | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.default = default
        self.help = help
        self.choices = choices
        self.secret = secret
        self.minimum = minimum
        self.pattern = pattern
        #: env vars read besides STIGMER_<NAME>, in order (the names users know)
        self.aliases = aliases
        #: the value in effect when unset, for display (``config list``)
        self.effective = effective
        #: extra check of a parsed value; raises ValueError with the reason
        self.check = check

    def __repr__(self) -> str:
        return f"Key({self.name!r})"

    @property
    def env(self) -> str:
        return "STIGMER_" + self.name.upper()

    @property
    def envs(self) -> tuple[str, ...]:
        """Every env var that sets this key, highest precedence first."""
        return (self.env, *self.aliases)

    def fix(self, origin: str, need: str) -> str:
        """What to do about a bad value from ``origin``: change it where it was set."""
        if origin.startswith("env "):
            return f"Fix or unset {origin[4:]} (it overrides config.yaml): {need}."
        if origin == "a flag":
            return f"Give the flag {need}."
        return f"`stigmer config set {self.name} VALUE` with {need}."

    def parse(self, raw: Any, origin: str) -> Any:
        """Turn a raw value (string from env/CLI, YAML scalar) into this key's type.

        Raises:
            ConfigError: the value does not fit the type, the choices or the rules.
        """
        if raw is None:
            if self.default is None:
                return None
            raise ConfigError(
                f"{self.name} is empty (from {origin}).",
                f"Give it a value, or remove it to use the default ({self.default}).",
            )

        def bad(why: str, need: str) -> ConfigError:
            return ConfigError(
                f"Invalid value {raw!r} for {self.name} (from {origin}){why}.",
                self.fix(origin, need),
            )

        try:
            value = _convert(self.type, raw)
        except ValueError:
            raise bad(
                f": expected {self.type.__name__}",
                f"a valid {self.type.__name__} (default {self.default})",
            ) from None
        if self.choices and value not in self.choices:
            raise bad("", f"one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise bad(
                f": it must be at least {self.minimum:g}",
                f"{self.minimum:g} or more (default {self.default})",
            )
        if self.pattern and not re.fullmatch(self.pattern, str(value)):
            raise bad("", f"a value that matches {self.pattern} (default {self.default})")
        if self.type is int and self.name.endswith("_port") and not (0 < value < 65536):
            raise bad(": not a port", "a port between 1 and 65535")
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as exc:
                raise bad(f": {exc}", "a valid value") from None
        return value


def _convert(kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(raw)
    if kind is int:
        if isinstance(raw, bool):
            raise ValueError(raw)
        return int(str(raw).strip())
    if kind is float:
        value = float(str(raw).strip())
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(raw)
        return value
    return str(raw)


class _Setting:
    """A key as :class:`Settings` declares it, until :func:`_keys` makes it a :class:`Key`."""

    __slots__ = ("default", "rules")

    def __init__(self, default: Any, rules: dict[str, Any]) -> None:
        self.default = default
        self.rules = rules


def setting(default: Any, help: str, **rules: Any) -> Any:
    """A settings field: its default, help text and :class:`Key` rules."""
    return _Setting(default, {"help": help, **rules})


def _check_model(value: Any) -> None:
    parse_model(str(value))


#: More workers than this on one host is a mistake, not a deployment.
MAX_RUNNER_REPLICAS = 64


def _check_replicas(value: Any) -> None:
    if int(value) > MAX_RUNNER_REPLICAS:
        raise ValueError(f"at most {MAX_RUNNER_REPLICAS} per host; add hosts for more")


def _check_address(value: Any) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise ValueError("not an IP address (use 127.0.0.1, or this host's address)") from None


def _bind_setting(help: str) -> Any:
    """An address to listen on: an IP, loopback by default."""
    return setting("127.0.0.1", help, check=_check_address)


def _check_components(value: Any) -> None:
    names = [c.strip() for c in str(value).split(",") if c.strip()]
    unknown = [c for c in names if c not in COMPONENTS]
    if unknown or not names:
        raise ValueError(
            f"components are {', '.join(COMPONENTS)}; not {', '.join(unknown) or '(none)'}"
        )


def _connect_host(bind: str) -> str:
    """The address a client on this host uses for something bound to ``bind``."""
    return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


def _default_tag(_settings: Settings) -> str:
    from stigmer.images.resolve import registry_tag

    return registry_tag()[0]


def provider_setting(provider: str, what: str) -> Any:
    """The setting of a provider's key or server URL, described by the provider registry."""
    p = PROVIDERS[provider]
    if what == "key":
        return setting(
            None,
            f"API key for {provider}: models ({p.help}); also read from {p.key_env}.",
            secret=True,
            aliases=(p.key_env,),
        )
    return setting(
        None,
        f"URL of {p.help} for {provider}: models; also read from {p.base_url_env}.",
        aliases=(p.base_url_env,),
        effective=lambda _s: p.default_base_url,
    )


class Settings:
    """The resolved settings of one home, plus where each value came from.

    ``sources[name]`` is ``flag``, ``env``, ``config`` or ``default``. Built with
    keywords: ``home``, any key (else its default), ``sources``.
    """

    home: Path
    server_port: int = setting(7234, "Port of the stigmer API server.")
    server_bind: str = _bind_setting(
        "Address the API server listens on; beyond loopback only with TLS "
        "(server_tls_cert_path, server_tls_key_path) or --insecure-bind."
    )
    server_tls_cert_path: str | None = setting(
        None, "Certificate (PEM) the API server presents (https); with server_tls_key_path."
    )
    server_tls_key_path: str | None = setting(None, "Private key (PEM) of server_tls_cert_path.")
    insecure_bind: bool = setting(
        False, "Allow listening beyond loopback without TLS (API, managed Temporal): not advised."
    )
    only: str | None = setting(
        None,
        "The components this host runs, comma-separated (temporal, stigmer-server, "
        "agent-runner); default all. The others are found by temporal_address and api_url.",
        check=_check_components,
        effective=lambda _s: ",".join(COMPONENTS),
    )
    api_url: str | None = setting(
        None,
        "URL of the stigmer API that this host's CLI and runner use (another host's, for a "
        "runner host or a remote CLI); default this host's API server.",
        effective=lambda s: s.api_endpoint,
    )
    api_token: str | None = setting(
        None,
        "Bearer token for api_url (STIGMER_API_TOKEN): an admin token for the CLI, a runner "
        "token on a runner host; default credentials/api-token (and runner-token).",
        secret=True,
    )
    api_token_file: str | None = setting(None, "File holding api_token (mode 0600).")
    api_tls_ca_path: str | None = setting(
        None, "CA bundle (PEM) that signed the API's certificate, for an https api_url."
    )
    stack_key_path: str | None = setting(
        None,
        "The stack's key file, shared by every host of one stack; default "
        "credentials/stack-key.json.",
        effective=lambda s: str(s.paths.stack_key),
    )
    temporal_port: int = setting(7233, "gRPC port of the managed Temporal dev server.")
    temporal_ui_port: int = setting(8233, "Port of the managed Temporal Web UI.")
    temporal_bind: str = _bind_setting(
        "Address the managed Temporal (and its UI) listens on: 127.0.0.1, or 0.0.0.0 for every "
        "address; it has no TLS and no login, so beyond loopback only with --insecure-bind."
    )
    temporal_address: str | None = setting(
        None,
        "host:port of an external Temporal (a cluster or Temporal Cloud). "
        "When set, no Temporal is started.",
    )
    temporal_ui_url: str | None = setting(
        None,
        "URL of the Temporal Web UI that the console links workflows to; default the managed "
        "Temporal's UI (an external Temporal: no link unless set).",
        pattern=r"https?://\S+",
        effective=lambda s: s.temporal_ui_endpoint,
    )
    temporal_namespace: str = setting("default", "Temporal namespace for executions.")
    temporal_tls: bool = setting(False, "Use TLS to reach an external Temporal.")
    temporal_tls_ca_path: str | None = setting(
        None, "CA bundle (PEM) that signed an external Temporal's certificate."
    )
    temporal_tls_cert_path: str | None = setting(
        None, "Client certificate (PEM) for an external Temporal that asks for one (mTLS)."
    )
    temporal_tls_key_path: str | None = setting(
        None, "Private key (PEM) of temporal_tls_cert_path."
    )
    temporal_tls_server_name: str | None = setting(
        None, "Name to verify the Temporal server's certificate against, if not its host."
    )
    temporal_api_key: str | None = setting(
        None, "API key for an external Temporal (Temporal Cloud); implies TLS.", secret=True
    )
    temporal_retention_days: int = setting(
        30,
        "How long the managed Temporal keeps closed executions (namespace retention).",
        minimum=1,
    )
    runner_mode: str = setting(
        "auto",
        "How the agent-runner runs: docker, local (a host process), or auto.",
        choices=RUNNER_MODES,
    )
    runner_image: str = setting(
        "stigmer-agent-runner:local",
        "Local tag of the agent-runner image.",
        pattern=r"[a-z0-9][a-z0-9._/:@-]*",
    )
    runner_registry: str = setting(
        "ghcr.io/stigmer/agent-runner",
        "Registry repository the runner image is pulled from when it is not local.",
    )
    runner_tag: str | None = setting(
        None, "Registry tag to pull; default v<CLI version>.", effective=_default_tag
    )
    runner_container: str = setting(
        "stigmer-agent-runner",
        "Name of the runner container.",
        pattern=r"[a-zA-Z0-9][a-zA-Z0-9_.-]*",
    )
    offline: bool = setting(False, "Never pull images; use what is local.")
    runner_memory: str = setting(
        "2g",
        "Memory limit of the runner container (docker syntax: 512m, 2g).",
        pattern=r"[0-9]+[bkmgBKMG]?",
    )
    runner_pids_limit: int = setting(512, "Process limit of the runner container.", minimum=16)
    runner_replicas: int = setting(
        1,
        "Agent-runner workers on this host (containers in docker mode), each fed its "
        "configuration and supervised on its own: agent-runner, agent-runner-2, ...",
        minimum=1,
        check=_check_replicas,
    )
    dev: bool = setting(
        False,
        "Development mode (`server start --dev`, from a checkout): the runner runs the "
        "sources of dev_source, mounted read-only in docker mode, and restarts on a change.",
    )
    dev_source: str | None = setting(
        None,
        "With dev: the src folder whose stigmer package the runner runs; default the src "
        "of the checkout this CLI runs from.",
        effective=lambda s: str(s.dev_source_dir) if s.dev_source_dir else None,
    )
    workflow_sandbox: bool = setting(
        False,
        "Run agent workflows in Temporal's workflow sandbox (catches non-deterministic "
        "calls at run time; ~40 ms slower per run).",
    )
    default_model: str = setting(
        "test",
        "provider:model for agents whose spec names no model (test is offline).",
        check=_check_model,
    )
    anthropic_api_key: str | None = provider_setting("anthropic", "key")
    openai_api_key: str | None = provider_setting("openai", "key")
    ollama_base_url: str | None = provider_setting("ollama", "base_url")
    reserved_secrets_allowed: str | None = setting(
        None,
        "Comma-separated names of stigmer's own or a provider's variables (STIGMER_*, "
        "ANTHROPIC_API_KEY, ...) that agents may still reference as {secret: NAME}.",
    )
    workspace: str | None = setting(
        None,
        "Folder the agents' tools work in (mounted at /workspace); default data/workspace.",
        effective=lambda s: str(s.workspace_dir),
    )
    database_url: str | None = setting(
        None,
        "SQLAlchemy URL of the store; default SQLite under data/.",
        secret=True,
        effective=lambda s: s.database,
    )
    backup_keep: int = setting(
        5,
        "SQLite store backups kept in data/backups, one taken at each start of the API "
        "server whose store changed since the last (0: none). A PostgreSQL store is not "
        "backed up: use pg_dump.",
        minimum=0,
    )
    ui_login_ttl: float = setting(
        120.0,
        "Seconds a login link of `stigmer ui` stays valid (it works once).",
        minimum=1,
    )
    start_timeout: float = setting(90.0, "Seconds `server start` waits for readiness.", minimum=1)
    stop_grace: float = setting(
        10.0,
        "Seconds running activities get to finish when the stack stops (a component is "
        "killed 2 s later).",
        minimum=0,
    )
    restart_limit: int = setting(
        5, "Crash restarts allowed within restart_window before `failed`.", minimum=1
    )
    restart_window: float = setting(
        120.0, "Seconds over which restart_limit is counted.", minimum=1
    )
    restart_unready_after: float = setting(
        60.0,
        "Seconds a component may stop answering (the managed Temporal, the API server), "
        "while its process runs, before it is restarted (0: never).",
        minimum=0,
    )
    log_max_bytes: int = setting(
        10 * 1024 * 1024, "Size at which a component log is rotated (0: never).", minimum=0
    )
    log_backups: int = setting(3, "Rotated log files kept per component stream.", minimum=0)
    sources: dict[str, str]

    def __init__(self, *, home: Path, sources: dict[str, str] | None = None, **values: Any) -> None:
        unknown = values.keys() - KEYS_BY_NAME.keys()
        if unknown:
            raise TypeError(f"Settings() got unknown keys: {', '.join(sorted(unknown))}")
        self.home = home
        for key in KEYS:
            setattr(self, key.name, values.get(key.name, key.default))
        self.sources = {} if sources is None else sources

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return self.home == other.home and self.values() == other.values()

    __hash__ = None  # type: ignore[assignment]  # mutable (set)

    def __repr__(self) -> str:  # secrets masked
        shown = ", ".join(f"{k}={v!r}" for k, v in self.public().items())
        return f"Settings(home={str(self.home)!r}, {shown})"

    @property
    def paths(self) -> Paths:
        return Paths(self.home)

    @property
    def temporal_managed(self) -> bool:
        return not self.temporal_address

    @property
    def temporal_target(self) -> str:
        """host:port clients use: the external address, else the managed server."""
        return self.temporal_address or f"{_connect_host(self.temporal_bind)}:{self.temporal_port}"

    @property
    def server_endpoint(self) -> str:
        """The URL of this host's API server (https with TLS)."""
        scheme = "https" if self.server_tls_cert_path else "http"
        host = _connect_host(self.server_bind)
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.server_port}"

    @property
    def temporal_ui_endpoint(self) -> str | None:
        """The Temporal Web UI's URL: ``temporal_ui_url``, else the managed Temporal's UI."""
        if self.temporal_ui_url:
            return self.temporal_ui_url.rstrip("/")
        if not self.temporal_managed:
            return None
        return f"http://{_connect_host(self.temporal_bind)}:{self.temporal_ui_port}"

    @property
    def api_endpoint(self) -> str:
        """The URL of the API this host's CLI and runner use: ``api_url``, else this host's."""
        return self.api_url.rstrip("/") if self.api_url else self.server_endpoint

    @property
    def components(self) -> tuple[str, ...]:
        """The components this host runs (the ``only`` setting), in start order."""
        if not self.only:
            return COMPONENTS
        wanted = {c.strip() for c in self.only.split(",") if c.strip()}
        return tuple(c for c in COMPONENTS if c in wanted)

    @property
    def stack_key_file(self) -> Path:
        return (
            Path(self.stack_key_path).expanduser() if self.stack_key_path else self.paths.stack_key
        )

    @property
    def workspace_dir(self) -> Path:
        """The agents' workspace: the ``workspace`` setting, else ``data/workspace``."""
        ws = self.workspace
        return Path(ws).expanduser().absolute() if ws else self.paths.workspace

    @property
    def dev_source_dir(self) -> Path | None:
        """The src folder the runner runs in dev mode: ``dev_source``, else this checkout's.

        None when neither is set (an installed package); :mod:`stigmer.stack.dev`
        checks that it holds the runner's sources.
        """
        if self.dev_source:
            return Path(self.dev_source).expanduser().absolute()
        from stigmer._version import checkout_root

        root = checkout_root()
        return root / "src" if root is not None else None

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.paths.store_db}"

    @property
    def sqlite_store(self) -> Path | None:
        """The file of a SQLite store (the default one, or a ``sqlite:///`` database_url)."""
        url = self.database
        if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
            return None
        return Path(url.removeprefix("sqlite:///").partition("?")[0]).absolute()

    def values(self) -> dict[str, Any]:
        """Every key's value, by name."""
        return {k.name: getattr(self, k.name) for k in KEYS}

    def set(self, name: str, value: Any, source: str) -> None:
        """Change one key (checked), recording where the new value came from."""
        setattr(self, name, KEYS_BY_NAME[name].parse(value, source))
        self.sources[name] = source

    def effective(self, name: str) -> Any:
        """The value in effect: the key's, else what it defaults to (a derived value)."""
        value = getattr(self, name)
        key = KEYS_BY_NAME[name]
        if value is None and key.effective is not None:
            return key.effective(self)
        return value

    def public(self, effective: bool = False) -> dict[str, Any]:
        """Values with secrets masked, for display (``effective``: derived defaults filled in)."""
        out = {}
        for k in KEYS:
            v = self.effective(k.name) if effective else getattr(self, k.name)
            if k.secret and getattr(self, k.name):
                v = _mask(k, v)
            out[k.name] = v
        return out

    def to_json(self, secrets: bool = True) -> dict[str, Any]:
        """The settings as JSON; without ``secrets``, secret values masked (what may rest on disk)."""
        values = self.values() if secrets else self.public()
        return {"home": str(self.home), "values": values, "sources": self.sources}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        values = {k: v for k, v in data["values"].items() if k in KEYS_BY_NAME}
        return cls(home=Path(data["home"]), sources=dict(data.get("sources", {})), **values)


def _mask(key: Key, value: Any) -> str:
    if key.name == "database_url" and "@" in str(value):  # show where, never the password
        scheme, _, rest = str(value).partition("://")
        return f"{scheme}://****@{rest.rpartition('@')[2]}"
    return "****"


def _keys() -> tuple[Key, ...]:
    """The keys :class:`Settings` declares, in order; its class attributes become the defaults."""
    out = []
    for name, annotation in Settings.__annotations__.items():
        declared = Settings.__dict__.get(name)
        if not isinstance(declared, _Setting):
            continue
        kind = _TYPES[str(annotation)]  # a KeyError here: add the annotation to _TYPES
        out.append(Key(name, kind, declared.default, **declared.rules))
        setattr(Settings, name, declared.default)
    return tuple(out)


KEYS: tuple[Key, ...] = _keys()
KEYS_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}


def home_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """``STIGMER_HOME``: the ``--home`` flag, else the env var, else ``~/.stigmer``."""
    raw = flag or os.environ.get("STIGMER_HOME") or "~/.stigmer"
    return Path(raw).expanduser().absolute()


def command_for(home: Path, args: str) -> str:
    """``stigmer ARGS`` as it must be typed for ``home``: with ``--home`` unless it is the default.

    For the fixes errors print: pasted as printed, they act on the same home
    whether it came from ``--home`` or from ``STIGMER_HOME``.
    """
    if home == home_dir("~/.stigmer"):
        return f"stigmer {args}"
    import shlex

    return f"stigmer --home {shlex.quote(str(home))} {args}"


class Paths:
    """Every file the stack keeps, all under ``STIGMER_HOME``."""

    __slots__ = ("home",)
    home: Path

    def __init__(self, home: Path) -> None:
        object.__setattr__(self, "home", home)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Paths is read-only: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and self.home == other.home

    def __hash__(self) -> int:
        return hash(self.home)

    def __repr__(self) -> str:
        return f"Paths(home={self.home!r})"

    @property
    def config(self) -> Path:
        return self.home / "config.yaml"

    @property
    def credentials(self) -> Path:
        return self.home / "credentials"

    @property
    def api_token(self) -> Path:
        """The admin bearer token (the CLI's), mode 0600, generated on first start."""
        return self.credentials / "api-token"

    @property
    def runner_token(self) -> Path:
        """The agent-runner's bearer token: it may only append events."""
        return self.credentials / "runner-token"

    @property
    def stack_key(self) -> Path:
        """The keys that seal Temporal payloads (:mod:`stigmer.credentials`)."""
        return self.credentials / "stack-key.json"

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
        """Pid files, locks, the control socket."""
        return self.home / "run"

    @property
    def start_lock(self) -> Path:
        return self.run / "stack.lock"

    @property
    def supervisor_lock(self) -> Path:
        return self.run / "supervisor.lock"

    @property
    def stack_file(self) -> Path:
        """The settings the running stack was started with, secrets masked (JSON, mode 0600).

        The supervisor gets them whole, with the secrets, on its stdin.
        """
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
        """Create the folders, private: 0700 (the home and each one below it)."""
        for d in (self.home, self.data, self.workspace, self.logs, self.credentials, self.run):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.home, self.data, self.logs, self.credentials, self.run):
            os.chmod(d, 0o700)


def read_config_file(path: Path, unknown_keys: bool = False) -> dict[str, Any]:
    """Read ``config.yaml``; a missing file is an empty config.

    ``unknown_keys``: keep keys stigmer does not know instead of refusing them
    (for `config unset`, which removes one).

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
        fix = f"Fix or delete {path} (the keys are in the README's Settings table)."
        if "{}" in body:
            # the file as earlier versions wrote it, with a key added below its `{}`
            fix = (
                f'Delete the line `{{}}` in {path} (it stood for "no keys"), or '
                + fix[0].lower()
                + fix[1:]
            )
        raise ConfigError(
            f"{where}: the config file is not valid YAML ({getattr(exc, 'problem', exc)}).",
            fix,
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the config file must be a mapping of key: value.",
            f"Fix or delete {path}.",
        )
    unknown = sorted(set(data) - set(KEYS_BY_NAME), key=str)
    if unknown and not unknown_keys:
        import difflib
        import shlex

        named = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(KEYS_BY_NAME), n=1)
            named.append(f"{key}" + (f" (did you mean `{close[0]}`?)" if close else ""))
        raise ConfigError(
            f"{path}: unknown config key(s): {', '.join(named)}.",
            f"Fix or remove {'them' if len(unknown) > 1 else 'it'} in {path} (or `stigmer "
            f"config unset {shlex.quote(str(unknown[0]))}`); the README's Settings table lists all "
            f"{len(KEYS_BY_NAME)} keys.",
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
    config_path = Paths(root).config
    config = read_config_file(config_path)
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        from_env = next((name for name in key.envs if env.get(name) not in (None, "")), None)
        if key.name in flags:
            values[key.name] = key.parse(flags[key.name], "a flag")
            sources[key.name] = "flag"
        elif from_env is not None:
            values[key.name] = key.parse(env[from_env], f"env {from_env}")
            sources[key.name] = "env" if from_env == key.env else f"env {from_env}"
        elif key.name in config:
            values[key.name] = key.parse(config[key.name], str(config_path))
            sources[key.name] = "config"
        else:
            values[key.name] = key.default
            sources[key.name] = "default"
    return Settings(home=root, sources=sources, **values)


CONFIG_HEADER = """\
# stigmer configuration. Precedence: flag > env (STIGMER_<KEY>) > this file > default.
# `stigmer config list` shows every key, its value and where it comes from.
"""


def write_config_file(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``config.yaml`` atomically with mode 0600."""
    import yaml

    # no keys: the header alone (not `{}`, which a key added below would break)
    body = yaml.safe_dump(dict(data), sort_keys=True) if data else ""
    write_private(path, CONFIG_HEADER + body)


def ensure_config_file(paths: Paths) -> bool:
    """Create an empty ``config.yaml`` (mode 0600) if missing. Returns True if created."""
    if paths.config.exists():
        return False
    write_private(paths.config, CONFIG_HEADER)
    return True
