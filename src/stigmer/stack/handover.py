"""From settings to each child's runtime configuration (:mod:`stigmer.contract.config`).

The supervisor is the only process that reads settings. For each child it
builds a :class:`~stigmer.contract.config.RuntimeConfig` and hands it over on
the child's stdin (``STIGMER_CONFIG=-``), so that it, secrets included, is
never in a file or an environment; the child also gets the few variables a
process needs to run at all (:func:`child_environment`). TLS material is read here and
travels as PEM text, so a child in a container or on another host needs no
paths of this one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stigmer.contract.config import (
    CONFIG_ENV,
    ApiTarget,
    ProviderConfig,
    RunnerSection,
    RuntimeConfig,
    ServerSection,
    StackKeys,
    TemporalTarget,
)
from stigmer.contract.registry import API_SERVER, PROVIDERS, RUNNER, TEMPORAL, reserved_secret
from stigmer.credentials import ADMIN, ensure_stack_key, ensure_token
from stigmer.credentials import RUNNER as RUNNER_ROLE
from stigmer.errors import ConfigError
from stigmer.settings import Settings

#: Variables of our own environment a child process gets (nothing that configures stigmer).
PASSTHROUGH_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPYCACHEPREFIX",
    "PYTHONDONTWRITEBYTECODE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


#: What the supervisor needs besides: where the Docker engine is.
SUPERVISOR_ENV = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "XDG_RUNTIME_DIR",
)


@dataclass(frozen=True)
class Handover:
    """What ``server start`` hands the supervisor on its stdin (never in a file or its env).

    ``secrets``: the values agents' ``{secret: NAME}`` references resolve to,
    from the environment ``server start`` ran in (:func:`secret_values`).
    """

    settings: Settings
    secrets: dict[str, str]

    def dumps(self) -> str:
        return json.dumps({"settings": self.settings.to_json(), "secrets": self.secrets})

    @classmethod
    def loads(cls, text: str) -> Handover:
        data = json.loads(text)
        return cls(Settings.from_json(data["settings"]), dict(data["secrets"]))


def supervisor_environment(settings: Settings) -> dict[str, str]:
    """The supervisor's environment: a child's, and where the Docker engine is; no secrets."""
    env = child_environment(settings)
    env.update({k: os.environ[k] for k in SUPERVISOR_ENV if k in os.environ})
    return env


def child_environment(settings: Settings, config: str | None = None) -> dict[str, str]:
    """The environment of a child process: the basics, ``STIGMER_HOME`` and the config pointer.

    ``config``: where the child finds its configuration (``-``: on its stdin).

    ``STIGMER_HOME`` configures nothing; it marks the process as this home's
    (``stigmer server stop`` and the tests find leftovers by it).
    """
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env["STIGMER_HOME"] = str(settings.home)
    env["PYTHONUNBUFFERED"] = "1"
    if config is not None:
        env[CONFIG_ENV] = str(config)
    return env


def _read_pem(settings: Settings, key: str) -> str | None:
    path = getattr(settings, key)
    if not path:
        return None
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConfigError(
            f"{key}: cannot read {p}: {reason}.",
            f"Point {key} (STIGMER_{key.upper()}) at a readable PEM file.",
        ) from None
    if "-----BEGIN " not in text:
        raise ConfigError(
            f"{key}: {p} is not a PEM file (no -----BEGIN line).",
            f"Point {key} at the PEM file of the {'key' if 'key' in key else 'certificate'}.",
        )
    return text


def temporal_target(settings: Settings) -> TemporalTarget:
    """Where and how the stack reaches Temporal.

    Raises:
        ConfigError: a TLS file is missing or not PEM, or a certificate has no key.
    """
    ca = _read_pem(settings, "temporal_tls_ca_path")
    cert = _read_pem(settings, "temporal_tls_cert_path")
    key = _read_pem(settings, "temporal_tls_key_path")
    if bool(cert) != bool(key):
        have, missing = (
            ("temporal_tls_cert_path", "temporal_tls_key_path")
            if cert
            else ("temporal_tls_key_path", "temporal_tls_cert_path")
        )
        raise ConfigError(
            f"{have} is set but {missing} is not: a client certificate needs its key.",
            f"Set {missing} too, or unset {have}.",
        )
    return TemporalTarget(
        address=settings.temporal_target,
        namespace=settings.temporal_namespace,
        tls=settings.temporal_tls,
        ca_pem=ca,
        cert_pem=cert,
        key_pem=key,  # type: ignore[arg-type]
        api_key=settings.temporal_api_key,  # type: ignore[arg-type]
        server_name=settings.temporal_tls_server_name,
    )


def providers(settings: Settings) -> dict[str, ProviderConfig]:
    """Each provider's key and server URL, from the registry's settings."""
    out = {}
    for p in PROVIDERS.values():
        key = getattr(settings, p.key_setting) if p.key_setting else None
        url = settings.effective(p.base_url_setting) if p.base_url_setting else None
        if key or url:
            out[p.name] = ProviderConfig(api_key=key, base_url=url)
    return out


def reserved_allowed(settings: Settings) -> list[str]:
    """The reserved names (``STIGMER_*``, provider keys) agents may still reference."""
    raw = settings.reserved_secrets_allowed or ""
    return [n.strip() for n in raw.split(",") if n.strip()]


def secret_values(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values agents' ``{secret: NAME}`` references can resolve to.

    The environment ``stigmer server start`` ran in, without stigmer's own
    variables and the provider keys (those never reach a tool), unless the
    ``reserved_secrets_allowed`` setting names them.
    """
    source = os.environ if env is None else env
    allowed = set(reserved_allowed(settings))
    return {k: v for k, v in source.items() if v and (not reserved_secret(k) or k in allowed)}


