"""Sessions for people: log in with a password, get a short-lived bearer token."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field

from splitledger.api.deps import CurrentPrincipal, base_context
from splitledger.services import access

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=512)


class SessionOut(BaseModel):
    token: str
    expires_at: str
    username: str
    role: str
    party_id: str | None


class WhoAmI(BaseModel):
    subject: str
    role: str
    party_id: str | None
    permissions: list[str]


@router.post("/login", response_model=SessionOut)
def login(body: LoginIn, request: Request) -> Any:
    """Exchange a username and password for a session token (8 hours). Throttled: after 5
    failures within 15 minutes the user is refused (429) until the window passes."""
    ctx = dataclasses.replace(base_context(request), actor=f"user:{body.username}",
                              source=request.client.host if request.client else "unknown")
    return access.login(ctx, body.username, body.password)


@router.post("/logout", status_code=204)
def logout(principal: CurrentPrincipal, request: Request,
           authorization: Annotated[str | None, Header()] = None) -> None:
    """End the current session (API keys are revoked by an admin instead)."""
    if authorization and not authorization[7:].strip().startswith("slk_"):
        access.logout(base_context(request), authorization[7:].strip())


@router.get("/me", response_model=WhoAmI)
def me(principal: CurrentPrincipal) -> Any:
    """Who the credentials belong to and what they may do."""
    from splitledger.domain.access import Permission
    return {"subject": principal.subject, "role": principal.role.value,
            "party_id": principal.party_id,
            "permissions": sorted(p.value for p in Permission if principal.can(p))}
