"""manual adjustments (four-eyes)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "adjustments",
        sa.Column("adjustment_id", sa.String(36), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(80), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_id", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"],
                                name=op.f("fk_adjustments_party_id_parties")),
        sa.PrimaryKeyConstraint("adjustment_id", name=op.f("pk_adjustments")),
    )
    op.create_index(op.f("ix_adjustments_party_id"), "adjustments", ["party_id"])


def downgrade() -> None:
    op.drop_table("adjustments")
