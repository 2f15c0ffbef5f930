"""The HTTP API; its OpenAPI document is ``GET /openapi.json``.

Every endpoint but ``GET /healthz`` and ``/openapi.json`` needs
``Authorization: Bearer <token>``, and the token's role decides what it may
do (:mod:`stigmer.server.auth`): the admin token (the CLI's,
``$STIGMER_HOME/credentials/api-token``) everything but appending events, the
runner token only appending events and ``/v1/blobs`` (payloads kept out of
Temporal's history, sealed). ``GET /healthz`` says whether the store
answers and whether this server reaches Temporal itself.

Endpoints (all JSON unless noted):

* ``PUT /v1/agents/{name}`` body ``{"spec": {...}}``: create or update; answers
  ``{"status": created|updated|unchanged, "agent": {...}}``. The name is a slug,
  checked as the CLI checks it, and the spec within the CLI's limits
  (:mod:`stigmer.contract.limits`): over the size, 413; nested too deep, 422.
  ``?dry_run=true`` stores nothing and says what a put would do.
* ``GET /v1/agents``, ``GET|DELETE /v1/agents/{name}``; each agent has
  ``model``, the model its runs use (its spec's, else ``default_model``). A
  record whose spec cannot be shown (not stored through this API) is left out
  of the list with a warning in the log; a GET of it is a 409.
* ``POST /v1/executions`` body ``{"id"?, "agent", "message", "env"?, "model"?}``:
  records the execution as PENDING and starts workflow ``AgentExecutionWorkflow``
  (id ``agent-execution/<id>``, task queue ``agent_execution_runner``) with a
  snapshot of the spec, sealed with the stack's key. ``id`` (the client's) makes
  a retry of the same body the same execution (another body: 409). While
  Temporal does not answer, the execution stays PENDING and a background
  starter starts it once Temporal does.
* ``GET /v1/executions[?agent=&limit=]``, ``GET /v1/executions/{id}``,
  ``POST /v1/executions/{id}/cancel``.
* ``GET /v1/executions/{id}/events?after=SEQ``: the events after SEQ; with
  ``Accept: text/event-stream`` (or ``?stream=1``) a server-sent event stream:
  the snapshot, then live events, without gap or repeat, ending after the
  final phase. Resume with ``after`` or ``Last-Event-ID``.
* ``POST /v1/executions/{id}/events`` body ``{"events": [...]}``: the runner
  appends (runner token only). Each event fits its type's schema, its id starts
  with the execution's id, and a phase only goes where it can (PENDING ->
  RUNNING -> COMPLETED, FAILED or CANCELLED); anything else is refused whole.
* ``POST /v1/ui/login-codes``: a one-time code for the web console at ``/ui/``
  (admin bearer token; :mod:`stigmer.server.console`).
* ``POST /v1/codec/decode``: Temporal's remote codec endpoint, for the Temporal
  UI and ``temporal workflow show --codec-endpoint``: opens payloads sealed by
  this stack (admin token).
"""

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from stigmer import __version__
from stigmer.codec import BlobDriver, PayloadNotSealed, SealingCodec, decode_json_payloads
from stigmer.contract.config import RuntimeConfig
from stigmer.contract.events import ErrorPayload, PhasePayload, format_timestamp, new_event
from stigmer.contract.ids import new_execution_id
from stigmer.contract.limits import shape_problem, size_problem
from stigmer.contract.phases import TERMINAL_PHASES
from stigmer.contract.registry import parse_model, reserved_secret
from stigmer.contract.workflow import (
    APPROVAL_SIGNAL,
    PROVIDER_MEMO,
    TASK_QUEUE,
    WORKFLOW_NAME,
    ApprovalDecision,
    ExecutionInput,
    provider_of,
    workflow_id,
)
from stigmer.credentials import ADMIN, RUNNER
from stigmer.errors import TemporalError
from stigmer.server import db
from stigmer.server.auth import ROLES, TokenRoles, bearer, requires
from stigmer.server.console import add_console
from stigmer.server.schemas import (
    TOOL_CALL_ID_PATTERN,
    AgentList,
    AgentPut,
    AgentPutResult,
    ApprovalDecide,
    ApprovalList,
    ApprovalResult,
    CancelResult,
    CodecBody,
    Deleted,
    EventList,
    EventsPost,
    Execution,
    ExecutionCreate,
    ExecutionList,
    Info,
    PendingApproval,
    RerunCreate,
    Seqs,
    TokenCreate,
    TokenCreated,
    error_responses,
)
from stigmer.server.schemas import Agent as AgentOut
from stigmer.server.store import EventRejected, ExecutionExists, Store
from stigmer.server.temporal_link import TemporalLink
from stigmer.server.wakeups import Wakeups
from stigmer.spec.models import SLUG, AgentSpec, SecretRef

log = logging.getLogger("stigmer.server")

