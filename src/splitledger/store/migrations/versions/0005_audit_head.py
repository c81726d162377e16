"""audit chain head

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # Anchor an existing chain at its current end.
    op.execute("INSERT INTO audit_head (id, seq, hash) "
               "SELECT 1, seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")


def downgrade() -> None:
    op.drop_table("audit_head")
