"""The demo's closing summary: one table of figures per currency, then what happened."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from splitledger.demo.simulation import DemoResult
from splitledger.services.export import format_amount

ROWS: list[tuple[str, str, str | None]] = [  # label, amount field, count field
    ("Orders captured", "", "orders"),
    ("GMV captured", "gmv_minor", None),
    ("Refunds", "refunded_minor", "refunds"),
    ("Chargebacks", "chargebacks_minor", "chargebacks"),
    ("Platform commission (net)", "platform_net_minor", None),  # less the PSP fees it bears
    ("Platform subsidies (coupons)", "subsidies_minor", None),
    ("PSP fees", "psp_fees_minor", None),
    ("Chargeback losses (platform)", "chargeback_losses_minor", None),
    ("Paid out (bank confirmed)", "paid_out_minor", None),
    ("In transit", "in_transit_minor", None),
    ("Pending (held for parties)", "pending_minor", None),
    ("Available (owed to parties)", "available_minor", None),
    ("Debts (owed by parties)", "debts_minor", "parties_in_debt"),
    ("Clearing (at the PSP)", "clearing_minor", None),
]


def _cell(figures: dict[str, int], currency: str, amount: str, count: str | None) -> str:
    if not amount:
        return f"{figures[count]:,}" if count else ""
    text = _money(figures[amount], currency)
    if count:
        unit = "parties" if count == "parties_in_debt" else ""
        text += f"  ({figures[count]:,}{' ' + unit if unit else ''})"
    return text


def _money(amount_minor: int, currency: str) -> str:
    """Grouped and exact, without the currency (the column says it)."""
    text = format_amount(amount_minor, currency)
    whole, _, frac = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}" + (f".{frac}" if frac else "")
    return ("-" if text.startswith("-") else "") + grouped


def summary_table(result: DemoResult) -> Table:
    currencies = list(result.summary)
    table = Table(title="Marketplace summary", title_justify="left")
    table.add_column("Figure")
    for currency in currencies:
        table.add_column(currency, justify="right")
    for label, amount, count in ROWS:
        table.add_row(label, *(_cell(result.summary[c], c, amount, count) for c in currencies))
    return table


def render_summary(console: Console, result: DemoResult) -> None:
    console.print()
    if result.summary:
        console.print(summary_table(result))
    else:
        console.print("No money moved: the demo captured no orders.")
    days = (result.end - result.start).days
    refunds = result.refunds
    statements_with_debt = sum(f["debt_statements"] for f in result.summary.values())
    incurred = sum(f["debts_incurred"] for f in result.summary.values())
    recovered = sum(f["debts_recovered"] for f in result.summary.values())
    console.print(
        f"Simulated {days} days from {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} "
        f"(seed {result.seed}) with {result.parties} parties.")
    console.print(
        f"Orders: {sum(result.captured.values()):,} captured"
        + (f" ({', '.join(f'{n:,} {c}' for c, n in sorted(result.captured.items()))})"
           if result.captured else "") + ", "
        f"{result.confirmations:,} confirmed early, {result.releases:,} released when their "
        "hold ended.")
    console.print(
        f"Refunds: {sum(refunds.values()):,} ({refunds['before_release']:,} before release, "
        f"{refunds['after_release']:,} after release, {refunds['after_payout']:,} after "
        f"payout); chargebacks: {result.chargebacks:,}.")
    console.print(
        f"Settlement: {result.settlement_runs:,} runs, {result.statements:,} statements, "
        f"{result.payouts_created:,} payouts made, {result.payouts_paid:,} confirmed paid.")
    console.print(
        f"Debts: {incurred:,} party accounts fell into debt (reversals after payout), "
        f"{recovered:,} of them recovered from later earnings; {statements_with_debt:,} "
        "statements carried a debt forward.")
    failed, repaid = result.failed_payout, result.repaid_payout
    if failed is None:
        console.print("Failed payout: none (too few orders for a payout to fail).")
    else:
        console.print(
            f"Failed payout: {failed['payout_id']} to {failed['party_id']} of "
            f"{_money(failed['amount_minor'], failed['currency'])} {failed['currency']} was "
            f"returned by the bank on {failed['failed_at']:%Y-%m-%d} ({failed['currency']} back "
            "to available; bank details updated).")
        if repaid is None:
            console.print("Repaid: not yet (no later statement paid it).")
        else:
            console.print(
                f"Repaid: payout {repaid['payout_id']} of "
                f"{_money(repaid['amount_minor'], repaid['currency'])} {repaid['currency']} "
                f"to {repaid['party_id']} (its next statement, net of what happened since) "
                f"confirmed paid on {repaid['paid_at']:%Y-%m-%d}.")
    console.print(f"Finished in {result.elapsed_seconds:.1f} s.")
