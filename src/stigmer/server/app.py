"""The HTTP API.

Every endpoint needs ``Authorization: Bearer <token>``, where the token is the
content of the token file its configuration names
(``$STIGMER_HOME/credentials/api-token``, mode 0600, written on first
``server start``). ``GET /healthz`` alone is open: it says whether the store
answers and whether this server reaches Temporal itself.

Endpoints (all JSON unless noted):

* ``PUT /v1/agents/{name}`` body ``{"spec": {...}}``: create or update; answers
  ``{"status": created|updated|unchanged, "agent": {...}}``.
* ``GET /v1/agents``, ``GET|DELETE /v1/agents/{name}``; each agent has
  ``model``, the model its runs use (its spec's, else ``default_model``).
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
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from stigmer import __version__
from stigmer.contract.config import RuntimeConfig
from stigmer.contract.events import ErrorPayload, NewEvent, PhasePayload, new_event
from stigmer.contract.phases import TERMINAL_PHASES
from stigmer.contract.registry import parse_model
from stigmer.contract.temporal import connect_temporal, describe_namespace
from stigmer.contract.workflow import TASK_QUEUE, WORKFLOW_NAME, ExecutionInput
from stigmer.errors import TemporalError
from stigmer.server import db
from stigmer.server.store import Store, new_execution_id
from stigmer.spec.models import AgentSpec

log = logging.getLogger("stigmer.server")

#: Seconds of quiet in a stream after which the server asks Temporal whether the
#: workflow ended without publishing its final phase (a crash, a termination).
RECONCILE_AFTER = 5.0
KEEPALIVE = 15.0
#: Workflow task attempts after which a stuck execution gets an error event.
STUCK_ATTEMPTS = 3
#: Seconds between the server's own checks that it reaches Temporal.
TEMPORAL_CHECK_EVERY = 5.0


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


class TemporalLink:
    """The server's Temporal client, and whether it works now.

    :meth:`watch` connects through ``connect_temporal`` (retrying while Temporal
    is not reachable) and then checks the namespace every few seconds, so
    ``/healthz`` says whether this server, not just its supervisor, reaches
    Temporal. A permanent failure (TLS, the certificate, authentication, the
    namespace) is reported as such, with the setting to change.
    """

    def __init__(self, cfg: RuntimeConfig) -> None:
        self.target = cfg.temporal
        self._client: Any = None
        self._connected = asyncio.Event()
        self.ok = False
        self.error: TemporalError | None = None

    def health(self) -> dict[str, Any]:
        err = self.error
        return {
            "temporal": "ok" if self.ok else ("error" if err else "connecting"),
            "temporal_error": None
            if err is None
            else {
                "kind": err.kind,
                "message": err.message,
                "fix": err.fix,
                "setting": err.setting,
                "permanent": err.permanent,
            },
        }

    async def watch(self) -> None:
        from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

        delay = 0.2
        while self._client is None:
            try:
                self._client = await connect_temporal(
                    self.target, identity="stigmer-server", plugins=[PydanticAIPlugin()]
                )
            except TemporalError as exc:
                self.error = exc
                if exc.permanent:
                    log.error("%s %s", exc.message, exc.fix)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._connected.set()
        self.ok, self.error = True, None
        log.info(
            "reached Temporal at %s (namespace %s)", self.target.address, self.target.namespace
        )
        while True:
            await asyncio.sleep(TEMPORAL_CHECK_EVERY)
            try:
                await describe_namespace(self._client, self.target)
                self.ok, self.error = True, None
            except TemporalError as exc:
                self.ok, self.error = False, exc

    async def client(self) -> Any:
        """The connected client (waits up to 30 s for the first connection).

        Raises:
            TemporalError: not connected within that time.
        """
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=30)
        except TimeoutError:
            raise self.error or TemporalError(
                f"Temporal at {self.target.address} did not answer within 30s."
            ) from None
        return self._client


def _server_event(execution_id: str, key: str, payload: Any) -> dict[str, Any]:
    """An event the server itself appends (ids are stable: a retry stores it once)."""
    return new_event(f"{execution_id}/server/{key}", payload)


def create_app(cfg: RuntimeConfig) -> FastAPI:
    """The FastAPI app for a server configuration; runs migrations on start-up."""
    assert cfg.server is not None
    secret = Path(cfg.server.token_file).read_text().strip()
    engine = db.make_engine(cfg.server.store_url.get_secret_value())
    db.migrate(engine)
    store = Store(engine)
    temporal = TemporalLink(cfg)
    default_model = cfg.default_model
    #: per execution, one wake-up flag per open event stream (set on every append)
    waiters: dict[str, set[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(temporal.watch(), name="temporal-watch")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="stigmer",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.store = store

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad value back ("input"): that can hold an
        # env value (a secret) or text JSON cannot encode. Field and reason only.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(TemporalError)
    async def temporal_unavailable(_request: Request, exc: TemporalError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"{exc.message} {exc.fix or ''}"})

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
        db_ok = db.check(engine)
        ok = db_ok and temporal.ok
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "database": "ok" if db_ok else "error",
                **temporal.health(),
            },
            status_code=200 if ok else 503,
        )

    def _with_model(agent: dict[str, Any]) -> dict[str, Any]:
        """The agent record plus ``model``: what its runs use when none is given."""
        return {**agent, "model": agent["spec"].get("model") or default_model}

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
        return {"status": status, "agent": _with_model(agent)}

    @api.get("/agents")
    def list_agents() -> dict[str, Any]:
        return {"agents": [_with_model(a) for a in store.list_agents()]}

    @api.get("/agents/{name}")
    def get_agent(name: str) -> dict[str, Any]:
        agent = store.get_agent(name)
        if agent is None:
            raise HTTPException(404, detail=f"no agent named {name!r}")
        return _with_model(agent)

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
        wf_input = ExecutionInput(
            execution_id=execution_id,
            agent_name=body.agent,
            spec=AgentSpec.model_validate(agent["spec"]),
            message=body.message,
            env=body.env,
            model=body.model or agent["spec"].get("model") or default_model,
        )
        ex = store.create_execution(wf_input)
        try:
            client = await temporal.client()
            await client.start_workflow(
                WORKFLOW_NAME, wf_input, id=ex["workflow_id"], task_queue=TASK_QUEUE
            )
        except Exception as exc:
            msg = f"could not start the workflow on Temporal: {exc}"
            store.append(
                execution_id,
                [
                    _server_event(
                        execution_id, "error", ErrorPayload(message=msg, kind="StartFailed")
                    ),
                    _server_event(execution_id, "failed", PhasePayload(phase="FAILED", error=msg)),
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
        if ex["phase"] in TERMINAL_PHASES or not temporal.ok:
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
        payload = PhasePayload(
            phase=phase,  # type: ignore[arg-type]
            error=f"workflow {status.lower()}" if phase == "FAILED" else None,
        )
        store.append(ex["id"], [new_event(f"{ex['id']}/reconcile/{phase}", payload)])
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
        payload = ErrorPayload(
            message=f"{reason} (attempt {pending.attempt}); {fix}", kind="WorkflowTaskFailing"
        )
        store.append(ex["id"], [new_event(f"{ex['id']}/diagnose/stuck", payload)])
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
