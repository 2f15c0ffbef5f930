"""The HTTP API.

Every endpoint needs ``Authorization: Bearer <token>``, where the token is the
content of ``STIGMER_API_TOKEN_FILE`` (``$STIGMER_HOME/credentials/api-token``,
mode 0600, written on first ``server start``). ``GET /healthz`` alone is open.

Endpoints (all JSON unless noted):

* ``PUT /v1/agents/{name}`` body ``{"spec": {...}}``: create or update; answers
  ``{"status": created|updated|unchanged, "agent": {...}}``.
* ``GET /v1/agents``, ``GET|DELETE /v1/agents/{name}``.
* ``POST /v1/executions`` body ``{"agent", "message", "env"?, "model"?}``: records
  the execution as PENDING and starts workflow ``AgentExecutionWorkflow`` (id
  ``agent-execution/<id>``, task queue ``agent_execution_runner``) with a
  snapshot of the spec.
* ``GET /v1/executions[?agent=&limit=]``, ``GET /v1/executions/{id}``,
  ``POST /v1/executions/{id}/cancel``.
* ``GET /v1/executions/{id}/events?after=SEQ``: the events after SEQ; with
  ``Accept: text/event-stream`` (or ``?stream=1``) a server-sent event stream:
  the snapshot, then live events, without gap or repeat, ending after the
  final phase. Resume with ``after`` or ``Last-Event-ID``.
* ``POST /v1/executions/{id}/events`` body ``{"events": [...]}``: the runner appends.
"""

import asyncio
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from stigmer import __version__
from stigmer.events import TERMINAL_PHASES, NewEvent
from stigmer.server import db
from stigmer.server.store import Store, new_execution_id
from stigmer.settings import TASK_QUEUE
from stigmer.spec.models import AgentSpec, parse_model

log = logging.getLogger("stigmer.server")

#: Seconds of quiet in a stream after which the server asks Temporal whether the
#: workflow ended without publishing its final phase (a crash, a termination).
RECONCILE_AFTER = 5.0
KEEPALIVE = 15.0
#: Workflow task attempts after which a stuck execution gets an error event.
STUCK_ATTEMPTS = 3


def _load_token() -> str:
    path = os.environ.get("STIGMER_API_TOKEN_FILE")
    if path:
        return Path(path).read_text().strip()
    token = os.environ.get("STIGMER_API_TOKEN", "")
    if not token:
        raise RuntimeError("no API token: set STIGMER_API_TOKEN_FILE or STIGMER_API_TOKEN")
    return token