def stack_keys(settings: Settings) -> StackKeys:
    """The keys that seal Temporal payloads (made on first use: copy the file to other hosts)."""
    active, keys = ensure_stack_key(settings.stack_key_file)
    return StackKeys(active=active, keys=keys)  # type: ignore[arg-type]


def api_token(settings: Settings, default: Path) -> str:
    """The token this host sends to the API: ``api_token``, ``api_token_file``, else ``default``.

    Raises:
        ConfigError: ``api_token_file`` cannot be read.
    """
    if settings.api_token:
        return settings.api_token
    if settings.api_token_file:
        path = Path(settings.api_token_file).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"api_token_file: cannot read {path}: {exc.strerror or exc}.",
                "Point api_token_file (STIGMER_API_TOKEN_FILE) at the token's file, or set "
                "api_token (STIGMER_API_TOKEN).",
            ) from None
        if token:
            return token
    return ensure_token(default)


def is_loopback(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address).is_loopback


def server_config(settings: Settings) -> RuntimeConfig:
    paths = settings.paths
    ensure_token(paths.api_token)
    ensure_token(paths.runner_token)
    ui = settings.temporal_ui_port
    ui_host = settings.temporal_bind
    return RuntimeConfig(
        role="stigmer-server",
        home=str(settings.home),
        temporal=temporal_target(settings),
        stack_keys=stack_keys(settings),
        default_model=settings.default_model,
        server=ServerSection(
            host=settings.server_bind,
            port=settings.server_port,
            insecure_bind=settings.insecure_bind,
            tls_cert_pem=_read_pem(settings, "server_tls_cert_path"),
            tls_key_pem=_read_pem(settings, "server_tls_key_path"),  # type: ignore[arg-type]
            store_url=settings.database,  # type: ignore[arg-type]
            token_files={ADMIN: str(paths.api_token), RUNNER_ROLE: str(paths.runner_token)},
            reserved_secrets_allowed=reserved_allowed(settings),
            codec_origins=[f"http://{ui_host}:{ui}", f"http://localhost:{ui}"]
            if settings.temporal_managed
            else [],
            console_login_ttl=settings.ui_login_ttl,
            temporal_ui_url=settings.temporal_ui_endpoint,
        ),
    )


def runner_config(
    settings: Settings,
    *,
    identity: str,
    task_queue: str,
    workspace: str,
    heartbeat_file: str | None,
    secrets: dict[str, str],
    reachable: dict[str, str] | None = None,
    lost_workers: dict[str, str] | None = None,
) -> RuntimeConfig:
    """The agent-runner's configuration, secrets included (it deletes the file once read).

    ``lost_workers``: workers the supervisor lost for a known cause (identity -> cause).

    ``reachable`` rewrites addresses for a runner that sees the host by another
    name (a container outside Linux: ``127.0.0.1`` -> ``host.docker.internal``).
    """

    def at(address: str) -> str:
        for old, new in (reachable or {}).items():
            address = address.replace(old, new)
        return address

    target = temporal_target(settings)
    token = api_token(settings, settings.paths.runner_token)
    return RuntimeConfig(
        role="agent-runner",
        home=str(settings.home),
        temporal=target.model_copy(update={"address": at(target.address)}),
        stack_keys=stack_keys(settings),
        default_model=settings.default_model,
        providers=providers(settings),
        api=ApiTarget(
            url=at(settings.api_endpoint),
            token=token,  # type: ignore[arg-type]
            ca_pem=_read_pem(settings, "api_tls_ca_path"),
        ),
        runner=RunnerSection(
            identity=identity,
            task_queue=task_queue,
            mode="docker" if settings.runner_mode == "docker" else "local",
            workspace=workspace,
            stop_grace=runner_stop_grace(settings),
            sandbox=settings.workflow_sandbox,
            heartbeat_file=heartbeat_file,
            secrets=secrets,  # type: ignore[arg-type]
            lost_workers=dict(lost_workers or {}),
        ),
    )


