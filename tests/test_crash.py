"""A process killed with SIGKILL part-way loses nothing and, run again, duplicates nothing.

The workloads run in a subprocess (tests/crash_worker.py) that builds its own Context from the
database URL. The test watches the database and kills the worker once some, but not all, of
the work is committed; then it runs the same work again and checks the whole database.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from splitledger.domain.bank import BankDetails
from splitledger.domain.ledger import Purpose, system_account
from splitledger.domain.parties import Party, PartyRole
from splitledger.services import orders, settlement
from splitledger.services.context import Context
from splitledger.services.parties import register_party
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from splitledger.store.db import make_engine, normalise_url
from tests.crash_worker import (
    PERIOD_END,
    capture_batch,
    capture_context,
    capture_loop,
    settle_context,
)
from tests.support import order, seed_marketplace

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 90
MERCHANTS = 300
CAPTURES = 400


class Worker:
    """A workload subprocess. Its output goes to files, not pipes: it must never stall on a
    full pipe while the test watches the database."""

    def __init__(self, *args: str) -> None:
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", *args],
                                     cwd=REPO, stdout=self.out, stderr=self.err)

    def output(self) -> tuple[str, str]:
        texts = []
        for stream in (self.out, self.err):
            stream.seek(0)
            texts.append(stream.read().decode(errors="replace"))
        return texts[0], texts[1]


def kill_part_way(worker: Worker, url: str, table: str, at_least: int,
                  total: int) -> int:
    """SIGKILL the worker as soon as ``table`` holds ``at_least`` rows; return the rows
    committed when it died. Fails if the worker ended by itself or the wait times out."""
    probe = create_engine(normalise_url(url), poolclass=NullPool)  # plain reads, no write lock
    deadline = time.monotonic() + TIMEOUT
    try:
        with probe.connect() as conn:
            while True:
                rows = conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                conn.rollback()
                if rows >= at_least:
                    worker.proc.kill()
                    break
                if worker.proc.poll() is not None:
                    pytest.fail(f"worker exited ({worker.proc.returncode}) before it could be "
                                f"killed: {worker.output()[1][-2000:]}")
                if time.monotonic() > deadline:
                    worker.proc.kill()
                    worker.proc.wait(timeout=TIMEOUT)
                    pytest.fail(f"{table} did not reach {at_least} rows in {TIMEOUT}s")
                time.sleep(0.002)
        worker.proc.wait(timeout=TIMEOUT)
        out, err = worker.output()
        assert worker.proc.returncode == -signal.SIGKILL, f"not killed: {err[-2000:]}"
        assert "done" not in out, "the worker finished before the kill: make it larger"
        with probe.connect() as conn:
            committed = conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    finally:
        probe.dispose()
        if worker.proc.poll() is None:  # whatever went wrong, leave no worker behind
            worker.proc.kill()
            worker.proc.wait(timeout=TIMEOUT)
        worker.out.close()
        worker.err.close()
    assert 0 < committed < total, f"killed after {committed} of {total}: not part-way"
    return committed


def setup_context(url: str) -> Context:
    """For building the data set only (clock at the capture time). On PostgreSQL it skips the
    wait for each commit's flush to disk: the crash under test happens later, in the worker."""
    ctx = capture_context(url)
    if ctx.engine.dialect.name == "postgresql":
        ctx.engine.dispose()
        ctx.engine = make_engine(url, connect_args={"options": "-c synchronous_commit=off"})
    return ctx


def rows(ctx: Context, table, *where) -> int:  # type: ignore[no-untyped-def]
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def assert_verified(ctx: Context) -> None:
    report = verify_ledger(ctx)
    assert report.ok, report.problems


def owed_available(ctx: Context, party_ids: list[str]) -> int:
    """What the parties' available accounts owe them, in total."""
    a = t.accounts
    with ctx.engine.connect() as conn:
        raw = conn.execute(select(func.coalesce(func.sum(a.c.balance_minor), 0)).where(
            a.c.purpose == Purpose.AVAILABLE.value, a.c.party_id.in_(party_ids))).scalar_one()
    return -int(raw)