def _utf8(value: Any) -> Any:
    """``value`` unchanged if every string in it is valid UTF-8 text; else ValueError.

    JSON can carry lone surrogates (``\\udcff``, what Python makes of bytes that
    are not UTF-8); they cannot be stored or sent to Temporal, so they are
    refused with a 422 before anything is stored.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid UTF-8 text") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _utf8(k)
            _utf8(v)
    elif isinstance(value, list):
        for v in value:
            _utf8(v)
    return value


class AgentPut(BaseModel):
    spec: Annotated[dict[str, Any], AfterValidator(_utf8)]


class ExecutionCreate(BaseModel):
    agent: Annotated[str, AfterValidator(_utf8)]
    message: Annotated[str, AfterValidator(_utf8)] = ""
    env: Annotated[dict[str, str], AfterValidator(_utf8)] = Field(default_factory=dict)
    model: Annotated[str | None, AfterValidator(_utf8)] = None


class EventsPost(BaseModel):
    events: list[NewEvent]


class Temporal:
    """The server's Temporal client, connected on first use (``STIGMER_TEMPORAL_*`` env)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        async with self._lock:
            if self._client is None:
                from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
                from temporalio.client import Client

                api_key = os.environ.get("STIGMER_TEMPORAL_API_KEY") or None
                tls = os.environ.get("STIGMER_TEMPORAL_TLS", "0") in ("1", "true") or bool(api_key)
                self._client = await Client.connect(
                    os.environ.get("STIGMER_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
                    namespace=os.environ.get("STIGMER_TEMPORAL_NAMESPACE", "default"),
                    api_key=api_key,
                    tls=tls,
                    identity="stigmer-server",
                    plugins=[PydanticAIPlugin()],
                    connect_timeout=timedelta(seconds=5),
                )
            return self._client


def create_app(database_url: str | None = None, token: str | None = None) -> FastAPI:
    """The FastAPI app; runs migrations on start-up.

    Args:
        database_url: SQLAlchemy URL (default: ``STIGMER_DATABASE_URL``).
        token: the bearer token (default: read from ``STIGMER_API_TOKEN_FILE``).
    """
    url = database_url or os.environ["STIGMER_DATABASE_URL"]
    secret = token or _load_token()
    engine = db.make_engine(url)
    db.migrate(engine)
    store = Store(engine)
    temporal = Temporal()
    #: per execution, one wake-up flag per open event stream (set on every append)
    waiters: dict[str, set[asyncio.Event]] = {}

    app = FastAPI(
        title="stigmer", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.engine = engine
    app.state.store = store

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad value back ("input"): that can hold an
        # env value (a secret) or text JSON cannot encode. Field and reason only.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    bearer = HTTPBearer(auto_error=False)

    def require_token(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), secret.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token (see $STIGMER_HOME/credentials/api-token)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        ok = db.check(engine)
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "database": "ok" if ok else "error"},
            status_code=200 if ok else 503,
        )

    api = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    @api.get("/info")
    def info() -> dict[str, Any]:
        return {"version": __version__, "database": engine.url.get_backend_name()}

    # -- agents ---------------------------------------------------------------

    @api.put("/agents/{name}")
    def put_agent(name: str, body: AgentPut) -> dict[str, Any]:
        try:
            spec = AgentSpec.model_validate(body.spec)
        except ValidationError as exc:
            raise HTTPException(
                422, detail=exc.errors(include_url=False, include_context=False)
            ) from None
        status, agent = store.put_agent(name, spec.model_dump(mode="json", exclude_none=True))
        return {"status": status, "agent": agent}

    @api.get("/agents")
    def list_agents() -> dict[str, Any]:
        return {"agents": store.list_agents()}

    @api.get("/agents/{name}")
    def get_agent(name: str) -> dict[str, Any]:
        agent = store.get_agent(name)
        if agent is None:
            raise HTTPException(404, detail=f"no agent named {name!r}")
        return agent

    @api.delete("/agents/{name}")
    def delete_agent(name: str) -> dict[str, Any]:
        if not store.delete_agent(name):
            raise HTTPException(404, detail=f"no agent named {name!r}")
        return {"deleted": name}

    # -- executions -----------------------------------------------------------

    @api.post("/executions", status_code=201)
    async def create_execution(body: ExecutionCreate) -> dict[str, Any]:
        agent = store.get_agent(body.agent)
        if agent is None:
            raise HTTPException(404, detail=f"no agent named {body.agent!r}")
        if body.model:
            try:
                parse_model(body.model)
            except ValueError as exc:
                raise HTTPException(422, detail=str(exc)) from None
        execution_id = new_execution_id()
        wf_input = {
            "execution_id": execution_id,
            "agent_name": body.agent,
            "spec": agent["spec"],
            "message": body.message,
            "env": body.env,
            "model": body.model
            or agent["spec"].get("model")
            or os.environ.get("STIGMER_DEFAULT_MODEL")
            or "test",
        }
        ex = store.create_execution(body.agent, wf_input, execution_id)
        try:
            client = await temporal.client()
            await client.start_workflow(
                "AgentExecutionWorkflow",
                wf_input,
                id=ex["workflow_id"],
                task_queue=TASK_QUEUE,
            )
        except Exception as exc:
            msg = f"could not start the workflow on Temporal: {exc}"
            store.append(
                execution_id,
                [
                    {
                        "event_id": f"{execution_id}/server/error",
                        "type": "error",
                        "payload": {"message": msg, "kind": "StartFailed"},
                    },
                    {
                        "event_id": f"{execution_id}/server/failed",
                        "type": "phase",
                        "payload": {"phase": "FAILED", "error": msg},
                    },
                ],
            )
            await _notify(execution_id)
            raise HTTPException(503, detail=msg) from None
        return store.get_execution(execution_id) or ex

    @api.get("/executions")
    def list_executions(
        agent: str | None = None, limit: int = Query(50, ge=1, le=1000)
    ) -> dict[str, Any]:
        return {"executions": store.list_executions(agent, limit)}

    async def _reconcile(ex: dict[str, Any]) -> dict[str, Any]:
        """If Temporal says the workflow ended but no final phase was published, record it."""
        if ex["phase"] in TERMINAL_PHASES:
            return ex
        try:
            client = await temporal.client()
            desc = await client.get_workflow_handle(ex["workflow_id"]).describe()
        except Exception:
            return ex
        status = desc.status.name if desc.status else "RUNNING"
        if status == "RUNNING":
            await _diagnose_stuck(ex, client, desc)
            return ex
        phase = {
            "COMPLETED": "COMPLETED",
            "FAILED": "FAILED",
            "CANCELED": "CANCELLED",
            "TERMINATED": "FAILED",
            "TIMED_OUT": "FAILED",
        }.get(status)
        if phase is None:
            return ex
        payload: dict[str, Any] = {"phase": phase}
        if phase == "FAILED":
            payload["error"] = f"workflow {status.lower()}"
        store.append(
            ex["id"],
            [{"event_id": f"{ex['id']}/reconcile/{phase}", "type": "phase", "payload": payload}],
        )
        await _notify(ex["id"])
        return store.get_execution(ex["id"]) or ex

    async def _diagnose_stuck(ex: dict[str, Any], client: Any, desc: Any) -> None:
        """A workflow task that keeps failing (say, a stale runner image) gets one error event."""
        pending = desc.raw_description.pending_workflow_task
        if pending.attempt < STUCK_ATTEMPTS:
            return
        reason = "the runner keeps failing to run this workflow"
        try:
            handle = client.get_workflow_handle(ex["workflow_id"])
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_task_failed_event_attributes"):
                    reason = event.workflow_task_failed_event_attributes.failure.message or reason
        except Exception:
            pass
        fix = (
            "the runner image is probably older than this CLI: rebuild it "
            "(`make build-agent-runner-image`, or `stigmer server start --rebuild`)"
            if "not registered" in reason
            else "see `stigmer server logs -c agent-runner`"
        )
        store.append(
            ex["id"],
            [
                {
                    "event_id": f"{ex['id']}/diagnose/stuck",
                    "type": "error",
                    "payload": {
                        "message": f"{reason} (attempt {pending.attempt}); {fix}",
                        "kind": "WorkflowTaskFailing",
                    },
                }
            ],
        )
        await _notify(ex["id"])

    @api.get("/executions/{execution_id}")
    async def get_execution(execution_id: str) -> dict[str, Any]:
        ex = store.get_execution(execution_id)
        if ex is None:
            raise HTTPException(404, detail=f"no execution {execution_id!r}")
        return await _reconcile(ex)

    @api.post("/executions/{execution_id}/cancel", status_code=202)
    async def cancel_execution(execution_id: str) -> dict[str, Any]:
        ex = store.get_execution(execution_id)
        if ex is None:
            raise HTTPException(404, detail=f"no execution {execution_id!r}")
        if ex["phase"] in TERMINAL_PHASES:
            raise HTTPException(
                409, detail=f"execution {execution_id} already ended: {ex['phase']}"
            )
        client = await temporal.client()
        await client.get_workflow_handle(ex["workflow_id"]).cancel()
        return {"id": execution_id, "cancel_requested": True}

    # -- events ---------------------------------------------------------------

    async def _notify(execution_id: str) -> None:
        for flag in waiters.get(execution_id, ()):
            flag.set()

    @api.post("/executions/{execution_id}/events")
    async def post_events(execution_id: str, body: EventsPost) -> dict[str, Any]:
        try:
            seqs = store.append(execution_id, [e.model_dump() for e in body.events])
        except KeyError:
            raise HTTPException(404, detail=f"no execution {execution_id!r}") from None
        await _notify(execution_id)
        return {"seqs": seqs}

    @api.get("/executions/{execution_id}/events", response_model=None)
    async def get_events(
        request: Request,
        execution_id: str,
        after: int = Query(0, ge=0),
        stream: bool = False,
        accept: str = Header(""),
        last_event_id: str | None = Header(None),
    ) -> Any:
        if store.get_execution(execution_id) is None:
            raise HTTPException(404, detail=f"no execution {execution_id!r}")
        if last_event_id and last_event_id.isdigit():
            after = max(after, int(last_event_id))
        if not (stream or "text/event-stream" in accept):
            return {"events": store.events_after(execution_id, after)}
        return StreamingResponse(
            _sse(request, execution_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _sse(request: Request, execution_id: str, after: int) -> AsyncIterator[bytes]:
        # The flag is cleared before each read of the store and set by every append:
        # an append that lands while this stream is busy (sending, checking the
        # connection) is never missed, so no event waits for the 1 s timeout.
        flag = asyncio.Event()
        waiters.setdefault(execution_id, set()).add(flag)
        last = after
        quiet = 0.0
        try:
            while True:
                flag.clear()
                batch = store.events_after(execution_id, last)
                for e in batch:
                    last = e["seq"]
                    yield f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()
                ex = store.get_execution(execution_id)
                if (
                    ex
                    and ex["phase"] in TERMINAL_PHASES
                    and not store.events_after(execution_id, last)
                ):
                    return
                if await request.is_disconnected():
                    return
                if batch:
                    quiet = 0.0
                try:
                    await asyncio.wait_for(flag.wait(), timeout=1.0)
                    quiet = 0.0
                except TimeoutError:
                    quiet += 1.0
                    if (
                        quiet >= RECONCILE_AFTER
                        and ex is not None
                        and int(quiet) % int(RECONCILE_AFTER) == 0
                    ):
                        await _reconcile(ex)
                    if quiet % KEEPALIVE == 0:
                        yield b": keepalive\n\n"
        finally:
            flags = waiters.get(execution_id)
            if flags is not None:
                flags.discard(flag)
                if not flags:
                    waiters.pop(execution_id, None)

    app.include_router(api)
    return app
