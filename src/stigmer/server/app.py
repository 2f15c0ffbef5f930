"""The HTTP API.

Every endpoint needs ``Authorization: Bearer <token>``, where the token is the
content of ``STIGMER_API_TOKEN_FILE`` (``$STIGMER_HOME/credentials/api-token``,
mode 0600, written on first ``server start``). ``GET /healthz`` alone is open.
"""

import hmac
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stigmer import __version__
from stigmer.server import db


def _load_token() -> str:
    path = os.environ.get("STIGMER_API_TOKEN_FILE")
    if path:
        return Path(path).read_text().strip()
    token = os.environ.get("STIGMER_API_TOKEN", "")
    if not token:
        raise RuntimeError("no API token: set STIGMER_API_TOKEN_FILE or STIGMER_API_TOKEN")
    return token


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

    app = FastAPI(
        title="stigmer", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.engine = engine
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

    app.include_router(api)
    return app
