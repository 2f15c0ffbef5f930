"""The stack's credentials, in ``$STIGMER_HOME/credentials/`` (mode 0700, files 0600).

* ``api-token``: the admin bearer token, what the CLI sends;
* ``runner-token``: the agent-runner's token; it may only append events;
* ``stack-key.json``: the keys that seal every Temporal payload (AES-256-GCM,
  :mod:`stigmer.codec`), by key id, and the id of the one that seals now.
  Older keys stay to open what they sealed; ``stigmer config rotate-key``
  adds a new one.

Standard library only: the CLI reads the admin token on its hot path.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from stigmer.errors import ConfigError
from stigmer.files import write_private

#: The roles a bearer token can have.
ADMIN = "admin"
RUNNER = "runner"


def read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_token(path: Path) -> str:
    """The token in ``path``, generated (mode 0600) on first use."""
    token = read_token(path)
    if token:
        return token
    import secrets  # not on the CLI's hot path, which only reads the token

    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def _new_key() -> str:
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()


def read_stack_keys(path: Path) -> tuple[str, dict[str, str]] | None:
    """(active key id, {key id: base64 key}) from ``path``, or None if there is no file.

    Raises:
        ConfigError: the file is not a key file.
    """
    try:
        data: Any = json.loads(path.read_text())
        active, keys = data["active"], dict(data["keys"])
        if active not in keys or not all(len(base64.b64decode(k)) == 32 for k in keys.values()):
            raise ValueError("the active key is missing, or a key is not 32 bytes")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a stigmer key file ({exc}).",
            f"Restore it from a backup; without it nothing sealed with it can be read. "
            f"A new stack can start over after you move it away ({path}).",
        ) from None
    return str(active), {str(k): str(v) for k, v in keys.items()}


def _write_keys(path: Path, active: str, keys: dict[str, str]) -> None:
    write_private(path, json.dumps({"active": active, "keys": keys}, indent=2) + "\n")


def ensure_stack_key(path: Path) -> tuple[str, dict[str, str]]:
    """The stack's keys, a first one made on first use."""
    found = read_stack_keys(path)
    if found is not None:
        return found
    active = "k1"
    keys = {active: _new_key()}
    _write_keys(path, active, keys)
    return active, keys


def rotate_stack_key(path: Path) -> str:
    """Add a new key and make it the one that seals; returns its id (older keys stay).

    With no file yet, the first key is made (``k1``).
    """
    if read_stack_keys(path) is None:
        return ensure_stack_key(path)[0]
    _active, keys = ensure_stack_key(path)
    n = 1 + max(int(k[1:]) for k in keys if k[1:].isdigit())
    new = f"k{n}"
    keys[new] = _new_key()
    _write_keys(path, new, keys)
    return new
