"""What this worker process was configured with, for the activities and tools.

Set once at start-up from the runner's runtime configuration
(:func:`configure`); nothing here reads environment variables. Outside a
worker (an agent run in-process, a test) :func:`configure_local` sets a
workspace and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigmer.contract.config import RuntimeConfig, reveal

#: Values shorter than this are not masked (masking "1" everywhere helps nobody).
MIN_MASKED = 4
MASK = "***"


@dataclass(frozen=True)
class Runtime:
    workspace: Path
    identity: str = "in-process"
    #: ``docker``: tools run in the container; ``local``: they run as the user
    mode: str = "local"
    api_url: str | None = None
    api_token: str | None = None
    #: how the API's certificate is checked (an https api_url)
    api_verify: Any = True
    #: provider name -> API key
    provider_keys: dict[str, str] = field(default_factory=dict, repr=False)
    #: provider name -> server URL
    provider_urls: dict[str, str] = field(default_factory=dict)
    #: what ``{secret: NAME}`` references resolve to
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    #: values masked in everything a run publishes: the keys and tokens this worker holds
    always_masked: tuple[str, ...] = field(default=(), repr=False)

    def masked(self, refs: Iterable[str] = ()) -> list[str]:
        """The values to mask for a run whose secret references are ``refs``, longest first."""
        values = {*self.always_masked, *(self.secrets.get(r, "") for r in refs)}
        return sorted((v for v in values if len(v) >= MIN_MASKED), key=len, reverse=True)

    def mask(self, value: Any, refs: Iterable[str] = ()) -> Any:
        """``value`` with every secret a run can see replaced by ``***`` (in all its strings)."""
        secrets = self.masked(refs)
        return _mask(value, secrets) if secrets else value


def _mask(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for s in secrets:
            if s in value:
                value = value.replace(s, MASK)
        return value
    if isinstance(value, dict):
        return {k: _mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secrets) for v in value]
    return value


_current: list[Runtime] = []


def configure(cfg: RuntimeConfig) -> Runtime:
    """Take this process's configuration (an agent-runner's)."""
    assert cfg.runner is not None and cfg.api is not None
    keys = {n: k for n, p in cfg.providers.items() if (k := reveal(p.api_key))}
    held = [
        *keys.values(),
        reveal(cfg.api.token),
        reveal(cfg.temporal.api_key),
        reveal(cfg.temporal.key_pem),
        *(k.get_secret_value() for k in (cfg.stack_keys.keys.values() if cfg.stack_keys else [])),
    ]
    rt = Runtime(
        workspace=Path(cfg.runner.workspace).resolve(),
        identity=cfg.runner.identity,
        mode=cfg.runner.mode,
        api_url=cfg.api.url,
        api_token=reveal(cfg.api.token),
        api_verify=cfg.api.verify(),
        provider_keys=keys,
        provider_urls={n: p.base_url for n, p in cfg.providers.items() if p.base_url},
        secrets={k: v.get_secret_value() for k, v in cfg.runner.secrets.items()},
        always_masked=tuple(v for v in held if v),
    )
    _current[:] = [rt]
    return rt


def configure_local(workspace: str | Path) -> Runtime:
    """A runtime with only a workspace (no API to publish to, no keys)."""
    rt = Runtime(workspace=Path(workspace).resolve())
    _current[:] = [rt]
    return rt


def current() -> Runtime:
    if not _current:
        raise RuntimeError("the runner is not configured (stigmer.runner.runtime.configure)")
    return _current[0]
