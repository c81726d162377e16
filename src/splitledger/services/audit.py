"""Appending to and verifying the audit log (a hash chain; see ``domain.audit``).

``record`` runs inside the caller's transaction, so a change and its audit record commit or
vanish together. Appends are serialised (an advisory lock on PostgreSQL; SQLite has one writer)
so the chain never forks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update

from splitledger.domain.audit import GENESIS, AuditRecord, record_hash, verify_chain
from splitledger.services.context import Context, UnitOfWork
from splitledger.store import tables as t

AUDIT_LOCK_ID = 0x5A1D17  # advisory lock key for appends on PostgreSQL


def record(uow: UnitOfWork, ctx: Context, action: str, object_type: str, object_id: str, *,
           before: Any = None, after: Any = None) -> int:
    """Append one record for a change made in this unit of work; returns its sequence."""
    if uow.repo.dialect == "postgresql":
        uow.conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_ID})
    last = uow.conn.execute(select(t.audit_log.c.seq, t.audit_log.c.hash)
                            .order_by(t.audit_log.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    at: datetime = ctx.now()
    digest = record_hash(seq, at, ctx.actor, action, object_type, object_id, before, after,
                         ctx.source, prev)
    uow.conn.execute(insert(t.audit_log).values(
        seq=seq, at=at, actor=ctx.actor, action=action, object_type=object_type,
        object_id=object_id, before=before, after=after, source=ctx.source, prev_hash=prev,
        hash=digest))
    moved = uow.conn.execute(update(t.audit_head).where(t.audit_head.c.id == 1)
                             .values(seq=seq, hash=digest)).rowcount
    if not moved:
        uow.conn.execute(insert(t.audit_head).values(id=1, seq=seq, hash=digest))
    return seq


def _records(uow: UnitOfWork) -> Iterator[AuditRecord]:
    rows = uow.conn.execute(select(t.audit_log).order_by(t.audit_log.c.seq))
    for row in rows:
        yield AuditRecord(row.seq, row.at, row.actor, row.action, row.object_type,
                          row.object_id, row.before, row.after, row.source, row.prev_hash,
                          row.hash)


def verify(ctx: Context) -> tuple[int, str | None]:
    """Recompute the whole chain and check that it ends at the recorded head: (records
    checked, first problem or None). The head catches the removal of the newest records; a
    copy of ``head()`` kept outside the database also catches a rewrite of the head itself."""
    with ctx.uow() as uow:
        count, problem = verify_chain(_records(uow))
        if problem is not None:
            return count, problem
        anchor = uow.conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash)).first()
        last = uow.conn.execute(select(t.audit_log.c.seq, t.audit_log.c.hash)
                                .order_by(t.audit_log.c.seq.desc()).limit(1)).first()
    if anchor is None and last is None:
        return count, None
    if anchor is None or last is None or (last.seq, last.hash) != (anchor.seq, anchor.hash):
        head_seq = anchor.seq if anchor else 0
        return count, (f"the chain ends at record {last.seq if last else 0} but its head is "
                       f"record {head_seq}: the newest records were removed or the head edited")
    return count, None


def head(ctx: Context) -> dict[str, Any] | None:
    """The chain's head (sequence and hash), to be copied somewhere the database's own
    administrators cannot rewrite (a ticket, a notary, an append-only bucket)."""
    with ctx.uow() as uow:
        row = uow.conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash)).first()
    return {"seq": row.seq, "hash": row.hash} if row else None


def list_records(ctx: Context, *, after_seq: int = 0, limit: int = 100,
                 object_id: str | None = None, action: str | None = None) -> list[dict[str, Any]]:
    with ctx.uow() as uow:
        stmt = select(t.audit_log).where(t.audit_log.c.seq > after_seq)
        if object_id:
            stmt = stmt.where(t.audit_log.c.object_id == object_id)
        if action:
            stmt = stmt.where(t.audit_log.c.action == action)
        rows = uow.conn.execute(stmt.order_by(t.audit_log.c.seq).limit(limit))
        return [dict(row._mapping) for row in rows]
