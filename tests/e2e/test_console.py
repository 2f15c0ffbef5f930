"""The web console in headless Chromium against a real stack (issue 16).

Debian's ``chromium``, driven by Playwright for Python with ``executable_path``
(no browser download). Without it the tests are skipped with the reason; under
CI=true that is a failure. Every page's screenshot goes to
``$STIGMER_CI_LOGS/screenshots`` (default /tmp/stigmer-ci-logs).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, new_stack, tear_down
from tests.fixtures_docker import in_ci

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("STIGMER_CI_LOGS", "/tmp/stigmer-ci-logs")) / "screenshots"
#: the login links' lifetime in this stack (ui_login_ttl): short, for the expiry test
LINK_TTL = 8
WAIT_MS = 60_000
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        reason = "Debian's chromium and Playwright for Python are needed (apt-get install chromium)"
        if in_ci():
            pytest.fail(f"{reason} [CI=true: a missing prerequisite is a failure]", pytrace=False)
        pytest.skip(reason)
    return found


def agent(name: str, tools: list[str], script: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "stigmer.ai/v1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "description": f"console test: {name}",
            "instructions": "test",
            "model": "test",
            "tools": tools,
            "local_shell": True,
            "test_script": script,
        },
    }


def with_approval(doc: dict[str, Any], tools: list[str]) -> dict[str, Any]:
    doc["spec"]["approval"] = {"tools": tools, "timeout": "10m", "on_timeout": "deny"}
    return doc


AGENTS = [
    # the example's steps, paced by a pause between them: its events arrive while one looks
    agent(
        "paced",
        ["list_files", "shell"],
        [
            {"tool": "list_files", "args": {"path": "notes"}},
            {"tool": "shell", "args": {"command": "sleep 4; echo paced"}},
            {"tool": "shell", "args": {"command": "sleep 2; echo again"}},
            {"answer": "Done pacing."},
        ],
    ),
    agent(
        "long-shell",
        ["shell"],
        [{"tool": "shell", "args": {"command": "sleep 300", "timeout": 600}}, {"answer": "no"}],
    ),
    with_approval(
        agent(
            "needs-approval",
            ["shell"],
            [{"tool": "shell", "args": {"command": "echo approved-ran"}}, {"answer": "{{ last }}"}],
        ),
        ["shell"],
    ),
    agent(
        "hostile-output",
        ["shell"],
        [
            {"tool": "shell", "args": {"command": f"printf '%s\\033[31mred\\033[0m' '{HOSTILE}'"}},
            {"answer": "{{ last }}"},
        ],
    ),
]


@pytest.fixture(scope="module")
def cstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium_path()
    home = tmp_path_factory.mktemp("console") / "home"
    st = new_stack(home, "local", STIGMER_UI_LOGIN_TTL=str(LINK_TTL))
    st.start()
    try:
        st.cli("init", check=True)
        st.cli("apply", "-f", str(ROOT / "examples"), check=True)
        f = home.parent / "agents.yaml"
        f.write_text("\n---\n".join(json.dumps(a) for a in AGENTS))
        st.cli("apply", "-f", str(f), check=True)
        yield st
    finally:
        tear_down(st)


@pytest.fixture(scope="module")
def browser(cstack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    yield ctx
    ctx.close()


def base(st: Stack) -> str:
    return f"http://127.0.0.1:{st.ports['server']}"


def login_link(st: Stack) -> str:
    out = st.cli("ui", "--no-browser", check=True)
    url = out.stdout.strip().splitlines()[-1]
    assert url.startswith(f"{base(st)}/ui/login?code="), out.stdout
    token = (st.home / "credentials" / "api-token").read_text().strip()
    assert token not in url
    return url


def sign_in(st: Stack, page: Any) -> None:
    page.goto(login_link(st))
    page.wait_for_url("**/ui/executions")
    cookie = next(c for c in page.context.cookies() if c["name"] == "stigmer_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def shot(page: Any, name: str, **kwargs: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), **kwargs)


def inject(st: Stack, execution_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Append events of types this runner does not send yet, straight into the stack's store."""
    from stigmer.contract.events import format_timestamp
    from stigmer.server import db
    from stigmer.server.store import Store

    engine = db.make_engine(f"sqlite:///{st.home / 'data' / 'stigmer.db'}")
    try:
        Store(engine).append(
            execution_id,
            [
                {
                    "event_id": f"{execution_id}/test/{kind}",
                    "type": kind,
                    "payload": payload,
                    "at": format_timestamp(),
                }
                for kind, payload in events
            ],
        )
    finally:
        engine.dispose()


def run_detached(st: Stack, name: str, message: str) -> str:
    out = st.cli("run", name, message, "--detach", check=True)
    return out.stdout.strip().splitlines()[0]


def row(page: Any, execution_id: str) -> Any:
    return page.locator(f'#execution-rows tr[data-id="{execution_id}"]')


