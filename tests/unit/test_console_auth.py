"""The web console's sign-in rules, against the API app itself (no stack, no Temporal).

The browser tests (tests/e2e/test_console.py) show the same through Chromium on a
real stack; these check each rule and its edge quickly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stigmer.contract.config import RuntimeConfig, ServerSection, StackKeys, TemporalTarget
from stigmer.contract.workflow import ExecutionInput
from stigmer.credentials import ensure_stack_key, ensure_token
from stigmer.server.auth import SESSION_COOKIE
from stigmer.spec.models import AgentSpec

BASE = "http://testserver"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, str, Any]]:
    from stigmer.server.app import create_app

    admin = ensure_token(tmp_path / "api-token")
    ensure_token(tmp_path / "runner-token")
    active, keys = ensure_stack_key(tmp_path / "stack-key.json")
    cfg = RuntimeConfig(
        role="stigmer-server",
        temporal=TemporalTarget(address="127.0.0.1:1"),
        stack_keys=StackKeys(active=active, keys=keys),  # type: ignore[arg-type]
        default_model="test",
        server=ServerSection(
            port=1,
            store_url=f"sqlite:///{tmp_path / 's.db'}",  # type: ignore[arg-type]
            token_files={
                "admin": str(tmp_path / "api-token"),
                "runner": str(tmp_path / "runner-token"),
            },
            console_login_ttl=1.0,
        ),
    )
    app = create_app(cfg)
    # no lifespan (no Temporal): the routes and the store are what is tested
    client = TestClient(app, base_url=BASE)
    yield client, admin, app.state.store


def code_of(client: TestClient, admin: str) -> dict[str, Any]:
    r = client.post("/v1/ui/login-codes", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def sign_in(client: TestClient, admin: str) -> str:
    r = client.get(code_of(client, admin)["path"], follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/executions"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    return client.cookies[SESSION_COOKIE]


def test_a_code_is_minted_only_with_the_admin_bearer_token(api: Any) -> None:
    client, admin, _store = api
    assert client.post("/v1/ui/login-codes").status_code == 401
    sign_in(client, admin)
    # the session cookie cannot mint codes or tokens (no chain from a browser to a token)
    origin = {"Origin": BASE}
    assert client.post("/v1/ui/login-codes", headers=origin).status_code == 401
    assert client.post("/v1/tokens", json={"role": "admin"}, headers=origin).status_code == 401


def test_a_link_works_once_and_not_after_it_expires(api: Any) -> None:
    client, admin, _store = api
    made = code_of(client, admin)
    assert made["path"].startswith("/ui/login?code=") and admin not in made["path"]
    first = client.get(made["path"], follow_redirects=False)
    assert first.status_code == 303
    client.cookies.clear()
    again = client.get(made["path"], follow_redirects=False)
    assert again.status_code == 410 and "used already" in again.text
    assert SESSION_COOKIE not in again.headers.get("set-cookie", "")
    late = code_of(client, admin)
    time.sleep(1.2)
    expired = client.get(late["path"], follow_redirects=False)
    assert expired.status_code == 410 and "expired" in expired.text
    forged = client.get("/ui/login?code=not-a-code", follow_redirects=False)
    assert forged.status_code == 403
    assert client.get("/ui/login", follow_redirects=False).status_code == 400


def test_without_the_cookie_pages_and_data_are_401(api: Any) -> None:
    client, admin, store = api
    store.create_execution(
        ExecutionInput(
            execution_id="ex-1",
            agent_name="a",
            spec=AgentSpec(instructions="x"),
            message="m",
            model="test",
        )
    )
    for path in (
        "/ui/executions",
        "/ui/agents",
        "/ui/executions/ex-1",
        "/ui/api/executions",
        "/ui/api/executions/stream",
        "/ui/api/executions/ex-1/events",
    ):
        r = client.get(path)
        assert r.status_code == 401, path
        assert "ex-1" not in r.text or path == "/ui/executions/ex-1"
    sign_in(client, admin)
    data = client.get("/ui/api/executions").json()
    assert [e["id"] for e in data["executions"]] == ["ex-1"]
    assert client.get("/ui/api/executions?phase=RUNNING").json() == {"executions": []}
    assert client.get("/ui/api/executions?agent=Not_A_Slug").status_code == 422
    # reads through /v1 still need the bearer token
    assert client.get("/v1/executions").status_code == 401


def test_a_change_with_the_cookie_needs_the_consoles_own_origin(api: Any) -> None:
    client, admin, store = api
    store.create_execution(
        ExecutionInput(
            execution_id="ex-2",
            agent_name="a",
            spec=AgentSpec(instructions="x"),
            message="m",
            model="test",
        )
    )
    sign_in(client, admin)
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        r = client.post("/v1/executions/ex-2/cancel", headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert store.get_execution("ex-2")["phase"] == "PENDING"
        r = client.post(
            "/v1/executions/ex-2/approvals/t0", json={"decision": "approve"}, headers=headers
        )
        assert r.status_code == 403, (headers, r.text)
    # from its own origin: accepted (a PENDING execution without a workflow ends here)
    r = client.post("/v1/executions/ex-2/cancel", headers={"Origin": BASE})
    assert r.status_code == 202, r.text
    assert store.get_execution("ex-2")["phase"] == "CANCELLED"
    # other changes are not the console's, whatever the origin
    assert client.delete("/v1/agents/a", headers={"Origin": BASE}).status_code == 401


def test_pages_carry_a_strict_csp_and_no_inline_script(api: Any) -> None:
    client, admin, _store = api
    sign_in(client, admin)
    for path in ("/ui/executions", "/ui/agents", "/ui/login?code=x", "/ui/static/console.js"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        if path.startswith("/ui/static"):
            continue
        assert "<script>" not in r.text and "<script src=" in r.text


def test_logout_needs_the_origin_and_ends_the_session(api: Any) -> None:
    client, admin, _store = api
    session = sign_in(client, admin)
    assert client.post("/ui/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/ui/api/executions").status_code == 200
    assert client.post("/ui/logout", headers={"Origin": BASE}).status_code == 200
    client.cookies.set(SESSION_COOKIE, session)
    assert client.get("/ui/api/executions").status_code == 401


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from stigmer.server import db
    from stigmer.server.store import Store

    url = (
        f"sqlite:///{tmp_path / 's.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_database").url)
    )
    engine = db.make_engine(url)
    db.migrate(engine)
    yield Store(engine)
    engine.dispose()


def test_codes_and_sessions_in_the_store_sqlite_and_postgres(store: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store.add_console_code("c1", 60)
    # many servers (threads here) using one code at once: exactly one gets in
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _i: store.use_console_code("c1"), range(8)))
    assert outcomes.count("ok") == 1 and set(outcomes) == {"ok", "used"}
    store.add_console_code("c2", 0.2)
    time.sleep(0.4)
    assert store.use_console_code("c2") == "expired"
    assert store.use_console_code("nope") == "unknown"
    store.add_console_session("s1", 60)
    store.add_console_session("s2", 0.2)
    time.sleep(0.4)
    assert store.console_session_ok("s1") and not store.console_session_ok("s2")
    store.end_console_session("s1")
    assert not store.console_session_ok("s1")
    # only hashes are kept
    from sqlalchemy import select

    from stigmer.server.store import console_codes, console_sessions

    with store.engine.connect() as conn:
        kept = [r[0] for r in conn.execute(select(console_codes.c.hash))]
        kept += [r[0] for r in conn.execute(select(console_sessions.c.hash))]
    assert kept and all(len(h) == 64 and h not in ("c1", "c2", "s1", "s2") for h in kept)
