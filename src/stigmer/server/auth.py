"""Bearer tokens and their roles.

Tokens live in the store as their SHA-256, with a role: ``admin`` (what the
CLI holds: everything but appending events) and ``runner`` (what an
agent-runner holds: appending events, nothing else). A server registers the
token files of its configuration at start; every server sharing the store
accepts every token in it.

The web console (:mod:`stigmer.server.console`) signs in with a session cookie
instead (:data:`SESSION_COOKIE`, HttpOnly, SameSite=Strict); it reads through
its own ``/ui/api`` endpoints. On ``/v1`` the cookie stands for an admin token
in two requests only, the console's buttons: cancelling an execution and
deciding an approval, and only with the console's own ``Origin`` (else 403),
so that no other site can make a signed-in browser change anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stigmer.credentials import ADMIN, RUNNER
from stigmer.server.store import Store

ROLES = (ADMIN, RUNNER)
bearer = HTTPBearer(auto_error=False, description="The stack's admin or runner token")

#: The web console's session cookie.
SESSION_COOKIE = "stigmer_console"
#: The ``/v1`` requests the console's session may make (with its own Origin): its buttons.
CONSOLE_CHANGES = re.compile(r"^/v1/executions/[^/]+/(cancel|approvals/[^/]+)$")


def same_origin(request: Request) -> bool:
    """True if the request's ``Origin`` is this server's own (the address it was reached at)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    return bool(origin and host) and origin == f"{request.url.scheme}://{host}"


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

    def console(self, session: str) -> bool:
        """True if ``session`` is a live console session (sessions expire: never remembered)."""
        return self.store.console_session_ok(session)


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def requires(roles: TokenRoles, *allowed: str, console: bool = True) -> Callable[..., str]:
    """A FastAPI dependency: the caller's role, which must be one of ``allowed``.

    401 without a known token, 403 for a role that may not do this. Where
    ``admin`` is allowed, the console's session cookie is taken for what the
    console does (:func:`console_role`), unless ``console`` is False.
    """

    def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        role = roles.role(creds.credentials) if creds is not None else None
        if creds is None and console and ADMIN in allowed:
            role = console_role(roles, request)
        if role is None:
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token (see $STIGMER_HOME/credentials/api-token)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in allowed:
            raise HTTPException(
                status_code=403,
                detail=f"{_a(role)} token may not do this (it needs {_a(' or '.join(allowed))} token)",
            )
        return role

    return check


def console_role(roles: TokenRoles, request: Request) -> str | None:
    """``admin`` for a request the console's session cookie may make, else None.

    Raises:
        HTTPException: 403 for a console button's request from another site (its
            ``Origin`` is not this server's, or missing).
    """
    if request.method != "POST" or not CONSOLE_CHANGES.match(request.url.path):
        return None
    session = request.cookies.get(SESSION_COOKIE)
    if not session or not roles.console(session):
        return None
    if not same_origin(request):
        raise HTTPException(
            403,
            detail="the console's session cookie is taken for a change only from the console's "
            "own pages (this request's Origin is another site's, or missing)",
        )
    return ADMIN
