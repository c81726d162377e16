"""rulesets and per-merchant order GMV

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rulesets",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("drafted_by", sa.String(64), nullable=False),
        sa.Column("drafted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_rulesets")),
    )
    op.create_index(op.f("ix_rulesets_effective_from"), "rulesets", ["effective_from"])
    op.create_table(
        "order_merchants",
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gmv_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"],
                                name=op.f("fk_order_merchants_order_id_orders")),
        sa.PrimaryKeyConstraint("order_id", "merchant_id", name=op.f("pk_order_merchants")),
    )
    op.create_index("ix_order_merchants_window", "order_merchants",
                    ["merchant_id", "currency", "captured_at"])
    # An approved ruleset is immutable: the database refuses to change or remove it.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("""CREATE TRIGGER rulesets_approved_immutable BEFORE UPDATE ON rulesets
                      WHEN OLD.status = 'approved'
                      BEGIN SELECT RAISE(ABORT, 'an approved ruleset is immutable'); END""")
        op.execute("""CREATE TRIGGER rulesets_approved_kept BEFORE DELETE ON rulesets
                      WHEN OLD.status = 'approved'
                      BEGIN SELECT RAISE(ABORT, 'an approved ruleset is immutable'); END""")
    else:
        op.execute("""CREATE FUNCTION splitledger_ruleset_immutable() RETURNS trigger
                      LANGUAGE plpgsql AS $$
                      BEGIN
                        IF OLD.status = 'approved' THEN
                          RAISE EXCEPTION 'an approved ruleset is immutable'
                            USING ERRCODE = 'restrict_violation';
                        END IF;
                        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
                      END $$""")
        op.execute("""CREATE TRIGGER rulesets_approved_immutable BEFORE UPDATE OR DELETE
                      ON rulesets FOR EACH ROW EXECUTE FUNCTION splitledger_ruleset_immutable()""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS splitledger_ruleset_immutable() CASCADE")
    op.drop_index("ix_order_merchants_window", table_name="order_merchants")
    op.drop_table("order_merchants")
    op.drop_index(op.f("ix_rulesets_effective_from"), table_name="rulesets")
    op.drop_table("rulesets")
