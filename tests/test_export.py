"""Exports of the whole journal: beancount accepted by bean-check, balances equal to the stored
ones, CSV rows that add up, account names that are valid and one-to-one."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from beancount import loader
from beancount.core import account as bc_account
from beancount.core.data import Open, Transaction
from sqlalchemy import select, text
from typer.testing import CliRunner

from splitledger.cli.main import app
from splitledger.domain.money import exponent
from splitledger.services.export import (
    AccountInfo,
    account_names_for,
    beancount_account_names,
    export_beancount,
    format_amount,
    party_component,
)
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from tests.support import TEST_KEYS, make_context

BEAN_CHECK = Path(sys.executable).with_name("bean-check")


def cli(*args: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, list(args), env={"SPLITLEDGER_ENCRYPTION_KEYS": TEST_KEYS})
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def demo_url(db_url: str) -> str:
    """A small demo marketplace (both currencies, refunds, chargebacks, payouts)."""
    cli("demo", "--database", db_url, "--orders", "40", "--seed", "11", "--start", "2026-09-07")
    return db_url


def stored_balances(url: str) -> dict[str, tuple[str, int]]:
    """Account code -> (currency, stored raw balance)."""
    ctx = make_context(url)
    try:
        with ctx.uow() as uow:
            return {r.code: (r.currency, int(r.balance_minor)) for r in uow.conn.execute(
                select(t.accounts.c.code, t.accounts.c.currency, t.accounts.c.balance_minor))}
    finally:
        ctx.engine.dispose()


def bean_check(path: Path) -> subprocess.CompletedProcess[str]:
    assert BEAN_CHECK.exists(), "beancount is a dev dependency"
    return subprocess.run([str(BEAN_CHECK), str(path)], capture_output=True, text=True,
                          timeout=300)


def test_beancount_export_passes_bean_check_and_matches_the_stored_balances(demo_url,
                                                                           tmp_path):
    path = tmp_path / "books.beancount"
    result = cli("export", "--format", "beancount", "--output", str(path), "-d", demo_url)
    assert "exported" in result.stdout
    checked = bean_check(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""

    entries, errors, options = loader.load_file(str(path))
    assert errors == []
    assert set(options["operating_currency"]) == {"CNY", "USD"}
    transactions = [e for e in entries if isinstance(e, Transaction)]
    ctx = make_context(demo_url)
    try:
        report = verify_ledger(ctx)
        names = beancount_account_names(ctx)
    finally:
        ctx.engine.dispose()
    assert len(transactions) == report.entries
    assert sum(len(txn.postings) for txn in transactions) == report.postings
    # One transaction per entry, in booking order, with the entry's identity as metadata.
    seqs = [int(txn.meta["seq"]) for txn in sorted(transactions, key=lambda e: e.meta["lineno"])]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(txn.meta["entry_id"] and txn.payee for txn in transactions)
    kinds = {txn.payee for txn in transactions}
    assert {"capture", "release", "refund", "chargeback", "payout", "payout_paid",
            "payout_failed"} <= kinds

    # Every account opened no later than its first use, with a valid name.
    opened = {e.account: e.date for e in entries if isinstance(e, Open)}
    for txn in transactions:
        for posting in txn.postings:
            assert opened[posting.account] <= txn.date
    assert all(bc_account.is_valid(name) for name in opened)

    # Beancount's balances are exactly the stored balances, account by account.
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for txn in transactions:
        for posting in txn.postings:
            sums[(posting.account, posting.units.currency)] += posting.units.number
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for code, (currency, balance) in stored_balances(demo_url).items():
        expected[(names[code], currency)] += Decimal(balance).scaleb(-exponent(currency))
    assert {k: v for k, v in sums.items() if v} == {k: v for k, v in expected.items() if v}
    # One beancount account per (party, purpose) or system purpose; currencies share it.
    owner_purpose = {code: tuple(code.split(":")[:-1]) for code in names}
    by_name: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for code, name in names.items():
        by_name[name].add(owner_purpose[code])
    assert all(len(keys) == 1 for keys in by_name.values())


def test_csv_export_has_one_row_per_posting_adding_up_to_the_stored_balances(demo_url,
                                                                            tmp_path):
    path = tmp_path / "journal.csv"
    cli("export", "-f", "csv", "-o", str(path), "-d", demo_url)
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    assert list(rows[0]) == ["seq", "entry_id", "booked_at", "kind", "order_id", "account",
                             "party_id", "purpose", "currency", "amount_minor", "amount"]
    ctx = make_context(demo_url)
    try:
        report = verify_ledger(ctx)
    finally:
        ctx.engine.dispose()
    assert len(rows) == report.postings
    seqs = [int(r["seq"]) for r in rows]
    assert seqs == sorted(seqs)
    per_entry: dict[tuple[str, str], int] = defaultdict(int)
    per_account: dict[str, int] = defaultdict(int)
    for row in rows:
        minor = int(row["amount_minor"])
        assert Decimal(row["amount"]) == Decimal(minor).scaleb(-exponent(row["currency"]))
        per_entry[(row["entry_id"], row["currency"])] += minor
        per_account[row["account"]] += minor
    assert set(per_entry.values()) == {0}  # every entry balances in every currency
    assert len({entry for entry, _ in per_entry}) == report.entries
    assert per_account == {code: balance
                           for code, (_, balance) in stored_balances(demo_url).items()}
    stdout = cli("export", "-f", "csv", "-d", demo_url).stdout  # the default output
    assert stdout.replace("\r\n", "\n") == path.read_text(encoding="utf-8").replace("\r\n", "\n")


def test_bean_check_catches_a_stored_balance_that_disagrees_with_the_journal(sqlite_url,
                                                                             tmp_path):
    cli("demo", "-d", sqlite_url, "--orders", "15", "--seed", "5", "--start", "2026-09-07")
    ctx = make_context(sqlite_url)
    try:
        with ctx.engine.begin() as conn:  # balances are a projection: tamper with one
            conn.execute(text("UPDATE accounts SET balance_minor = balance_minor + 1 "
                              "WHERE code = 'system:clearing:CNY'"))
        assert not verify_ledger(ctx).ok
        out = io.StringIO()
        export_beancount(ctx, out)
    finally:
        ctx.engine.dispose()
    path = tmp_path / "tampered.beancount"
    path.write_text(out.getvalue(), encoding="utf-8")
    checked = bean_check(path)
    assert checked.returncode != 0
    assert "Balance failed for 'Assets:Clearing'" in checked.stdout + checked.stderr


def test_an_empty_ledger_exports_a_valid_file(sqlite_url, tmp_path):
    path = tmp_path / "empty.beancount"
    cli("export", "-f", "beancount", "-o", str(path), "-d", sqlite_url)
    assert 'option "operating_currency"' in path.read_text()
    assert bean_check(path).returncode == 0
    rows = cli("export", "-f", "csv", "-d", sqlite_url).stdout.splitlines()
    assert rows == ["seq,entry_id,booked_at,kind,order_id,account,party_id,purpose,currency,"
                    "amount_minor,amount"]


def test_party_ids_become_valid_distinct_account_names():
    ids = ["m1", "M1", "a_b", "a.b", "a-b", "A-B", "7eleven", "x", "X"]
    accounts = [AccountInfo(i, f"party:{pid}:available:CNY", pid, "merchant", "available", "CNY",
                            0) for i, pid in enumerate(ids)]
    accounts += [AccountInfo(100, "party:platform:pending:CNY", "platform", "platform",
                             "pending", "CNY", 0),
                 AccountInfo(101, "system:clearing:CNY", None, None, "clearing", "CNY", 0)]
    names = account_names_for(accounts)
    assert len(set(names.values())) == len(names)
    assert all(bc_account.is_valid(name) for name in names.values())
    assert names["party:platform:pending:CNY"] == "Income:Platform:Pending"
    assert names["system:clearing:CNY"] == "Assets:Clearing"
    assert names["party:M1:available:CNY"] == "Liabilities:Parties:Merchant:M1:Available"
    assert party_component("a_b.c") == "A-b-c"


@pytest.mark.parametrize(("minor", "currency", "text_"), [
    (123456, "CNY", "1234.56"), (-1, "CNY", "-0.01"), (0, "USD", "0.00"),
    (-5, "JPY", "-5"), (123456, "KWD", "123.456"), (10**20 + 1, "CNY",
                                                    "1000000000000000000.01"),
])
def test_amounts_are_exact_decimals_in_the_currency_s_digits(minor, currency, text_):
    assert format_amount(minor, currency) == text_
