"""The ``splitledger`` command line.

Every command opens the database given by ``--database`` (default: the
``SPLITLEDGER_DATABASE_URL`` setting), brings its schema up to date, calls one service and
renders the result. A ``SplitledgerError`` becomes one line ``error[<code>]: <message>`` on
stderr and exit code 2; a broken invariant exits 3 the same way. Anything else is a bug and
shows its traceback (without local variables: they may hold keys).
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from splitledger.errors import (
    ValidationError,
)
from splitledger.services import orders as order_service
from splitledger.services import settlement as settlement_service
from splitledger.services.context import Context
from splitledger.services.export import export_beancount, export_csv, list_payouts
from splitledger.services.verify import verify_ledger

from . import serve as serve_cli
from .common import (
    Database,
    IdempotencyKey,
    handle_errors,
    make_console,
    open_context,
    parse_minor,
    parse_moment,
    read_order,
)
from .render import money, render_pairs, render_payouts, render_verify
from .rules import register as register_rules
from .security import register as register_security
from .serve import register as register_serve

app = typer.Typer(
    name="splitledger",
    help="Revenue-split and settlement engine for multi-vendor marketplaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
payout_app = typer.Typer(help="Payouts: list them, record the bank's answer.",
                         no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(payout_app, name="payout")
register_rules(app)
register_security(app, payout_app)
register_serve(app)

# -- commands ----------------------------------------------------------------------------------

@db_app.command("upgrade")
@handle_errors
def db_upgrade(database: Database = None) -> None:
    """Create the schema, or bring it to the latest version (every command does this too)."""
    with open_context(database) as ctx:
        url = ctx.engine.url.render_as_string(hide_password=True)
    make_console().print(f"database {url} is at the latest schema version")


@app.command()
@handle_errors
def demo(
    database: Database = None,
    orders: Annotated[int, typer.Option("--orders", min=0, max=1_000_000,
                                        help="How many orders to capture.")] = 1_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the order generator: the "
                                      "same seed gives the same orders.")] = 42,
    start: Annotated[datetime | None, typer.Option(
        "--start", formats=["%Y-%m-%d"], show_default=False,
        help="First simulated day (moved back to its Monday). Default: six weeks before the "
             "latest Monday, so the simulated books end in the recent past.")] = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="After the demo, create the users admin, finance, risk and merchant "
                        "(passwords printed once) and serve the HTTP API on localhost until "
                        "Ctrl-C.")] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535,
                                      help="Port for --serve (on 127.0.0.1 only).")] = 8000,
) -> None:
    """Seed a demo marketplace into an EMPTY database and simulate six weeks of trading.

    Parties (platform, PSP, 24 merchants in three tiers, suppliers, logistics, affiliates;
    CNY and USD), orders, confirmations, refunds before and after release and after payout,
    chargebacks, daily releases, settlement runs and payouts (one fails and is paid again),
    all through the services on a simulated clock; then a summary per currency and a full
    ledger verification. Exit code 1 if verification finds a problem.
    """
    from splitledger.demo import run_demo
    from splitledger.demo.report import render_summary

    console = make_console()
    with open_context(database) as ctx:
        result = run_demo(ctx, orders=orders, seed=seed,
                          start=start.date() if start else None, console=console)
        render_summary(console, result)
        assert result.verify is not None
        render_verify(console, result.verify)
        if serve and result.ok:
            serve_demo(ctx, console, port)
    raise typer.Exit(0 if result.ok else 1)


def serve_demo(ctx: Context, console: Console, port: int) -> None:
    """Demo users with passwords shown this once, then the API on localhost (blocks)."""
    table = Table(title="Demo users (passwords shown once; log in with POST /v1/auth/login)",
                  title_justify="left")
    for column in ("Username", "Role", "Party", "Password"):
        table.add_column(column)
    for username, role, party, password in serve_cli.create_demo_users(ctx):
        table.add_row(username, role, party, password)
    console.print(table)
    console.print(f"serving the demo API on http://127.0.0.1:{port} (docs: /docs); "
                  "Ctrl-C stops it")
    serve_cli.serve_app(ctx, "127.0.0.1", port)


@ledger_app.command("verify")
@handle_errors
def ledger_verify(database: Database = None) -> None:
    """Check every ledger invariant over the whole database; exit 1 if any fails."""
    with open_context(database) as ctx:
        report = verify_ledger(ctx)
    render_verify(make_console(), report)
    raise typer.Exit(0 if report.ok else 1)


class ExportFormat(StrEnum):
    BEANCOUNT = "beancount"
    CSV = "csv"


@app.command()
@handle_errors
def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f",
                                                 help="beancount or csv.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", dir_okay=False, show_default=False,
        help="File to write (replaced only once the export is complete). Default: stdout.")
    ] = None,
    database: Database = None,
) -> None:
    """Export the whole journal in booking order, as beancount or one CSV row per posting.

    The beancount file ends with a balance assertion per account stating the stored
    balance, so `bean-check` proves that the journal and the balances agree.
    """
    writer = export_beancount if fmt is ExportFormat.BEANCOUNT else export_csv
    with open_context(database) as ctx:
        if output is None:
            writer(ctx, sys.stdout)
            sys.stdout.flush()
            return
        directory = output.resolve().parent
        if not directory.is_dir():
            raise ValidationError(f"no such directory: {directory}", field="output")
        handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                stats = writer(ctx, out)
            os.replace(temporary, output)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    make_console().print(f"exported {stats.entries:,} entries ({stats.postings:,} postings, "
                     f"{stats.accounts:,} accounts) to {output}")


@app.command()
@handle_errors
def release(database: Database = None) -> None:
    """Release every order whose hold period has ended (pending -> available)."""
    with open_context(database) as ctx:
        count = order_service.release_due(ctx)
    make_console().print(f"released {count:,} order(s) whose hold had ended")


@app.command()
@handle_errors
def settle(
    period_end: Annotated[str, typer.Option(
        "--period-end", metavar="ISO8601",
        help="End of the period to settle, e.g. 2026-11-16T00:00:00Z (a bare date is "
             "midnight UTC). Must be in the past.")],
    ignore_schedule: Annotated[bool, typer.Option(
        "--ignore-schedule",
        help="Settle every party now, whatever its payout schedule says.")] = False,
    database: Database = None,
) -> None:
    """Run settlement: a statement per party and currency, and a payout when one is due."""
    end = parse_moment(period_end, "period_end")
    with open_context(database) as ctx:
        run = settlement_service.run_settlement(ctx, end, ignore_schedule=ignore_schedule)
    console = make_console()
    console.print(f"settlement for the period ending {end.isoformat()}: "
                  f"{run.statements:,} statement(s), {run.payouts:,} payout(s) made")
    if run.paid_out_minor:
        table = Table(title="Paid out (in transit)", title_justify="left")
        table.add_column("Currency")
        table.add_column("Amount", justify="right")
        for currency, amount in sorted(run.paid_out_minor.items()):
            table.add_row(currency, money(amount, currency))
        console.print(table)
    reasons: dict[str, int] = {}
    for _, _, status in run.skipped:
        reasons[status] = reasons.get(status, 0) + 1
    for status, count in sorted(reasons.items()):
        console.print(f"skipped {count:,} (party, currency): {status.replace('_', ' ')}")
    if run.payouts:
        console.print("see them with: splitledger payout list --status in_transit")


@payout_app.command("list")
@handle_errors
def payout_list(
    status: Annotated[str | None, typer.Option(
        "--status", help="in_transit, paid, failed, pending_approval, held or rejected.",
        show_default=False)] = None,
    party: Annotated[str | None, typer.Option("--party", metavar="PARTY_ID",
                                              show_default=False)] = None,
    database: Database = None,
) -> None:
    """List payouts, oldest first (bank details masked)."""
    with open_context(database) as ctx:
        payouts = list_payouts(ctx, status=status, party_id=party)
    render_payouts(make_console(), payouts)


@payout_app.command("paid")
@handle_errors
def payout_paid(payout_id: Annotated[str, typer.Argument(metavar="ID")],
                database: Database = None) -> None:
    """The bank confirmed the payout: the money has left clearing."""
    with open_context(database) as ctx:
        result = settlement_service.mark_payout_paid(ctx, payout_id)
    make_console().print(f"payout {payout_id} is paid"
                     + ("" if result["changed"] else " (already recorded; nothing changed)"))


@payout_app.command("failed")
@handle_errors
def payout_failed(
    payout_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option("--reason", help="What the bank said.")],
    database: Database = None,
) -> None:
    """The bank returned the payout: the money goes back to available, paid next time."""
    with open_context(database) as ctx:
        result = settlement_service.mark_payout_failed(ctx, payout_id, reason)
    make_console().print(f"payout {payout_id} failed; the amount is available again"
                     + ("" if result["changed"] else " (already recorded; nothing changed)"))


@app.command()
@handle_errors
def capture(
    order_file: Annotated[str, typer.Argument(
        metavar="ORDER.json", help="The order as JSON ('-' reads stdin); amounts are integer "
                                   "minor units.")],
    idempotency_key: IdempotencyKey = None,
    database: Database = None,
) -> None:
    """Capture an order: split it and hold every share in pending."""
    order = read_order(order_file)
    with open_context(database) as ctx:
        result = order_service.capture_order(ctx, order, idempotency_key=idempotency_key)
    console = make_console()
    currency = result["currency"]
    render_pairs(console, f"Captured order {result['order_id']}", [
        ("Captured", money(result["captured_minor"], currency)),
        ("Held until", result["hold_until"]),
        ("Split by", result["policy_version"]),
        ("Entry", result["entry_id"]),
    ])
    table = Table(title="Split", title_justify="left")
    table.add_column("Party")
    table.add_column("Net share", justify="right")
    for allocation in result["allocations"]:
        table.add_row(allocation["party_id"], money(allocation["amount_minor"], currency))
    console.print(table)


@app.command()
@handle_errors
def refund(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID")],
    amount_minor: Annotated[str, typer.Argument(
        metavar="AMOUNT_MINOR", help="Integer minor units (1250 is 12.50 CNY).")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    idempotency_key: IdempotencyKey = None,
    database: Database = None,
) -> None:
    """Refund part or all of what is left of an order, every share in proportion."""
    amount = parse_minor(amount_minor)
    with open_context(database) as ctx:
        result = order_service.refund_order(ctx, order_id, amount, reason=reason,
                                            idempotency_key=idempotency_key)
    render_pairs(make_console(), f"Refunded order {order_id}", [
        ("Refunded (minor units)", f"{result['amount_minor']:,}"),
        ("Left on the order (minor units)", f"{result['remaining_minor']:,}"),
        ("Taken from", "available (after release)" if result["released"] else "pending"),
        ("Reversal", result["reversal_id"]),
        ("Entry", result["entry_id"]),
    ])


def main() -> None:  # pragma: no cover - the console script calls ``app`` directly
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
