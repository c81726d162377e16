"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from splitledger.api import problems
from splitledger.api.routes import access as access_routes
from splitledger.api.routes import (
    adjustments,
    auth,
    fundsec,
    ledger,
    orders,
    parties,
    payouts,
    rules,
    settlements,
    webhooks,
)
from splitledger.api.routes import audit as audit_routes
from splitledger.services.context import Context

API_VERSION = "1.0.0"


def create_app(ctx: Context) -> FastAPI:
    app = FastAPI(title="splitledger", version=API_VERSION,
                  description="Revenue-split and settlement engine for multi-vendor "
                              "marketplaces. Amounts are integer minor units.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.ctx = ctx
    problems.install(app)
    for module in (auth, parties, orders, rules, settlements, payouts, ledger, audit_routes,
                   access_routes, fundsec, webhooks, adjustments):
        app.include_router(module.router)
    return app