def test_sign_in_by_the_link_and_see_a_run_appear_live_then_end_completed(
    cstack: Stack, context: Any
) -> None:
    page = context.new_page()
    sign_in(cstack, page)
    page.evaluate("window.__same_page = 1")  # gone if the page reloads
    ex = run_detached(cstack, "summarize-folder", "Summarize the notes folder")
    row(page, ex).wait_for(timeout=WAIT_MS)
    page.locator(f'#execution-rows tr[data-id="{ex}"][data-phase="COMPLETED"]').wait_for(
        timeout=WAIT_MS
    )
    cells = row(page, ex).locator("td").all_inner_texts()
    assert cells[1] == "summarize-folder" and cells[2] == "COMPLETED"
    assert int(cells[5]) >= 3  # tool calls: list, reads, write
    assert page.evaluate("window.__same_page") == 1
    shot(page, "executions")

    # watch a run's events arrive: the page is open while it runs
    paced = run_detached(cstack, "paced", "pace yourself")
    page.goto(f"{base(cstack)}/ui/executions/{paced}")
    timeline = page.locator("#timeline li")
    page.locator('#timeline li[data-type="tool_call"]').first.wait_for(timeout=WAIT_MS)
    assert page.locator("#phase").inner_text() in ("PENDING", "RUNNING")
    seen_running = timeline.count()
    page.locator('#phase:text("COMPLETED")').wait_for(timeout=WAIT_MS)
    assert timeline.count() > seen_running
    text = page.locator("#timeline").inner_text()
    assert "list_files" in text and "paced" in text and "Done pacing." in text
    assert page.locator("#output").inner_text() == "Done pacing."
    assert page.locator("#cancel").is_hidden()
    link = page.locator("#temporal-link").get_attribute("href")
    assert link and link.startswith(f"http://127.0.0.1:{cstack.ports['ui']}/namespaces/default/")
    assert "agent-execution%2F" in link
    shot(page, "execution", full_page=True)

    # the example's page too, and the agents' pages
    page.goto(f"{base(cstack)}/ui/executions/{ex}")
    page.locator('#phase:text("COMPLETED")').wait_for(timeout=WAIT_MS)
    page.locator('#timeline li[data-type="usage"]').wait_for(timeout=WAIT_MS)
    assert "Wrote reports/notes-summary.md." in page.locator("#timeline").inner_text()
    shot(page, "execution-example")
    page.goto(f"{base(cstack)}/ui/agents")
    assert page.locator("table.agents").inner_text().count("summarize-folder") == 1
    shot(page, "agents")
    page.click("text=summarize-folder")
    page.wait_for_url("**/ui/agents/summarize-folder")
    assert "test_script:" in page.locator("#spec").inner_text()
    row(page, ex).wait_for(timeout=WAIT_MS)
    shot(page, "agent")
    page.goto(f"{base(cstack)}/ui/executions?phase=COMPLETED&agent=summarize-folder")
    row(page, ex).wait_for(timeout=WAIT_MS)
    assert row(page, paced).count() == 0

    # narrow, and dark
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{base(cstack)}/ui/executions")
    row(page, ex).wait_for(timeout=WAIT_MS)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide in a 390px window"
    shot(page, "executions-narrow")
    page.goto(f"{base(cstack)}/ui/executions/{paced}")
    page.locator('#phase:text("COMPLETED")').wait_for(timeout=WAIT_MS)
    shot(page, "execution-narrow", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="dark")
    page.reload()
    page.locator('#phase:text("COMPLETED")').wait_for(timeout=WAIT_MS)
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(21, 23, 26)", bg
    shot(page, "execution-dark")


def test_cancel_a_long_run_from_its_page_and_no_other_origin_can(
    cstack: Stack, context: Any
) -> None:
    page = context.new_page()
    sign_in(cstack, page)
    ex = run_detached(cstack, "long-shell", "wait")
    page.goto(f"{base(cstack)}/ui/executions/{ex}")
    page.locator('#timeline li[data-type="tool_call"]:has-text("running")').wait_for(
        timeout=WAIT_MS
    )
    # the session cookie, from another site (or with no Origin), changes nothing: 403
    url = f"{base(cstack)}/v1/executions/{ex}/cancel"
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}):
        r = context.request.post(url, headers=headers)
        assert r.status == 403, (headers, r.status, r.text())
    r = context.request.post(url, headers={"Origin": "http://localhost:1"})
    assert r.status == 403
    assert json.loads(cstack.cli("execution", "get", ex, "-o", "json").stdout)["phase"] == "RUNNING"
    # a retry, as the runner reports one (written to the store here, as the API would)
    inject(
        cstack,
        ex,
        [("retry", {"tool_call_id": "t0", "name": "shell", "attempt": 2, "reason": "lost"})],
    )
    page.locator('#timeline li[data-type="retry"]:has-text("attempt 2")').wait_for(timeout=WAIT_MS)
    assert "retry of shell call t0" in page.locator("#timeline").inner_text()
    shot(page, "execution-running")
    page.click("#cancel")
    page.locator('#phase:text("CANCELLED")').wait_for(timeout=WAIT_MS)
    assert page.locator("#cancel").is_hidden()
    # the call's time spans its attempts, and says so
    page.locator('#timeline .tool-state:has-text("over 2 attempts")').wait_for(timeout=WAIT_MS)
    shot(page, "execution-cancelled")
    got = json.loads(cstack.cli("execution", "get", ex, "-o", "json").stdout)
    assert got["phase"] == "CANCELLED"


