"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 12:54:45.959258
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('idempotency_keys',
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('journal_entries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('booked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=True),
    sa.Column('payout_id', sa.String(length=36), nullable=True),
    sa.Column('statement_id', sa.String(length=36), nullable=True),
    sa.Column('reverses_entry_id', sa.String(length=36), nullable=True),
    sa.Column('memo', sa.Text(), nullable=False),
    sa.Column('posting_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_journal_entries')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_journal_entries_entry_id'))
    )
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journal_entries_booked_at'), ['booked_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_journal_entries_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_journal_entries_payout_id'), ['payout_id'], unique=False)

    op.create_table('orders',
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('captured_minor', sa.BigInteger(), nullable=False),
    sa.Column('psp_fee_minor', sa.BigInteger(), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hold_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refunded_minor', sa.BigInteger(), nullable=False),
    sa.Column('other_reversed_minor', sa.BigInteger(), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=False),
    sa.Column('capture_entry_id', sa.String(length=36), nullable=False),
    sa.Column('merchant_ids', sa.JSON(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_orders'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_captured_at'), ['captured_at'], unique=False)
        batch_op.create_index('ix_orders_unreleased', ['released_at', 'hold_until'], unique=False)

    op.create_table('parties',
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('tier', sa.String(length=32), nullable=True),
    sa.Column('currencies', sa.JSON(), nullable=False),
    sa.Column('payout_frequency', sa.String(length=16), nullable=False),
    sa.Column('payout_delay_days', sa.Integer(), nullable=False),
    sa.Column('min_payout', sa.JSON(), nullable=False),
    sa.Column('hold_days', sa.Integer(), nullable=True),
    sa.Column('parent_party_id', sa.String(length=64), nullable=True),
    sa.Column('bank_ciphertext', sa.LargeBinary(), nullable=True),
    sa.Column('bank_key_id', sa.String(length=32), nullable=True),
    sa.Column('bank_masked', sa.String(length=64), nullable=True),
    sa.Column('bank_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('party_id', name=op.f('pk_parties'))
    )
    op.create_table('accounts',
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=120), nullable=False),
    sa.Column('party_id', sa.String(length=64), nullable=True),
    sa.Column('purpose', sa.String(length=24), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('balance_minor', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['party_id'], ['parties.party_id'], name=op.f('fk_accounts_party_id_parties')),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('code', name=op.f('uq_accounts_code'))
    )
    op.create_table('reversals',
    sa.Column('reversal_id', sa.String(length=36), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('policy', sa.String(length=16), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('entry_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.order_id'], name=op.f('fk_reversals_order_id_orders')),
    sa.PrimaryKeyConstraint('reversal_id', name=op.f('pk_reversals'))
    )
    with op.batch_alter_table('reversals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reversals_order_id'), ['order_id'], unique=False)

    op.create_table('split_allocations',
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('rule_id', sa.String(length=120), nullable=False),
    sa.Column('line_id', sa.String(length=64), nullable=True),
    sa.Column('basis', sa.String(length=40), nullable=False),
    sa.Column('basis_minor', sa.BigInteger(), nullable=False),
    sa.Column('rate_bps', sa.Integer(), nullable=True),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.order_id'], name=op.f('fk_split_allocations_order_id_orders')),
    sa.PrimaryKeyConstraint('order_id', 'seq', name=op.f('pk_split_allocations'))
    )
    with op.batch_alter_table('split_allocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_split_allocations_party_id'), ['party_id'], unique=False)

    op.create_table('statements',
    sa.Column('statement_id', sa.String(length=36), nullable=False),
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opening_minor', sa.BigInteger(), nullable=False),
    sa.Column('closing_minor', sa.BigInteger(), nullable=False),
    sa.Column('payout_minor', sa.BigInteger(), nullable=False),
    sa.Column('carried_minor', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['party_id'], ['parties.party_id'], name=op.f('fk_statements_party_id_parties')),
    sa.PrimaryKeyConstraint('statement_id', name=op.f('pk_statements')),
    sa.UniqueConstraint('party_id', 'currency', 'period_end', name=op.f('uq_statements_party_id_currency_period_end'))
    )
    op.create_table('payouts',
    sa.Column('payout_id', sa.String(length=36), nullable=False),
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('statement_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('bank_masked', sa.String(length=64), nullable=False),
    sa.Column('value_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['party_id'], ['parties.party_id'], name=op.f('fk_payouts_party_id_parties')),
    sa.ForeignKeyConstraint(['statement_id'], ['statements.statement_id'], name=op.f('fk_payouts_statement_id_statements')),
    sa.PrimaryKeyConstraint('payout_id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('statement_id', name=op.f('uq_payouts_statement_id'))
    )
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payouts_party_id'), ['party_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_status'), ['status'], unique=False)

    op.create_table('postings',
    sa.Column('posting_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('booked_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_postings_account_id_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.entry_id'], name=op.f('fk_postings_entry_id_journal_entries'), initially='DEFERRED', deferrable=True),
    sa.PrimaryKeyConstraint('posting_id', name=op.f('pk_postings'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index('ix_postings_account_booked', ['account_id', 'booked_at'], unique=False)
        batch_op.create_index('ix_postings_entry', ['entry_id'], unique=False)
    _ledger_guards()


def downgrade() -> None:
    _drop_ledger_guards()

    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.drop_index('ix_postings_entry')
        batch_op.drop_index('ix_postings_account_booked')

    op.drop_table('postings')
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payouts_status'))
        batch_op.drop_index(batch_op.f('ix_payouts_party_id'))

    op.drop_table('payouts')
    op.drop_table('statements')
    with op.batch_alter_table('split_allocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_split_allocations_party_id'))

    op.drop_table('split_allocations')
    with op.batch_alter_table('reversals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reversals_order_id'))

    op.drop_table('reversals')
    op.drop_table('accounts')
    op.drop_table('parties')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_unreleased')
        batch_op.drop_index(batch_op.f('ix_orders_captured_at'))

    op.drop_table('orders')
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journal_entries_payout_id'))
        batch_op.drop_index(batch_op.f('ix_journal_entries_order_id'))
        batch_op.drop_index(batch_op.f('ix_journal_entries_booked_at'))

    op.drop_table('journal_entries')
    op.drop_table('idempotency_keys')


# The ledger's promises, enforced by the database itself:
# - journal rows are never updated or deleted (nor truncated, on PostgreSQL);
# - postings come first and the entry header seals them: no posting joins an existing entry;
# - an entry whose postings do not sum to zero per currency cannot commit.
SQLITE_GUARDS = [
    *[f"""CREATE TRIGGER {table}_append_only_{op_name.lower()} BEFORE {op_name} ON {table}
          BEGIN SELECT RAISE(ABORT, 'ledger is append-only: {op_name} on {table} refused'); END"""
      for table in ("journal_entries", "postings") for op_name in ("UPDATE", "DELETE")],
    """CREATE TRIGGER postings_sealed BEFORE INSERT ON postings
       WHEN EXISTS (SELECT 1 FROM journal_entries WHERE entry_id = NEW.entry_id)
       BEGIN SELECT RAISE(ABORT, 'journal entry is sealed: postings cannot be added'); END""",
    """CREATE TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
       WHEN NEW.posting_count < 2
         OR NEW.posting_count <> (SELECT COUNT(*) FROM postings WHERE entry_id = NEW.entry_id)
         OR EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.entry_id
                    GROUP BY currency HAVING SUM(amount_minor) <> 0)
       BEGIN SELECT RAISE(ABORT, 'journal entry does not balance'); END""",
]

POSTGRES_GUARDS = [
    """CREATE FUNCTION splitledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
           USING ERRCODE = 'restrict_violation';
       END $$""",
    *[f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
          FOR EACH ROW EXECUTE FUNCTION splitledger_refuse_change()"""
      for table in ("journal_entries", "postings")],
    *[f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
          FOR EACH STATEMENT EXECUTE FUNCTION splitledger_refuse_change()"""
      for table in ("journal_entries", "postings")],
    """CREATE FUNCTION splitledger_postings_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF EXISTS (SELECT 1 FROM journal_entries WHERE entry_id = NEW.entry_id) THEN
           RAISE EXCEPTION 'journal entry % is sealed: postings cannot be added', NEW.entry_id
             USING ERRCODE = 'restrict_violation';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER postings_sealed BEFORE INSERT ON postings
       FOR EACH ROW EXECUTE FUNCTION splitledger_postings_sealed()""",
    """CREATE FUNCTION splitledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.posting_count < 2
            OR NEW.posting_count <> (SELECT COUNT(*) FROM postings WHERE entry_id = NEW.entry_id)
            OR EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.entry_id
                       GROUP BY currency HAVING SUM(amount_minor) <> 0) THEN
           RAISE EXCEPTION 'journal entry % does not balance', NEW.entry_id
             USING ERRCODE = 'check_violation';
         END IF;
         RETURN NULL;
       END $$""",
    # Deferred to commit: whatever the statement order inside the transaction, an unbalanced
    # entry never becomes visible.
    """CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION splitledger_entry_balanced()""",
    # The seal above only sees committed headers: a posting inserted by a concurrent
    # transaction before the header commits would join the entry once both commit. Checked at
    # commit, every new posting's entry must exist and hold exactly the postings it counts.
    """CREATE FUNCTION splitledger_posting_counted() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE
         declared integer;
         counted integer;
       BEGIN
         SELECT posting_count INTO declared FROM journal_entries WHERE entry_id = NEW.entry_id;
         SELECT COUNT(*) INTO counted FROM postings WHERE entry_id = NEW.entry_id;
         IF declared IS DISTINCT FROM counted THEN
           RAISE EXCEPTION 'journal entry % does not balance: % postings, its header counts %',
             NEW.entry_id, counted, declared USING ERRCODE = 'check_violation';
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE CONSTRAINT TRIGGER postings_counted AFTER INSERT ON postings
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION splitledger_posting_counted()""",
]


def _ledger_guards() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_GUARDS if dialect == "sqlite" else POSTGRES_GUARDS:
        op.execute(statement)


def _drop_ledger_guards() -> None:
    if op.get_bind().dialect.name == "sqlite":
        names = [f"{t}_append_only_{o}" for t in ("journal_entries", "postings")
                 for o in ("update", "delete")] + ["postings_sealed", "journal_entries_balanced"]
        for name in names:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    for function in ("splitledger_refuse_change", "splitledger_postings_sealed",
                     "splitledger_entry_balanced", "splitledger_posting_counted"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")

