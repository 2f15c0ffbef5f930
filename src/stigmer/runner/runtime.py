"""What this worker process was configured with, for the activities and tools.

Set once at start-up from the runner's runtime configuration
(:func:`configure`); nothing here reads environment variables. Outside a
worker (an agent run in-process, a test) :func:`configure_local` sets a
workspace and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stigmer.contract.config import RuntimeConfig, reveal


@dataclass(frozen=True)
class Runtime:
    workspace: Path
    identity: str = "in-process"
    api_url: str | None = None
    api_token: str | None = None
    #: provider name -> API key
    provider_keys: dict[str, str] = field(default_factory=dict, repr=False)
    #: provider name -> server URL
    provider_urls: dict[str, str] = field(default_factory=dict)
    #: what ``{secret: NAME}`` references resolve to
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


_current: list[Runtime] = []


def configure(cfg: RuntimeConfig) -> Runtime:
    """Take this process's configuration (an agent-runner's)."""
    assert cfg.runner is not None and cfg.api is not None
    rt = Runtime(
        workspace=Path(cfg.runner.workspace).resolve(),
        identity=cfg.runner.identity,
        api_url=cfg.api.url,
        api_token=reveal(cfg.api.token),
        provider_keys={n: k for n, p in cfg.providers.items() if (k := reveal(p.api_key))},
        provider_urls={n: p.base_url for n, p in cfg.providers.items() if p.base_url},
        secrets={k: v.get_secret_value() for k, v in cfg.runner.secrets.items()},
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
