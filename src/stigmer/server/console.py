"""The web console at ``/ui/``: agents, executions and live runs, served by the API server.

Pages are rendered here (Jinja2, autoescaped); live parts are a little vanilla
JavaScript (``ui/static/console.js``) fed by server-sent events, which puts
every text it shows with ``textContent``. Every ``/ui`` answer carries a
strict Content-Security-Policy: scripts and styles from this server's files
only, no inline script, nothing from another site.

Signing in: ``stigmer ui`` asks ``POST /v1/ui/login-codes`` (admin bearer
token) for a one-time code and opens ``/ui/login?code=...``. The code is valid
once, for ``console_login_ttl`` seconds (the ``ui_login_ttl`` setting, 120),
and becomes a session cookie (HttpOnly, SameSite=Strict). Codes and sessions
are kept in the store as their SHA-256, so every API server sharing it knows
them. The bearer token itself is never in a URL. Without the cookie the
console's pages and data answer 401; what the cookie may do on ``/v1`` is
said in :mod:`stigmer.server.auth`.
"""

import asyncio
import functools
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from stigmer import __version__
from stigmer.contract.config import ServerSection
from stigmer.contract.phases import PHASES, TERMINAL_PHASES
from stigmer.credentials import ADMIN
from stigmer.server.auth import SESSION_COOKIE, TokenRoles, requires, same_origin
from stigmer.server.schemas import LoginCode, error_responses
from stigmer.server.store import Store, iso
from stigmer.server.wakeups import ANY, Wakeups
from stigmer.spec.models import SLUG

