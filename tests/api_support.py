"""A populated marketplace behind the HTTP API, for the API tests.

``world(tmp_path)`` gives a FastAPI app over a SQLite file holding:

* the test marketplace (``tests.support.MARKETPLACE``) with bank details whose account numbers
  are known here (``BANK_ACCOUNTS``), so that tests can look for them in clear;
* an approved ruleset with a rule of its own for merchant ``m1`` and a later draft;
* orders of merchant ``m1`` (party A), of merchant ``m2`` (party B), one order shared by both,
  one with a supplier, a carrier and an affiliate; a settled week (statements and payouts, one
  payout paid), then a refund, a chargeback and a fresh capture;
* a user and an API key for every role: the five staff roles and a user of each party role
  bound to its party (``m1``, ``m2``, ``s1``, ``l1``, ``a1``), each logged in (session token).

Building that takes a couple of seconds (argon2 hashes), so it is built once per process and
each ``world()`` is a copy of the database file: tests may change it freely.

``A`` and ``B`` describe what belongs to party A (``m1``) and party B (``m2``): order, payout and
statement ids, the bank mask and the amounts only that party (or the platform) may see.
"""

from __future__ import annotations

import atexit
import dataclasses
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from splitledger.api.app import create_app
from splitledger.domain.access import Permission, Principal, Role
from splitledger.domain.bank import BankDetails
from splitledger.domain.kyc import EntityType, IdDocumentType, KycDetails, ReviewDecision
from splitledger.domain.orders import Order, OrderLine, Shipping
from splitledger.rules_io import ruleset_from_data
from splitledger.services import access, adjustments, kyc, settlement, webhooks
from splitledger.services import orders as order_service
from splitledger.services.context import Context
from splitledger.services.parties import register_party
from splitledger.services.rules import approve_ruleset, draft_ruleset
from splitledger.store import tables as t
from splitledger.store.db import make_engine
from splitledger.store.migrate import upgrade
from tests.support import MARKETPLACE, START, FakeClock, make_context

PARTY_A, PARTY_B = "m1", "m2"
SETTLED_UNTIL = datetime(2026, 11, 9, tzinfo=UTC)
NOW = datetime(2026, 11, 9, 1, 0, tzinfo=UTC)  # the clock of every world

# Identities (KYC) of the two merchants: registration and identity document numbers.
KYC = {
    "m1": ("91310115MA1H7QXC3K", "310104198805172638"),
    "m2": ("91440300MA5G2RYD8P", "440305199011234417"),
}

# Account numbers chosen so that no part of one is a part of another or of an amount.
BANK_ACCOUNTS = {
    "platform": "4921 7730 5518 2046",
    "psp": "5308 1164 9927 3315",
    "m1": "6217 3390 4482 7751",
    "m2": "6228 4875 1093 6624",
    "s1": "6013 5502 8871 4409",
    "l1": "6259 0047 3618 9182",
    "a1": "6282 9916 2705 5537",
}

# Payouts above 1 000 000 CNY minor wait for a second person (party A's does).
SETTINGS: dict[str, Any] = {"payout_approval_thresholds": {"CNY": 1_000_000}}

