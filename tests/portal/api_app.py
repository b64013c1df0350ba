"""The phone API alone, as the self-service app mounts it: for the test that serves it with
uvicorn in a process of its own (`uvicorn --factory tests.portal.api_app:create_app`)."""

from __future__ import annotations

from fastapi import FastAPI

import portal.api
from billing.accounts.clock import system_clock
from billing.config import Settings
from billing.runtime import Runtime


def create_app() -> FastAPI:
    app = FastAPI()
    app.state.runtime = Runtime(Settings.from_env())
    app.state.clock = system_clock
    app.include_router(portal.api.router)
    return app
