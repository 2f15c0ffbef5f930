"""The runtime configuration a child process is handed: one typed document.

The supervisor resolves the settings (flag > env > config file > default),
turns them into a :class:`RuntimeConfig` for each child and starts the child
with one environment variable, ``STIGMER_CONFIG``: ``-`` (the document comes on
its stdin, what the supervisor does) or the path of a file (mode 0600; read
and deleted with ``consume=True``). The child reads it with
:func:`load_runtime_config` and nothing else: no other environment variable
configures it.

The documents hold secrets (the runner's token, the model keys, the values of
the secrets agents may reference): on stdin they are never in a file at all.

Secret values are :data:`Secret` fields: masked in ``repr`` and logs, written
in clear only to the 0600 file.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    model_validator,
)

from stigmer.errors import ConfigError

#: The one environment variable a child needs: the path of its configuration.
CONFIG_ENV = "STIGMER_CONFIG"

#: A secret value: masked when shown, in clear in the 0600 file only.
Secret = Annotated[
    SecretStr, PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json")
]


def reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemporalTarget(_Model):
    """Where Temporal is and how to reach it.

    TLS material travels as PEM text, not as paths, so a child on another host
    or in a container needs no extra mount.
    """

    address: str
    namespace: str = "default"
    tls: bool = False
    ca_pem: str | None = None
    cert_pem: str | None = None
    key_pem: Secret | None = None
    api_key: Secret | None = None
    #: the name to verify the server's certificate against (SNI), if not the host
    server_name: str | None = None

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.api_key or self.ca_pem or self.cert_pem)


class ApiTarget(_Model):
    """The stigmer API a runner posts its events to."""

    url: str
    token: Secret | None = None
    #: PEM of the CA that signed the API's certificate (an https URL with a private CA)
    ca_pem: str | None = None

    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client checks the API's certificate with: the CA, else the system's."""
        if self.ca_pem:
            return ssl.create_default_context(cadata=self.ca_pem)
        return True


class StackKeys(_Model):
    """The keys that seal Temporal payloads (:mod:`stigmer.codec`): by id, and the one in use."""

    active: str
    keys: dict[str, Secret]

    @model_validator(mode="after")
    def _active_is_known(self) -> StackKeys:
        if self.active not in self.keys:
            raise ValueError(f"the active key {self.active!r} is not among the keys")
        return self


class ProviderConfig(_Model):
    """A model provider's key and server, as the runner uses them."""

    api_key: Secret | None = None
    base_url: str | None = None


class ServerSection(_Model):
    """What only the API server needs."""

    host: str = "127.0.0.1"
    port: int
    #: listen beyond loopback without TLS (refused otherwise)
    insecure_bind: bool = False
    store_url: Secret
    #: the token files this server registers in the store, by role (admin, runner)
    token_files: dict[str, str]
    #: names agents may reference as secrets although they are stigmer's or a provider's
    reserved_secrets_allowed: list[str] = Field(default_factory=list)
    #: origins allowed to call the codec endpoint from a browser (the Temporal UI)
    codec_origins: list[str] = Field(default_factory=list)
    tls_cert_pem: str | None = None
    tls_key_pem: Secret | None = None
    #: seconds a one-time login code of the web console stays valid
    console_login_ttl: float = 120.0
    #: the Temporal Web UI the console links each execution's workflow to (None: no link)
    temporal_ui_url: str | None = None


class RunnerSection(_Model):
    """What only the agent-runner needs."""

    identity: str
    task_queue: str
    #: ``docker`` (tools run in the container) or ``local`` (tools run as the user)
    mode: Literal["docker", "local"]
    workspace: str
    stop_grace: float = 10.0
    sandbox: bool = False
    #: touched while Temporal answers (the container health check reads its age)
    heartbeat_file: str | None = None
    #: values the agents' ``{secret: NAME}`` references resolve to
    secrets: dict[str, Secret] = Field(default_factory=dict)
    #: workers of this stack that the supervisor lost for a known cause: identity ->
    #: what happened (an attempt they ran fails with it: stigmer.runner.lost)
    lost_workers: dict[str, str] = Field(default_factory=dict)


class RuntimeConfig(_Model):
    """Everything one child process needs, for its role."""

    version: Literal[1] = 1
    role: Literal["stigmer-server", "agent-runner"]
    home: str | None = None
    temporal: TemporalTarget
    #: the keys that seal Temporal payloads (the API server and the runner)
    stack_keys: StackKeys | None = None
    #: provider:model for agents whose spec names none
    default_model: str
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    api: ApiTarget | None = None
    server: ServerSection | None = None
    runner: RunnerSection | None = None

    @model_validator(mode="after")
    def _has_its_section(self) -> RuntimeConfig:
        if self.role == "stigmer-server" and self.server is None:
            raise ValueError("a stigmer-server configuration needs its `server` section")
        if self.role == "agent-runner" and (self.runner is None or self.api is None):
            raise ValueError("an agent-runner configuration needs its `runner` and `api` sections")
        if self.stack_keys is None:
            raise ValueError(f"a {self.role} configuration needs the stack's keys")
        return self


def write_runtime_config(path: Path, cfg: RuntimeConfig) -> None:
    """Write ``cfg`` to ``path`` atomically, mode 0600 (secrets in clear)."""
    from stigmer.files import write_private

    write_private(path, cfg.model_dump_json(indent=2) + "\n")


def load_runtime_config(
    path: str | os.PathLike[str] | None = None,
    *,
    role: str,
    consume: bool = False,
) -> RuntimeConfig:
    """Read the configuration at ``path`` (default: ``$STIGMER_CONFIG``) for ``role``.

    With ``consume``, the file is deleted once read: it holds secrets.

    Raises:
        ConfigError: no pointer, no file, not JSON, not a configuration for this
            role, or one of a version this process does not know.
    """
    where = str(path or os.environ.get(CONFIG_ENV) or "")
    started_by = "This process is started by `stigmer server start`, which hands it over."
    if not where:
        raise ConfigError(
            f"{role}: {CONFIG_ENV} is not set: there is no configuration.", started_by
        )
    p = Path("<stdin>" if where == "-" else where)
    try:
        text = sys.stdin.read() if where == "-" else p.read_text()
    except OSError as exc:
        raise ConfigError(
            f"{role}: cannot read the configuration {p}: {exc.strerror or exc}.", started_by
        ) from None
    finally:
        if consume and where != "-":
            p.unlink(missing_ok=True)
    if not text.strip():
        raise ConfigError(f"{role}: the configuration on {p} is empty.", started_by)
    try:
        cfg = RuntimeConfig.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise ConfigError(
            f"{role}: {p} is not a valid stigmer configuration "
            f"({first[1].strip() if len(first) > 1 else first[0]}).",
            "Start the stack again (`stigmer server restart`), with the same stigmer version "
            "on every host.",
        ) from None
    if cfg.role != role:
        raise ConfigError(
            f"{role}: {p} is the configuration of {cfg.role}, not of {role}.", started_by
        )
    return cfg
