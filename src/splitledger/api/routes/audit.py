"""The audit log: every change (who, what, when, before, after, from where) in a hash chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from splitledger.api.deps import ActingContext, Page, require
from splitledger.api.routes.common import refuse_nul, typed_after
from splitledger.domain.access import Permission, Principal
from splitledger.services import audit as audit_service

router = APIRouter(prefix="/v1/audit", tags=["audit"],
                   dependencies=[Depends(refuse_nul)])


class AuditRecordOut(BaseModel):
    seq: int
    at: str
    actor: str = Field(description="user:<name>, key:<prefix>, or system / cli:<login>")
    action: str
    object_type: str
    object_id: str
    before: Any = None
    after: Any = None
    source: str = Field(description="the caller's address, or 'local'")
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    data: list[AuditRecordOut]
    next_cursor: str | None


class AuditVerifyOut(BaseModel):
    ok: bool
    records: int = Field(description="records checked (up to the first problem)")
    problem: str | None = Field(description="the first broken record, if any")


@router.get("", response_model=AuditPage)
def list_audit(ctx: ActingContext, page: Annotated[Page, Depends()],
               object_id: Annotated[str | None, Query(max_length=128)] = None,
               action: Annotated[str | None, Query(max_length=64)] = None,
               principal: Principal = require(Permission.READ_AUDIT)) -> Any:
    """Audit records in chain order (``seq``), optionally for one object or one action."""
    rows = audit_service.list_records(ctx, after_seq=typed_after(page, int) or 0,
                                      limit=page.limit + 1, object_id=object_id,
                                      action=action)
    for row in rows:
        row["at"] = row["at"].isoformat()
    return page.result(rows, "seq")


@router.get("/verify", response_model=AuditVerifyOut)
def verify_audit(ctx: ActingContext,
                 principal: Principal = require(Permission.READ_AUDIT)) -> Any:
    """Recompute the whole hash chain; any edited, reordered, inserted or removed record is
    reported (the first one found)."""
    count, problem = audit_service.verify(ctx)
    return {"ok": problem is None, "records": count, "problem": problem}
