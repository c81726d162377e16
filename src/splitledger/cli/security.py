"""Commands for fund security and webhooks: ``keys``, ``webhooks``, ``payout approve/reject``.

The command line trusts ``--by``: whoever runs it holds the database and its keys anyway. The
API is where identities are proven; the names given here are recorded as ``user:<name>``, the
same subjects API users have, so that four-eyes checks compare like with like.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from splitledger.services import fundsec, keys, webhooks

from .common import Database, handle_errors, make_console, open_context

Person = Annotated[str, typer.Option("--by", metavar="NAME",
                                     help="Who does it (recorded as user:NAME).")]


def register(app: typer.Typer, payout_app: typer.Typer) -> None:
    keys_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)
    hooks_app = typer.Typer(help="Webhooks: subscriptions and delivery.", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")
    app.add_typer(hooks_app, name="webhooks")

    @keys_app.command("reencrypt")
    @handle_errors
    def keys_reencrypt(
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000,
                                                help="Rows per transaction.")] = 200,
        database: Database = None,
    ) -> None:
        """Re-encrypt every encrypted field (bank details, identities, webhook secrets) with
        the active key, in batches. Safe to interrupt and run again; afterwards the old key
        can be removed from SPLITLEDGER_ENCRYPTION_KEYS."""
        with open_context(database) as ctx:
            reports = keys.reencrypt_all(ctx, batch_size=batch_size)
            active = ctx.cipher.active_key_id
        table = Table(title=f"Re-encrypted with key {active}", title_justify="left")
        for column in ("Field", "Re-encrypted", "Changed meanwhile", "Still under old keys"):
            table.add_column(column, justify="left" if column == "Field" else "right")
        for report in reports:
            table.add_row(report.name, f"{report.reencrypted:,}", f"{report.skipped:,}",
                          f"{report.remaining:,}")
        make_console().print(table)
        if any(report.remaining for report in reports):
            raise typer.Exit(1)

    @hooks_app.command("deliver")
    @handle_errors
    def hooks_deliver(
        limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                           help="At most this many attempts.")] = 500,
        database: Database = None,
    ) -> None:
        """One delivery pass: POST every due delivery once (signed), record each attempt and
        schedule retries. Run it every minute (cron or a systemd timer)."""
        with open_context(database) as ctx:
            report = webhooks.deliver_due(ctx, limit=limit)
        make_console().print(f"{report.attempted:,} attempted: {report.delivered:,} delivered, "
                             f"{report.retrying:,} to retry, {report.failed:,} given up")

    @hooks_app.command("redeliver")
    @handle_errors
    def hooks_redeliver(delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY_ID")],
                        database: Database = None) -> None:
        """Send a delivery's event again (as a new delivery, sent by the next pass)."""
        with open_context(database) as ctx:
            result = webhooks.redeliver(ctx, delivery_id)
        make_console().print(f"redelivery {result['delivery_id']} of {delivery_id} is due now")

    @hooks_app.command("subscribe")
    @handle_errors
    def hooks_subscribe(
        url: Annotated[str, typer.Argument(metavar="URL")],
        event: Annotated[list[str], typer.Option("--event", "-e", help="An event type "
                                                 "(repeat it), or * for all.")],
        description: Annotated[str, typer.Option("--description")] = "",
        database: Database = None,
    ) -> None:
        """Subscribe URL to event types; prints the signing secret this once."""
        with open_context(database) as ctx:
            result = webhooks.create_subscription(ctx, url, event, description=description)
        console = make_console()
        console.print(f"subscription {result['subscription_id']} to "
                      f"{', '.join(result['event_types'])}")
        console.print(f"signing secret (shown once, store it now): {result['secret']}")

    @hooks_app.command("list")
    @handle_errors
    def hooks_list(database: Database = None) -> None:
        """List subscriptions (secrets are never shown again)."""
        with open_context(database) as ctx:
            rows = webhooks.list_subscriptions(ctx, limit=10_000)
        table = Table(title="Webhook subscriptions", title_justify="left")
        for column in ("Id", "URL", "Events", "Secret", "Disabled"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["subscription_id"], row["url"], ", ".join(row["event_types"]),
                          row["secret_hint"], row["disabled_at"] or "")
        make_console().print(table)

    @hooks_app.command("deliveries")
    @handle_errors
    def hooks_deliveries(
        status: Annotated[str | None, typer.Option(
            "--status", help="pending, delivered, failed or cancelled.",
            show_default=False)] = None,
        database: Database = None,
    ) -> None:
        """The delivery log (last status code and error of each delivery)."""
        with open_context(database) as ctx:
            rows = webhooks.list_deliveries(ctx, status=status, limit=10_000)
        table = Table(title="Webhook deliveries", title_justify="left")
        for column in ("Delivery", "Event", "Status", "Attempts", "Last code", "Last error",
                       "Next attempt"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["delivery_id"], row["event_type"], row["status"],
                          str(row["attempts"]), str(row["last_status_code"] or ""),
                          row["last_error"] or "", row["next_attempt_at"] or "")
        make_console().print(table)

    @payout_app.command("approve")
    @handle_errors
    def payout_approve(payout_id: Annotated[str, typer.Argument(metavar="ID")], by: Person,
                       database: Database = None) -> None:
        """Approve a payout above the four-eyes threshold (not by who started the run)."""
        with open_context(database, actor=f"user:{by}") as ctx:
            result = fundsec.approve_payout(ctx, payout_id)
        make_console().print(f"payout {payout_id} is {result['status']}"
                             + ("" if result["changed"] else " (already approved)"))

    @payout_app.command("reject")
    @handle_errors
    def payout_reject(payout_id: Annotated[str, typer.Argument(metavar="ID")], by: Person,
                      reason: Annotated[str, typer.Option("--reason", help="Why.")],
                      database: Database = None) -> None:
        """Reject a payout awaiting approval (or held): the money is available again."""
        with open_context(database, actor=f"user:{by}") as ctx:
            result = fundsec.reject_payout(ctx, payout_id, reason)
        make_console().print(f"payout {payout_id} is {result['status']}"
                             + ("" if result["changed"] else " (already rejected)"))
