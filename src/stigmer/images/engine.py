"""Finding the Docker engine the way the docker CLI does, and talking to it.

Endpoint resolution, first match wins:

1. ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``);
2. the active docker context: ``DOCKER_CONTEXT``, else ``currentContext`` in
   ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``), whose endpoint is in
   ``contexts/meta/<sha256(name)>/meta.json`` (colima, Docker Desktop, rootless);
3. the default sockets: ``/var/run/docker.sock``, ``~/.docker/run/docker.sock``
   (Docker Desktop), ``$XDG_RUNTIME_DIR/docker.sock`` (rootless).

Podman works when ``DOCKER_HOST`` points at its Docker-compatible socket
(:func:`is_podman` tells it apart, for what its compat API does otherwise).
``docker.from_env()`` alone ignores contexts, which is why this exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stigmer.errors import ConfigError, DockerNotRunningError, StigmerError

#: The source of the endpoint found without DOCKER_HOST or a context.
DEFAULT_SOURCE = "default socket"
#: The last line of every fix for an engine that cannot be used.
WITHOUT_DOCKER = (
    "Or run without Docker: `stigmer server start --runner local` (STIGMER_RUNNER_MODE=local)."
)


@dataclass(frozen=True)
class Endpoint:
    """A Docker engine address and where it came from (``DOCKER_HOST``, ``context X``, ``default``)."""

    host: str
    source: str
    tls_verify: bool = False
    cert_path: str | None = None
    #: chosen by the user for this shell (DOCKER_HOST, DOCKER_CONTEXT), not found by
    #: default or left current by an installer (Docker Desktop sets currentContext)
    named: bool = False


def _docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def _context_endpoint(name: str, origin: str = "DOCKER_CONTEXT") -> Endpoint | None:
    """The endpoint of docker context ``name``; None for the default context.

    Raises:
        ConfigError: there is no such context, or its metadata is unreadable;
            the docker CLI refuses it too (``context not found``), so do we
            rather than fall back to another engine.
    """
    if name in ("", "default"):
        return None
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = _docker_config_dir() / "contexts" / "meta" / digest / "meta.json"
    unset = (
        "unset DOCKER_CONTEXT"
        if origin == "DOCKER_CONTEXT"
        else f"`docker context use default` (it is set in {origin})"
    )
    try:
        data = json.loads(meta.read_text())
        ep = data["Endpoints"]["docker"]
        ep["Host"]
    except FileNotFoundError:
        raise ConfigError(
            f'Docker context "{name}" (from {origin}) does not exist: context not found: {meta}.',
            f"Use a context that `docker context ls` lists, or {unset} to use the default engine.",
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f'Docker context "{name}" (from {origin}) cannot be read: {meta}: {exc}.',
            f"Repair it (`docker context inspect {name}`), pick another one from "
            f"`docker context ls`, or {unset} to use the default engine.",
        ) from None
    tls_dir = _docker_config_dir() / "contexts" / "tls" / digest / "docker"
    return Endpoint(
        ep["Host"],
        f"docker context {name!r}",
        tls_verify=not ep.get("SkipTLSVerify", False) and tls_dir.is_dir(),
        cert_path=str(tls_dir) if tls_dir.is_dir() else None,
    )


def resolve_endpoint() -> Endpoint:
    """The engine endpoint, resolved as the docker CLI does (see the module doc).

    Raises:
        ConfigError: the docker context named (``DOCKER_CONTEXT`` or
            ``currentContext``) does not exist or cannot be read.
    """
    host = os.environ.get("DOCKER_HOST")
    if host:
        return Endpoint(
            host,
            "DOCKER_HOST",
            tls_verify=os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0"),
            cert_path=os.environ.get("DOCKER_CERT_PATH"),
            named=True,
        )
    name = os.environ.get("DOCKER_CONTEXT")
    origin = "DOCKER_CONTEXT"
    if not name:
        config = _docker_config_dir() / "config.json"
        origin = f"currentContext in {config}"
        try:
            name = json.loads(config.read_text()).get("currentContext", "")
        except (OSError, ValueError, AttributeError):
            name = ""
    ctx = _context_endpoint(name or "", origin)
    if ctx:
        return replace(ctx, named=origin == "DOCKER_CONTEXT")
    candidates = [Path("/var/run/docker.sock"), Path.home() / ".docker" / "run" / "docker.sock"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append(Path(runtime) / "docker.sock")
    for sock in candidates:
        if sock.exists():
            return Endpoint(f"unix://{sock}", DEFAULT_SOURCE)
    return Endpoint("unix:///var/run/docker.sock", DEFAULT_SOURCE)


def install_hint() -> str:
    system = platform.system()
    if system == "Darwin":
        steps = "macOS: start Docker Desktop (or `colima start`); install with `brew install --cask docker`."
    elif system == "Linux":
        steps = (
            "Linux: start the engine (`sudo systemctl start docker`, or run `dockerd`); "
            "install with your package manager (Debian/Ubuntu: `sudo apt-get install docker.io`)."
        )
    else:
        steps = "Windows: start Docker Desktop (https://docs.docker.com/desktop/)."
    return (
        f"{steps}\n"
        "Using Podman? Point DOCKER_HOST at its Docker-compatible socket.\n" + WITHOUT_DOCKER
    )


def os_error_in(exc: BaseException) -> OSError | None:
    """The operating system's error under the Docker SDK's wrappers, if any.

    (docker wraps requests' error, which holds urllib3's, which holds the
    ``OSError`` among its arguments, not as its cause.)
    """
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 50:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur
        todo += [cur.__cause__, cur.__context__, *cur.args]
    return None


def not_answering(ep: Endpoint, exc: BaseException) -> StigmerError:
    """Why the engine at ``ep`` did not answer, said as a user can act on it.

    The error has ``why``: what is at the address, when known (for ``server status``).
    """
    import errno

    text = str(exc)
    cause = os_error_in(exc)
    sock = ep.host.removeprefix("unix://") if ep.host.startswith("unix://") else None
    if sock and cause is not None and cause.errno in (errno.EACCES, errno.EPERM):
        # the engine may well run: this user may not use its socket (not in its group)
        err = DockerNotRunningError(
            f"Docker's socket {sock} (from {ep.source}) refuses this user: permission "
            "denied (the engine may well be running).",
            "Add your user to the docker group: `sudo usermod -aG docker $USER`, then log "
            "out and in again (or run `newgrp docker`). Or use rootless Docker or Podman "
            "(point DOCKER_HOST at its socket), or run without Docker: "
            "`stigmer server start --runner local`.",
        )
        err.why = f"its socket {sock} refuses this user (permission denied)"
        return err
    why: str | None = None
    if sock and isinstance(cause, FileNotFoundError):
        why = f"there is no socket at {sock}"
    elif sock and _not_a_socket(sock):
        why = f"{sock} is not a socket"
    elif isinstance(cause, ConnectionRefusedError):
        why = "the connection was refused (nothing listens there)"
    where = f"at {ep.host} (from {ep.source})" + (f": {why}" if why else "")
    details = None if why else (text.splitlines()[0] if text else None)
    if ep.source == DEFAULT_SOURCE:
        err = DockerNotRunningError(
            f"Docker is not running: no engine answered {where}.", install_hint(), details=details
        )
        err.why = why
        return err
    # an engine named on purpose (DOCKER_HOST, a context): it, or its name, is what to fix
    err = DockerNotRunningError(
        f"No Docker engine answered {where}.",
        f"Start the engine {ep.source} points at, correct it, or {_unset(ep)} to use "
        "the default engine.\nUsing Podman? `systemctl --user start podman.socket`, and "
        "point DOCKER_HOST at unix://$XDG_RUNTIME_DIR/podman/podman.sock.\n" + WITHOUT_DOCKER,
        details=details,
    )
    err.why = why
    return err


#: How the Docker SDK says an address is none it can use (a bad port is a ValueError).
ADDRESS_ERRORS = (
    "Invalid bind address",
    "Install paramiko",
    "The npipe:// protocol",
)


def not_an_address(ep: Endpoint, exc: BaseException) -> ConfigError:
    """The Docker SDK cannot use ``ep``'s address at all (``DOCKER_HOST=/path``, a bad port)."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    return ConfigError(
        f"{ep.source} {ep.host!r} is not an address of a Docker engine that stigmer can "
        f"use ({text}).",
        "Write it as unix:///path/to/docker.sock or tcp://HOST:PORT, or "
        f"{_unset(ep)} to use the default engine.",
    )


