"""``splitledger rules ...`` and ``splitledger split``: the rule language from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from splitledger.domain.rules.engine import RulesPolicy
from splitledger.domain.rules.model import Ruleset
from splitledger.domain.split import SplitPlan
from splitledger.errors import InvalidRuleset
from splitledger.rules_io import load_ruleset_yaml
from splitledger.services import rules as rules_service

from .common import Database, handle_errors, make_console, open_context, parse_moment, read_order
from .render import money

rules_app = typer.Typer(help="Split rulesets: validate, draft, approve (four-eyes), back-test.",
                        no_args_is_help=True)
RulesFile = Annotated[str, typer.Argument(metavar="RULES.yaml", help="A ruleset file.")]
Person = Annotated[str, typer.Option("--by", metavar="NAME", help="Who does it (recorded).")]


def read_rules(path: str) -> tuple[Ruleset, str]:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRuleset(f"cannot read {path}: {exc}", problems=[]) from exc
    return load_ruleset_yaml(text, path), text


@rules_app.command("validate")
@handle_errors
def validate(rules_file: RulesFile) -> None:
    """Check a ruleset file; every problem is listed with its rule, field and line."""
    ruleset, _ = read_rules(rules_file)
    RulesPolicy(ruleset)
    typer.echo(f"ruleset {ruleset.version}: {len(ruleset.rules)} rules, valid")


@rules_app.command("draft")
@handle_errors
def draft(rules_file: RulesFile, by: Person, database: Database = None) -> None:
    """Store a ruleset as a draft (a redraft of the same version replaces it)."""
    ruleset, text = read_rules(rules_file)
    with open_context(database) as ctx:
        result = rules_service.draft_ruleset(ctx, ruleset, by=by, source=text)
    typer.echo(f"ruleset {result['version']} drafted by {by}; it needs another person's "
               "approval")


@rules_app.command("approve")
@handle_errors
def approve(version: Annotated[str, typer.Argument(metavar="VERSION")], by: Person,
            database: Database = None) -> None:
    """Approve a draft (not by its drafter); it applies from its effective_from."""
    with open_context(database) as ctx:
        result = rules_service.approve_ruleset(ctx, version, by=by)
    typer.echo(f"ruleset {version} approved by {by}; in force from {result['effective_from']}")


@rules_app.command("list")
@handle_errors
def list_(database: Database = None) -> None:
    """Every ruleset version, its status and who drafted and approved it."""
    with open_context(database) as ctx:
        rows = rules_service.list_rulesets(ctx)
    table = Table(title="Rulesets", title_justify="left")
    for column in ("Version", "Effective from", "Status", "Drafted by", "Approved by"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["version"], row["effective_from"].isoformat(), row["status"],
                      row["drafted_by"], row["approved_by"] or "")
    make_console().print(table)


@rules_app.command("backtest")
@handle_errors
def backtest(
    rules_file: RulesFile,
    start: Annotated[str, typer.Option("--from", metavar="TIME", help="Period start (ISO 8601).")],
    end: Annotated[str, typer.Option("--until", metavar="TIME", help="Period end, excluded.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database: Database = None,
) -> None:
    """Split the orders of a past period with a ruleset and compare with what was booked.
    Writes nothing."""
    ruleset, _ = read_rules(rules_file)
    with open_context(database) as ctx:
        report = rules_service.backtest(ctx, ruleset, parse_moment(start, "from"),
                                        parse_moment(end, "until"))
    platform = ruleset.platform_party_id
    currencies = sorted({c for _, c in report.booked} | {c for _, c in report.simulated})
    take = {c: (report.take_rate_bps(report.booked, platform, c),
                report.take_rate_bps(report.simulated, platform, c)) for c in currencies}
    diffs = report.differences()
    if as_json:
        typer.echo(json.dumps({
            "version": report.version, "orders": report.orders,
            "changed_orders": report.changed_orders,
            "refused": [{"order_id": o, "reason": r} for o, r in report.refused],
            "differences": [{"party_id": p, "currency": c,
                             "booked_minor": report.booked.get((p, c), 0),
                             "simulated_minor": report.simulated.get((p, c), 0),
                             "difference_minor": d} for (p, c), d in diffs.items()],
            "take_rate_bps": {c: {"booked": round(b, 2), "simulated": round(s, 2)}
                              for c, (b, s) in take.items()}}, indent=2))
        return
    console = make_console()
    console.print(f"Back-test of {report.version} over {report.orders} orders captured from "
                  f"{report.start.isoformat()} until {report.end.isoformat()}: "
                  f"{report.changed_orders} would change, {len(report.refused)} would be refused.")
    table = Table(title="Differences per party", title_justify="left")
    for column, justify in (("Party", "left"), ("Booked", "right"), ("With this ruleset", "right"),
                            ("Difference", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for (party, currency), diff in diffs.items():
        table.add_row(party, money(report.booked.get((party, currency), 0), currency),
                      money(report.simulated.get((party, currency), 0), currency),
                      money(diff, currency))
    console.print(table if diffs else "No party would receive a different amount.")
    for currency, (booked, simulated) in take.items():
        console.print(f"Platform take rate {currency}: {booked / 100:.2f}% booked, "
                      f"{simulated / 100:.2f}% with this ruleset")
    for order_id, reason in report.refused[:20]:
        console.print(f"refused {order_id}: {reason}")


def split(
    rules: Annotated[str, typer.Option("--rules", metavar="RULES.yaml", help="A ruleset file.")],
    order_file: Annotated[str, typer.Option("--order", metavar="ORDER.json",
                                            help="The order as JSON ('-' reads stdin).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    database: Database = None,
) -> None:
    """Preview how a ruleset splits an order, with the rule and computation of every amount.
    Parties (tiers, affiliate parents) and merchants' GMV come from the database; nothing is
    written."""
    ruleset, _ = read_rules(rules)
    order = read_order(order_file)
    with open_context(database) as ctx:
        plan = rules_service.preview_split(ctx, ruleset, order)
    if as_json:
        typer.echo(json.dumps(plan.as_dict(), indent=2, ensure_ascii=False))
        return
    render_plan(plan)


def render_plan(plan: SplitPlan) -> None:
    table = Table(title=f"Split of order {plan.order_id} by ruleset {plan.policy_version}",
                  title_justify="left")
    for column, justify in (("Line", "left"), ("Party", "left"), ("Kind", "left"),
                            ("Amount", "right"), ("Rule", "left"), ("Why", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for a in plan.allocations:
        table.add_row(a.line_id or "-", a.party_id, a.kind.value,
                      money(a.amount_minor, plan.currency), a.rule_id, a.explanation)
    table.add_section()
    table.add_row("", "total", "", money(plan.total_minor, plan.currency), "", "")
    console = make_console()
    console.print(table)
    totals = Table(title="Per party", title_justify="left")
    totals.add_column("Party")
    totals.add_column("Net", justify="right")
    for party, amount in plan.net_by_party().items():
        totals.add_row(party, money(amount, plan.currency))
    console.print(totals)


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
    app.command("split")(handle_errors(split))
