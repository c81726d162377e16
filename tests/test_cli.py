"""The real command line: the demo on SQLite and PostgreSQL, the everyday commands, and the
promise that a user's mistake is one line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from splitledger.cli.main import app
from splitledger.services.export import marketplace_summary
from splitledger.store import tables as t
from tests.support import TEST_KEYS, make_context, seed_marketplace

ENV = {"SPLITLEDGER_ENCRYPTION_KEYS": TEST_KEYS}
COUNTED = ("journal_entries", "postings", "accounts", "orders", "split_allocations",
           "reversals", "statements", "payouts", "idempotency_keys")
DEMO_START = "2026-09-07"  # a fixed start keeps the runs reproducible whatever today is


def cli(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=ENV, input=input)


def flat(text: str) -> str:
    """Output with the terminal's line wrapping undone."""
    return " ".join(text.split())


def row_counts(url: str) -> dict[str, int]:
    ctx = make_context(url)
    try:
        with ctx.uow() as uow:
            return {name: uow.conn.execute(select(func.count()).select_from(
                t.metadata.tables[name])).scalar_one() for name in COUNTED}
    finally:
        ctx.engine.dispose()


def assert_one_error_line(result, code: str, exit_code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error[{code}]: "), lines[0]
    assert result.stdout == ""
    return lines[0]


# -- the demo ----------------------------------------------------------------------------------

def run_demo_and_check(url: str, orders: int = 60) -> str:
    result = cli("demo", "--database", url, "--orders", str(orders), "--seed", "7",
                 "--start", DEMO_START)
    assert result.exit_code == 0, result.stdout + result.stderr
    out = flat(result.stdout)
    assert "Marketplace summary" in out
    assert "CNY" in out and "USD" in out
    assert "ledger OK: every invariant holds" in out
    assert "Failed payout:" in out and "Repaid: payout" in out

    ctx = make_context(url)
    try:
        with ctx.uow() as uow:
            payouts = list(uow.conn.execute(select(t.payouts).order_by(t.payouts.c.created_at)))
        failed = [p for p in payouts if p.status == "failed"]
        assert len(failed) == 1, "exactly one payout fails"
        [bounce] = failed
        repaid = [p for p in payouts if p.party_id == bounce.party_id
                  and p.currency == bounce.currency and p.status == "paid"
                  and p.created_at > bounce.resolved_at]
        assert repaid, "the returned money is paid again with a later statement"
        assert bounce.payout_id in out and repaid[0].payout_id in out

        summary = marketplace_summary(ctx)
        assert set(summary) == {"CNY", "USD"}
        assert summary["CNY"]["orders"] + summary["USD"]["orders"] == orders
        assert sum(f["debts_incurred"] for f in summary.values()) > 0, "debts appeared"
        assert sum(f["refunds"] for f in summary.values()) > 0
        assert sum(f["chargebacks"] for f in summary.values()) == 2
        assert summary["CNY"]["payouts_failed"] + summary["USD"]["payouts_failed"] == 1
    finally:
        ctx.engine.dispose()

    verify = cli("ledger", "verify", "--database", url)
    assert verify.exit_code == 0, verify.stdout
    assert "ledger OK" in verify.stdout and "Trial balance CNY" in flat(verify.stdout)
    return out


def test_demo_on_sqlite_runs_a_whole_marketplace_cycle_and_verifies(tmp_path):
    run_demo_and_check(f"sqlite:///{tmp_path / 'demo.db'}")


@pytest.mark.postgres
def test_demo_on_postgresql_runs_a_whole_marketplace_cycle_and_verifies(pg_url):
    run_demo_and_check(pg_url)


def test_demo_is_reproducible_from_its_seed_and_refuses_a_used_database(tmp_path):
    urls = [f"sqlite:///{tmp_path / f'run{i}.db'}" for i in (1, 2)]
    summaries = []
    for url in urls:
        result = cli("demo", "-d", url, "--orders", "25", "--seed", "3", "--start", DEMO_START)
        assert result.exit_code == 0, result.stdout + result.stderr
        ctx = make_context(url)
        summaries.append(marketplace_summary(ctx))
        ctx.engine.dispose()
    assert summaries[0] == summaries[1]

    before = row_counts(urls[0])
    again = cli("demo", "-d", urls[0], "--orders", "5")
    assert_one_error_line(again, "conflict")
    assert row_counts(urls[0]) == before


def test_demo_serve_creates_demo_users_and_serves_on_localhost(tmp_path, monkeypatch):
    from splitledger.cli import serve as serve_cli
    from splitledger.services import access

    served: list[tuple[str, int]] = []
    monkeypatch.setattr(serve_cli, "serve_app",
                        lambda ctx, host, port, workers=1: served.append((host, port)))
    url = f"sqlite:///{tmp_path / 'served.db'}"
    result = cli("demo", "-d", url, "--orders", "10", "--seed", "3", "--start", DEMO_START,
                 "--serve", "--port", "8123")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert served == [("127.0.0.1", 8123)]
    assert "http://127.0.0.1:8123" in flat(result.stdout)
    passwords = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|]", line)]
        cells = [cell for cell in cells if cell]
        if len(cells) >= 3 and cells[0] in ("admin", "finance", "risk", "merchant"):
            passwords[cells[0]] = cells[-1]
    assert set(passwords) == {"admin", "finance", "risk", "merchant"}
    ctx = make_context(url)
    try:
        for username, password in passwords.items():
            session = access.login(ctx, username, password)
            assert session["role"] == username
        assert session["party_id"] == "M-001"  # the merchant user acts for a demo merchant
    finally:
        ctx.engine.dispose()


