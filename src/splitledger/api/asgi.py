"""The application for an ASGI server, built from the environment's settings.

``uvicorn --factory splitledger.api.asgi:create`` (this is what ``splitledger serve`` runs for
``--workers`` above 1: each worker process builds its own context and engine). The database
must already be migrated (``splitledger serve`` and ``splitledger db upgrade`` do it).
"""

from __future__ import annotations

from fastapi import FastAPI

from splitledger.api.app import create_app
from splitledger.config import Settings
from splitledger.services.context import Context


def create() -> FastAPI:
    settings = Settings()
    ctx = Context.from_settings(settings)
    ctx.cipher  # noqa: B018 - refuse to start without a usable encryption key
    return create_app(ctx)
