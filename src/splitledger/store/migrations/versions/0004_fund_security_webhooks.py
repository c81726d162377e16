"""party verification (KYC), bank details changes, payout controls, webhooks outbox

Parties that exist before this migration were being paid out already: they are marked
verified by "migration:0004" (find them with that reviewer and review them properly).

Revision ID: 0004
Revises: 0003
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "party_verifications",
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("details_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("details_key_id", sa.String(32), nullable=True),
        sa.Column("details_masked", sa.JSON(), nullable=True),
        sa.Column("submitted_by", sa.String(80), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(80), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"],
                                name=op.f("fk_party_verifications_party_id_parties")),
        sa.PrimaryKeyConstraint("party_id", name=op.f("pk_party_verifications")),
    )
    op.create_table(
        "bank_detail_changes",
        sa.Column("change_id", BigId, autoincrement=True, nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("bank_masked", sa.String(64), nullable=False),
        sa.Column("changed_by", sa.String(80), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(80), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"],
                                name=op.f("fk_bank_detail_changes_party_id_parties")),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_bank_detail_changes")),
    )
    op.create_index(op.f("ix_bank_detail_changes_party_id"), "bank_detail_changes",
                    ["party_id"])
    op.create_table(
        "payout_controls",
        sa.Column("payout_id", sa.String(36), nullable=False),
        sa.Column("started_by", sa.String(80), nullable=False),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        sa.Column("threshold_minor", sa.BigInteger(), nullable=True),
        sa.Column("bank_change_id", sa.BigInteger(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("held_from", sa.String(16), nullable=True),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.payout_id"],
                                name=op.f("fk_payout_controls_payout_id_payouts")),
        sa.PrimaryKeyConstraint("payout_id", name=op.f("pk_payout_controls")),
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("secret_key_id", sa.String(32), nullable=False),
        sa.Column("secret_hint", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_webhook_events")),
    )
    op.create_index(op.f("ix_webhook_events_event_type"), "webhook_events", ["event_type"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redelivery_of", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["webhook_events.event_id"],
                                name=op.f("fk_webhook_deliveries_event_id_webhook_events")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["webhook_subscriptions.subscription_id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions")),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries", ["event_id"])
    op.create_index(op.f("ix_webhook_deliveries_subscription_id"), "webhook_deliveries",
                    ["subscription_id"])
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries",
                    ["status", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("attempt_id", BigId, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["webhook_deliveries.delivery_id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries")),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts",
                    ["delivery_id"])

    # Parties that predate verification keep being paid: verified by the migration.
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    parties = bind.execute(sa.text("SELECT party_id FROM parties")).scalars().all()
    if parties:
        verifications = sa.table(
            "party_verifications", sa.column("party_id", sa.String),
            sa.column("status", sa.String), sa.column("reviewed_by", sa.String),
            sa.column("reviewed_at", sa.DateTime(timezone=True)),
            sa.column("review_note", sa.Text),
            sa.column("updated_at", sa.DateTime(timezone=True)))
        op.bulk_insert(verifications, [
            {"party_id": party_id, "status": "verified", "reviewed_by": "migration:0004",
             "reviewed_at": now, "updated_at": now,
             "review_note": "registered before party verification existed; review it"}
            for party_id in parties])


def downgrade() -> None:
    for table in ("webhook_attempts", "webhook_deliveries", "webhook_events",
                  "webhook_subscriptions", "payout_controls", "bank_detail_changes",
                  "party_verifications"):
        op.drop_table(table)
