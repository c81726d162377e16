"""The database itself enforces the ledger, on SQLite and on PostgreSQL.

Everything here goes around the domain on purpose (raw SQL through the engine, or an entry
built without its checks): the promises must hold even when the application is wrong.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DatabaseError

from splitledger.config import Settings
from splitledger.domain.bank import BankDetails
from splitledger.domain.ledger import (
    AccountRef,
    EntryKind,
    JournalEntry,
    Posting,
    Purpose,
    party_account,
    system_account,
)
from splitledger.domain.parties import Party, PartyRole
from splitledger.errors import ConfigurationError, InvariantViolation
from splitledger.services import orders, settlement
from splitledger.services.context import Context
from splitledger.services.parties import register_party, reveal_bank_details, set_bank_details
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from tests.support import START, TEST_KEYS, order, seed_marketplace

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
K2 = "k2:" + base64.urlsafe_b64encode(b"second test key, 32 bytes long!!").decode().rstrip("=")


# -- helpers ----------------------------------------------------------------------------------

def one_capture(ctx) -> str:
    """Seed the marketplace and capture one order; returns its capture entry id."""
    seed_marketplace(ctx)
    return orders.capture_order(ctx, order("o-1", price=10_000))["entry_id"]


def scalar(ctx, sql: str, **params):
    with ctx.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def counts(ctx) -> tuple[int, int]:
    return (scalar(ctx, "SELECT COUNT(*) FROM journal_entries"),
            scalar(ctx, "SELECT COUNT(*) FROM postings"))


def account_id(ctx, ref: AccountRef) -> int:
    return scalar(ctx, "SELECT account_id FROM accounts WHERE code = :code", code=str(ref))


def refused(ctx, statements, match: str) -> None:
    """Run ``statements`` (raw SQL strings or Core statements) in one transaction and expect the
    database to refuse them, at the statement or at commit."""
    with pytest.raises(DatabaseError, match=match):
        with ctx.engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement) if isinstance(statement, str) else statement)


def raw_postings(entry_id: str, legs: list[tuple[int, int]], currency: str = "CNY"):
    return insert(t.postings).values([
        {"entry_id": entry_id, "account_id": acc, "currency": currency, "amount_minor": amount,
         "booked_at": START} for acc, amount in legs])


def raw_header(entry_id: str, posting_count: int):
    return insert(t.journal_entries).values(
        entry_id=entry_id, kind="adjustment", booked_at=START, memo="raw",
        posting_count=posting_count)


def two_accounts(ctx) -> tuple[int, int]:
    return (account_id(ctx, system_account(Purpose.CLEARING, "CNY")),
            account_id(ctx, party_account("m1", Purpose.PENDING, "CNY")))


def entry_rows(ctx, entry_id: str) -> list[tuple]:
    with ctx.engine.connect() as conn:
        header = conn.execute(select(t.journal_entries).where(
            t.journal_entries.c.entry_id == entry_id)).all()
        legs = conn.execute(select(t.postings).where(t.postings.c.entry_id == entry_id)
                            .order_by(t.postings.c.posting_id)).all()
    return [tuple(row) for row in header + legs]


# -- append-only ------------------------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "UPDATE journal_entries SET memo = 'edited' WHERE entry_id = :e",
    "UPDATE journal_entries SET booked_at = booked_at WHERE entry_id = :e",
    "UPDATE postings SET amount_minor = amount_minor + 1 WHERE entry_id = :e",
    "UPDATE postings SET amount_minor = amount_minor WHERE entry_id = :e",
    "DELETE FROM postings WHERE entry_id = :e",
    "DELETE FROM journal_entries WHERE entry_id = :e",
    "DELETE FROM postings",
    "DELETE FROM journal_entries",
])
def test_journal_rows_cannot_be_updated_or_deleted(ctx, statement):
    entry_id = one_capture(ctx)
    before, before_counts = entry_rows(ctx, entry_id), counts(ctx)
    with pytest.raises(DatabaseError, match="append-only"):
        with ctx.engine.begin() as conn:
            conn.execute(text(statement), {"e": entry_id})
    assert entry_rows(ctx, entry_id) == before
    assert counts(ctx) == before_counts
    assert verify_ledger(ctx).ok


@pytest.mark.postgres
@pytest.mark.parametrize("statement", [
    "TRUNCATE postings",
    "TRUNCATE journal_entries, postings",
    "TRUNCATE journal_entries CASCADE",
])
def test_truncate_is_refused_on_postgresql(pg_ctx, statement):
    one_capture(pg_ctx)
    before = counts(pg_ctx)
    refused(pg_ctx, [statement], match="append-only")
    assert counts(pg_ctx) == before


# -- entries balance, and are sealed by their header -------------------------------------------

def test_an_unbalanced_entry_cannot_commit(ctx):
    one_capture(ctx)
    clearing, pending = two_accounts(ctx)
    before = counts(ctx)
    entry_id = str(uuid.uuid4())
    refused(ctx, [raw_postings(entry_id, [(clearing, 100), (pending, -90)]),
                  raw_header(entry_id, 2)], match="does not balance")
    # Balanced per amount but not per currency: 100 CNY against -100 USD.
    entry_id = str(uuid.uuid4())
    refused(ctx, [raw_postings(entry_id, [(clearing, 100)]),
                  raw_postings(entry_id, [(pending, -100)], currency="USD"),
                  raw_header(entry_id, 2)], match="does not balance")
    assert counts(ctx) == before
    # The same legs, balanced, are accepted: the guard refuses imbalance, not raw SQL.
    entry_id = str(uuid.uuid4())
    with ctx.engine.begin() as conn:
        conn.execute(raw_postings(entry_id, [(clearing, 100), (pending, -100)]))
        conn.execute(raw_header(entry_id, 2))
    assert counts(ctx) == (before[0] + 1, before[1] + 2)


def test_postings_without_a_header_cannot_commit(ctx):
    one_capture(ctx)
    clearing, pending = two_accounts(ctx)
    before = counts(ctx)
    refused(ctx, [raw_postings(str(uuid.uuid4()), [(clearing, 100), (pending, -100)])],
            match="(?i)foreign key|does not balance")
    assert counts(ctx) == before


def test_a_written_entry_is_sealed(ctx):
    entry_id = one_capture(ctx)
    clearing, pending = two_accounts(ctx)
    before = entry_rows(ctx, entry_id)
    # Even a balanced pair of extra legs cannot join an entry whose header exists.
    refused(ctx, [raw_postings(entry_id, [(clearing, 100), (pending, -100)])], match="sealed")
    refused(ctx, [raw_postings(entry_id, [(clearing, 0)])], match="sealed")
    assert entry_rows(ctx, entry_id) == before
    # A header written before its postings seals the entry at once: they cannot follow it.
    late = str(uuid.uuid4())
    refused(ctx, [raw_header(late, 2), raw_postings(late, [(clearing, 5), (pending, -5)])],
            match="sealed|does not balance")
    assert entry_rows(ctx, late) == []


@pytest.mark.postgres
def test_a_posting_racing_the_header_cannot_join_the_entry(pg_ctx):
    """The seal sees committed headers only. A posting written by another transaction before
    the header commits must still be refused when that transaction commits."""
    one_capture(pg_ctx)
    clearing, _ = two_accounts(pg_ctx)
    before = counts(pg_ctx)
    entry_id = str(uuid.uuid4())
    with pg_ctx.engine.connect() as intruder:
        intruder.begin()
        intruder.execute(raw_postings(entry_id, [(clearing, 7)]))
        with pg_ctx.uow() as uow:  # meanwhile the entry is written and committed
            uow.repo.post(JournalEntry(entry_id, EntryKind.ADJUSTMENT, START, (
                Posting(system_account(Purpose.CLEARING, "CNY"), 5),
                Posting(party_account("m1", Purpose.AVAILABLE, "CNY"), -5))))
            uow.commit()
        with pytest.raises(DatabaseError, match="does not balance"):
            intruder.commit()
    assert counts(pg_ctx) == (before[0] + 1, before[1] + 2)
    report = verify_ledger(pg_ctx)
    assert report.ok, report.problems


@pytest.mark.parametrize("declared", [0, 1, 3, 4])
def test_a_header_must_count_its_postings(ctx, declared):
    one_capture(ctx)
    clearing, pending = two_accounts(ctx)
    before = counts(ctx)
    entry_id = str(uuid.uuid4())
    refused(ctx, [raw_postings(entry_id, [(clearing, 100), (pending, -100)]),
                  raw_header(entry_id, declared)], match="does not balance")
    assert counts(ctx) == before


def test_a_single_zero_posting_is_not_an_entry(ctx):
    one_capture(ctx)
    clearing, _ = two_accounts(ctx)
    entry_id = str(uuid.uuid4())
    refused(ctx, [raw_postings(entry_id, [(clearing, 0)]), raw_header(entry_id, 1)],
            match="does not balance")


# -- the domain refuses first, the database is the last word -----------------------------------

def test_the_domain_refuses_unbalanced_entries_before_writing(ctx):
    one_capture(ctx)
    before = counts(ctx)
    clearing = system_account(Purpose.CLEARING, "CNY")
    m1 = party_account("m1", Purpose.PENDING, "CNY")
    usd = party_account("m1", Purpose.PENDING, "USD")
    bad = [
        (Posting(clearing, 100), Posting(m1, -99)),
        (Posting(clearing, 100), Posting(usd, -100)),
        (Posting(clearing, 100),),
        (),
        (Posting(clearing, 100), Posting(m1, -100), Posting(m1, 0)),
    ]
    for postings in bad:
        with ctx.uow() as uow:
            with pytest.raises(InvariantViolation):
                uow.repo.post(JournalEntry(str(uuid.uuid4()), EntryKind.ADJUSTMENT, START,
                                           postings))
            uow.commit()
    assert counts(ctx) == before


def test_the_database_refuses_an_unbalanced_entry_that_slipped_past_the_domain(ctx):
    one_capture(ctx)
    before = counts(ctx)
    # Build an entry without running its checks, as a buggy caller might.
    entry = object.__new__(JournalEntry)
    values = {"entry_id": str(uuid.uuid4()), "kind": EntryKind.ADJUSTMENT, "booked_at": START,
              "postings": (Posting(system_account(Purpose.CLEARING, "CNY"), 100),
                           Posting(party_account("m1", Purpose.AVAILABLE, "CNY"), -1)),
              "order_id": None, "payout_id": None, "statement_id": None, "memo": "",
              "reverses_entry_id": None, "meta": {}}
    for name, value in values.items():
        object.__setattr__(entry, name, value)
    with pytest.raises(DatabaseError, match="does not balance"):
        with ctx.uow() as uow:
            uow.repo.post(entry)
            uow.commit()
    assert counts(ctx) == before
    with ctx.uow() as uow:
        assert uow.repo.balance(party_account("m1", Purpose.AVAILABLE, "CNY")) == 0
    assert verify_ledger(ctx).ok


# -- balances -----------------------------------------------------------------------------------

def test_stored_balances_equal_the_journal_after_many_postings(ctx, clock):
    seed_marketplace(ctx)
    rng = random.Random(20261102)
    ids = []
    for i in range(60):
        currency = rng.choice(["CNY", "USD"])
        oid = f"o-{i}"
        orders.capture_order(ctx, order(
            oid, when=clock.now, currency=currency, price=rng.randint(100, 50_000),
            quantity=rng.randint(1, 3), supplier=rng.choice([None, "s1"]),
            shipping=rng.choice([0, 0, 800]), fee=rng.randint(0, 90),
            platform_discount=rng.choice([0, 0, 50]), merchant_discount=rng.choice([0, 30])))
        ids.append(oid)
        clock.advance(minutes=rng.randint(1, 90))
    for oid in rng.sample(ids, 25):
        orders.refund_order(ctx, oid, rng.randint(1, 80), reason="partial")
    for oid in rng.sample(ids, 30):
        orders.confirm_order(ctx, oid)
    for oid in rng.sample(ids, 10):
        orders.chargeback_order(ctx, oid, rng.randint(1, 50))
    clock.set(datetime(2026, 11, 9, 1, tzinfo=UTC))
    run = settlement.run_settlement(ctx, datetime(2026, 11, 9, tzinfo=UTC))
    assert run.payouts > 0
    with ctx.engine.connect() as conn:
        payout_ids = conn.execute(select(t.payouts.c.payout_id).order_by(
            t.payouts.c.payout_id)).scalars().all()
    settlement.mark_payout_paid(ctx, payout_ids[0])
    if len(payout_ids) > 1:
        settlement.mark_payout_failed(ctx, payout_ids[1], "account closed")
    clock.advance(days=10)
    assert orders.release_due(ctx) == 30

    with ctx.engine.connect() as conn:
        journal = dict(conn.execute(select(t.postings.c.account_id,
                                           func.sum(t.postings.c.amount_minor))
                                    .group_by(t.postings.c.account_id)).all())
        accounts = conn.execute(select(t.accounts)).all()
        n_postings = conn.execute(select(func.count()).select_from(t.postings)).scalar_one()
    assert n_postings > 300
    assert len(accounts) > 10
    with ctx.uow() as uow:
        for acc in accounts:
            assert acc.balance_minor == int(journal.get(acc.account_id, 0)), acc.code
            ref = AccountRef(Purpose(acc.purpose), acc.currency, acc.party_id)
            assert uow.repo.balance(ref) == acc.balance_minor
            assert uow.repo.balance_as_of(ref, FAR_FUTURE) == acc.balance_minor
    report = verify_ledger(ctx)
    assert report.ok, report.problems
    assert set(report.trial_balance.values()) == {0}


def test_balance_as_of_a_past_time_is_read_from_the_journal(ctx, clock):
    seed_marketplace(ctx)
    pending = party_account("m1", Purpose.PENDING, "CNY")
    available = party_account("m1", Purpose.AVAILABLE, "CNY")
    platform = party_account("platform", Purpose.PENDING, "CNY")
    t0 = clock.now
    orders.capture_order(ctx, order("o-1", when=t0, price=10_000))       # m1 9_500, platform 500
    t1 = clock.advance(hours=1)
    orders.capture_order(ctx, order("o-2", when=t1, price=20_000))       # m1 19_000
    t2 = clock.advance(hours=1)
    orders.refund_order(ctx, "o-1", 4_000)                                # m1 -3_800
    t3 = clock.advance(days=1)
    orders.confirm_order(ctx, "o-2")                                      # 19_000 released
    clock.advance(days=1)
    orders.capture_order(ctx, order("o-3", when=clock.now, price=1_000))  # later noise

    second = timedelta(seconds=1)
    expected = [
        (pending, t0 - second, 0), (pending, t0, 0),  # strictly before the moment
        (pending, t0 + second, -9_500), (pending, t1, -9_500),
        (pending, t1 + second, -28_500), (pending, t2, -28_500),
        (pending, t2 + second, -24_700), (pending, t3, -24_700),
        (pending, t3 + second, -5_700),
        (available, t3, 0), (available, t3 + second, -19_000),
        (platform, t0 + second, -500), (platform, t1 + second, -1_500),
        (platform, t2 + second, -1_300), (platform, t3 + second, -300),
    ]
    with ctx.uow() as uow:
        for ref, moment, raw in expected:
            assert uow.repo.balance_as_of(ref, moment) == raw, (str(ref), moment)
        assert uow.repo.balance(pending) == -5_700 - 950

    # The stored balance is a projection; damage it, and the journal still answers.
    with ctx.engine.begin() as conn:
        conn.execute(update(t.accounts).where(t.accounts.c.code == str(pending))
                     .values(balance_minor=-1))
    with ctx.uow() as uow:
        assert uow.repo.balance(pending) == -1
        for ref, moment, raw in expected:
            assert uow.repo.balance_as_of(ref, moment) == raw
        assert uow.repo.balance_as_of(pending, FAR_FUTURE) == -5_700 - 950
    report = verify_ledger(ctx)
    assert any(str(pending) in problem for problem in report.problems)


# -- bank details -------------------------------------------------------------------------------

ACCOUNT_NUMBER = "6222 0212 3456 7890"
SECRETS = ["6222 0212 3456 7890", "6222021234567890", "62220212345678", "0212 3456"]


def _as_text(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return [value.decode("latin-1"), value.hex()]
    return [str(value)]


def _every_stored_string(ctx) -> list[str]:
    found = []
    with ctx.engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                for value in row:
                    found += _as_text(value)
    return found


def test_bank_details_are_stored_encrypted_and_shown_masked(ctx, db_url):
    seed_marketplace(ctx)
    bank = BankDetails("Zhang San", ACCOUNT_NUMBER, "ICBC", "ICBKCNBJ", "CN")
    result = register_party(ctx, Party("mx", "Merchant X", PartyRole.MERCHANT), bank)
    assert result["bank_masked"] == "ICBC ****7890"

    with ctx.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM parties WHERE party_id = 'mx'")).mappings().one()
    assert row["bank_masked"] == "ICBC ****7890"
    assert row["bank_key_id"] == "k1"
    assert row["bank_ciphertext"] is not None and len(bytes(row["bank_ciphertext"])) > 16
    for column, value in row.items():
        for shown in _as_text(value):
            for secret in SECRETS + ["Zhang San"]:
                assert secret not in shown, f"{secret!r} in clear in parties.{column}"
    # Nowhere else in the database either (idempotency records, projections...).
    stored = "\n".join(_every_stored_string(ctx))
    for secret in SECRETS:
        assert secret not in stored
    if db_url.startswith("sqlite"):  # nor in the file's free pages or its write-ahead log
        path = Path(db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for secret in SECRETS:
            assert secret.encode() not in raw

    assert reveal_bank_details(ctx, "mx") == bank  # only the payout rail decrypts


def test_a_ciphertext_moved_to_another_party_does_not_decrypt(ctx):
    seed_marketplace(ctx)
    register_party(ctx, Party("mx", "Merchant X", PartyRole.MERCHANT),
                   BankDetails("Zhang San", ACCOUNT_NUMBER, "ICBC"))
    with ctx.engine.begin() as conn:
        conn.execute(text(
            "UPDATE parties SET bank_ciphertext = (SELECT bank_ciphertext FROM parties "
            "WHERE party_id = 'mx'), bank_key_id = 'k1' WHERE party_id = 'm1'"))
    with pytest.raises(InvariantViolation):
        reveal_bank_details(ctx, "m1")
    assert reveal_bank_details(ctx, "mx").account_number == ACCOUNT_NUMBER

    # A flipped byte is detected just the same.
    with ctx.engine.connect() as conn:
        blob = bytearray(bytes(conn.execute(text(
            "SELECT bank_ciphertext FROM parties WHERE party_id = 'mx'")).scalar_one()))
    blob[-1] ^= 1
    with ctx.engine.begin() as conn:
        conn.execute(update(t.parties).where(t.parties.c.party_id == "mx")
                     .values(bank_ciphertext=bytes(blob)))
    with pytest.raises(InvariantViolation):
        reveal_bank_details(ctx, "mx")


def test_key_rotation_keeps_old_data_readable(ctx, db_url, clock):
    seed_marketplace(ctx)
    old = BankDetails("Old Holder", "1111 2222 3333 4444", "ABC")
    register_party(ctx, Party("mx", "Merchant X", PartyRole.MERCHANT), old)

    def context(keys: str, active: str | None) -> Context:
        return Context(ctx.engine, Settings(database_url=db_url, encryption_keys=keys,
                                            active_key_id=active), clock=clock)

    rotated = context(f"{TEST_KEYS},{K2}", "k2")
    assert reveal_bank_details(rotated, "mx") == old  # k1 data, read with k2 active

    new = BankDetails("New Holder", "5555 6666 7777 8888", "BOC")
    register_party(rotated, Party("my", "Merchant Y", PartyRole.MERCHANT), new)
    with ctx.engine.connect() as conn:
        key_ids = dict(conn.execute(text(
            "SELECT party_id, bank_key_id FROM parties WHERE party_id IN ('mx', 'my')")).all())
    assert key_ids == {"mx": "k1", "my": "k2"}
    assert reveal_bank_details(rotated, "my") == new
    assert reveal_bank_details(rotated, "mx") == old

    # Only k1 configured: k2 data is unreadable, and says why.
    with pytest.raises(ConfigurationError, match="k2"):
        reveal_bank_details(context(TEST_KEYS, None), "my")
    # Re-encrypting under k2 lets k1 be retired.
    set_bank_details(rotated, "mx", old)
    only_k2 = context(K2, None)
    assert reveal_bank_details(only_k2, "mx") == old
    assert reveal_bank_details(only_k2, "my") == new
