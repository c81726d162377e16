"""Webhooks on SQLite and PostgreSQL: the outbox is written with the change, deliveries are
signed and POSTed after commit to a local receiver (nothing leaves the machine), retried with
backoff and jitter, logged, and redelivered on demand; the reference verifier of
docs/security.md accepts them and refuses tampering, old timestamps and replays."""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

import splitledger.webhook_verify
from splitledger.api.app import create_app
from splitledger.domain.access import Role
from splitledger.domain.webhooks import backoff_seconds, event_body, signature_header
from splitledger.errors import DuplicateOrder, InvalidState, NotFound, ValidationError
from splitledger.services import access, orders, settlement, webhooks
from splitledger.services.context import Context
from splitledger.store import tables as t
from tests.support import TEST_KEYS, make_context, order, seed_marketplace

DOCS = Path(__file__).resolve().parents[1] / "docs" / "security.md"
PERIOD_1 = datetime(2026, 11, 9, tzinfo=UTC)


# -- the reference verifier, as the docs show it ------------------------------------------------

def docs_verifier() -> dict[str, Any]:
    """Execute the verifier code block of docs/security.md and return its namespace."""
    text_ = DOCS.read_text(encoding="utf-8")
    marker = text_.index("<!-- reference verifier -->")
    block = re.search(r"```python\n(.*?)```", text_[marker:], re.S)
    assert block, "no python block after the reference verifier marker"
    namespace: dict[str, Any] = {"__name__": "webhook_verify_from_docs"}
    exec(compile(block.group(1), str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    namespace["__source__"] = block.group(1)
    return namespace


def test_the_verifier_in_the_docs_is_the_one_shipped():
    shipped = Path(splitledger.webhook_verify.__file__).read_text(encoding="utf-8")
    assert docs_verifier()["__source__"] == shipped


def test_the_reference_verifier_refuses_tampering_old_timestamps_and_replays():
    v = docs_verifier()
    verify, Guard, Refused = v["verify_webhook"], v["ReplayGuard"], v["WebhookVerificationError"]
    secret = "whsec_test"
    now = 1_790_000_000
    body = event_body("ev-1", "payout.paid", datetime(2026, 9, 21, tzinfo=UTC),
                      {"payout_id": "p-1", "amount_minor": 9_500})
    header = signature_header(secret, now, body)
    guard = Guard()
    assert verify(body, header, secret, guard, now=now + 10)["data"]["amount_minor"] == 9_500

    tampered = body.replace(b"9500", b"9900")
    with pytest.raises(Refused, match="signature"):
        verify(tampered, signature_header(secret, now + 1, body), secret, Guard(), now=now)
    with pytest.raises(Refused, match="signature"):
        verify(body, signature_header("whsec_other", now, body), secret, Guard(), now=now)
    with pytest.raises(Refused, match="signature"):  # the timestamp is signed too
        verify(body, header.replace(f"t={now}", f"t={now + 5}"), secret, Guard(), now=now)
    with pytest.raises(Refused, match="timestamp"):  # older than five minutes
        verify(body, header, secret, Guard(), now=now + 301)
    with pytest.raises(Refused, match="timestamp"):  # or from the future
        verify(body, header, secret, Guard(), now=now - 301)
    assert verify(body, header, secret, Guard(), now=now + 300)
    with pytest.raises(Refused, match="replay"):     # the same t and signature again
        verify(body, header, secret, guard, now=now + 20)
    for bad in (None, "", "v1=abc", f"t=x,v1={'0' * 64}", f"t={now}"):
        with pytest.raises(Refused):
            verify(body, bad, secret, Guard(), now=now)
    # A retry is signed afresh (new timestamp): accepted, and de-duplicated by event id.
    retry = signature_header(secret, now + 60, body)
    assert verify(body, retry, secret, guard, now=now + 61)["id"] == "ev-1"


def test_backoff_grows_exponentially_with_bounded_jitter():
    delays = [backoff_seconds(n, base=30, cap=3600, jitter=0.0) for n in range(1, 10)]
    assert delays[:4] == [15, 30, 60, 120]
    assert delays[-1] == 1800  # capped: half of the cap fixed
    for n in range(1, 12):
        low = backoff_seconds(n, base=30, cap=3600, jitter=0.0)
        high = backoff_seconds(n, base=30, cap=3600, jitter=0.999)
        assert low <= high < 2 * low + 1e-9
    with pytest.raises(ValueError):
        backoff_seconds(0, base=30, cap=3600, jitter=0.5)


# -- a receiver on 127.0.0.1 --------------------------------------------------------------------

class Receiver:
    """A local HTTP server that records every POST and answers the given status codes in turn
    (then 200)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.codes = list(codes or [])
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/splitledger"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    server = Receiver()
    yield server
    server.close()


def closed_port_url() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/gone"


def count(ctx: Context, table: t.Table) -> int:
    with ctx.uow() as uow:
        return int(uow.conn.execute(select(func.count()).select_from(table)).scalar_one())


def deliveries(ctx: Context) -> list[Any]:
    with ctx.uow() as uow:
        return uow.conn.execute(select(t.webhook_deliveries)
                                .order_by(t.webhook_deliveries.c.created_at,
                                          t.webhook_deliveries.c.delivery_id)).all()


# -- the outbox ---------------------------------------------------------------------------------

def test_events_are_written_with_their_change_and_only_for_subscribers(ctx):
    seed_marketplace(ctx)
    orders.capture_order(ctx, order("o-0"))
    assert count(ctx, t.webhook_events) == 0  # nobody subscribes: nothing is written
    sub = webhooks.create_subscription(ctx, "http://127.0.0.1:9/a", ["order.captured"])
    other = webhooks.create_subscription(ctx, "http://127.0.0.1:9/b", ["*"])
    orders.capture_order(ctx, order("o-1"), idempotency_key="cap-1")
    assert count(ctx, t.webhook_events) == 1
    assert Counter(d.subscription_id for d in deliveries(ctx)) == {
        sub["subscription_id"]: 1, other["subscription_id"]: 1}
    # A change that fails writes no event; a replayed request neither.
    with pytest.raises(DuplicateOrder):
        orders.capture_order(ctx, order("o-1"))
    orders.capture_order(ctx, order("o-1"), idempotency_key="cap-1")
    assert count(ctx, t.webhook_events) == 1
    # Events of a type only the wildcard wants reach only it.
    orders.refund_order(ctx, "o-1", 100)
    with ctx.uow() as uow:
        types = Counter(uow.conn.execute(select(t.webhook_events.c.event_type)).scalars())
    assert types == {"order.captured": 1, "order.refunded": 1}
    assert len(deliveries(ctx)) == 3
    # A transaction rolled back takes its events with it.
    with ctx.uow() as uow:
        webhooks.emit(uow, ctx, "order.released", {"order_id": "o-1"})
    assert count(ctx, t.webhook_events) == 2
    with pytest.raises(ValueError):
        with ctx.uow() as uow:
            webhooks.emit(uow, ctx, "order.exploded", {})


def test_subscriptions_are_validated(ctx):
    with pytest.raises(ValidationError, match="event types"):
        webhooks.create_subscription(ctx, "https://example.test/h", ["order.nope"])
    with pytest.raises(ValidationError):
        webhooks.create_subscription(ctx, "ftp://example.test/h", ["*"])
    with pytest.raises(ValidationError, match="credentials"):
        webhooks.create_subscription(ctx, "https://u:p@example.test/h", ["*"])
    with pytest.raises(NotFound):
        webhooks.get_subscription(ctx, "nope")


# -- delivering ---------------------------------------------------------------------------------

def test_the_life_of_the_money_is_delivered_signed_after_commit(ctx, clock, receiver):
    v = docs_verifier()
    seed_marketplace(ctx)
    sub = webhooks.create_subscription(ctx, receiver.url, ["*"], description="books")
    orders.capture_order(ctx, order("o-1", price=10_000))
    orders.confirm_order(ctx, "o-1")
    clock.set(PERIOD_1 + timedelta(hours=1))
    settlement.run_settlement(ctx, PERIOD_1)
    with ctx.uow() as uow:
        payout_id = uow.conn.execute(select(t.payouts.c.payout_id)).scalar_one()
    settlement.mark_payout_paid(ctx, payout_id)
    assert receiver.requests == []  # nothing is sent until the worker runs

    report = webhooks.deliver_due(ctx)
    assert (report.attempted, report.delivered, report.retrying) == (5, 5, 0)
    guard = v["ReplayGuard"]()
    seen = []
    for headers, body in receiver.requests:
        event = v["verify_webhook"](body, headers["Splitledger-Signature"], sub["secret"], guard,
                                    now=clock.now.timestamp())
        assert headers["Splitledger-Event-Id"] == event["id"]
        assert headers["Content-Type"] == "application/json"
        seen.append(event["type"])
    assert sorted(seen) == ["order.captured", "order.released", "payout.created",
                            "payout.paid", "statement.created"]  # not ordered (documented)
    events = {e["type"]: e["data"] for e in receiver.events()}
    assert events["payout.paid"]["payout_id"] == payout_id
    assert events["statement.created"]["payout_id"] == payout_id
    assert {a["party_id"] for a in events["order.captured"]["allocations"]} >= {"m1", "platform"}
    assert all(d.status == "delivered" and d.attempts == 1 for d in deliveries(ctx))
    log = webhooks.get_delivery(ctx, deliveries(ctx)[0].delivery_id)
    assert [(a["attempt"], a["status_code"], a["error"]) for a in log["attempt_log"]] == [
        (1, 200, None)]
    # Delivered once: the next pass has nothing to do.
    assert webhooks.deliver_due(ctx).attempted == 0
    # The secret never reaches the database in clear.
    with ctx.engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                assert sub["secret"] not in repr(tuple(row)), table.name


def test_failures_are_retried_with_backoff_then_given_up_and_redelivered(db_url, clock):
    ctx = make_context(db_url, clock, webhook_max_attempts=3, webhook_backoff_base_seconds=60,
                       webhook_backoff_max_seconds=3600)
    flaky, healthy = Receiver([500, 503]), Receiver()
    try:
        seed_marketplace(ctx)
        webhooks.create_subscription(ctx, flaky.url, ["order.captured"])
        dead = webhooks.create_subscription(ctx, closed_port_url(), ["order.captured"])
        orders.capture_order(ctx, order("o-1"))
        rng = random.Random(7)

        first = webhooks.deliver_due(ctx, rng=rng)
        assert (first.attempted, first.delivered, first.retrying) == (2, 0, 2)
        by_sub = {d.subscription_id: d for d in deliveries(ctx)}
        to_dead = by_sub[dead["subscription_id"]]
        assert to_dead.last_status_code is None and "Connect" in to_dead.last_error
        for delivery in by_sub.values():
            wait = (delivery.next_attempt_at - clock.now).total_seconds()
            assert 30 <= wait <= 60  # attempt 1 failed: 60 s with equal jitter
        assert webhooks.deliver_due(ctx, rng=rng).attempted == 0  # not due yet

        clock.advance(seconds=60)
        second = webhooks.deliver_due(ctx, rng=rng)
        assert (second.attempted, second.retrying) == (2, 2)
        for delivery in deliveries(ctx):
            wait = (delivery.next_attempt_at - clock.now).total_seconds()
            assert 60 <= wait <= 120  # doubled

        clock.advance(seconds=120)
        third = webhooks.deliver_due(ctx, rng=rng)
        assert (third.attempted, third.delivered, third.failed) == (2, 1, 1)
        by_sub = {d.subscription_id: d for d in deliveries(ctx)}
        gave_up = by_sub[dead["subscription_id"]]
        assert (gave_up.status, gave_up.attempts, gave_up.next_attempt_at) == ("failed", 3, None)
        good = next(d for d in by_sub.values() if d.status == "delivered")
        log = webhooks.get_delivery(ctx, good.delivery_id)["attempt_log"]
        assert [a["status_code"] for a in log] == [500, 503, 200]
        assert [a["error"] for a in log] == ["HTTP 500", "HTTP 503", None]
        assert len(flaky.requests) == 3
        # Each attempt is signed afresh: a different timestamp, a different signature.
        assert len({h["Splitledger-Signature"] for h, _ in flaky.requests}) == 3

        # Manual redelivery, once the receiver is back (here: moved to a healthy address).
        with ctx.engine.begin() as conn:
            conn.execute(t.webhook_subscriptions.update().where(
                t.webhook_subscriptions.c.subscription_id == dead["subscription_id"])
                .values(url=healthy.url))
        again = webhooks.redeliver(ctx, gave_up.delivery_id)
        assert again["redelivery_of"] == gave_up.delivery_id and again["status"] == "pending"
        assert webhooks.deliver_due(ctx).delivered == 1
        assert json.loads(healthy.requests[0][1])["type"] == "order.captured"
        assert webhooks.get_delivery(ctx, again["delivery_id"])["status"] == "delivered"
    finally:
        flaky.close()
        healthy.close()
        ctx.engine.dispose()


def test_disabling_a_subscription_cancels_what_it_has_not_received(ctx, receiver):
    seed_marketplace(ctx)
    sub = webhooks.create_subscription(ctx, receiver.url, ["order.captured"])
    orders.capture_order(ctx, order("o-1"))
    view = webhooks.disable_subscription(ctx, sub["subscription_id"])
    assert view["disabled_at"] is not None
    assert webhooks.disable_subscription(ctx, sub["subscription_id"]) == view
    assert [d.status for d in deliveries(ctx)] == ["cancelled"]
    orders.capture_order(ctx, order("o-2"))
    assert webhooks.deliver_due(ctx).attempted == 0 and receiver.requests == []
    with pytest.raises(InvalidState):
        webhooks.redeliver(ctx, deliveries(ctx)[0].delivery_id)


def test_concurrent_workers_send_each_delivery_once(pg_ctx, receiver):
    ctx = pg_ctx
    seed_marketplace(ctx)
    webhooks.create_subscription(ctx, receiver.url, ["order.captured"])
    for i in range(40):
        orders.capture_order(ctx, order(f"o-{i}"))
    reports: list[Any] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        reports.append(webhooks.deliver_due(ctx))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.delivered for r in reports) == 40
    assert Counter(Counter(e["id"] for e in receiver.events()).values()) == {1: 40}


# -- over HTTP and the command line -------------------------------------------------------------

@pytest.fixture
def api(ctx):  # type: ignore[no-untyped-def]
    seed_marketplace(ctx)
    keys = {name: access.create_api_key(ctx, name, role, party)["key"]
            for name, role, party in [("admin", Role.ADMIN, None),
                                      ("auditor", Role.AUDITOR, None),
                                      ("finance", Role.FINANCE, None),
                                      ("merchant", Role.MERCHANT, "m1")]}
    headers = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    return TestClient(create_app(ctx)), headers


def test_subscriptions_over_http_show_the_secret_once(api, ctx, receiver):
    client, who = api
    body = {"url": receiver.url, "event_types": ["order.captured"], "description": "erp"}
    for name in ("finance", "merchant", "auditor"):
        assert client.post("/v1/webhooks/subscriptions", json=body,
                           headers=who[name]).status_code == 403
    made = client.post("/v1/webhooks/subscriptions", json=body,
                       headers=who["admin"] | {"Idempotency-Key": "sub-1"})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    sub_id = made.json()["subscription_id"]
    replay = client.post("/v1/webhooks/subscriptions", json=body,
                         headers=who["admin"] | {"Idempotency-Key": "sub-1"})
    assert replay.status_code == 201 and replay.json()["secret"] is None
    assert replay.json()["subscription_id"] == sub_id
    listed = client.get("/v1/webhooks/subscriptions", headers=who["auditor"])
    assert listed.status_code == 200 and secret not in listed.text
    assert listed.json()["data"][0]["secret_hint"] == secret[:10] + "…"
    one = client.get(f"/v1/webhooks/subscriptions/{sub_id}", headers=who["auditor"])
    assert one.status_code == 200 and secret not in one.text
    assert client.get("/v1/webhooks/subscriptions", headers=who["merchant"]).status_code == 403
    assert client.get("/v1/webhooks/event-types", headers=who["admin"]).json()[0] \
        == "order.captured"
    stored = json.dumps([list(map(str, row)) for row in ctx.engine.connect().execute(
        select(t.idempotency_keys))])
    assert secret not in stored


def test_the_delivery_log_and_redelivery_over_http_and_the_cli(api, ctx, receiver, db_url,
                                                               monkeypatch):
    from splitledger.cli.main import app as cli

    client, who = api
    sub = webhooks.create_subscription(ctx, receiver.url, ["order.captured"])
    orders.capture_order(ctx, order("o-1"))
    monkeypatch.setenv("SPLITLEDGER_ENCRYPTION_KEYS", TEST_KEYS)
    runner = CliRunner()
    ran = runner.invoke(cli, ["webhooks", "deliver", "-d", db_url])
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert "1 attempted: 1 delivered" in " ".join(ran.stdout.split())
    headers, body = receiver.requests[0]
    v = docs_verifier()
    assert v["verify_webhook"](body, headers["Splitledger-Signature"], sub["secret"],
                               v["ReplayGuard"]())["type"] == "order.captured"  # real clock

    page = client.get("/v1/webhooks/deliveries", params={"status": "delivered"},
                      headers=who["auditor"])
    assert page.status_code == 200, page.text
    (first,) = page.json()["data"]
    detail = client.get(f"/v1/webhooks/deliveries/{first['delivery_id']}",
                        headers=who["auditor"]).json()
    assert detail["attempt_log"][0]["status_code"] == 200
    assert detail["payload"]["order_id"] == "o-1"
    url = f"/v1/webhooks/deliveries/{first['delivery_id']}/redeliver"
    assert client.post(url, headers=who["auditor"]).status_code == 403
    again = client.post(url, headers=who["admin"])
    assert again.status_code == 201 and again.json()["redelivery_of"] == first["delivery_id"]
    assert client.post("/v1/webhooks/deliveries/nope/redeliver",
                       headers=who["admin"]).status_code == 404

    ran = runner.invoke(cli, ["webhooks", "redeliver", first["delivery_id"], "-d", db_url])
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    ran = runner.invoke(cli, ["webhooks", "deliver", "-d", db_url])
    assert "2 attempted: 2 delivered" in " ".join(ran.stdout.split())
    assert [json.loads(b)["id"] for _, b in receiver.requests] == [detail["event_id"]] * 3
    listing = runner.invoke(cli, ["webhooks", "deliveries", "-d", db_url])
    assert listing.exit_code == 0 and "delivered" in listing.stdout

    gone = client.delete(f"/v1/webhooks/subscriptions/{sub['subscription_id']}",
                         headers=who["admin"])
    assert gone.status_code == 200 and gone.json()["disabled_at"]
