"""Small helpers shared by the route modules: typed cursors and bounded moments."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Request
from pydantic import AfterValidator, AwareDatetime

from splitledger.api.deps import CurrentPrincipal, Page
from splitledger.errors import ValidationError


def typed_after(page: Page, kind: type) -> Any:
    """The page's cursor, refused unless it holds the key type the list is ordered by (a
    forged cursor must be a 422, never a database type error)."""
    after = page.after
    if after is None:
        return None
    if kind is int:
        ok = isinstance(after, int) and not isinstance(after, bool) and 0 <= after < 2**63
    else:
        ok = isinstance(after, kind) and len(after) <= 255
    if not ok:
        raise ValidationError("invalid cursor", field="cursor")
    return after


def in_range(moment: datetime) -> bool:
    try:
        return 1970 <= moment.astimezone(UTC).year <= 9000
    except OverflowError:
        return False


def _bounded(moment: datetime) -> datetime:
    if not in_range(moment):
        raise ValueError("must be between 1970 and 9000")
    return moment.astimezone(UTC)


Moment = Annotated[AwareDatetime, AfterValidator(_bounded)]
"""An ISO 8601 time with a time zone, between 1970 and 9000 (returned in UTC)."""


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


async def refuse_nul(request: Request, principal: CurrentPrincipal) -> None:
    """A router dependency: NUL characters in the path, the query or the JSON body are
    refused (422) before they reach a database that cannot store them. Runs after
    authentication, so an anonymous caller still gets 401."""
    query = [part for pair in request.query_params.multi_items() for part in pair]
    if _has_nul(request.scope.get("path", "")) or _has_nul(query) or _has_nul(
            list(request.path_params.values())):
        raise ValidationError("NUL characters are not allowed in the URL", field="url")
    body = await request.body()
    if body:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return  # not JSON: the route's own validation answers
        if _has_nul(data):
            raise ValidationError("NUL characters are not allowed in the body", field="body")
