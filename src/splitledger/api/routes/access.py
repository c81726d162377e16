"""Access management (admins): users for people, API keys for systems.

A password is taken once and kept only as an argon2id hash: it is never echoed, logged or part
of the stored idempotency fingerprint. An API key is returned in full once, by the request that
creates it; a replay of that request (same Idempotency-Key) answers with ``key: null``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr

from splitledger.api import idempotency
from splitledger.api.deps import ActingContext, Page, require
from splitledger.api.routes.common import refuse_nul, typed_after
from splitledger.domain.access import Permission, Principal, Role
from splitledger.services import access as access_service

router = APIRouter(prefix="/v1", tags=["access"],
                   dependencies=[Depends(refuse_nul)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
MANAGE = Permission.MANAGE_ACCESS


class UserIn(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    password: SecretStr = Field(min_length=access_service.MIN_PASSWORD, max_length=512,
                                description="at least 12 characters; never returned")
    role: Role
    party_id: str | None = Field(None, max_length=64,
                                 description="required for party roles, refused for staff")
    language: str = Field("en", pattern=r"^[a-z]{2}(-[A-Za-z]{2,4})?$")


class UserOut(BaseModel):
    username: str
    role: str
    party_id: str | None
    language: str
    created_at: str
    disabled_at: str | None


class UserPage(BaseModel):
    data: list[UserOut]
    next_cursor: str | None


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=120, description="what the key is for")
    role: Role
    party_id: str | None = Field(None, max_length=64,
                                 description="required for party roles, refused for staff")
    scopes: list[Permission] | None = Field(
        None, max_length=len(Permission),
        description="narrow the role's permissions; null: everything the role may do")


class ApiKeyOut(BaseModel):
    prefix: str = Field(description="the visible part of the key; identifies it")
    name: str
    role: str
    party_id: str | None
    scopes: list[str] | None
    created_by: str
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str | None = Field(description="the whole key, shown this once (null on a replay)")


class ApiKeyPage(BaseModel):
    data: list[ApiKeyOut]
    next_cursor: str | None


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                principal: Principal = require(MANAGE)) -> Any:
    """Create a user (a person who logs in with a password). Party roles must name their
    party, and the party must have that role."""
    def produce(key: str | None) -> tuple[int, Any]:
        access_service.create_user(ctx, body.username, body.password.get_secret_value(),
                                   body.role, body.party_id, body.language)
        return 201, access_service.get_user(ctx, body.username)
    fingerprint = body.model_dump(mode="json", exclude={"password"})
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/users", fingerprint,
                               produce)


@router.get("/users", response_model=UserPage)
def list_users(ctx: ActingContext, page: Annotated[Page, Depends()],
               principal: Principal = require(MANAGE)) -> Any:
    rows = access_service.list_users(ctx, typed_after(page, str), page.limit + 1)
    return page.result(rows, "username")


@router.get("/users/{username}", response_model=UserOut)
def get_user(username: str, ctx: ActingContext, principal: Principal = require(MANAGE)) -> Any:
    return access_service.get_user(ctx, username)


@router.post("/users/{username}/disable", response_model=UserOut)
def disable_user(username: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                 principal: Principal = require(MANAGE)) -> Any:
    """Disable a user: its sessions end at once and it can no longer log in."""
    return idempotency.respond(
        ctx, principal, idempotency_key, f"POST /v1/users/{username}/disable", {},
        lambda key: (200, access_service.disable_user(ctx, username)))


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(body: ApiKeyIn, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                   principal: Principal = require(MANAGE)) -> Any:
    """Create an API key. The whole key is in this response only: it is stored as a digest
    and cannot be shown again (a replay with the same Idempotency-Key gets ``key: null``)."""
    shown: dict[str, str] = {}

    def produce(key: str | None) -> tuple[int, Any]:
        access_service.check_scopes(body.role, body.scopes)
        created = access_service.create_api_key(ctx, body.name, body.role, body.party_id,
                                                 body.scopes)
        shown["key"] = created["key"]
        # What is stored for replays never holds the key.
        return 201, access_service.get_api_key(ctx, created["prefix"]) | {"key": None}
    response = idempotency.respond(ctx, principal, idempotency_key, "POST /v1/api-keys",
                                   body.model_dump(mode="json"), produce)
    if not shown:  # a replay
        return response
    payload = json.loads(response.body) | {"key": shown["key"]}
    return JSONResponse(payload, status_code=response.status_code)


@router.get("/api-keys", response_model=ApiKeyPage)
def list_api_keys(ctx: ActingContext, page: Annotated[Page, Depends()],
                  principal: Principal = require(MANAGE)) -> Any:
    """Every key by prefix, revoked ones included; never the key or its digest."""
    rows = access_service.list_api_keys(ctx, typed_after(page, str), page.limit + 1)
    return page.result(rows, "prefix")


@router.post("/api-keys/{prefix}/revoke", response_model=ApiKeyOut)
def revoke_api_key(prefix: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                   principal: Principal = require(MANAGE)) -> Any:
    """Revoke a key: from now on it is refused (401)."""
    def produce(key: str | None) -> tuple[int, Any]:
        access_service.revoke_api_key(ctx, prefix)
        return 200, access_service.get_api_key(ctx, prefix)
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/api-keys/{prefix}/revoke", {}, produce)