# -- everyday commands -------------------------------------------------------------------------

@pytest.fixture
def market_url(sqlite_url: str) -> str:
    """A migrated SQLite database with the small test marketplace (m1, m2, s1, l1, a1)."""
    ctx = make_context(sqlite_url)
    seed_marketplace(ctx)
    ctx.engine.dispose()
    return sqlite_url


def order_json(tmp_path: Path, order_id: str = "cli-1", *, price: object = 10_000,
               merchant: str = "m1", days_ago: float = 0.05) -> str:
    when = datetime.now(UTC) - timedelta(days=days_ago)
    body = {"order_id": order_id, "currency": "CNY", "captured_at": when.isoformat(),
            "psp_fee_minor": 60, "shipping": {"amount_minor": 800, "logistics_party_id": "l1"},
            "lines": [{"sku": "SKU-1", "category": "electronics/phones", "merchant_id": merchant,
                       "supplier_id": "s1", "quantity": 1, "unit_price_minor": price}]}
    path = tmp_path / f"{order_id}.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_capture_is_idempotent_and_shows_the_split(market_url, tmp_path):
    path = order_json(tmp_path)
    first = cli("capture", path, "--idempotency-key", "k-1", "-d", market_url)
    assert first.exit_code == 0, first.stdout + first.stderr
    assert "108.00 CNY" in first.stdout  # 100.00 plus 8.00 shipping
    assert "s1" in first.stdout and "60.00 CNY" in first.stdout  # the supplier's 60 %
    counts = row_counts(market_url)
    again = cli("capture", path, "--idempotency-key", "k-1", "-d", market_url)
    assert again.exit_code == 0
    assert row_counts(market_url) == counts
    assert counts["orders"] == 1

    duplicate = cli("capture", path, "-d", market_url)  # no key: the order id still guards
    assert_one_error_line(duplicate, "duplicate_order")


def test_capture_reads_stdin(market_url, tmp_path):
    text = Path(order_json(tmp_path, "cli-stdin")).read_text()
    result = cli("capture", "-", "-d", market_url, input=text)
    assert result.exit_code == 0, result.stderr
    assert row_counts(market_url)["orders"] == 1


def test_release_settle_and_payout_answers_through_the_cli(market_url, tmp_path):
    # m1's hold is the default 7 days: captured 8 days ago, it is due for release.
    assert cli("capture", order_json(tmp_path, "old-1", days_ago=8), "-d",
               market_url).exit_code == 0
    released = cli("release", "-d", market_url)
    assert released.exit_code == 0 and "released 1 order" in flat(released.stdout)

    now = datetime.now(UTC).isoformat()
    settled = cli("settle", "--period-end", now, "--ignore-schedule", "-d", market_url)
    assert settled.exit_code == 0, settled.stdout + settled.stderr
    assert "3 payout(s) made" in flat(settled.stdout) and "CNY" in settled.stdout

    ctx = make_context(market_url)
    with ctx.uow() as uow:
        payouts = {r.party_id: r.payout_id for r in uow.conn.execute(select(t.payouts))}
    ctx.engine.dispose()
    assert set(payouts) == {"m1", "s1", "l1"}  # the affiliate-free order pays these three

    listed = cli("payout", "list", "--status", "in_transit", "-d", market_url)
    assert listed.exit_code == 0 and "Payouts (3)" in listed.stdout
    assert "****" in listed.stdout  # bank details only ever masked

    assert cli("payout", "paid", payouts["m1"], "-d", market_url).exit_code == 0
    failed = cli("payout", "failed", payouts["s1"], "--reason", "account closed", "-d",
                 market_url)
    assert failed.exit_code == 0 and "the amount is available again" in flat(failed.stdout)
    assert_one_error_line(cli("payout", "paid", payouts["s1"], "-d", market_url),
                          "invalid_state")
    failed_list = cli("payout", "list", "--status", "failed", "-d", market_url).stdout
    assert "Payouts (1)" in failed_list and payouts["s1"] in failed_list
    assert payouts["m1"] not in failed_list

    refund = cli("refund", "old-1", "1000", "--reason", "late", "-d", market_url)
    assert refund.exit_code == 0 and "available (after release)" in flat(refund.stdout)
    assert cli("ledger", "verify", "-d", market_url).exit_code == 0


