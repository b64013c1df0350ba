"""The self-service page's app: `make portal` serves `create_app()` with uvicorn (contract 6).

    uvicorn portal.app:create_app --factory --host 127.0.0.1 --port 8000

It runs over the pipeline's own setup (contract 3): the same ledger and archive, the same SMS
transport, built once per worker process by `billing.runtime.Runtime`. Several workers share
every state that matters (codes, sessions, rate limits) through the ledger database (or Redis).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing.accounts.clock import Clock, system_clock
from billing.config import Settings
from billing.runtime import Runtime
from portal import api, pages, security
from portal.i18n import translate

log = logging.getLogger("portal.access")

STATIC = Path(__file__).with_name("static")
# How long after it arrives a code request is answered, whatever the number: long enough for
# the SMS to be handed to its transport, so a known and an unknown number answer alike.
ANSWER_SECONDS = 0.35


def create_app(
    runtime: Runtime | None = None,
    clock: Clock = system_clock,
    answer_seconds: float = ANSWER_SECONDS,
) -> FastAPI:
    """The page over `runtime` (default: the settings of the environment)."""
    runtime = runtime or Runtime(Settings.from_env())
    app = FastAPI(
        title="Self-service invoices",
        description="The operator's customers' page, and the API of its phone channels.",
        docs_url=None,
        redoc_url="/api/docs",
    )
    app.state.runtime = runtime
    app.state.clock = clock
    app.state.answer_seconds = answer_seconds
    app.state.deliveries = set()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.middleware("http")
    async def headers_and_access_log(request: Request, call_next):
        started = time.monotonic()
        response = await call_next(request)
        for name, value in security.HEADERS.items():
            response.headers.setdefault(name, value)
        if security.is_https(request):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        # The route's template, never the path itself: paths and queries carry no secrets
        # today, but a log line is no place to find out that one does.
        route = request.scope.get("route")
        log.info(
            "%s %s %s %.1f ms", request.method, getattr(route, "path", "-"),
            response.status_code, (time.monotonic() - started) * 1000,
        )  # fmt: skip
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        language = request.cookies.get(security.LANGUAGE_COOKIE, "ro")
        key = "not_found" if exc.status_code in (404, 405) else "unavailable"
        return pages.TEMPLATES.TemplateResponse(
            request, "message.html",
            {"v": None, "t": lambda k, **kw: translate(language, k, **kw), "lang": language,
             "message": translate(language, key), "home": True},
            status_code=exc.status_code,
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "fields": [".".join(map(str, e["loc"])) for e in exc.errors()],
                },
                status_code=422,
            )
        return HTMLResponse(translate("ro", "not_found"), status_code=404)

    return app