def _not_a_socket(path: str) -> bool:
    """Whether something that is not a socket is at ``path`` (a file, a folder)."""
    try:
        return Path(path).exists() and not Path(path).is_socket()
    except (OSError, ValueError):  # a name too long, a NUL: nothing to say about it
        return False


def _unset(ep: Endpoint) -> str:
    """How to go back to the default engine from ``ep``'s source."""
    if ep.source == "DOCKER_HOST":
        return "unset DOCKER_HOST"
    return "run `docker context use default` (and unset DOCKER_CONTEXT)"


def connect(timeout: float = 5.0) -> Any:
    """A ``docker.DockerClient`` for the resolved endpoint, checked with ``ping()``.

    Raises:
        DockerNotRunningError: nothing answered; the message names the endpoint
            and its source, the fix gives per-OS steps and the local-runner option.
        ConfigError: the address, or the TLS files DOCKER_CERT_PATH names, cannot
            be used at all; or a docker context that does not exist.
    """
    import docker
    from docker.errors import TLSParameterError
    from docker.tls import TLSConfig

    ep = resolve_endpoint()
    tls: Any = False
    if ep.tls_verify and ep.cert_path:
        cert = Path(ep.cert_path)
        try:
            tls = TLSConfig(
                client_cert=(str(cert / "cert.pem"), str(cert / "key.pem")),
                ca_cert=str(cert / "ca.pem"),
                verify=True,
            )
        except TLSParameterError as exc:
            raise ConfigError(
                f"TLS to the Docker engine ({ep.source}) cannot be set up from {cert}: "
                f"{str(exc).strip()}",
                "Point DOCKER_CERT_PATH at the folder that holds ca.pem, cert.pem and "
                "key.pem, or unset DOCKER_TLS_VERIFY.",
            ) from None
    try:
        # (it asks the engine for its API version: this connects already)
        client = docker.DockerClient(base_url=ep.host, tls=tls, timeout=timeout)
        client.ping()
    except Exception as exc:
        if isinstance(exc, ValueError) or str(exc).startswith(ADDRESS_ERRORS):
            raise not_an_address(ep, exc) from None  # nothing was even tried
        raise not_answering(ep, exc) from None
    client.stigmer_endpoint = ep
    return client


def engine_reachable() -> bool:
    try:
        connect(timeout=2).close()
        return True
    except (DockerNotRunningError, ConfigError):
        return False


def is_podman(client: Any) -> bool:
    """True if the engine behind ``client`` is Podman (its compat API names "Podman Engine")."""
    try:
        components = client.version().get("Components") or []
    except Exception:
        return False
    return any("podman" in str(c.get("Name", "")).lower() for c in components)
