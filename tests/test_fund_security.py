"""Fund security on SQLite and PostgreSQL: party verification (KYC), bank details cooling-off,
four-eyes payouts, holds, and key rotation."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from splitledger.api.app import create_app
from splitledger.config import Settings
from splitledger.domain.access import Role
from splitledger.domain.bank import BankDetails
from splitledger.domain.fundsec import bank_stability, needs_payout_approval
from splitledger.domain.kyc import (
    EntityType,
    IdDocumentType,
    KycDetails,
    ReviewDecision,
    mask_name,
    mask_number,
)
from splitledger.domain.ledger import Purpose, party_account
from splitledger.domain.parties import Party, PartyRole
from splitledger.errors import (
    ApprovalRequired,
    ConfigurationError,
    Conflict,
    InvalidState,
    ValidationError,
)
from splitledger.services import access, audit, fundsec, keys, kyc, orders, settlement, webhooks
from splitledger.services.context import Context
from splitledger.services.parties import register_party, reveal_bank_details, set_bank_details
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from splitledger.store.db import make_engine
from splitledger.store.migrate import upgrade
from tests.support import TEST_KEYS, make_context, order, seed_marketplace

K2 = "k2:" + base64.urlsafe_b64encode(b"another test key, 32 bytes long!").decode().rstrip("=")
PERIOD_1 = datetime(2026, 11, 9, tzinfo=UTC)    # Mondays: weekly periods close
PERIOD_2 = datetime(2026, 11, 16, tzinfo=UTC)
PERIOD_3 = datetime(2026, 11, 23, tzinfo=UTC)
ID_NUMBER = "310104198805172638"
LICENCE = "91310115MA1H7QXC3K"
PERSON = "Zhang Sanfeng"
ACCOUNT = "6222 0277 1234 9876"


def as_(ctx: Context, actor: str) -> Context:
    return dataclasses.replace(ctx, actor=actor)


def owed(ctx: Context, party_id: str, purpose: Purpose, currency: str = "CNY") -> int:
    with ctx.uow() as uow:
        return -uow.repo.balance(party_account(party_id, purpose, currency))


def identity(entity: EntityType = EntityType.COMPANY) -> KycDetails:
    return KycDetails(entity, "Shanghai Example Trading Co., Ltd." if entity is
                      EntityType.COMPANY else PERSON, "CN", IdDocumentType.NATIONAL_ID,
                      ID_NUMBER, LICENCE if entity is EntityType.COMPANY else "",
                      PERSON if entity is EntityType.COMPANY else "")


def new_merchant(ctx: Context, party_id: str = "mx", *, verified: bool = False) -> None:
    register_party(as_(ctx, "user:onboarding"), Party(party_id, "Merchant X", PartyRole.MERCHANT),
                   BankDetails(PERSON, ACCOUNT, "ICBC"), verified=verified)


def sale(ctx: Context, order_id: str, merchant: str, price: int) -> None:
    orders.capture_order(ctx, order(order_id, merchant=merchant, price=price, when=ctx.now()))
    orders.confirm_order(ctx, order_id)


def settle(ctx: Context, clock, period_end: datetime, **kwargs) -> dict:  # type: ignore[no-untyped-def]
    clock.set(period_end + timedelta(hours=1))
    settlement.run_settlement(ctx, period_end, **kwargs)
    with ctx.uow() as uow:
        rows = uow.conn.execute(select(t.statements).where(
            t.statements.c.period_end == period_end)).all()
    return {row.party_id: row for row in rows}


def payouts_of(ctx: Context, party_id: str) -> list:  # type: ignore[type-arg]
    with ctx.uow() as uow:
        return uow.conn.execute(select(t.payouts).where(t.payouts.c.party_id == party_id)
                                .order_by(t.payouts.c.created_at)).all()


def actions(ctx: Context, object_id: str) -> list[str]:
    return [r["action"] for r in audit.list_records(ctx, object_id=object_id, limit=1000)]


# -- pure rules ---------------------------------------------------------------------------------

def test_masking_shows_initials_and_last_characters_only():
    assert mask_number("310104198805172638") == "****2638"
    assert mask_number("AB-123") == "****23"
    assert mask_name("Zhang San") == "Z**** S**"
    assert mask_name("张三") == "张*"
    company = identity().masked()
    assert company["legal_name"] == "Shanghai Example Trading Co., Ltd."  # a company's name
    assert company["legal_representative"] == "Z**** S******"
    person = identity(EntityType.INDIVIDUAL).masked()
    assert person["legal_name"] == "Z**** S******"
    assert ID_NUMBER not in str(person) and LICENCE not in str(company)


def test_identity_details_are_validated():
    with pytest.raises(ValidationError, match="registration"):
        KycDetails(EntityType.COMPANY, "Co", "CN", IdDocumentType.NATIONAL_ID, ID_NUMBER)
    with pytest.raises(ValidationError, match="country"):
        KycDetails(EntityType.INDIVIDUAL, "A B", "China", IdDocumentType.PASSPORT, "E1234567")
    with pytest.raises(ValidationError, match="document"):
        KycDetails(EntityType.INDIVIDUAL, "A B", "CN", IdDocumentType.PASSPORT, "#!")


def test_cooling_off_and_thresholds():
    changed = datetime(2026, 11, 2, 9, tzinfo=UTC)
    day = timedelta(hours=24)
    assert not bank_stability(changed, False, changed + timedelta(hours=23), day).payable
    assert bank_stability(changed, False, changed + day, day).payable
    assert bank_stability(changed, True, changed, day).payable
    assert not needs_payout_approval(5_000, "CNY", {"CNY": 5_000})  # above, not at
    assert needs_payout_approval(5_001, "CNY", {"CNY": 5_000})
    assert not needs_payout_approval(10**9, "USD", {"CNY": 5_000})


# -- verification -------------------------------------------------------------------------------

def test_a_new_party_is_pending_and_gets_its_statement_but_no_payout(ctx, clock):
    seed_marketplace(ctx)
    new_merchant(ctx)
    assert kyc.get_verification(ctx, "mx")["status"] == "pending"
    sale(ctx, "o-1", "mx", 10_000)
    statements = settle(ctx, clock, PERIOD_1)
    assert statements["mx"].payout_minor == 0
    assert statements["mx"].carried_minor == statements["mx"].closing_minor == 9_500
    assert "verification is pending" in statements["mx"].note
    assert payouts_of(ctx, "mx") == []

    # Submitted by onboarding staff, verified by a second person: paid next time.
    kyc.submit_kyc(as_(ctx, "user:onboarding"), "mx", identity())
    with pytest.raises(ApprovalRequired):
        kyc.review_kyc(as_(ctx, "user:onboarding"), "mx", ReviewDecision.VERIFY)
    view = kyc.review_kyc(as_(ctx, "user:risk"), "mx", ReviewDecision.VERIFY, "licence checked")
    assert view["status"] == "verified"
    assert (view["reviewed_by"], view["submitted_by"]) == ("user:risk", "user:onboarding")
    assert view["reviewed_at"] == clock.now.isoformat()
    statements = settle(ctx, clock, PERIOD_2)
    assert statements["mx"].payout_minor == 9_500
    assert [p.status for p in payouts_of(ctx, "mx")] == ["in_transit"]
    assert actions(ctx, "mx")[-2:] == ["party.kyc_submit", "party.kyc_verify"]
    assert verify_ledger(ctx).ok


def test_review_decisions_follow_the_status_rules(ctx):
    seed_marketplace(ctx)
    new_merchant(ctx)
    risk = as_(ctx, "user:risk")
    with pytest.raises(InvalidState, match="no identity"):
        kyc.review_kyc(risk, "mx", ReviewDecision.VERIFY)
    with pytest.raises(InvalidState):
        kyc.review_kyc(risk, "mx", ReviewDecision.SUSPEND, "fraud")   # not verified yet
    kyc.submit_kyc(as_(ctx, "user:mx-owner"), "mx", identity())
    with pytest.raises(ValidationError, match="note"):
        kyc.review_kyc(risk, "mx", ReviewDecision.REJECT)
    assert kyc.review_kyc(risk, "mx", ReviewDecision.REJECT, "blurred licence")["status"] \
        == "rejected"
    with pytest.raises(InvalidState):
        kyc.review_kyc(risk, "mx", ReviewDecision.VERIFY)              # submit again first
    assert kyc.submit_kyc(as_(ctx, "user:mx-owner"), "mx", identity())["status"] == "pending"
    assert kyc.review_kyc(risk, "mx", ReviewDecision.VERIFY)["status"] == "verified"
    assert kyc.review_kyc(risk, "mx", ReviewDecision.SUSPEND, "dispute")["status"] \
        == "suspended"
    # A suspended party cannot lift its own suspension by submitting again.
    assert kyc.submit_kyc(as_(ctx, "user:mx-owner"), "mx", identity())["status"] == "suspended"
    assert kyc.review_kyc(risk, "mx", ReviewDecision.VERIFY)["status"] == "verified"
    assert actions(ctx, "mx").count("party.kyc_suspend") == 1


def _every_stored_string(ctx: Context) -> str:
    found = []
    with ctx.engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                for value in row:
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    if isinstance(value, bytes):
                        found += [value.decode("latin-1"), value.hex()]
                    elif value is not None:
                        found.append(str(value))
    return "\n".join(found)


def test_identity_is_stored_encrypted_and_shown_masked(ctx):
    seed_marketplace(ctx)
    new_merchant(ctx)
    details = identity(EntityType.INDIVIDUAL)
    view = kyc.submit_kyc(as_(ctx, "user:mx-owner"), "mx", details)
    assert view["details"]["id_document_number"] == "****2638"
    assert view["details"]["legal_name"] == "Z**** S******"
    stored = _every_stored_string(ctx)
    for secret in (ID_NUMBER, ID_NUMBER[:12], "Sanfeng"):
        assert secret not in stored, f"{secret} stored in clear"
    with ctx.engine.connect() as conn:
        key_id = conn.execute(text("SELECT details_key_id FROM party_verifications "
                                   "WHERE party_id = 'mx'")).scalar_one()
    assert key_id == "k1"
    assert kyc.reveal_kyc(ctx, "mx") == details
    # The ciphertext is bound to its party: copied onto another party, it does not decrypt.
    kyc.submit_kyc(as_(ctx, "user:m2-owner"), "m2", identity())
    with ctx.engine.begin() as conn:
        conn.execute(text("UPDATE party_verifications SET details_ciphertext = (SELECT "
                          "details_ciphertext FROM party_verifications WHERE party_id = 'mx') "
                          "WHERE party_id = 'm2'"))
    with pytest.raises(Exception, match="tampered"):
        kyc.reveal_kyc(ctx, "m2")


# -- holds --------------------------------------------------------------------------------------

def test_suspension_holds_unsent_payouts_and_reinstatement_releases_them(ctx, clock):
    seed_marketplace(ctx)
    sale(ctx, "o-1", "m1", 10_000)
    settle(ctx, clock, PERIOD_1)
    (payout,) = payouts_of(ctx, "m1")
    assert payout.status == "in_transit"
    in_transit = owed(ctx, "m1", Purpose.IN_TRANSIT)

    kyc.review_kyc(as_(ctx, "user:risk"), "m1", ReviewDecision.SUSPEND, "chargeback ring")
    (payout,) = payouts_of(ctx, "m1")
    assert payout.status == "held"
    assert owed(ctx, "m1", Purpose.IN_TRANSIT) == in_transit  # the money stays in transit
    with pytest.raises(InvalidState, match="held"):
        settlement.mark_payout_paid(ctx, payout.payout_id)
    with pytest.raises(InvalidState):
        settlement.mark_payout_failed(ctx, payout.payout_id, "returned")
    assert "payout.hold" in actions(ctx, payout.payout_id)

    # While suspended, settlement pays nothing and says why.
    sale(ctx, "o-2", "m1", 20_000)
    statements = settle(ctx, clock, PERIOD_2)
    assert statements["m1"].payout_minor == 0 and "suspended" in statements["m1"].note
    assert len(payouts_of(ctx, "m1")) == 1

    kyc.review_kyc(as_(ctx, "user:risk"), "m1", ReviewDecision.VERIFY, "cleared")
    (payout,) = payouts_of(ctx, "m1")
    assert payout.status == "in_transit"
    assert settlement.mark_payout_paid(ctx, payout.payout_id)["changed"]
    assert fundsec.payout_controls(ctx, payout.payout_id)["held_from"] is None
    statements = settle(ctx, clock, PERIOD_3)
    assert statements["m1"].payout_minor == 19_000
    assert verify_ledger(ctx).ok


def test_a_held_payout_can_be_rejected_back_to_available(ctx, clock):
    seed_marketplace(ctx)
    sale(ctx, "o-1", "m1", 10_000)
    settle(ctx, clock, PERIOD_1)
    (payout,) = payouts_of(ctx, "m1")
    kyc.review_kyc(as_(ctx, "user:risk"), "m1", ReviewDecision.SUSPEND, "fraud")
    kyc.review_kyc(as_(ctx, "user:risk"), "m1", ReviewDecision.REJECT, "confirmed fraud")
    assert payouts_of(ctx, "m1")[0].status == "held"  # still held, not released
    fundsec.reject_payout(as_(ctx, "user:risk"), payout.payout_id, "party rejected")
    assert payouts_of(ctx, "m1")[0].status == "rejected"
    assert owed(ctx, "m1", Purpose.IN_TRANSIT) == 0
    assert owed(ctx, "m1", Purpose.AVAILABLE) == 9_500
    assert verify_ledger(ctx).ok


# -- bank details cooling-off -------------------------------------------------------------------

def test_changed_bank_details_wait_for_the_cooling_off_or_a_second_person(ctx, clock):
    seed_marketplace(ctx)
    sale(ctx, "o-1", "m1", 10_000)
    clock.set(PERIOD_1 - timedelta(hours=3))
    owner = as_(ctx, "user:m1-owner")
    set_bank_details(owner, "m1", BankDetails("Merchant One", ACCOUNT, "BOC"))
    status = fundsec.bank_status(ctx, "m1")
    assert (status["changed_by"], status["payable"]) == ("user:m1-owner", False)
    assert status["cooling_off_until"] == (PERIOD_1 + timedelta(hours=21)).isoformat()

    statements = settle(ctx, clock, PERIOD_1)   # one hour into the period's settlement
    assert statements["m1"].payout_minor == 0
    assert "cooling-off" in statements["m1"].note
    assert owed(ctx, "m1", Purpose.AVAILABLE) == 9_500

    with pytest.raises(ApprovalRequired):
        fundsec.approve_bank_details(owner, "m1")
    with pytest.raises(Conflict):
        fundsec.approve_bank_details(as_(ctx, "user:risk"), "m1",
                                     change_id=status["change_id"] - 1)
    approved = fundsec.approve_bank_details(as_(ctx, "user:risk"), "m1",
                                            change_id=status["change_id"])
    assert approved["changed"] and approved["approved_by"] == "user:risk" and approved["payable"]
    assert not fundsec.approve_bank_details(as_(ctx, "user:finance"), "m1")["changed"]
    assert "party.bank_details_approve" in actions(ctx, "m1")

    statements = settle(ctx, clock, PERIOD_2)
    assert statements["m1"].payout_minor == 9_500
    assert payouts_of(ctx, "m1")[0].bank_masked == "BOC ****9876"

    # A new change needs approval (or time) again; after the cooling-off it is paid anyway.
    set_bank_details(owner, "m1", BankDetails("Merchant One", "6222 0277 1234 0001", "ABC"))
    assert not fundsec.bank_status(ctx, "m1")["payable"]
    sale(ctx, "o-2", "m1", 20_000)
    clock.advance(hours=24)
    assert fundsec.bank_status(ctx, "m1")["payable"]
    assert settle(ctx, clock, PERIOD_3)["m1"].payout_minor == 19_000
    assert verify_ledger(ctx).ok


def test_the_cooling_off_period_is_configurable(db_url, clock):
    ctx = make_context(db_url, clock, bank_cooling_off_hours=0)
    try:
        seed_marketplace(ctx)
        sale(ctx, "o-1", "m1", 10_000)
        clock.set(PERIOD_1 - timedelta(minutes=5))
        set_bank_details(as_(ctx, "user:m1-owner"), "m1", BankDetails("M1", ACCOUNT))
        assert settle(ctx, clock, PERIOD_1)["m1"].payout_minor == 9_500
    finally:
        ctx.engine.dispose()


# -- four-eyes payouts --------------------------------------------------------------------------

def test_payouts_above_the_threshold_need_a_second_person(db_url, clock):
    ctx = make_context(db_url, clock, payout_approval_thresholds={"CNY": 9_500})
    try:
        seed_marketplace(ctx)
        sale(ctx, "o-1", "m1", 10_001)   # m1 is owed 9_501: above
        sale(ctx, "o-2", "m2", 10_000)   # m2 is owed 9_500: at the threshold, not above
        starter = as_(ctx, "user:finance-1")
        clock.set(PERIOD_1 + timedelta(hours=1))
        settlement.run_settlement(starter, PERIOD_1)
        (big,), (small,) = payouts_of(ctx, "m1"), payouts_of(ctx, "m2")
        assert (big.status, small.status) == ("pending_approval", "in_transit")
        assert owed(ctx, "m1", Purpose.IN_TRANSIT) == 9_501  # reserved, not sendable
        controls = fundsec.payout_controls(ctx, big.payout_id)
        assert controls["started_by"] == "user:finance-1" and controls["needs_approval"]
        assert controls["threshold_minor"] == 9_500

        with pytest.raises(InvalidState):
            settlement.mark_payout_paid(ctx, big.payout_id)   # not sendable yet
        with pytest.raises(ApprovalRequired):
            fundsec.approve_payout(starter, big.payout_id)
        result = fundsec.approve_payout(as_(ctx, "user:risk-1"), big.payout_id)
        assert result == {"payout_id": big.payout_id, "status": "in_transit", "changed": True}
        assert not fundsec.approve_payout(as_(ctx, "user:risk-1"), big.payout_id)["changed"]
        with pytest.raises(InvalidState):
            fundsec.reject_payout(as_(ctx, "user:risk-1"), big.payout_id, "too late")
        assert settlement.mark_payout_paid(ctx, big.payout_id)["changed"]
        assert actions(ctx, big.payout_id) == ["payout.approve", "payout.paid"]
        assert verify_ledger(ctx).ok
    finally:
        ctx.engine.dispose()


def test_a_rejected_payout_returns_to_available_and_is_settled_again(db_url, clock):
    ctx = make_context(db_url, clock, payout_approval_thresholds={"CNY": 1_000})
    try:
        seed_marketplace(ctx)
        sale(ctx, "o-1", "m1", 10_000)
        settle(ctx, clock, PERIOD_1)
        (payout,) = payouts_of(ctx, "m1")
        with pytest.raises(ValidationError):
            fundsec.reject_payout(ctx, payout.payout_id, " ")
        # Rejecting is the safe direction: the starter of the run may do it.
        result = fundsec.reject_payout(ctx, payout.payout_id, "unexpected amount")
        assert result["status"] == "rejected"
        assert owed(ctx, "m1", Purpose.IN_TRANSIT) == 0
        assert owed(ctx, "m1", Purpose.AVAILABLE) == 9_500
        assert not fundsec.reject_payout(ctx, payout.payout_id, "again")["changed"]
        with pytest.raises(InvalidState):
            fundsec.approve_payout(as_(ctx, "user:risk"), payout.payout_id)
        assert actions(ctx, payout.payout_id) == ["payout.reject"]
        statements = settle(ctx, clock, PERIOD_2)
        assert statements["m1"].payout_minor == 9_500   # settled again, awaiting approval
        assert [p.status for p in payouts_of(ctx, "m1")] == ["rejected", "pending_approval"]
        # A suspension holds it too; reinstatement puts it back where it was.
        kyc.review_kyc(as_(ctx, "user:risk"), "m1", ReviewDecision.SUSPEND, "check")
        assert payouts_of(ctx, "m1")[1].status == "held"
        kyc.review_kyc(as_(ctx, "user:risk"), "m1", ReviewDecision.VERIFY)
        assert payouts_of(ctx, "m1")[1].status == "pending_approval"
        report = verify_ledger(ctx)
        assert report.ok, report.problems
    finally:
        ctx.engine.dispose()


# -- key rotation -------------------------------------------------------------------------------

def keyring(ctx: Context, db_url: str, spec: str, active: str | None) -> Context:
    return Context(ctx.engine, Settings(database_url=db_url, encryption_keys=spec,
                                        active_key_id=active), clock=ctx.clock)


def test_reencrypt_moves_every_field_to_the_active_key_and_the_old_key_can_go(ctx, db_url):
    seed_marketplace(ctx)
    new_merchant(ctx)
    kyc.submit_kyc(ctx, "mx", identity())
    hook = webhooks.create_subscription(ctx, "http://127.0.0.1:9/hook", ["*"])
    banks = {p: reveal_bank_details(ctx, p) for p in ("m1", "m2", "mx")}
    with ctx.uow() as uow:
        changed_at = uow.repo.party_bank_row("mx").bank_updated_at

    rotated = keyring(ctx, db_url, f"{TEST_KEYS},{K2}", "k2")
    reports = {r.name: r for r in keys.reencrypt_all(rotated, batch_size=2)}  # several batches
    assert reports["party identity (KYC)"].reencrypted == 1
    assert reports["webhook secrets"].reencrypted == 1
    with ctx.engine.connect() as conn:
        with_bank = conn.execute(text("SELECT count(*) FROM parties "
                                      "WHERE bank_ciphertext IS NOT NULL")).scalar_one()
        key_ids = set(conn.execute(text("SELECT bank_key_id FROM parties WHERE bank_key_id "
                                        "IS NOT NULL")).scalars())
    assert reports["party bank details"].reencrypted == with_bank >= 6
    assert key_ids == {"k2"}
    assert all(r.remaining == 0 and r.skipped == 0 for r in reports.values())
    # Idempotent: nothing left to do.
    again = keys.reencrypt_all(rotated)
    assert sum(r.reencrypted for r in again) == 0
    # The cooling-off clock is not reset by re-encryption.
    with ctx.engine.connect() as conn:
        assert conn.execute(select(t.parties.c.bank_updated_at).where(
            t.parties.c.party_id == "mx")).scalar_one() == changed_at

    only_new = keyring(ctx, db_url, K2, None)
    assert {p: reveal_bank_details(only_new, p) for p in banks} == banks
    assert kyc.reveal_kyc(only_new, "mx") == identity()
    with only_new.uow() as uow:
        row = uow.conn.execute(select(t.webhook_subscriptions)).one()
    secret = only_new.cipher.decrypt(row.secret_key_id, row.secret_ciphertext,
                                     associated=f"webhook:{row.subscription_id}").decode()
    assert secret == hook["secret"]
    # Without the key that sealed them, fields are unreadable, and the error says which key.
    with pytest.raises(ConfigurationError, match="k2"):
        reveal_bank_details(keyring(ctx, db_url, TEST_KEYS, None), "mx")
    assert audit.list_records(ctx, action="keys.reencrypt")


def test_keys_reencrypt_command(sqlite_url, monkeypatch):
    from splitledger.cli.main import app

    monkeypatch.setenv("SPLITLEDGER_ENCRYPTION_KEYS", TEST_KEYS)
    ctx = make_context(sqlite_url)
    seed_marketplace(ctx)
    ctx.engine.dispose()
    monkeypatch.setenv("SPLITLEDGER_ENCRYPTION_KEYS", f"{TEST_KEYS},{K2}")
    monkeypatch.setenv("SPLITLEDGER_ACTIVE_KEY_ID", "k2")
    runner = CliRunner()
    first = runner.invoke(app, ["keys", "reencrypt", "--batch-size", "3", "-d", sqlite_url])
    assert first.exit_code == 0, first.stdout + first.stderr
    assert "party bank details" in first.stdout and "k2" in first.stdout
    second = runner.invoke(app, ["keys", "reencrypt", "-d", sqlite_url])
    assert second.exit_code == 0
    ctx = Context(make_engine(sqlite_url), Settings(database_url=sqlite_url,
                                                    encryption_keys=K2))
    try:
        assert reveal_bank_details(ctx, "m1") is not None
    finally:
        ctx.engine.dispose()


# -- migration ----------------------------------------------------------------------------------

def test_parties_registered_before_verification_existed_stay_payable(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO parties (party_id, name, role, currencies, payout_frequency, "
                "payout_delay_days, min_payout, created_at) VALUES ('old', 'Old Shop', "
                "'merchant', '[\"CNY\"]', 'weekly', 1, '{}', '2026-01-01 00:00:00.000000')"))
        upgrade(engine)
        ctx = Context(engine, Settings(database_url=str(engine.url), encryption_keys=TEST_KEYS))
        view = kyc.get_verification(ctx, "old")
        assert (view["status"], view["reviewed_by"]) == ("verified", "migration:0004")
    finally:
        engine.dispose()


def test_the_migrations_create_the_tables_the_code_uses(ctx):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    mine = {"party_verifications", "bank_detail_changes", "payout_controls",
            "webhook_subscriptions", "webhook_events", "webhook_deliveries", "webhook_attempts"}
    with ctx.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), t.metadata)

    def table_of(diff) -> str | None:  # type: ignore[no-untyped-def]
        item = diff[0] if isinstance(diff, list) else diff
        for part in item[1:]:
            name = getattr(part, "name", None) if not isinstance(part, str) else part
            table = getattr(part, "table", None)
            if table is not None:
                return table.name
            if name in mine:
                return name
        return None

    assert [d for d in diffs if table_of(d) in mine] == []


# -- over HTTP ----------------------------------------------------------------------------------

@pytest.fixture
def api(ctx):  # type: ignore[no-untyped-def]
    seed_marketplace(ctx)
    new_merchant(ctx)
    tokens = {}
    for name, role, party in [("admin", Role.ADMIN, None), ("risk", Role.RISK, None),
                              ("finance", Role.FINANCE, None), ("support", Role.SUPPORT, None),
                              ("owner", Role.MERCHANT, "mx"), ("other", Role.MERCHANT, "m1")]:
        key = access.create_api_key(ctx, name, role, party)
        tokens[name] = {"Authorization": f"Bearer {key['key']}"}
    return TestClient(create_app(ctx)), tokens


KYC_BODY = {"entity_type": "company", "legal_name": "Merchant X Ltd", "country": "CN",
            "id_document_type": "national_id", "id_document_number": ID_NUMBER,
            "registration_number": LICENCE, "legal_representative": PERSON}


def test_kyc_and_bank_approval_over_http(api, ctx):
    client, who = api
    url = "/v1/parties/mx/kyc"
    assert client.get(url, headers=who["other"]).status_code == 404       # another party
    assert client.put(url, json=KYC_BODY, headers=who["other"]).status_code == 404
    assert client.put(url, json=KYC_BODY, headers=who["support"]).status_code == 403
    submitted = client.put(url, json=KYC_BODY, headers=who["owner"])     # the party itself
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert body["status"] == "pending" and body["details"]["id_document_number"] == "****2638"
    assert ID_NUMBER not in submitted.text and LICENCE not in submitted.text

    review = {"decision": "verify", "note": "ok"}
    assert client.post(f"{url}/review", json=review, headers=who["finance"]).status_code == 403
    verified = client.post(f"{url}/review", json=review,
                           headers=who["risk"] | {"Idempotency-Key": "rv-1"})
    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "verified"
    again = client.post(f"{url}/review", json=review,
                        headers=who["risk"] | {"Idempotency-Key": "rv-1"})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert client.get(url, headers=who["owner"]).json()["reviewed_by"].startswith("key:")

    bank = client.get("/v1/parties/mx/bank-details", headers=who["owner"]).json()
    assert bank["bank_masked"] == "ICBC ****9876" and bank["payable"] is False
    assert ACCOUNT.replace(" ", "")[:12] not in str(bank)
    approve = "/v1/parties/mx/bank-details/approve"
    assert client.post(approve, json={}, headers=who["owner"]).status_code == 403
    done = client.post(approve, json={"change_id": bank["change_id"]}, headers=who["risk"])
    assert done.status_code == 200, done.text
    assert done.json()["payable"] is True and done.json()["changed"] is True


def test_payout_approval_over_http(api, ctx, clock):
    client, who = api
    ctx.settings.payout_approval_thresholds = {"CNY": 100}
    sale(ctx, "o-1", "m1", 10_000)
    clock.set(PERIOD_1 + timedelta(hours=1))
    settlement.run_settlement(as_(ctx, "user:nightly"), PERIOD_1)
    (payout,) = payouts_of(ctx, "m1")
    url = f"/v1/payouts/{payout.payout_id}"
    controls = client.get(f"{url}/controls", headers=who["other"])   # m1 reads its own
    assert controls.status_code == 200 and controls.json()["status"] == "pending_approval"
    assert client.get(f"{url}/controls", headers=who["owner"]).status_code == 404
    assert client.post(f"{url}/approve", headers=who["support"]).status_code == 403
    approved = client.post(f"{url}/approve", headers=who["risk"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "in_transit"
    assert approved.json()["decided_by"].startswith("key:")
    rejected = client.post(f"{url}/reject", json={"reason": "x"}, headers=who["risk"])
    assert rejected.status_code == 409
    assert rejected.json()["type"].endswith("invalid_state")


def test_the_rail_gets_bank_details_only_for_a_sendable_payout_to_unchanged_details(ctx, clock):
    seed_marketplace(ctx)
    sale(ctx, "o-1", "m1", 10_000)
    before = reveal_bank_details(ctx, "m1")
    settle(ctx, clock, PERIOD_1)
    (payout,) = payouts_of(ctx, "m1")
    assert fundsec.bank_details_for_payout(ctx, payout.payout_id) == before
    # Details changed after the payout was made were not vetted for it: not sent there.
    set_bank_details(as_(ctx, "user:m1-owner"), "m1", BankDetails("M1", ACCOUNT, "BOC"))
    fundsec.approve_bank_details(as_(ctx, "user:risk"), "m1")
    with pytest.raises(InvalidState, match="changed after"):
        fundsec.bank_details_for_payout(ctx, payout.payout_id)
    settlement.mark_payout_failed(ctx, payout.payout_id, "bank details changed before sending")
    with pytest.raises(InvalidState, match="failed"):
        fundsec.bank_details_for_payout(ctx, payout.payout_id)
    settle(ctx, clock, PERIOD_2)
    latest = payouts_of(ctx, "m1")[-1]
    assert latest.amount_minor == 9_500 and latest.bank_masked == "BOC ****9876"
    assert fundsec.bank_details_for_payout(ctx, latest.payout_id).account_number == ACCOUNT


def test_new_identity_details_hold_payouts_until_verified_again(ctx, clock):
    seed_marketplace(ctx)
    sale(ctx, "o-1", "m1", 10_000)
    settle(ctx, clock, PERIOD_1)
    (payout,) = payouts_of(ctx, "m1")
    view = kyc.submit_kyc(as_(ctx, "user:m1-owner"), "m1", identity())
    assert view["status"] == "pending"
    assert payouts_of(ctx, "m1")[0].status == "held"
    with pytest.raises(InvalidState):
        fundsec.bank_details_for_payout(ctx, payout.payout_id)
    kyc.review_kyc(as_(ctx, "user:risk"), "m1", ReviewDecision.VERIFY)
    assert payouts_of(ctx, "m1")[0].status == "in_transit"
    held = fundsec.payout_controls(ctx, payout.payout_id)
    assert held["held_at"] is None and held["started_by"] == "system"
    assert actions(ctx, payout.payout_id) == ["payout.hold", "payout.release"]
