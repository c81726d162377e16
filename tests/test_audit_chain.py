"""The audit log is a hash chain: every change appends a record saying who, what, when and from
where, and ``services.audit.verify`` finds any record edited (whatever the field), removed,
swapped with another or inserted, and names it. Concurrent appends on PostgreSQL leave one
unbroken chain with consecutive sequence numbers.

Tampering is done the way an intruder with database access would: straight SQL on the table.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, insert, select, update

from splitledger.api.app import create_app
from splitledger.domain.access import Role
from splitledger.domain.audit import GENESIS, record_hash
from splitledger.services import access
from splitledger.services import orders as order_service
from splitledger.services.audit import verify
from splitledger.store import tables as t
from tests.api_support import STAFF, World, api_routes, route_permissions, sample_body, world
from tests.support import order, seed_marketplace
from tests.test_api_authz import AUTH_ONLY, READ_ONLY_POSTS, url_for

A = t.audit_log
# Writes that leave no audit record, and why. Anything else that changes something must.
UNAUDITED = {
    # Delivery bookkeeping of webhooks (the delivery log is its own record).
    "POST /v1/webhooks/deliveries/{delivery_id}/redeliver": "the delivery log is the record",
}


@pytest.fixture
def w(tmp_path) -> Iterator[World]:  # type: ignore[no-untyped-def]
    built = world(tmp_path)
    yield built
    built.close()


def records(ctx: Any) -> list[Any]:
    with ctx.uow() as uow:
        return uow.conn.execute(select(A).order_by(A.c.seq)).all()


def last_seq(ctx: Any) -> int:
    with ctx.uow() as uow:
        return uow.conn.execute(select(func.coalesce(func.max(A.c.seq), 0))).scalar_one()


def execute(ctx: Any, *statements: Any) -> None:
    with ctx.uow() as uow:
        for statement in statements:
            uow.conn.execute(statement)
        uow.commit()


# -- every change is recorded ----------------------------------------------------------------

def state(ctx: Any) -> str:
    """A digest of everything but the audit log itself: what a change changes."""
    digest = hashlib.sha256()
    with ctx.uow() as uow:
        for table in t.metadata.sorted_tables:
            if table.name != "audit_log":
                rows = sorted(repr(tuple(r)) for r in uow.conn.execute(select(table)))
                digest.update(f"{table.name}:{rows}".encode())
    return digest.hexdigest()


def test_every_change_through_the_api_appends_a_record_with_actor_and_source(w):
    openapi = w.app.openapi()
    unrecorded, changes = [], 0
    writes = [(route, method) for route in api_routes(w.app) for method in route.methods
              if method in ("POST", "PUT", "PATCH", "DELETE")
              and f"{method} {route.path}" not in set(AUTH_ONLY) | READ_ONLY_POSTS]
    for route, method in writes:
        op = f"{method} {route.path}"
        who = next(s for s in STAFF
                   if any(w.principal(s).can(p) for p in route_permissions(route) or ()))
        before, seq = state(w.ctx), last_seq(w.ctx)
        answer = w.call(who, method, url_for(route, w.a),
                        json=sample_body(openapi, method, route.path))
        assert answer.status_code < 500, f"{op}: {answer.text}"
        new = [r for r in records(w.ctx) if r.seq > seq]
        if state(w.ctx) == before:
            assert not new, f"{op} changed nothing but left audit records"
            continue
        changes += 1
        if op in UNAUDITED:
            continue
        if not new:
            unrecorded.append(f"{op} ({answer.status_code})")
            continue
        subject = f"key:{w.facts.key_prefixes[who]}"
        for record in new:
            assert (record.actor, record.source) == (subject, "testclient"), (op, record)
    assert not unrecorded, f"changes without an audit record: {unrecorded}"
    assert changes >= len(writes) // 2, f"only {changes} of {len(writes)} writes changed " \
                                         "something: too few to prove anything"
    assert verify(w.ctx) == (last_seq(w.ctx), None)


def test_the_populated_world_has_an_unbroken_chain(w):
    count, problem = verify(w.ctx)
    assert problem is None
    assert count == len(records(w.ctx)) > 30
    answer = w.call("auditor", "GET", "/v1/audit/verify").json()
    assert answer == {"ok": True, "records": count, "problem": None}


# -- tampering ---------------------------------------------------------------------------------

def _tampered(value: Any, column: str) -> Any:
    if column == "at":
        return value + timedelta(microseconds=1)
    if column == "seq":
        return value + 10_000
    if column in ("before", "after"):
        return {"tampered": True} if value != {"tampered": True} else None
    if column in ("prev_hash", "hash"):
        return ("f" if value[0] != "f" else "e") + value[1:]
    return value + "x"


def test_editing_any_field_of_any_record_is_detected_and_named(w):
    rows = records(w.ctx)
    columns = [c.name for c in A.columns]
    assert set(columns) == {"seq", "at", "actor", "action", "object_type", "object_id",
                            "before", "after", "source", "prev_hash", "hash"}, \
        "the audit record changed shape: check that every field is covered by the hash"
    for row in rows:
        for column in columns:
            original = getattr(row, column)
            changed = _tampered(original, column)
            execute(w.ctx, update(A).where(A.c.seq == row.seq).values({column: changed}))
            _, problem = verify(w.ctx)
            assert problem is not None, f"edited {column} of record {row.seq} went unnoticed"
            names = [f"record {row.seq}:", f"expected sequence {row.seq} "]
            if column == "seq":
                names.append(f"record {changed}:")
            assert any(n in problem for n in names), (column, row.seq, problem)
            key = changed if column == "seq" else row.seq
            execute(w.ctx, update(A).where(A.c.seq == key).values({column: original}))
    assert verify(w.ctx) == (len(rows), None)


def _as_values(row: Any, **changes: Any) -> dict[str, Any]:
    return {**row._mapping, **changes}


def test_removing_a_record_is_detected(w):
    rows = records(w.ctx)
    middle = rows[len(rows) // 2]
    execute(w.ctx, delete(A).where(A.c.seq == middle.seq))
    _, problem = verify(w.ctx)
    assert problem is not None and f"record {middle.seq + 1}:" in problem, problem
    assert f"expected sequence {middle.seq}" in problem
    # ... also when the gap is closed by renumbering the later records
    execute(w.ctx, *[update(A).where(A.c.seq == r.seq).values(seq=r.seq - 1)
                     for r in rows if r.seq > middle.seq])
    _, problem = verify(w.ctx)
    assert problem is not None and f"record {middle.seq}:" in problem, problem


def test_removing_the_first_record_is_detected(w):
    execute(w.ctx, delete(A).where(A.c.seq == 1))
    _, problem = verify(w.ctx)
    assert problem is not None and "record 2:" in problem, problem


def test_removing_the_newest_record_is_detected(w):
    newest = records(w.ctx)[-1]
    execute(w.ctx, delete(A).where(A.c.seq == newest.seq))
    _, problem = verify(w.ctx)
    assert problem is not None


def test_swapping_two_records_is_detected(w):
    rows = records(w.ctx)
    one, two = rows[5], rows[12]
    execute(w.ctx,
            delete(A).where(A.c.seq.in_([one.seq, two.seq])),
            insert(A).values(_as_values(one, seq=two.seq)),
            insert(A).values(_as_values(two, seq=one.seq)))
    _, problem = verify(w.ctx)
    assert problem is not None and f"record {one.seq}:" in problem, problem
    # swapping their contents but keeping each record's sequence number: the same
    execute(w.ctx,
            delete(A).where(A.c.seq.in_([one.seq, two.seq])),
            insert(A).values(_as_values(one, seq=one.seq, prev_hash=two.prev_hash,
                                        hash=two.hash)),
            insert(A).values(_as_values(two, seq=two.seq, prev_hash=one.prev_hash,
                                        hash=one.hash)))
    _, problem = verify(w.ctx)
    assert problem is not None and f"record {one.seq}:" in problem, problem


def test_inserting_a_record_is_detected(w):
    rows = records(w.ctx)
    at = rows[10]
    # make room by moving every later record one place up, then slip a forged one in
    for row in reversed(rows[10:]):
        execute(w.ctx, update(A).where(A.c.seq == row.seq).values(seq=row.seq + 1))
    forged = {"seq": at.seq, "at": at.at, "actor": "user:mallory", "action": "party.bank_details",
              "object_type": "party", "object_id": "m1", "before": None,
              "after": {"bank": "EVIL ****6666"}, "source": "10.6.6.6",
              "prev_hash": rows[9].hash}
    forged["hash"] = record_hash(**{k: forged[k] for k in (
        "seq", "at", "actor", "action", "object_type", "object_id", "before", "after", "source",
        "prev_hash")})
    execute(w.ctx, insert(A).values(forged))
    _, problem = verify(w.ctx)
    assert problem is not None and f"record {at.seq + 1}:" in problem, problem
    # a forged record at the end with a made-up hash
    execute(w.ctx, delete(A).where(A.c.seq == at.seq),
            *[update(A).where(A.c.seq == r.seq + 1).values(seq=r.seq) for r in rows[10:]])
    assert verify(w.ctx) == (len(rows), None)
    end = len(rows) + 1
    execute(w.ctx, insert(A).values({**forged, "seq": end, "prev_hash": rows[-1].hash,
                                     "hash": "0" * 64}))
    _, problem = verify(w.ctx)
    assert problem is not None and f"record {end}:" in problem, problem


def test_a_chain_starting_elsewhere_than_genesis_is_detected(w):
    execute(w.ctx, update(A).where(A.c.seq == 1).values(prev_hash="1" * 64))
    _, problem = verify(w.ctx)
    assert problem is not None and "record 1:" in problem
    assert GENESIS == "0" * 64


def test_the_api_reports_tampering(w):
    execute(w.ctx, update(A).where(A.c.seq == 3).values(actor="user:nobody"))
    answer = w.call("auditor", "GET", "/v1/audit/verify").json()
    assert answer["ok"] is False and "record 3:" in answer["problem"]


# -- concurrent appends --------------------------------------------------------------------------

@pytest.mark.postgres
def test_concurrent_changes_leave_one_chain_with_consecutive_seq(pg_ctx, clock):
    seed_marketplace(pg_ctx)
    n = 16
    for i in range(n):
        order_service.capture_order(pg_ctx, order(f"o-{i}", price=10_000 + i))
    key = access.create_api_key(pg_ctx, "refunds", Role.FINANCE)["key"]
    start = last_seq(pg_ctx)
    app = create_app(pg_ctx)
    barrier = threading.Barrier(n)
    answers: list[Any] = [None] * n

    def refund(i: int) -> None:
        with TestClient(app, raise_server_exceptions=False) as client:
            barrier.wait()
            answers[i] = client.post(f"/v1/orders/o-{i}/refunds", json={"amount_minor": 100 + i},
                                     headers={"Authorization": f"Bearer {key}"})

    threads = [threading.Thread(target=refund, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [a.status_code for a in answers] == [201] * n, [a.text for a in answers]
    rows = records(pg_ctx)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    mine = [r for r in rows if r.seq > start]
    assert sorted(r.object_id for r in mine) == sorted(f"o-{i}" for i in range(n))
    assert all(r.action == "order.refund" and r.actor.startswith("key:") for r in mine)
    assert verify(pg_ctx) == (len(rows), None)