def runner_stop_grace(settings: Settings) -> float:
    """How long the runner's worker lets running calls go on once told to stop.

    ``stop_grace``; with ``--dev`` at most ``dev.RESTART_GRACE``: a source change
    restarts the runner within about a second, and a call still running then is
    cancelled as a worker shutdown (not counted against its attempts: runner/lost.py)
    and retried on the new runner at once, not after its heartbeat timeout.
    """
    if settings.dev:
        from stigmer.stack.dev import RESTART_GRACE

        return min(settings.stop_grace, RESTART_GRACE)
    return settings.stop_grace


def check(settings: Settings) -> None:
    """Everything this host's components need is there and safe (before anything starts).

    Raises:
        ConfigError: naming the setting: a TLS file, a bind beyond loopback
            without TLS, a component whose peers are not named.
    """
    from stigmer.stack import dev

    here = settings.components
    temporal_target(settings)
    if RUNNER in here:
        dev.check(settings)  # --dev: the sources it runs are there
    if API_SERVER in here:
        cert, key = settings.server_tls_cert_path, settings.server_tls_key_path
        if bool(cert) != bool(key):
            raise ConfigError(
                "server_tls_cert_path and server_tls_key_path go together.",
                "Set both (the API's certificate and its key), or neither.",
            )
        _read_pem(settings, "server_tls_cert_path")
        _read_pem(settings, "server_tls_key_path")
        if not is_loopback(settings.server_bind) and not cert and not settings.insecure_bind:
            raise ConfigError(
                f"server_bind {settings.server_bind} is beyond loopback, and the API has no TLS: "
                "its tokens would cross the network in clear.",
                "Give it a certificate (server_tls_cert_path, server_tls_key_path), or pass "
                "--insecure-bind if this network is yours alone.",
            )
    if settings.only and TEMPORAL in here and not settings.temporal_managed:
        raise ConfigError(
            "temporal is among this host's components (only), but temporal_address names an "
            "external Temporal.",
            "Drop temporal from --only, or unset temporal_address to run a managed one here.",
        )
    managed_here = TEMPORAL in here and settings.temporal_managed
    if (
        managed_here
        and settings.temporal_bind not in ("0.0.0.0", "::")
        and not is_loopback(settings.temporal_bind)
    ):
        raise ConfigError(
            f"temporal_bind {settings.temporal_bind}: the Temporal dev server works bound to "
            "loopback or to every address (0.0.0.0), not to one other address (it dials its "
            "own services on 127.0.0.1).",
            "Set temporal_bind to 0.0.0.0 (with --insecure-bind), or to 127.0.0.1.",
        )
    if managed_here and not is_loopback(settings.temporal_bind) and not settings.insecure_bind:
        raise ConfigError(
            f"temporal_bind {settings.temporal_bind} is beyond loopback: the managed Temporal dev "
            "server has no TLS and no login (payloads stay sealed, but anyone there can start, "
            "cancel or terminate workflows).",
            "Pass --insecure-bind if this network is yours alone, or use a Temporal cluster "
            "behind TLS (temporal_address).",
        )
    if TEMPORAL not in here and settings.temporal_managed:
        raise ConfigError(
            "This host runs no Temporal (only), and temporal_address is not set.",
            "Set temporal_address (STIGMER_TEMPORAL_ADDRESS) to the Temporal the stack uses.",
        )
    if RUNNER in here and API_SERVER not in here and not settings.api_url:
        raise ConfigError(
            "This host runs an agent-runner but no API server (only), and api_url is not set.",
            "Set api_url (STIGMER_API_URL) to the API the runner posts its events to, and its "
            "token (api_token, or api_token_file): a runner token (`stigmer token create "
            "--role runner` on a host with the API).",
        )
    if RUNNER in here and API_SERVER not in here and not settings.api_token:
        if not settings.api_token_file:
            raise ConfigError(
                f"This host runs an agent-runner but no API server (only), and has no token for "
                f"the API at {settings.api_url}: its events would all be refused (401).",
                "Make a runner token (`stigmer token create --role runner`, with an admin "
                "token), put it in a 0600 file and set api_token_file (STIGMER_API_TOKEN_FILE), "
                "or set api_token (STIGMER_API_TOKEN).",
            )
        api_token(settings, settings.paths.runner_token)  # readable, or said now
    if settings.api_url:
        _read_pem(settings, "api_tls_ca_path")
