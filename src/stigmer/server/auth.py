"""Bearer tokens and their roles.

Tokens live in the store as their SHA-256, with a role: ``admin`` (what the
CLI holds: everything but appending events) and ``runner`` (what an
agent-runner holds: appending events, nothing else). A server registers the
token files of its configuration at start; every server sharing the store
accepts every token in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stigmer.credentials import ADMIN, RUNNER
from stigmer.server.store import Store

ROLES = (ADMIN, RUNNER)
bearer = HTTPBearer(auto_error=False, description="The stack's admin or runner token")


class TokenRoles:
    """Finds the role of a bearer token (known tokens are remembered)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[str, str] = {}

    def role(self, token: str) -> str | None:
        role = self._known.get(token)
        if role is None:
            role = self.store.token_role(token)
            if role is not None:
                self._known[token] = role
        return role

    def who(self, token: str) -> str:
        """Who holds ``token``, as events name them: the role, and the label it was made with.

        The stack's own token files (label ``file PATH``) are named by their role only.
        """
        role = self.role(token) or "unknown"
        label = self.store.token_label(token) or ""
        return role if not label or label.startswith("file ") else f"{role}:{label}"


def requires(roles: TokenRoles, *allowed: str) -> Callable[..., str]:
    """A FastAPI dependency: the caller's role, which must be one of ``allowed``.

    401 without a known token, 403 for a role that may not do this.
    """

    def check(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        role = roles.role(creds.credentials) if creds is not None else None
        if role is None:
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token (see $STIGMER_HOME/credentials/api-token)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in allowed:
            raise HTTPException(
                status_code=403,
                detail=f"a {role} token may not do this (it needs a {' or '.join(allowed)} token)",
            )
        return role

    return check