UI = Path(__file__).parent / "ui"
#: Seconds a console session lasts once signed in.
SESSION_TTL_S = 12 * 3600
#: Executions a listing shows (newest first).
LIST_LIMIT = 50
#: Seconds between keep-alive comments of an idle stream.
KEEPALIVE_S = 15.0
#: Phase names the filter takes (the known ones, and any the runner may add).
PHASE_PATTERN = r"^[A-Z_]{1,32}$"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class ConsoleHeaders:
    """ASGI middleware: the security headers on every ``/ui`` answer (errors too)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/ui"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


@functools.cache
def _templates() -> Any:
    """The pages' Jinja2 environment, made on the first page (not on the API server's start)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(UI / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates().get_template(name).render(version=__version__, **context)
    return HTMLResponse(html, status_code=status)


def _yaml_text(doc: Any) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def notice(title: str, text: str, status: int, hint: str | None = None) -> HTMLResponse:
    """A page that says one thing (signed out, a used link): no data."""
    return render("notice.html", status, title=title, text=text, hint=hint, signed_in=False)


def temporal_link(ui_url: str | None, namespace: str, ex: dict[str, Any]) -> str | None:
    """The execution's workflow in the Temporal Web UI (None without a UI or a run)."""
    if not ui_url or not ex.get("run_id"):
        return None
    return (
        f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/"
        f"{quote(ex['workflow_id'], safe='')}/{quote(ex['run_id'], safe='')}/history"
    )


def add_console(
    app: FastAPI,
    *,
    store: Store,
    roles: TokenRoles,
    wakeups: Wakeups,
    server: ServerSection,
    namespace: str,
    off_loop: Callable[..., Awaitable[Any]],
    event_stream: Callable[[Request, str, int], AsyncIterator[bytes]],
) -> None:
    """Add the console's pages and data to ``app``, and ``POST /v1/ui/login-codes``."""
    app.add_middleware(ConsoleHeaders)
    app.mount("/ui/static", StaticFiles(directory=UI / "static"), name="ui-static")
    bearer_admin = requires(roles, ADMIN, console=False)
    signed_out_hint = "Run `stigmer ui` for a login link (it works once, for a short time)."

    async def session_of(request: Request) -> bool:
        session = request.cookies.get(SESSION_COOKIE)
        return bool(session) and bool(await off_loop(store.console_session_ok, session))

    async def console_session(request: Request) -> None:
        """The dependency of the console's data: a live session cookie, else 401."""
        if not await session_of(request):
            raise HTTPException(
                401, detail="not signed in to the console: run `stigmer ui` for a login link"
            )

    # -- signing in -----------------------------------------------------------

    @app.post(
        "/v1/ui/login-codes",
        status_code=201,
        responses=error_responses(401, 403),
    )
    async def create_login_code(
        _role: Annotated[str, Depends(bearer_admin)],
    ) -> LoginCode:
        """A one-time code for ``/ui/login?code=``: valid once, for ``console_login_ttl`` s."""
        code = secrets.token_urlsafe(32)
        expires = await off_loop(store.add_console_code, code, server.console_login_ttl)
        return LoginCode(
            code=code, expires_at=iso(expires) or "", path=f"/ui/login?code={quote(code)}"
        )

    @app.get("/ui/login", include_in_schema=False)
    async def login(request: Request, code: str = "") -> Response:
        if not code or len(code) > 200:
            return notice(
                "Not a login link",
                "This address has no login code.",
                400,
                signed_out_hint,
            )
        outcome = await off_loop(store.use_console_code, code)
        if outcome != "ok":
            why = {
                "used": "This login link was used already: each link works once.",
                "expired": "This login link has expired: a link works for "
                f"{server.console_login_ttl:g} seconds.",
                "unknown": "This login link is not one of this stack's.",
            }[outcome]
            return notice(
                "Login link not valid", why, 403 if outcome == "unknown" else 410, signed_out_hint
            )
        session = secrets.token_urlsafe(32)
        await off_loop(store.add_console_session, session, SESSION_TTL_S)
        resp = RedirectResponse("/ui/executions", status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=SESSION_TTL_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return resp

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return notice("Not signed out", "A sign-out must come from the console.", 403)
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            await off_loop(store.end_console_session, session)
        resp = notice("Signed out", "You are signed out of the console.", 200, signed_out_hint)
        resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    # -- pages ------------------------------------------------------------------

    def signed_out() -> HTMLResponse:
        return notice(
            "Not signed in", "The console needs you to sign in first.", 401, signed_out_hint
        )

    def filters(agent: str, phase: str) -> tuple[str | None, str | None]:
        import re

        if agent and not SLUG.match(agent):
            raise HTTPException(422, detail=f"agent {agent!r} is not an agent name (a slug)")
        if phase and not re.match(PHASE_PATTERN, phase):
            raise HTTPException(422, detail=f"phase {phase!r} is not a phase ({', '.join(PHASES)})")
        return agent or None, phase or None

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/ui/executions", status_code=303)

    @app.get("/ui/executions", include_in_schema=False)
    async def executions_page(
        request: Request,
        agent: Annotated[str, Query(max_length=63)] = "",
        phase: Annotated[str, Query(max_length=32)] = "",
    ) -> Response:
        if not await session_of(request):
            return signed_out()
        try:
            agent_f, phase_f = filters(agent, phase)
        except HTTPException as exc:
            return notice("Not a filter", str(exc.detail), 422, "Choose the filter from the lists.")
        agents = [a["name"] for a in await off_loop(store.list_agents)]
        return render(
            "executions.html",
            page="executions",
            signed_in=True,
            agents=agents,
            phases=PHASES,
            agent=agent_f or "",
            phase=phase_f or "",
        )

    @app.get("/ui/executions/{execution_id}", include_in_schema=False)
    async def execution_page(request: Request, execution_id: str) -> Response:
        if not await session_of(request):
            return signed_out()
        ex = await off_loop(store.get_execution, execution_id) if len(execution_id) <= 64 else None
        if ex is None:
            return notice(
                "No such execution", f"There is no execution {execution_id!r}.", 404, None
            )
        return render(
            "execution.html",
            page="execution",
            signed_in=True,
            ex=ex,
            terminal=ex["phase"] in TERMINAL_PHASES,
            temporal_url=temporal_link(server.temporal_ui_url, namespace, ex),
        )

    @app.get("/ui/agents", include_in_schema=False)
    async def agents_page(request: Request) -> Response:
        if not await session_of(request):
            return signed_out()
        agents = await off_loop(store.list_agents)
        return render("agents.html", page="agents", signed_in=True, agents=agents)

    @app.get("/ui/agents/{name}", include_in_schema=False)
    async def agent_page(request: Request, name: str) -> Response:
        if not await session_of(request):
            return signed_out()
        agent = await off_loop(store.get_agent, name) if SLUG.match(name) else None
        if agent is None:
            return notice("No such agent", f"There is no agent named {name!r}.", 404, None)
        doc = {
            "apiVersion": "stigmer.ai/v1",
            "kind": "Agent",
            "metadata": {"name": agent["name"]},
            "spec": agent["spec"],
        }
        return render(
            "agent.html",
            page="agent",
            signed_in=True,
            agent=agent,
            spec_yaml=_yaml_text(doc),
        )

    # -- data -------------------------------------------------------------------

    def summaries(agent: str | None, phase: str | None) -> list[dict[str, Any]]:
        items = store.list_executions(agent, LIST_LIMIT, phase)
        stats = store.execution_stats([e["id"] for e in items])
        out = []
        for e in items:
            message = e.get("message") or ""
            out.append(
                {
                    "id": e["id"],
                    "agent": e["agent"],
                    "phase": e["phase"],
                    "model": e.get("model"),
                    "message": message[:200],
                    "started_at": e["created_at"],
                    "ended_at": e["updated_at"] if e["phase"] in TERMINAL_PHASES else None,
                    **stats[e["id"]],
                }
            )
        return out

    console_only = [Depends(console_session)]

    @app.get("/ui/api/executions", include_in_schema=False, dependencies=console_only)
    async def executions_data(
        agent: Annotated[str, Query(max_length=63)] = "",
        phase: Annotated[str, Query(max_length=32)] = "",
    ) -> JSONResponse:
        agent_f, phase_f = filters(agent, phase)
        return JSONResponse({"executions": await off_loop(summaries, agent_f, phase_f)})

    @app.get(
        "/ui/api/executions/{execution_id}/events",
        include_in_schema=False,
        dependencies=console_only,
    )
    async def execution_events(
        request: Request,
        execution_id: Annotated[str, PathParam(max_length=64)],
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> StreamingResponse:
        """One execution's events as server-sent events (every one as a plain ``message``,
        so that a type the page does not know yet still arrives), as ``/v1`` streams them."""
        if await off_loop(store.get_execution, execution_id) is None:
            raise HTTPException(404, detail=f"no execution {execution_id!r}")
        last = request.headers.get("last-event-id", "")
        if last.isascii() and last.isdigit() and len(last) < 20:
            after = max(after, int(last))
        return StreamingResponse(
            event_stream(request, execution_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/ui/api/executions/stream", include_in_schema=False, dependencies=console_only)
    async def executions_stream(
        request: Request,
        agent: Annotated[str, Query(max_length=63)] = "",
        phase: Annotated[str, Query(max_length=32)] = "",
    ) -> StreamingResponse:
        """The listing as server-sent events: the whole list again whenever it changed."""
        agent_f, phase_f = filters(agent, phase)

        async def events() -> AsyncIterator[bytes]:
            flag = wakeups.add(ANY)
            sent = None
            quiet = 0.0
            try:
                while True:
                    flag.clear()
                    body = json.dumps({"executions": await off_loop(summaries, agent_f, phase_f)})
                    if body != sent:
                        sent = body
                        quiet = 0.0
                        yield f"event: executions\ndata: {body}\n\n".encode()
                    if wakeups.closing or await request.is_disconnected():
                        return
                    try:
                        # an append anywhere wakes it; a new execution within a second
                        async with asyncio.timeout(1.0):
                            await flag.wait()
                        if wakeups.closing:  # the server stops (Wakeups.close_streams)
                            return
                        await asyncio.sleep(0.2)  # one read for a burst of events
                    except TimeoutError:
                        quiet += 1.0
                        if quiet >= KEEPALIVE_S:
                            quiet = 0.0
                            yield b": keepalive\n\n"
            finally:
                wakeups.discard(ANY, flag)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
