"""Rich renderings shared by the commands."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from splitledger.services.export import format_amount
from splitledger.services.verify import VerifyReport


def money(amount_minor: int, currency: str) -> str:
    """``1,234.56 CNY``: exact, grouped, with the currency's own number of digits."""
    text = format_amount(amount_minor, currency)
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}{'.' + frac if frac else ''} {currency}"


def render_verify(console: Console, report: VerifyReport) -> None:
    table = Table(title="Ledger verification", title_justify="left")
    table.add_column("Check")
    table.add_column("Value", justify="right")
    table.add_row("Journal entries", f"{report.entries:,}")
    table.add_row("Postings", f"{report.postings:,}")
    table.add_row("Accounts", f"{report.accounts:,}")
    table.add_row("Orders", f"{report.orders:,}")
    for currency, amount in sorted(report.trial_balance.items()):
        style = "green" if amount == 0 else "bold red"
        table.add_row(f"Trial balance {currency}", Text(str(amount), style=style))
    table.add_row("Problems", Text(str(len(report.problems)),
                                   style="green" if report.ok else "bold red"))
    console.print(table)
    for problem in report.problems:
        console.print(Text(f"problem: {problem}", style="red"))
    if report.ok:
        console.print(Text("ledger OK: every invariant holds", style="bold green"))
    else:
        console.print(Text(f"ledger FAILED: {len(report.problems)} problem(s)",
                           style="bold red"))


def render_pairs(console: Console, title: str, pairs: Iterable[tuple[str, Any]]) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value")
    for key, value in pairs:
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


def render_payouts(console: Console, payouts: list[dict[str, Any]]) -> None:
    """A table on a wide terminal; one line per payout otherwise, never cutting the id (it is
    what `payout paid` and `payout failed` take)."""
    rows = [(p["payout_id"], p["party_id"], money(p["amount_minor"], p["currency"]),
             p["status"], f"{p['value_date']:%Y-%m-%d}",
             p["bank_masked"] + (f"; {p['failure_reason']}" if p["failure_reason"] else ""))
            for p in payouts]
    if console.width < 140:
        console.print(f"Payouts ({len(payouts)})", style="bold")
        for row in rows:
            console.print("  ".join(row[:4]) + f"  value {row[4]}  {row[5]}", soft_wrap=True)
        return
    table = Table(title=f"Payouts ({len(payouts)})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Payout", "Party", "Amount", "Status", "Value date"):
        table.add_column(column, no_wrap=True, justify="right" if column == "Amount" else "left")
    table.add_column("Bank (masked) / note")
    for row in rows:
        table.add_row(*row)
    console.print(table)
