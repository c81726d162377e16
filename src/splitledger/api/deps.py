"""Request dependencies: the context, the authenticated principal, permissions, paging."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from splitledger.domain.access import Permission, Principal
from splitledger.errors import AuthenticationFailed, Forbidden, NotFound, ValidationError
from splitledger.services import access
from splitledger.services.context import Context


def base_context(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def authenticate(request: Request,
                 authorization: Annotated[str | None, Header()] = None) -> Principal:
    """``Authorization: Bearer <session token or API key>``."""
    ctx = base_context(request)
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthenticationFailed("send Authorization: Bearer <token or API key>")
    credential = authorization[7:].strip()
    if credential.startswith("slk_"):
        return access.principal_for_api_key(ctx, credential)
    return access.principal_for_session(ctx, credential)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require(*permissions: Permission) -> Any:
    """A dependency that lets the request through only if the principal has one of
    ``permissions``."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not any(principal.can(p) for p in permissions):
            needed = " or ".join(p.value for p in permissions)
            raise Forbidden(f"{principal.role.value} may not do this (needs {needed})",
                            permissions=[p.value for p in permissions])
        return principal

    check.permissions = permissions  # type: ignore[attr-defined]  # read by route-table tests
    return Depends(check)


READ = (Permission.READ_ALL, Permission.READ_OWN)  # staff, or a party reading its own


def acting_context(request: Request, principal: CurrentPrincipal) -> Context:
    """The context for this request: the caller is the actor in the audit log."""
    client = request.client.host if request.client else "unknown"
    return dataclasses.replace(base_context(request), actor=principal.subject, source=client)


ActingContext = Annotated[Context, Depends(acting_context)]


def check_party_visible(principal: Principal, party_id: str) -> None:
    """A party user asking for another party's data gets 404, as if it did not exist: the
    answer must not even reveal that the other party is there."""
    if not principal.may_read_party(party_id):
        raise NotFound(f"unknown party {party_id!r}", party_id=party_id)


# -- cursor pagination --------------------------------------------------------------------------

class Page:
    """``?limit=&cursor=``: an opaque cursor naming the last key seen."""

    def __init__(self, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                 cursor: Annotated[str | None, Query(max_length=512)] = None) -> None:
        self.limit = limit
        self.after: Any = None
        if cursor:
            try:
                self.after = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            except (ValueError, json.JSONDecodeError) as exc:
                raise ValidationError("invalid cursor", field="cursor") from exc

    def result(self, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        """``items`` fetched with ``limit + 1``: the extra one only says there is more."""
        more = len(items) > self.limit
        items = items[:self.limit]
        cursor = None
        if more and items:
            cursor = base64.urlsafe_b64encode(json.dumps(items[-1][key]).encode()).decode()
        return {"data": items, "next_cursor": cursor}