def test_a_killed_settlement_run_completes_when_run_again(db_url):
    rng = random.Random(20261109)
    setup = setup_context(db_url)  # orders captured and released before the period ends
    seed_marketplace(setup)
    merchants = [f"shop-{i:03d}" for i in range(MERCHANTS)]
    for i, merchant in enumerate(merchants):
        register_party(setup, Party(merchant, f"Shop {i}", PartyRole.MERCHANT),
                       BankDetails(f"Owner {i}", f"6222 1000 0000 {i:04d}", "ICBC"),
                       verified=True)
        orders.capture_order(setup, order(f"o-{i}", merchant=merchant,
                                          price=rng.randint(100, 99_999)))
        orders.confirm_order(setup, f"o-{i}")
    available_before = owed_available(setup, merchants)
    assert available_before > 0
    setup.engine.dispose()

    worker = Worker("settle", db_url)
    settled = kill_part_way(worker, db_url, "statements", rng.randint(1, 40), MERCHANTS)

    ctx = settle_context(db_url)
    try:
        # What the dead run committed is whole: a statement always comes with its payout.
        assert rows(ctx, t.payouts) == settled
        assert_verified(ctx)

        run = settlement.run_settlement(ctx, PERIOD_END)
        assert run.statements == run.payouts == MERCHANTS - settled
        assert Counter(status for _, _, status in run.skipped) == {"already_settled": settled}

        with ctx.engine.connect() as conn:
            statements = conn.execute(select(t.statements.c.party_id).where(
                t.statements.c.period_end == PERIOD_END)).scalars().all()
            payouts = conn.execute(select(t.payouts.c.party_id, t.payouts.c.amount_minor)).all()
        assert Counter(statements) == Counter(merchants)
        assert Counter(party for party, _ in payouts) == Counter(merchants)
        assert sum(amount for _, amount in payouts) == available_before
        assert owed_available(ctx, merchants) == 0
        assert_verified(ctx)
    finally:
        ctx.engine.dispose()


def test_a_killed_capture_loop_run_again_captures_each_order_once(db_url):
    seed = 424242
    setup = setup_context(db_url)
    seed_marketplace(setup)
    setup.engine.dispose()
    rng = random.Random(seed)

    worker = Worker("capture", db_url, str(CAPTURES), str(seed))
    captured = kill_part_way(worker, db_url, "orders", rng.randint(5, 60), CAPTURES)

    ctx = capture_context(db_url)
    try:
        # Each capture committed whole or not at all.
        assert rows(ctx, t.journal_entries) == captured
        assert rows(ctx, t.idempotency_keys) == captured
        assert_verified(ctx)

        batch = capture_batch(CAPTURES, seed)
        results = capture_loop(ctx, batch)  # the whole loop again, with the same keys
        with ctx.engine.connect() as conn:
            entry_of = dict(conn.execute(select(t.orders.c.order_id,
                                                t.orders.c.capture_entry_id)).all())
            captures = Counter(conn.execute(select(t.journal_entries.c.order_id).where(
                t.journal_entries.c.kind == "capture")).scalars())
        assert sorted(entry_of) == sorted(o.order_id for o in batch)
        assert set(captures.values()) == {1} and len(captures) == CAPTURES
        assert [r["entry_id"] for r in results] == [entry_of[o.order_id] for o in batch]
        assert rows(ctx, t.idempotency_keys) == CAPTURES
        with ctx.uow() as uow:
            assert uow.repo.balance(system_account(Purpose.CLEARING, "CNY")) == sum(
                o.total_minor for o in batch)
        assert_verified(ctx)

        assert capture_loop(ctx, batch) == results  # and once more changes nothing
        assert rows(ctx, t.journal_entries) == CAPTURES
    finally:
        ctx.engine.dispose()