#: Seconds of quiet in a stream after which the server asks Temporal whether the
#: workflow ended without publishing its final phase (a crash, a termination).
RECONCILE_AFTER = 5.0
KEEPALIVE = 15.0
#: How long (s) a decision on an approval waits for the workflow to record it.
DECISION_WAIT_S = 5.0
#: Seconds between the rounds that start PENDING executions left without a workflow.
STARTER_EVERY = 2.0
#: Seconds between the server's own looks at every running execution's workflow.
RECONCILE_EVERY = 20.0
#: Age (seconds) from which a PENDING execution with no workflow is the starter's
#: (younger ones are still being started by the request that made them).
STARTER_GRACE = 3.0
#: Seconds one start of a workflow may take before the execution waits for the starter.
START_RPC_TIMEOUT_S = 5.0
#: Workflow task attempts after which a stuck execution gets an error event.
STUCK_ATTEMPTS = 3
#: The largest sequence number a client may ask for (a bigger one cannot exist).
MAX_SEQ = 2**62
#: The largest request body the API reads (an agent spec, a batch of events).
MAX_BODY = 4 * 1024 * 1024
#: Free space (bytes) that stored payloads never take: events and Temporal keep it.
BLOB_RESERVE = 64 * 1024 * 1024
#: How much of a refused body is read (and dropped) so that its sender sees the 413.
MAX_DRAIN = 64 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413, before it is read whole.

    Checked on ``Content-Length`` and while a chunked body streams in, so no
    one (with or without a token) can make the server hold a huge body.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._drain(receive)
            await self._refuse(send)
            return
        seen = 0
        ended = False

        async def limited() -> Any:
            nonlocal seen, ended
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                ended = not message.get("more_body")
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            if not ended:  # the last chunk read already: nothing is left to drain
                await self._drain(receive)
            await self._refuse(send)

    async def _drain(self, receive: Any) -> None:
        """Read what the client still sends (kept nowhere), so it gets the 413, not a reset.

        Past :data:`MAX_DRAIN` the connection is simply closed.
        """
        drained = 0
        while drained < MAX_DRAIN:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"the body is larger than {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


AgentName = Annotated[str, PathParam(max_length=63)]
ExecutionId = Annotated[str, PathParam(max_length=64)]
Sha256 = Annotated[str, PathParam(pattern="^[0-9a-f]{64}$")]


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024 / 1024:.1f} MiB"


def _server_event(execution_id: str, key: str, payload: Any) -> dict[str, Any]:
    """An event the server itself appends (ids are stable: a retry stores it once)."""
    return new_event(f"{execution_id}/server/{key}", payload)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise HTTPException(
                422,
                detail=[
                    {
                        "loc": ["body"],
                        "msg": f"duplicate key {key[:100]!r}: JSON keys must be unique "
                        "(keep one of them)",
                    }
                ],
            )
        seen[key] = value
    return seen


async def no_duplicate_keys(request: Request) -> None:
    """A body whose objects repeat a key is a 422, as a YAML file that does is refused.

    JSON parsers keep the last value silently; what was meant is not known.
    """
    body = await request.body()
    with contextlib.suppress(ValueError, RecursionError):  # not JSON: its validation answers
        json.loads(body, object_pairs_hook=_unique_keys)


def _secret_refs(spec: AgentSpec) -> list[str]:
    refs = [v.secret for v in spec.env.values() if isinstance(v, SecretRef)]
    return refs + ([spec.api_key.secret] if spec.api_key else [])