STAFF = ("admin", "finance", "risk", "support", "auditor")
# principal name -> (role, party)
PRINCIPALS: dict[str, tuple[Role, str | None]] = {
    **{name: (Role(name), None) for name in STAFF},
    "merchant_a": (Role.MERCHANT, PARTY_A),
    "merchant_b": (Role.MERCHANT, PARTY_B),
    "supplier": (Role.SUPPLIER, "s1"),
    "logistics": (Role.LOGISTICS, "l1"),
    "affiliate": (Role.AFFILIATE, "a1"),
}
# API keys narrower than their role: principal name -> (role, party, scopes). No user, no session.
SCOPED_KEYS: dict[str, tuple[Role, str | None, frozenset[Permission]]] = {
    "finance_readonly": (Role.FINANCE, None, frozenset({Permission.READ_ALL})),
    "admin_orders_only": (Role.ADMIN, None, frozenset({Permission.WRITE_ORDERS})),
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

RULESET = {
    "version": "rs-2026-11",
    "effective_from": START.isoformat(),
    "description": "test commissions; m1 has its own rate",
    "rules": [
        {"id": "default-commission", "shares": [{"to": "platform", "of": "line_net",
                                                 "bps": 500}]},
        {"id": "m1-commission", "priority": 10, "when": {"merchant": "m1"},
         "shares": [{"to": "platform", "of": "line_net", "bps": 730}]},
        {"id": "supplier-share", "when": {"has_supplier": True},
         "shares": [{"to": "supplier", "of": "line_net", "bps": 2000}]},
        {"id": "affiliate-share", "when": {"has_affiliate": True},
         "shares": [{"to": "affiliate", "of": "line_net", "bps": 200}]},
    ],
}
DRAFT_RULESET = {**RULESET, "version": "rs-2026-12-draft",
                 "effective_from": "2026-12-01T00:00:00+00:00"}


@dataclass
class Owned:
    """What belongs to one party: ids, its bank mask and account number, the amounts that
    are its business alone (only ever shown to it or to platform staff)."""

    party_id: str
    orders: list[str] = field(default_factory=list)        # orders only this party is in
    payouts: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    bank_mask: str = ""
    account_number: str = ""
    amounts: set[int] = field(default_factory=set)
    username: str = ""
    key_prefix: str = ""
    ruleset_version: str = ""
    webhook_subscription: str = ""   # platform-wide: the same for both parties
    webhook_delivery: str = ""       # a delivery of an event about this party
    adjustment: str = ""             # a pending manual adjustment of this party's balance

    def secret_ids(self) -> list[str]:
        return [*self.orders, *self.payouts, *self.statements, self.bank_mask]


@dataclass
class Facts:
    """Everything a world was built with; the same for every copy of the template."""

    users: dict[str, str]               # principal -> username
    passwords: dict[str, str]           # principal -> password
    keys: dict[str, str]                # principal -> API key (role key, no scopes)
    key_prefixes: dict[str, str]
    tokens: dict[str, str]              # principal -> session token
    owned: dict[str, Owned]             # PARTY_A / PARTY_B -> what it owns
    shared_order: str                   # an order both A and B have a share in
    supplier_order: str                 # an order with s1, l1 and a1 in it
    webhook_secret: str = ""


@dataclass
class World:
    """A running app over its own copy of the populated database."""

    ctx: Context
    app: Any
    client: TestClient
    clock: FakeClock
    db_path: Path
    facts: Facts

    @property
    def a(self) -> Owned:
        return self.facts.owned[PARTY_A]

    @property
    def b(self) -> Owned:
        return self.facts.owned[PARTY_B]

    def headers(self, who: str, via: str = "key") -> dict[str, str]:
        secret = self.facts.keys[who] if via == "key" else self.facts.tokens[who]
        return {"Authorization": f"Bearer {secret}"}

    def call(self, who: str | None, method: str, path: str, *, json: Any = None,
             headers: dict[str, str] | None = None, via: str = "key",
             content: str | None = None) -> httpx.Response:
        sent = dict(headers or {})
        if who is not None:
            sent.update(self.headers(who, via))
        try:
            return self.client.request(method, path, json=json, headers=sent, content=content)
        except Exception as exc:
            exc.add_note(f"while calling {method} {path} as {who}")
            raise

    def principal(self, who: str) -> Principal:
        if who in SCOPED_KEYS:
            role, party, scopes = SCOPED_KEYS[who]
            return Principal(f"key:{self.facts.key_prefixes[who]}", role, party, scopes)
        role, party = PRINCIPALS[who]
        return Principal(f"key:{self.facts.key_prefixes[who]}", role, party)

    def secrets(self) -> dict[str, str]:
        """Every secret of the world, by a name that says what it is."""
        found: dict[str, str] = {}
        for party, number in BANK_ACCOUNTS.items():
            found[f"account number of {party}"] = number
            found[f"account number of {party} (digits)"] = number.replace(" ", "")
            # the part that masking hides, long enough not to occur by chance
            found[f"hidden digits of {party}"] = number.replace(" ", "")[:12]
        for who, password in self.facts.passwords.items():
            found[f"password of {who}"] = password
        for who, key in self.facts.keys.items():
            found[f"API key of {who}"] = key
            found[f"secret part of the API key of {who}"] = key.split("_", 2)[2]
        for who, token in self.facts.tokens.items():
            found[f"session token of {who}"] = token
        for party, (registration, identity) in KYC.items():
            found[f"registration number of {party}"] = registration
            found[f"identity document number of {party}"] = identity
        if self.facts.webhook_secret:
            found["webhook signing secret"] = self.facts.webhook_secret
        for number in SAMPLE_ACCOUNTS:
            found[f"account number {number} sent by a test"] = number
            found[f"account number {number} sent by a test (digits)"] = number.replace(" ", "")
        for number in SAMPLE_KYC_NUMBERS:
            found[f"identity number {number} sent by a test"] = number
        return found

    def close(self) -> None:
        self.client.close()
        self.ctx.engine.dispose()


# -- routes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """One operation of the app as the router serves it (prefixes applied)."""

    path: str
    methods: tuple[str, ...]
    name: str
    dependant: Any

    def __str__(self) -> str:
        return f"{'|'.join(self.methods)} {self.path}"


def api_routes(app: Any) -> list[Route]:
    """Every API route the app serves (not the OpenAPI and docs pages)."""
    try:  # FastAPI keeps included routers apart and resolves their routes lazily
        from fastapi.routing import iter_route_contexts
        contexts: Iterable[Any] = iter_route_contexts(app.routes)
        pairs = [(rc.original_route, rc) for rc in contexts]
    except ImportError:  # older FastAPI: the routes are copied into the app
        pairs = [(r, r) for r in app.routes]
    return [Route(effective.path, tuple(sorted(m for m in effective.methods if m != "HEAD")),
                  effective.name, effective.dependant)
            for original, effective in pairs if isinstance(original, APIRoute)]


def route_permissions(route: Route) -> tuple[Permission, ...] | None:
    """The permissions the route's ``require(...)`` dependency lets through (any of them), or
    ``None`` when no dependency of the route declares any."""
    found: list[Permission] = []

    def walk(dependant: Any) -> None:
        for dep in dependant.dependencies:
            perms = getattr(dep.call, "permissions", None)
            if perms is not None:
                found.extend(perms)
            walk(dep)

    walk(route.dependant)
    return tuple(dict.fromkeys(found)) if found else None


def path_params(route: Route) -> list[str]:
    return re.findall(r"{([^}:]+)(?::[^}]*)?}", route.path)


# -- amounts in JSON -------------------------------------------------------------------------

def numbers_in(text: str) -> set[int]:
    """Every whole number written in ``text``, without its sign."""
    return {int(n) for n in re.findall(r"(?<![0-9.])[0-9]+(?![0-9.])", text)}


def leaks(text: str, forbidden_ids: Iterable[str], forbidden_amounts: set[int],
          allowed: Iterable[str] = ()) -> list[str]:
    """What of ``forbidden_*`` appears in ``text`` (ids in ``allowed`` may)."""
    allowed = set(allowed)
    found = [f"id {i!r}" for i in forbidden_ids if i and i not in allowed and i in text]
    found += [f"amount {n}" for n in sorted(numbers_in(text) & forbidden_amounts)]
    return found


# -- building ----------------------------------------------------------------------------------

def _order(order_id: str, lines: list[tuple[str, int, str | None]], *, when: datetime,
           shipping: int = 0, affiliate: str | None = None) -> Order:
    return Order(order_id, "CNY",
                 tuple(OrderLine(str(i + 1), f"SKU-{order_id}-{i}", "electronics/phones", m, 1,
                                 price, supplier) for i, (m, price, supplier) in enumerate(lines)),
                 when, Shipping(shipping, "l1") if shipping else None, affiliate_id=affiliate)


def _populate(ctx: Context, clock: FakeClock) -> Facts:
    for party in MARKETPLACE:
        bank = BankDetails(party.name, BANK_ACCOUNTS[party.party_id], "ICBC", "ICBKCNBJ", "CN") \
            if party.settles else None
        register_party(ctx, party, bank, verified=True)
    hook = webhooks.create_subscription(ctx, "https://hooks.example.test/splitledger", ["*"])
    for party_id, (registration, identity) in KYC.items():
        submit = dataclasses.replace(ctx, actor=f"user:{party_id}-owner")
        kyc.submit_kyc(submit, party_id, KycDetails(
            EntityType.COMPANY, f"{party_id} Trading Co., Ltd.", "CN",
            IdDocumentType.NATIONAL_ID, identity, registration, "Zhang San"))
        kyc.review_kyc(dataclasses.replace(ctx, actor="user:kyc-reviewer"), party_id,
                       ReviewDecision.VERIFY)
    draft_ruleset(ctx, ruleset_from_data(RULESET), by="rita")
    approve_ruleset(ctx, RULESET["version"], by="finn")
    draft_ruleset(ctx, ruleset_from_data(DRAFT_RULESET), by="rita")

    a, b = Owned(PARTY_A), Owned(PARTY_B)
    a.ruleset_version = b.ruleset_version = RULESET["version"]
    captures = [
        (a, _order("ord-A-1", [("m1", 731_300, None)], when=START)),
        (a, _order("ord-A-2", [("m1", 418_700, None)], when=START)),
        (b, _order("ord-B-1", [("m2", 259_900, None)], when=START)),
        (b, _order("ord-B-2", [("m2", 163_300, None)], when=START)),
        (None, _order("ord-AB-1", [("m1", 97_100, None), ("m2", 55_500, None)], when=START)),
        (None, _order("ord-S-1", [("m2", 36_800, "s1")], when=START, shipping=1_900,
                      affiliate="a1")),
    ]
    for owner, o in captures:
        order_service.capture_order(ctx, o)
        if owner is not None:
            owner.orders.append(o.order_id)
    for order_id in ("ord-A-1", "ord-A-2", "ord-B-1", "ord-AB-1", "ord-S-1"):
        order_service.confirm_order(ctx, order_id)
    clock.set(NOW)
    settlement.run_settlement(ctx, SETTLED_UNTIL)
    order_service.capture_order(ctx, _order("ord-A-3", [("m1", 512_300, None)], when=NOW))
    a.orders.append("ord-A-3")
    order_service.refund_order(ctx, "ord-A-2", 100_037, reason="damaged in transit")
    order_service.chargeback_order(ctx, "ord-B-1", 20_011, reason="card dispute")
    for owner in (a, b):
        owner.adjustment = adjustments.request_adjustment(
            dataclasses.replace(ctx, actor="user:requester"), owner.party_id, "CNY", 1_500,
            "goodwill for a late delivery")["adjustment_id"]

    with ctx.uow() as uow:
        conn = uow.conn
        for owner in (a, b):
            pid = owner.party_id
            owner.payouts = list(conn.execute(select(t.payouts.c.payout_id).where(
                t.payouts.c.party_id == pid)).scalars())
            owner.statements = list(conn.execute(select(t.statements.c.statement_id).where(
                t.statements.c.party_id == pid)).scalars())
            owner.bank_mask = uow.repo.party_bank_row(pid).bank_masked
            owner.account_number = BANK_ACCOUNTS[pid]
            owner.amounts |= set(conn.execute(select(t.split_allocations.c.amount_minor).where(
                t.split_allocations.c.party_id == pid)).scalars())
            owner.amounts |= set(conn.execute(select(t.orders.c.captured_minor).where(
                t.orders.c.order_id.in_(owner.orders))).scalars())
            owner.amounts |= set(conn.execute(select(t.reversals.c.amount_minor).where(
                t.reversals.c.order_id.in_(owner.orders))).scalars())
            owner.amounts |= set(conn.execute(select(t.payouts.c.amount_minor).where(
                t.payouts.c.party_id == pid)).scalars())
            for row in conn.execute(select(t.statements).where(t.statements.c.party_id == pid)):
                owner.amounts |= {row.opening_minor, row.closing_minor, row.payout_minor}
                owner.amounts |= {line["amount_minor"] for line in row.lines}
            owner.amounts = {abs(n) for n in owner.amounts if abs(n) >= 1_000}
        payouts = {row.party_id: row.payout_id for row in conn.execute(select(t.payouts))}
        for owner in (a, b):
            owner.webhook_subscription = hook["subscription_id"]
            owner.webhook_delivery = next(
                row.delivery_id for row in conn.execute(
                    select(t.webhook_deliveries.c.delivery_id, t.webhook_events.c.payload)
                    .join(t.webhook_events,
                          t.webhook_events.c.event_id == t.webhook_deliveries.c.event_id)
                    .order_by(t.webhook_deliveries.c.created_at))
                if row.payload.get("party_id") == owner.party_id)
    if a.amounts & b.amounts or not (a.payouts and b.payouts and a.statements):
        raise AssertionError(f"badly built world: {a} {b}")
    # party B's payout paid; party A's waits for approval (above the threshold)
    settlement.mark_payout_paid(ctx, payouts[PARTY_B])

    users, passwords, keys, prefixes = {}, {}, {}, {}
    for who, (role, party) in PRINCIPALS.items():
        users[who] = f"{who.replace('_', '-')}.user"
        passwords[who] = f"pw-{who}-Tr0ub4dor-{len(who) * 7919}"
        access.create_user(ctx, users[who], passwords[who], role, party)
        made = access.create_api_key(ctx, f"{who} integration", role, party)
        keys[who], prefixes[who] = made["key"], made["prefix"]
    for who, (role, party, scopes) in SCOPED_KEYS.items():
        made = access.create_api_key(ctx, f"{who} integration", role, party, sorted(scopes))
        keys[who], prefixes[who] = made["key"], made["prefix"]
    a.username, a.key_prefix = users["merchant_a"], prefixes["merchant_a"]
    b.username, b.key_prefix = users["merchant_b"], prefixes["merchant_b"]
    return Facts(users, passwords, keys, prefixes, {}, {PARTY_A: a, PARTY_B: b},
                 "ord-AB-1", "ord-S-1", hook["secret"])


@dataclass
class _Template:
    path: Path
    facts: Facts


_template: _Template | None = None


def _build_template() -> _Template:
    global _template
    if _template is not None:
        return _template
    folder = Path(tempfile.mkdtemp(prefix="splitledger-api-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "template.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    clock = FakeClock()
    ctx = make_context(url, clock, **SETTINGS)
    facts = _populate(ctx, clock)
    app = create_app(ctx)
    with TestClient(app) as client:
        for who in PRINCIPALS:
            answer = client.post("/v1/auth/login", json={"username": facts.users[who],
                                                         "password": facts.passwords[who]})
            answer.raise_for_status()
            facts.tokens[who] = answer.json()["token"]
    ctx.engine.dispose()
    _template = _Template(path, facts)
    return _template


def world(folder: Path, *, raise_server_exceptions: bool = True) -> World:
    """A fresh copy of the populated marketplace in ``folder``, with an app in front of it."""
    template = _build_template()
    path = folder / "world.db"
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(template.path) + suffix)
        if source.exists():
            shutil.copyfile(source, str(path) + suffix)
    clock = FakeClock(NOW)
    ctx = make_context(f"sqlite:///{path}", clock, **SETTINGS)
    app = create_app(ctx)
    client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
    return World(ctx, app, client, clock, path, template.facts)


def row_counts(ctx: Context) -> dict[str, int]:
    """Rows per table, and the sum of every balance: what a write would change."""
    from sqlalchemy import func
    counts: dict[str, int] = {}
    with ctx.uow() as uow:
        for table in t.metadata.sorted_tables:
            counts[table.name] = uow.conn.execute(
                select(func.count()).select_from(table)).scalar_one()
        counts["sum of |balances|"] = uow.conn.execute(
            select(func.coalesce(func.sum(func.abs(t.accounts.c.balance_minor)), 0))
        ).scalar_one()
    return counts


# -- request bodies --------------------------------------------------------------------------

# Bodies that mean something for this world; any other route gets one made from its schema.
SAMPLE_BODIES: dict[str, Any] = {
    "PUT /v1/parties/{party_id}/bank-details": {
        "holder_name": "Mallory Changed", "account_number": "6231 7702 9958 4413",
        "bank_name": "CCB", "bank_code": "PCBCCNBJ", "country": "CN"},
    "POST /v1/orders/{order_id}/refunds": {"amount_minor": 1_013, "reason": "goodwill"},
    "POST /v1/orders/{order_id}/chargebacks": {"amount_minor": 1_019, "reason": "dispute"},
    "POST /v1/settlement-runs": {"period_end": "2026-11-09T00:30:00Z", "ignore_schedule": True},
    "PUT /v1/parties/{party_id}/kyc": {
        "entity_type": "company", "legal_name": "Sample Trading Ltd", "country": "CN",
        "id_document_type": "passport", "id_document_number": "E71940338",
        "registration_number": "91110105MA7XK2LL5B", "legal_representative": "Wang Wu"},
    "POST /v1/payouts/{payout_id}/failed": {"reason": "account closed"},
    "POST /v1/parties/{party_id}/kyc/review": {"decision": "verify", "note": "documents seen"},
    "POST /v1/webhooks/subscriptions": {"url": "https://hooks.example.test/other",
                                        "event_types": ["*"], "description": "sample"},
    "POST /v1/orders": {"order_id": "ord-sample-1", "currency": "CNY",
                        "captured_at": "2026-11-09T00:30:00+00:00",
                        "lines": [{"line_id": "1", "sku": "SKU-S", "category": "books",
                                   "merchant_id": "m2", "quantity": 1,
                                   "unit_price_minor": 12_345}]},
}
# Account numbers the sample bodies send (the secrets tests look for them too).
SAMPLE_ACCOUNTS = ("6231 7702 9958 4413",)
SAMPLE_KYC_NUMBERS = ("E71940338", "91110105MA7XK2LL5B")


def sample_body(openapi: dict[str, Any], method: str, path: str) -> Any:
    """A valid request body for the operation, or ``None`` when it takes none."""
    key = f"{method} {path}"
    if key in SAMPLE_BODIES:
        return SAMPLE_BODIES[key]
    operation = openapi["paths"][path][method.lower()]
    content = (operation.get("requestBody") or {}).get("content", {})
    if "application/json" not in content:
        return None
    return _instance(openapi, content["application/json"]["schema"])


def _instance(openapi: dict[str, Any], schema: dict[str, Any]) -> Any:
    """The simplest instance of a JSON schema (what Pydantic and FastAPI emit)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return _instance(openapi, openapi["components"]["schemas"][name])
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            options = [o for o in schema[combinator] if o.get("type") != "null"]
            return _instance(openapi, options[0]) if options else None
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _instance(openapi, props[name]) for name in schema.get("required", [])}
    if kind == "array":
        return [_instance(openapi, schema.get("items", {}))
                for _ in range(schema.get("minItems", 0))]
    if kind == "integer" or kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1
                         if "exclusiveMinimum" in schema else 1)
        return int(low)
    if kind == "boolean":
        return False
    if kind == "string":
        if schema.get("format") == "date-time":
            return SETTLED_UNTIL.isoformat()
        size = max(schema.get("minLength", 1), 1)
        for candidate in ("x" * size, "X" * size, "1" * size, "x1" * size):
            if "pattern" not in schema or re.search(schema["pattern"], candidate):
                return candidate[:max(size, schema.get("maxLength", size))]
        return "x" * size
    return None