def test_approve_a_waiting_call_from_its_page(cstack: Stack, context: Any) -> None:
    page = context.new_page()
    sign_in(cstack, page)
    ex = run_detached(cstack, "needs-approval", "go")
    page.goto(f"{base(cstack)}/ui/executions/{ex}")
    approval = page.locator('#timeline li[data-type="approval_requested"]')
    approval.locator("button.approve").first.wait_for(timeout=WAIT_MS)
    page.locator('#phase:text("AWAITING_APPROVAL")').wait_for(timeout=WAIT_MS)
    assert "echo approved-ran" in approval.inner_text()
    shot(page, "execution-awaiting-approval")
    approval.locator("input[name=reason]").fill("looks fine")
    approval.locator("button.approve").first.click()
    decided = page.locator('#timeline li[data-type="approval_decided"]')
    decided.wait_for(timeout=WAIT_MS)
    assert "approved by admin:console" in decided.inner_text()
    assert "looks fine" in decided.inner_text()
    page.locator('#phase:text("COMPLETED")').wait_for(timeout=WAIT_MS)
    assert approval.locator("button").count() == 0
    assert "approved-ran" in page.locator("#output").inner_text()
    shot(page, "execution-approved", full_page=True)


def test_a_tool_result_with_script_is_shown_as_text_and_nothing_runs(
    cstack: Stack, context: Any
) -> None:
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(cstack, page)
    out = cstack.cli("run", "hostile-output", "go", "-o", "json", check=True)
    ex = json.loads(out.stdout)["id"]
    page.goto(f"{base(cstack)}/ui/executions/{ex}")
    page.locator('#phase:text("COMPLETED")').wait_for(timeout=WAIT_MS)
    page.locator("#timeline li.done").wait_for(timeout=WAIT_MS)
    text = page.locator("#timeline").inner_text()
    assert HOSTILE in text, text
    assert "␛[31mred␛[0m" in text  # the terminal escapes, visible
    assert HOSTILE in page.locator("#output").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img").count() == 0
    assert page.locator("script").count() == 1  # console.js, nothing else
    # the message list's own cell too
    page.goto(f"{base(cstack)}/ui/executions?agent=hostile-output")
    row(page, ex).wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.__pwned") is None
    page.goto(f"{base(cstack)}/ui/executions/{ex}")
    page.locator("#timeline li.done").wait_for(timeout=WAIT_MS)
    shot(page, "execution-hostile-output", full_page=True)
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_without_the_cookie_nothing_and_a_used_or_expired_link_gets_a_clear_page(
    cstack: Stack, browser: Any
) -> None:
    ex = json.loads(cstack.cli("execution", "list", "-o", "json").stdout)["executions"][0]["id"]
    anon = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        for path in (
            "/ui/api/executions",
            "/ui/api/executions/stream",
            f"/ui/api/executions/{ex}/events",
            "/ui/executions",
            f"/ui/executions/{ex}",
            "/ui/agents",
            "/v1/executions",
            f"/v1/executions/{ex}/events",
        ):
            r = anon.request.get(f"{base(cstack)}{path}", timeout=10_000)
            assert r.status == 401, (path, r.status)
            assert ex not in r.text()  # no data, not even the id asked for
        page = anon.new_page()
        resp = page.goto(f"{base(cstack)}/ui/executions")
        assert resp.status == 401
        assert "Not signed in" in page.inner_text("main") and "stigmer ui" in page.inner_text(
            "main"
        )
        shot(page, "signed-out")

        link = login_link(cstack)
        other = browser.new_context()
        try:
            first = other.new_page()
            first.goto(link)
            first.wait_for_url("**/ui/executions")
        finally:
            other.close()
        resp = page.goto(link)
        assert resp.status == 410
        assert "used already" in page.inner_text("main")
        assert page.locator("#executions").count() == 0 and ex not in page.content()
        assert not [c for c in anon.cookies() if c["name"] == "stigmer_console"]
        shot(page, "link-used")

        late = login_link(cstack)
        time.sleep(LINK_TTL + 1)
        resp = page.goto(late)
        assert resp.status == 410
        assert "expired" in page.inner_text("main")
        assert page.locator("#executions").count() == 0
        assert not [c for c in anon.cookies() if c["name"] == "stigmer_console"]
        shot(page, "link-expired")
    finally:
        anon.close()