def create_app(cfg: RuntimeConfig) -> FastAPI:
    """The FastAPI app for a server configuration; runs migrations on start-up."""
    assert cfg.server is not None and cfg.stack_keys is not None
    server = cfg.server
    engine = db.make_engine(server.store_url.get_secret_value())
    db.migrate(engine)
    store = Store(engine)
    for role, path in server.token_files.items():
        if role in ROLES:
            store.register_token(Path(path).read_text().strip(), role, f"file {path}")
    roles = TokenRoles(store)

    async def _put_blob(sha256: str, data: bytes) -> None:
        await asyncio.to_thread(store.put_blob, sha256, data)

    async def _get_blob(sha256: str) -> bytes:
        data = await asyncio.to_thread(store.get_blob, sha256)
        if data is None:
            raise PayloadNotSealed(f"no stored payload {sha256[:12]}")
        return data

    codec = SealingCodec(cfg.stack_keys)
    temporal = TemporalLink(cfg, BlobDriver(_put_blob, _get_blob))
    default_model = cfg.default_model
    reserved_ok = set(server.reserved_secrets_allowed)
    wakeups = Wakeups()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(temporal.watch(), name="temporal-watch"),
            asyncio.create_task(_starter(), name="starter"),
        ]
        wakeups.listen(engine)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            wakeups.close()

    app = FastAPI(
        title="stigmer",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.store = store
    app.state.wakeups = wakeups
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    if server.codec_origins:  # the Temporal UI calls the codec endpoint from the browser
        app.add_middleware(
            CORSMiddleware,
            allow_origins=server.codec_origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=True,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad value back ("input"): that can hold an
        # env value (a secret) or text JSON cannot encode. Field and reason only.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(DBAPIError)
    async def store_unavailable(_request: Request, exc: DBAPIError) -> JSONResponse:
        if db.disk_full(exc):
            where = db.store_folder(engine)
            detail = (
                f"The store's disk is full ({where}: {_mib(db.free_bytes(engine))} free); "
                "nothing of this request was stored. Free space there, then retry."
                if where
                else "The store's database is out of disk space (PostgreSQL: disk_full); "
                "nothing of this request was stored. Free space on its server, then retry."
            )
            log.error("%s", detail)
            return JSONResponse(status_code=507, content={"detail": detail})
        # the database restarted or is gone for a moment: a retry will do
        log.warning("store error: %s", str(exc.orig or exc).strip().splitlines()[0])
        return JSONResponse(
            status_code=503, content={"detail": "the store is not available now; retry"}
        )

    @app.exception_handler(TemporalError)
    async def temporal_unavailable(_request: Request, exc: TemporalError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"{exc.message} {exc.fix or ''}"})

    from temporalio.service import RPCError

    @app.exception_handler(RPCError)
    async def temporal_refused(_request: Request, exc: RPCError) -> JSONResponse:
        # Temporal answered with an error (or not at all) on a call made for this request
        log.warning("Temporal: %s (%s)", exc.message, exc.status.name if exc.status else "?")
        return JSONResponse(
            status_code=503,
            content={"detail": f"Temporal did not do it now ({exc.message}); retry"},
        )

    admin = requires(roles, ADMIN)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        db_ok = db.check(engine)
        free = db.free_bytes(engine)
        disk_ok = free is None or free >= db.LOW_DISK
        ok = db_ok and disk_ok and temporal.ok
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "database": ("ok" if disk_ok else "disk full") if db_ok else "error",
                "database_error": None
                if disk_ok
                else f"the store's disk is full: {db.store_folder(engine)} has "
                f"{_mib(free)} free; free space there",
                **temporal.health(),
            },
            status_code=200 if ok else 503,
        )

    def _with_model(agent: dict[str, Any]) -> dict[str, Any]:
        """The agent record plus ``model``: what its runs use when none is given."""
        return {**agent, "model": agent["spec"].get("model") or default_model}

    api = APIRouter(
        prefix="/v1",
        dependencies=[Depends(admin)],
        responses=error_responses(400, 401, 403, 413, 422),
    )

    @app.get("/v1/info", responses=error_responses(401))
    def info(role: Annotated[str, Depends(requires(roles, *ROLES))]) -> Info:
        return Info(version=__version__, database=engine.url.get_backend_name(), role=role)

    # -- tokens ---------------------------------------------------------------

    @api.post("/tokens", status_code=201)
    def create_token(
        body: TokenCreate,
        _role: Annotated[str, Depends(requires(roles, ADMIN, console=False))],
    ) -> TokenCreated:
        """A new bearer token for ``role``, accepted by every API server sharing this store."""
        token = secrets.token_urlsafe(32)
        store.register_token(token, body.role, body.label or f"created {format_timestamp()}")
        return TokenCreated(token=token, role=body.role, label=body.label)

    # -- agents ---------------------------------------------------------------

    @api.put("/agents/{name}", dependencies=[Depends(no_duplicate_keys)])
    def put_agent(name: AgentName, body: AgentPut, dry_run: bool = False) -> AgentPutResult:
        """Create or update an agent; with ``dry_run``, validate and say what would happen.

        The limits of :mod:`stigmer.contract.limits` are the CLI's: a spec over
        the size limit is a 413, nested too deep (or with too many values) a 422.
        """
        too_big = size_problem(body.spec)
        if too_big:
            raise HTTPException(413, detail=too_big)
        if not SLUG.match(name):
            raise HTTPException(
                422,
                detail=[
                    {
                        "loc": ["path", "name"],
                        "msg": "must be a slug: lowercase letters, digits and dashes, "
                        "1-63 characters, starting and ending with a letter or digit",
                    }
                ],
            )
        try:
            spec = AgentSpec.model_validate(body.spec)
        except ValidationError as exc:
            detail = [{"loc": ["body", "spec", *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
            raise HTTPException(422, detail=detail) from None
        reserved = [r for r in _secret_refs(spec) if reserved_secret(r) and r not in reserved_ok]
        if reserved:
            raise HTTPException(
                422,
                detail=[
                    {
                        "loc": ["body", "spec"],
                        "msg": f"secret reference(s) {', '.join(reserved)} name stigmer's own or a "
                        "provider's variables, which agents may not read; the "
                        "reserved_secrets_allowed setting lets named ones through",
                    }
                ],
            )
        status, agent = store.put_agent(
            name, spec.model_dump(mode="json", exclude_none=True), dry_run=dry_run
        )
        return AgentPutResult(status=status, agent=AgentOut(**_with_model(agent)))

    def _agent_out(agent: dict[str, Any]) -> AgentOut | None:
        """The agent as the API shows it; None (and a warning) for a record that cannot be shown.

        Every spec stored through this API fits its limits; a record written
        otherwise (an older version, the database by hand) must not make the
        whole listing fail.
        """
        try:
            problem = shape_problem(agent.get("spec"))
            if problem:
                raise ValueError(problem)
            out = AgentOut(**_with_model(agent))
            out.model_dump_json()  # what the answer will do with it
            return out
        except (ValueError, TypeError, RecursionError) as exc:
            log.warning(
                "agent %r is stored with a spec the API cannot show (%s): "
                "delete it (`stigmer agent delete %s`) or apply it again",
                agent.get("name"),
                str(exc).splitlines()[0][:300],
                agent.get("name"),
            )
            return None

    @api.get("/agents")
    def list_agents() -> AgentList:
        """Every agent; one whose stored spec cannot be shown is left out (with a warning in the log)."""
        return AgentList(agents=[a for a in map(_agent_out, store.list_agents()) if a is not None])

    @api.get("/agents/{name}", responses=error_responses(404, 409))
    def get_agent(name: AgentName) -> AgentOut:
        agent = store.get_agent(name) if SLUG.match(name) else None
        if agent is None:
            raise HTTPException(404, detail=f"no agent named {name!r}")
        out = _agent_out(agent)
        if out is None:
            raise HTTPException(
                409,
                detail=f"agent {name!r} is stored with a spec that does not fit the limits "
                "and cannot run: delete it, or apply it again",
            )
        return out

    @api.delete("/agents/{name}", responses=error_responses(404))
    def delete_agent(name: AgentName) -> Deleted:
        if not (SLUG.match(name) and store.delete_agent(name)):
            raise HTTPException(404, detail=f"no agent named {name!r}")
        return Deleted(deleted=name)

    # -- executions -----------------------------------------------------------

    async def off_loop(fn: Any, *args: Any) -> Any:
        """A store call, in a worker thread: the event loop keeps serving streams meanwhile."""
        return await asyncio.to_thread(fn, *args)

    async def _execution(execution_id: str) -> dict[str, Any]:
        ex = await off_loop(store.get_execution, execution_id)
        if ex is None:
            raise HTTPException(404, detail=f"no execution {execution_id!r}")
        return ex  # type: ignore[no-any-return]

    @api.post("/executions", status_code=201, responses=error_responses(404, 409, 503))
    async def create_execution(body: ExecutionCreate) -> Execution:
        agent = await off_loop(store.get_agent, body.agent) if SLUG.match(body.agent) else None
        if agent is None:
            raise HTTPException(404, detail=f"no agent named {body.agent!r}")
        if body.model:
            try:
                parse_model(body.model)
            except ValueError as exc:
                raise HTTPException(
                    422, detail=[{"loc": ["body", "model"], "msg": str(exc)}]
                ) from None
        try:
            problem = shape_problem(agent["spec"]) or size_problem(agent["spec"])
            if problem:
                raise ValueError(problem)
            spec = AgentSpec.model_validate(agent["spec"])
        except (ValueError, RecursionError) as exc:  # a record not stored by this API
            raise HTTPException(
                409,
                detail=f"agent {body.agent!r} is stored with a spec that cannot run "
                f"({str(exc).splitlines()[0][:300]}): delete it, or apply it again",
            ) from None
        wf_input = ExecutionInput(
            execution_id=body.id or new_execution_id(),
            agent_name=body.agent,
            spec=spec,
            message=body.message,
            env=body.env,
            model=body.model or agent["spec"].get("model") or default_model,
        )
        return await _submit(wf_input, same_model=body.model is None)

    async def _submit(wf_input: ExecutionInput, same_model: bool = False) -> Execution:
        """Record ``wf_input`` as a PENDING execution and start its workflow.

        The same submission again (its client retried with the same id) is the one
        execution it made; another submission under that id is a 409.
        ``same_model``: the model may differ (the first submission resolved it).
        """
        execution_id = wf_input.execution_id
        try:
            await off_loop(store.create_execution, wf_input)
        except ExecutionExists as exists:
            stored = exists.stored
            same = (
                stored.get("agent_name") == wf_input.agent_name
                and stored.get("message", "") == wf_input.message
                and stored.get("env", {}) == wf_input.env
                and (same_model or stored.get("model") == wf_input.model)
            )
            if not same:
                raise HTTPException(
                    409,
                    detail=f"execution id {execution_id!r} is taken by another submission; "
                    "leave id out, or make a new one",
                ) from None
        ex = await _execution(execution_id)
        if ex["phase"] == "PENDING" and not ex.get("run_id"):
            await _start(execution_id)
        return Execution(**await _execution(execution_id))

    @api.post(
        "/executions/{execution_id}/rerun",
        status_code=201,
        responses=error_responses(404, 409, 503),
    )
    async def rerun_execution(execution_id: ExecutionId, body: RerunCreate) -> Execution:
        """A new execution with the same agent snapshot, message, env and model as this one."""
        stored = await off_loop(store.execution_input, execution_id)
        if stored is None:
            raise HTTPException(404, detail=f"no execution {execution_id!r}")
        try:
            before = ExecutionInput.model_validate(stored)
        except ValueError:
            raise HTTPException(
                409, detail=f"execution {execution_id}'s input no longer decodes: it cannot rerun"
            ) from None
        wf_input = before.model_copy(update={"execution_id": body.id or new_execution_id()})
        if wf_input.execution_id == execution_id:
            raise HTTPException(409, detail="a rerun needs a new execution id")
        return await _submit(wf_input)

    async def _start(execution_id: str) -> None:
        """Start the workflow of a PENDING execution; a no-op if a run of it exists.

        While Temporal cannot be reached the execution stays PENDING, and
        :func:`_starter` starts it once Temporal answers. A start that Temporal
        refuses for good (or an input that no longer decodes) fails the execution
        at once, with the cause.
        """
        from temporalio.common import WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError
        from temporalio.service import RPCError, RPCStatusCode

        stored = await off_loop(store.execution_input, execution_id)
        try:
            wf_input = ExecutionInput.model_validate(stored)
            if not temporal.ok:
                return  # kept; started once Temporal answers
            client = await temporal.client()
            try:
                handle = await client.start_workflow(
                    WORKFLOW_NAME,
                    wf_input,
                    id=workflow_id(execution_id),
                    task_queue=TASK_QUEUE,
                    # an execution has one workflow: a closed one is never run again
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    memo={PROVIDER_MEMO: provider_of(wf_input)},  # sealed like the input
                    rpc_timeout=timedelta(seconds=START_RPC_TIMEOUT_S),
                )
                run_id = handle.result_run_id
            except WorkflowAlreadyStartedError as started:
                run_id = started.run_id  # another server, or an earlier try, was first
            if run_id and not await off_loop(store.claim_run, execution_id, run_id):
                log.warning("execution %s was claimed by another workflow run", execution_id)
            log.info("execution %s started (agent %s)", execution_id, wf_input.agent_name)
            ex = await off_loop(store.get_execution, execution_id)
            if ex is not None and ex["phase"] == "CANCELLED":  # cancelled while it started
                await client.get_workflow_handle(ex["workflow_id"]).cancel()
        except TemporalError:
            return  # not connected yet: the starter tries again
        except RPCError as exc:
            if exc.status in (
                RPCStatusCode.UNAVAILABLE,
                RPCStatusCode.DEADLINE_EXCEEDED,
                RPCStatusCode.RESOURCE_EXHAUSTED,
                RPCStatusCode.CANCELLED,
            ):
                log.warning("execution %s waits for Temporal: %s", execution_id, exc)
                return
            await _fail_start(execution_id, f"Temporal refused to start its workflow: {exc}")
        except Exception as exc:
            await _fail_start(execution_id, f"could not start the workflow: {exc}")

    async def _end(execution_id: str, new: list[dict[str, Any]]) -> None:
        """Append the server's own final events (unless the execution ended meanwhile)."""
        with contextlib.suppress(EventRejected):
            await off_loop(store.append, execution_id, new)
        await _notify(execution_id)

    async def _fail_start(execution_id: str, msg: str) -> None:
        log.warning("execution %s: %s", execution_id, msg)
        await _end(
            execution_id,
            [
                _server_event(execution_id, "error", ErrorPayload(message=msg, kind="StartFailed")),
                _server_event(execution_id, "failed", PhasePayload(phase="FAILED", error=msg)),
            ],
        )

    async def _starter() -> None:
        """Start what a submission left PENDING: Temporal was away, or a server died mid-start.

        Every :data:`RECONCILE_EVERY` seconds it also looks at the running executions
        (as a follower's quiet stream does): one whose workflow ended without saying
        so, or whose workflow task keeps failing, gets its outcome recorded even
        when nobody watches it.
        """
        rounds = 0
        while True:
            await asyncio.sleep(STARTER_EVERY)
            if not temporal.ok:
                continue
            rounds += 1
            try:
                for execution_id in await off_loop(store.unstarted, STARTER_GRACE):
                    await _start(execution_id)
                if rounds * STARTER_EVERY >= RECONCILE_EVERY:
                    rounds = 0
                    for ex in await off_loop(store.active):
                        await _reconcile(ex)
            except Exception as exc:
                log.warning("could not start or check executions: %s", exc)

    @api.get("/executions")
    def list_executions(
        agent: Annotated[str | None, Query(max_length=63)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> ExecutionList:
        items = store.list_executions(agent, limit) if agent is None or SLUG.match(agent) else []
        return ExecutionList(executions=[Execution(**e) for e in items])

    async def _reconcile(ex: dict[str, Any]) -> dict[str, Any]:
        """If Temporal says the workflow ended but no final phase was published, record it."""
        if ex["phase"] in TERMINAL_PHASES or not temporal.ok:
            return ex
        try:
            client = await temporal.client()
            # the run the execution belongs to, not whatever run holds the id now
            handle = client.get_workflow_handle(ex["workflow_id"], run_id=ex.get("run_id"))
            desc = await handle.describe()
        except Exception:
            return ex
        status = desc.status.name if desc.status else "RUNNING"
        if status == "RUNNING":
            await _diagnose_stuck(ex, client, desc)
            return ex
        # Only the runner, from the execution's own run, publishes a COMPLETED with
        # its output; a run that closed without publishing its outcome failed,
        # whatever its status says (anyone can complete a workflow of that id)
        phase = "CANCELLED" if status == "CANCELED" else "FAILED"
        payload = PhasePayload(
            phase=phase,  # type: ignore[arg-type]
            error=f"the workflow run ended ({status.lower()}) without publishing its outcome"
            if phase == "FAILED"
            else None,
        )
        with contextlib.suppress(EventRejected):  # the runner's own final phase came first
            await off_loop(
                store.append, ex["id"], [new_event(f"{ex['id']}/reconcile/{phase}", payload)]
            )
        await _notify(ex["id"])
        return await off_loop(store.get_execution, ex["id"]) or ex

    async def _diagnose_stuck(ex: dict[str, Any], client: Any, desc: Any) -> None:
        """A workflow task that keeps failing (say, a stale runner image) gets one error event."""
        pending = desc.raw_description.pending_workflow_task
        if pending.attempt < STUCK_ATTEMPTS:
            return
        reason = "the runner keeps failing to run this workflow"
        try:
            handle = client.get_workflow_handle(ex["workflow_id"], run_id=ex.get("run_id"))
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_task_failed_event_attributes"):
                    # failures are sealed (their message is an encoded attribute)
                    failure = event.workflow_task_failed_event_attributes.failure
                    reason = str(await client.data_converter.decode_failure(failure)) or reason
        except Exception:
            pass
        fix = (
            "the runner image is probably older than this CLI: rebuild it "
            "(`make build-agent-runner-image`, or `stigmer server start --rebuild`)"
            if "not registered" in reason or "decoding arguments" in reason
            else "see `stigmer server logs -c agent-runner`"
        )
        payload = ErrorPayload(
            message=f"{reason} (attempt {pending.attempt}); {fix}", kind="WorkflowTaskFailing"
        )
        await off_loop(store.append, ex["id"], [new_event(f"{ex['id']}/diagnose/stuck", payload)])
        await _notify(ex["id"])
        if "PayloadTooLarge" in reason or "over the limit of" in reason:
            # the workflow's own next step is too big to send: no retry can help, so the
            # run ends FAILED with that cause instead of retrying for ever
            with contextlib.suppress(Exception):
                await handle.terminate(reason="a payload over the limit")
            await _fail_start(ex["id"], f"the run could not go on: {reason}")

    @api.get("/executions/{execution_id}", responses=error_responses(404))
    async def get_execution(execution_id: ExecutionId) -> Execution:
        return Execution(**await _reconcile(await _execution(execution_id)))

    @api.post(
        "/executions/{execution_id}/cancel",
        status_code=202,
        responses=error_responses(404, 409, 503),
    )
    async def cancel_execution(execution_id: ExecutionId) -> CancelResult:
        ex = await _execution(execution_id)
        if ex["phase"] in TERMINAL_PHASES:
            raise HTTPException(
                409, detail=f"execution {execution_id} already ended: {ex['phase']}"
            )
        if ex["phase"] == "PENDING" and not ex.get("run_id"):
            # no workflow yet (Temporal away): it ends here, and is never started,
            # unless a run claimed it meanwhile (then Temporal is asked, below)
            cancelled = await off_loop(
                functools.partial(store.append, if_unstarted=True),
                execution_id,
                [_server_event(execution_id, "cancelled", PhasePayload(phase="CANCELLED"))],
            )
            if cancelled:
                log.info("execution %s cancelled before its workflow started", execution_id)
                await _notify(execution_id)
                return CancelResult(id=execution_id, cancel_requested=True)
            ex = await _execution(execution_id)
        from temporalio.service import RPCError, RPCStatusCode

        client = await temporal.client()
        handle = client.get_workflow_handle(ex["workflow_id"], run_id=ex.get("run_id"))
        try:
            await handle.cancel()
            # a workflow whose task keeps failing (an input the runner cannot decode)
            # never sees a cancel request: it is terminated instead
            desc = await handle.describe()
            if desc.raw_description.pending_workflow_task.attempt >= STUCK_ATTEMPTS:
                await handle.terminate(reason="cancelled while its workflow task kept failing")
                await _cancelled(execution_id, "cancelled; its workflow could not run, terminated")
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # its workflow is gone (Temporal lost it, or it was never started)
            await _cancelled(execution_id, "cancelled; its workflow no longer exists")
        return CancelResult(id=execution_id, cancel_requested=True)

    async def _cancelled(execution_id: str, why: str) -> None:
        log.info("execution %s %s", execution_id, why)
        await _end(
            execution_id,
            [_server_event(execution_id, "cancelled", PhasePayload(phase="CANCELLED"))],
        )

    # -- approvals ------------------------------------------------------------

    @api.get("/executions/{execution_id}/approvals", responses=error_responses(404))
    async def list_approvals(execution_id: ExecutionId) -> ApprovalList:
        """The execution's tool calls that wait for a decision."""
        ex = await _execution(execution_id)
        pending = (
            []
            if ex["phase"] in TERMINAL_PHASES
            else await off_loop(store.pending_approvals, execution_id)
        )
        return ApprovalList(
            execution_id=execution_id,
            phase=ex["phase"],
            pending=[PendingApproval(**p) for p in pending],
        )

    @api.post(
        "/executions/{execution_id}/approvals/{call_id}",
        status_code=202,
        responses=error_responses(404, 409, 503),
    )
    async def decide_approval(
        execution_id: ExecutionId,
        call_id: Annotated[str, PathParam(pattern=TOOL_CALL_ID_PATTERN)],
        body: ApprovalDecide,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApprovalResult:
        """Approve or deny a call that waits; 409 when nothing waits under that id.

        The decision goes to the workflow as a signal (kept by Temporal even while
        no runner is up); the first decision on a call counts, and its
        ``approval_decided`` event says what was decided, why and by whom. The
        answer waits up to :data:`DECISION_WAIT_S` for that event: ``recorded``
        holds it, and a call someone else decided first is a 409 that says how.
        """
        ex = await _execution(execution_id)
        pending, decided = await off_loop(store.approvals, execution_id)
        if ex["phase"] in TERMINAL_PHASES:
            pending = []
        if not any(p["call_id"] == call_id for p in pending):
            waiting = ", ".join(p["call_id"] for p in pending) or "none"
            before = decided.get(call_id)
            how = f"; it was {before['decision']} by {before['by']}" if before is not None else ""
            raise HTTPException(
                409,
                detail=f"no call {call_id!r} of execution {execution_id} waits for approval"
                f"{how} (phase {ex['phase']}; waiting: {waiting})",
            )
        # without a bearer token, only the console's session gets here (stigmer.server.auth)
        by = roles.who(creds.credentials) if creds is not None else "admin:console"
        decision = ApprovalDecision(
            execution_id=execution_id,
            call_id=call_id,
            decision=body.decision,
            reason=body.reason,
            by=by,
            scope=body.scope,
        )
        client = await temporal.client()
        handle = client.get_workflow_handle(ex["workflow_id"], run_id=ex.get("run_id"))
        await handle.signal(APPROVAL_SIGNAL, decision)
        log.info(
            "execution %s: call %s %s by %s",
            execution_id,
            call_id,
            "approved" if body.decision == "approve" else "denied",
            by,
        )
        recorded = None
        deadline = time.monotonic() + DECISION_WAIT_S
        while recorded is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            recorded = (await off_loop(store.approvals, execution_id))[1].get(call_id)
        wanted = "approved" if body.decision == "approve" else "denied"
        if recorded is not None and (recorded["decision"], recorded.get("by")) != (wanted, by):
            raise HTTPException(
                409,
                detail=f"call {call_id!r} of execution {execution_id} was decided first: "
                f"{recorded['decision']} by {recorded.get('by')}",
            )
        return ApprovalResult(
            execution_id=execution_id,
            call_id=call_id,
            decision=body.decision,
            scope=body.scope,
            by=by,
            recorded=recorded,
        )

    # -- events ---------------------------------------------------------------

    async def _notify(execution_id: str) -> None:
        wakeups.wake(execution_id)

    @app.post(
        "/v1/executions/{execution_id}/events",
        responses=error_responses(400, 401, 403, 404, 409, 413, 422),
    )
    async def post_events(
        execution_id: ExecutionId,
        body: EventsPost,
        _role: Annotated[str, Depends(requires(roles, RUNNER))],
    ) -> Seqs:
        try:
            seqs = await off_loop(store.append, execution_id, [e.model_dump() for e in body.events])
        except KeyError:
            raise HTTPException(404, detail=f"no execution {execution_id!r}") from None
        except EventRejected as exc:
            raise HTTPException(409 if exc.conflict else 422, detail=str(exc)) from None
        await _notify(execution_id)
        return Seqs(seqs=seqs)

    @api.get(
        "/executions/{execution_id}/events",
        response_model=EventList,
        responses={
            **error_responses(404),
            # with text/event-stream, each event: its seq, its type, the event as JSON
            200: {
                "content": {
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "event": {"type": "string"},
                                "data": {"type": "string", "contentMediaType": "application/json"},
                            },
                        }
                    }
                }
            },
        },
    )
    async def get_events(
        request: Request,
        execution_id: ExecutionId,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        stream: bool = False,
        accept: Annotated[str, Header()] = "",
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Any:
        await _execution(execution_id)
        if (
            last_event_id
            and len(last_event_id) < 20
            and last_event_id.isascii()
            and last_event_id.isdigit()
        ):
            after = min(max(after, int(last_event_id)), MAX_SEQ)
        if not (stream or "text/event-stream" in accept):
            return {"events": await off_loop(store.events_after, execution_id, after)}
        return StreamingResponse(
            _sse(request, execution_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- blobs: payloads kept out of Temporal's history ------------------------

    blob_roles = requires(roles, RUNNER, ADMIN)

    @app.put(
        "/v1/blobs/{sha256}",
        status_code=204,
        responses=error_responses(401, 403, 413, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def put_blob(
        sha256: Sha256, request: Request, _role: Annotated[str, Depends(blob_roles)]
    ) -> Response:
        data = await request.body()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise HTTPException(422, detail="the body's SHA-256 is not the one in the path")
        free = db.free_bytes(engine)
        if free is not None and free - len(data) < BLOB_RESERVE:
            # events and Temporal's own writes keep the space that is left
            raise HTTPException(
                507,
                detail=f"not storing a payload of {len(data)} bytes: the store's disk "
                f"({db.store_folder(engine)}) has {_mib(free)} free, and "
                f"{_mib(BLOB_RESERVE)} are kept for events; free space there",
            )
        await off_loop(store.put_blob, sha256, data)
        return Response(status_code=204)

    @app.get(
        "/v1/blobs/{sha256}",
        responses={
            **error_responses(401, 403, 404, 422),
            200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
        },
        response_class=Response,
    )
    async def get_blob(sha256: Sha256, _role: Annotated[str, Depends(blob_roles)]) -> Response:
        data = await off_loop(store.get_blob, sha256)
        if data is None:
            raise HTTPException(404, detail=f"no stored payload {sha256}")
        return Response(content=data, media_type="application/octet-stream")

    # -- codec ----------------------------------------------------------------

    @api.post("/codec/decode", responses=error_responses(422))
    async def codec_decode(body: CodecBody) -> CodecBody:
        """Open payloads sealed by this stack (Temporal's remote codec protocol)."""
        try:
            opened = await off_loop(
                functools.partial(decode_json_payloads, fetch=store.get_blob),
                codec,
                body.model_dump(),
            )
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        return CodecBody.model_validate(opened)

    async def _sse(
        request: Request, execution_id: str, after: int, named: bool = True
    ) -> AsyncIterator[bytes]:
        """The event stream; ``named``: each event under its type (``event: <type>``).

        A named stream ends with the execution as it ended (``event: execution``,
        what ``GET /v1/executions/{id}`` answers), so a follower needs no request
        after the stream.
        """
        # The flag is cleared before each read of the store and set by every append:
        # an append that lands while this stream is busy (sending, checking the
        # connection) is never missed, so no event waits for the 1 s timeout.
        flag = wakeups.add(execution_id)
        last = after
        quiet = 0.0
        limit = 1000
        try:
            while True:
                flag.clear()
                # one store call per wake-up: the execution, then the events after `last`
                ex, batch = await off_loop(store.stream_batch, execution_id, last, limit)
                for e in batch:
                    last = e["seq"]
                    name = f"event: {e['type']}\n" if named else ""
                    yield f"id: {e['seq']}\n{name}data: {json.dumps(e)}\n\n".encode()
                if ex is None:
                    return
                if len(batch) == limit:
                    continue  # more to send at once (a follower catching up)
                if ex["phase"] in TERMINAL_PHASES:
                    if named:
                        done = Execution(**ex).model_dump_json()
                        yield f"event: execution\ndata: {done}\n\n".encode()
                    return
                if wakeups.closing or await request.is_disconnected():
                    return
                if batch:
                    quiet = 0.0
                try:
                    async with asyncio.timeout(1.0):
                        await flag.wait()
                    quiet = 0.0
                    if wakeups.closing:
                        return
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
            wakeups.discard(execution_id, flag)

    app.include_router(api)
    add_console(
        app,
        store=store,
        roles=roles,
        wakeups=wakeups,
        server=server,
        namespace=cfg.temporal.namespace,
        off_loop=off_loop,
        event_stream=functools.partial(_sse, named=False),
    )
    return app