# -- errors: one line, exit 2, nothing written ---------------------------------------------------

def test_capture_with_a_float_amount_is_refused_and_writes_nothing(market_url, tmp_path):
    before = row_counts(market_url)
    result = cli("capture", order_json(tmp_path, price=99.5), "-d", market_url)
    line = assert_one_error_line(result, "invalid_amount")
    assert "unit_price_minor" in line
    assert row_counts(market_url) == before


def test_capture_naming_an_unknown_party_is_refused_and_writes_nothing(market_url, tmp_path):
    before = row_counts(market_url)
    result = cli("capture", order_json(tmp_path, merchant="nobody"), "--idempotency-key", "k",
                 "-d", market_url)
    line = assert_one_error_line(result, "unknown_party")
    assert "nobody" in line
    assert row_counts(market_url) == before  # not even the idempotency key


def test_refund_larger_than_the_order_is_refused_and_writes_nothing(market_url, tmp_path):
    assert cli("capture", order_json(tmp_path, "cli-9"), "-d", market_url).exit_code == 0
    before = row_counts(market_url)
    result = cli("refund", "cli-9", "10801", "-d", market_url)
    line = assert_one_error_line(result, "refund_exceeds_remaining")
    assert "10800" in line
    assert row_counts(market_url) == before


@pytest.mark.parametrize(("args", "code"), [
    (["refund", "cli-x", "12.50"], "invalid_amount"),
    (["refund", "no-such-order", "100"], "unknown_order"),
    (["payout", "paid", "no-such-payout"], "unknown_payout"),
    (["payout", "list", "--status", "lost"], "invalid_input"),
    (["settle", "--period-end", "2999-01-01T00:00:00Z"], "invalid_input"),
    (["settle", "--period-end", "2026-11-01T00:00:00"], "invalid_input"),  # no time zone
    (["capture", "/no/such/order.json"], "invalid_input"),
])
def test_user_errors_are_one_line_with_exit_code_2(market_url, args, code):
    before = row_counts(market_url)
    assert_one_error_line(cli(*args, "-d", market_url), code)
    assert row_counts(market_url) == before


def test_malformed_json_and_a_bad_database_url_are_one_line_errors(market_url, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"order_id": "x", ')
    assert "not valid JSON" in assert_one_error_line(
        cli("capture", str(broken), "-d", market_url), "invalid_input")
    assert_one_error_line(cli("ledger", "verify", "-d", "nosuchdb://x"), "configuration_error")
    missing_dir = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    assert_one_error_line(cli("db", "upgrade", "-d", missing_dir), "configuration_error")


def test_the_installed_console_script_reports_errors_the_same_way(market_url):
    script = Path(sys.executable).with_name("splitledger")
    assert script.exists()
    done = subprocess.run([str(script), "refund", "no-such-order", "100", "--database",
                           market_url], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **ENV})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["error[unknown_order]: unknown order 'no-such-order'"]
    upgraded = subprocess.run([str(script), "db", "upgrade", "--database", market_url],
                              capture_output=True, text=True, timeout=120, env=ENV)
    assert upgraded.returncode == 0 and "latest schema" in flat(upgraded.stdout)


def test_a_broken_invariant_exits_3_with_one_line(market_url, tmp_path):
    assert cli("capture", order_json(tmp_path, "cli-t"), "-d", market_url).exit_code == 0
    ctx = make_context(market_url)
    with ctx.engine.begin() as conn:  # a tampered split plan no longer sums to the capture
        conn.execute(t.split_allocations.update()
                     .where(t.split_allocations.c.order_id == "cli-t",
                            t.split_allocations.c.seq == 0)
                     .values(amount_minor=t.split_allocations.c.amount_minor + 1))
    ctx.engine.dispose()
    before = row_counts(market_url)
    line = assert_one_error_line(cli("refund", "cli-t", "100", "-d", market_url),
                                 "invariant_violation", exit_code=3)
    assert "cli-t" in line
    assert row_counts(market_url) == before
    assert cli("ledger", "verify", "-d", market_url).exit_code == 1


def test_the_database_defaults_to_the_setting(market_url, tmp_path):
    assert cli("capture", order_json(tmp_path, "cli-env"), "-d", market_url).exit_code == 0
    result = CliRunner().invoke(app, ["ledger", "verify"],
                                env={**ENV, "SPLITLEDGER_DATABASE_URL": market_url})
    assert result.exit_code == 0
    assert re.search(r"Orders\s*│\s*1\s*│", result.stdout), result.stdout
