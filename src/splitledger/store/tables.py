"""Table definitions (SQLAlchemy Core). The migrations in ``migrations/versions`` create them;
this module is what the code reads and writes through.

Journal tables (``journal_entries``, ``postings``) are append-only: the database refuses updates
and deletes (see the first migration). Everything else is a projection that may change.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Integer ids that autoincrement on SQLite (which only does so for INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

parties = Table(
    "parties", metadata,
    Column("party_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("tier", String(32)),
    Column("currencies", JSON, nullable=False),
    Column("payout_frequency", String(16), nullable=False),
    Column("payout_delay_days", Integer, nullable=False),
    Column("min_payout", JSON, nullable=False),
    Column("hold_days", Integer),
    Column("parent_party_id", String(64)),
    Column("bank_ciphertext", LargeBinary),
    Column("bank_key_id", String(32)),
    Column("bank_masked", String(64)),
    Column("bank_updated_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
)

accounts = Table(
    "accounts", metadata,
    Column("account_id", BigId, primary_key=True, autoincrement=True),
    Column("code", String(120), nullable=False, unique=True),
    Column("party_id", String(64), ForeignKey("parties.party_id")),
    Column("purpose", String(24), nullable=False),
    Column("currency", String(3), nullable=False),
    # Kept in the same transaction as the postings: an O(1) balance read at any history length.
    Column("balance_minor", BigInteger, nullable=False, default=0),
    Column("updated_at", UtcDateTime),
)

journal_entries = Table(
    "journal_entries", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("entry_id", String(36), nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("booked_at", UtcDateTime, nullable=False, index=True),
    Column("order_id", String(128), index=True),
    Column("payout_id", String(36), index=True),
    Column("statement_id", String(36)),
    Column("reverses_entry_id", String(36)),
    Column("memo", Text, nullable=False, default=""),
    Column("posting_count", Integer, nullable=False),
)

postings = Table(
    "postings", metadata,
    Column("posting_id", BigId, primary_key=True, autoincrement=True),
    Column("entry_id", String(36), nullable=False),
    Column("account_id", BigInteger, ForeignKey("accounts.account_id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("booked_at", UtcDateTime, nullable=False),
    # Postings are written before their entry header, which seals the entry (see migration).
    ForeignKeyConstraint(["entry_id"], ["journal_entries.entry_id"],
                         deferrable=True, initially="DEFERRED"),
    Index("ix_postings_account_booked", "account_id", "booked_at"),
    Index("ix_postings_entry", "entry_id"),
)

orders = Table(
    "orders", metadata,
    Column("order_id", String(128), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("captured_minor", BigInteger, nullable=False),
    Column("psp_fee_minor", BigInteger, nullable=False),
    Column("captured_at", UtcDateTime, nullable=False, index=True),
    Column("hold_until", UtcDateTime, nullable=False),
    Column("released_at", UtcDateTime),
    Column("refunded_minor", BigInteger, nullable=False, default=0),
    Column("other_reversed_minor", BigInteger, nullable=False, default=0),
    Column("policy_version", String(64), nullable=False),
    Column("capture_entry_id", String(36), nullable=False),
    Column("merchant_ids", JSON, nullable=False),
    Column("body", JSON, nullable=False),
    Index("ix_orders_unreleased", "released_at", "hold_until"),
)

split_allocations = Table(
    "split_allocations", metadata,
    Column("order_id", String(128), ForeignKey("orders.order_id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("party_id", String(64), nullable=False, index=True),
    Column("kind", String(24), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("rule_id", String(120), nullable=False),
    Column("line_id", String(64)),
    Column("basis", String(40), nullable=False),
    Column("basis_minor", BigInteger, nullable=False),
    Column("rate_bps", Integer),
    Column("explanation", Text, nullable=False),
)

reversals = Table(
    "reversals", metadata,
    Column("reversal_id", String(36), primary_key=True),
    Column("order_id", String(128), ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("policy", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("entry_id", String(36), nullable=False),
)

statements = Table(
    "statements", metadata,
    Column("statement_id", String(36), primary_key=True),
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False),
    Column("opening_minor", BigInteger, nullable=False),
    Column("closing_minor", BigInteger, nullable=False),
    Column("payout_minor", BigInteger, nullable=False),
    Column("carried_minor", BigInteger, nullable=False),
    Column("lines", JSON, nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    # One statement per party, currency and period: a second settlement run cannot pay again.
    UniqueConstraint("party_id", "currency", "period_end"),
)

payouts = Table(
    "payouts", metadata,
    Column("payout_id", String(36), primary_key=True),
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("statement_id", String(36), ForeignKey("statements.statement_id"), unique=True),
    Column("status", String(16), nullable=False, index=True),
    Column("bank_masked", String(64), nullable=False),
    Column("value_date", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("failure_reason", Text),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(40), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

rulesets = Table(
    "rulesets", metadata,
    Column("version", String(64), primary_key=True),
    Column("effective_from", UtcDateTime, nullable=False, index=True),
    Column("status", String(16), nullable=False),  # draft -> approved (immutable from then on)
    Column("body", JSON, nullable=False),
    Column("source", Text, nullable=False, default=""),
    Column("body_hash", String(64), nullable=False),
    Column("drafted_by", String(64), nullable=False),
    Column("drafted_at", UtcDateTime, nullable=False),
    Column("approved_by", String(64)),
    Column("approved_at", UtcDateTime),
)

# Per order and merchant, the merchant's GMV in that order: volume-tiered commission sums it
# over a rolling window (index on merchant, currency, time).
order_merchants = Table(
    "order_merchants", metadata,
    Column("order_id", String(128), ForeignKey("orders.order_id"), primary_key=True),
    Column("merchant_id", String(64), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("captured_at", UtcDateTime, nullable=False),
    Column("gmv_minor", BigInteger, nullable=False),
    Index("ix_order_merchants_window", "merchant_id", "currency", "captured_at"),
)

# -- access, audit and approvals (migration 0003) -----------------------------------------------

users = Table(
    "users", metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),  # argon2id
    Column("role", String(16), nullable=False),
    Column("party_id", String(64), ForeignKey("parties.party_id")),
    Column("language", String(8), nullable=False, default="en"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime),
)

api_keys = Table(
    "api_keys", metadata,
    Column("prefix", String(16), primary_key=True),          # shown, identifies the key
    Column("secret_hash", String(64), nullable=False),       # SHA-256 of the whole key
    Column("name", String(120), nullable=False),
    Column("role", String(16), nullable=False),
    Column("party_id", String(64), ForeignKey("parties.party_id")),
    Column("scopes", JSON),                                   # null: everything the role may
    Column("created_by", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("last_used_at", UtcDateTime),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),       # SHA-256 of the bearer token
    Column("username", String(64), ForeignKey("users.username"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

login_failures = Table(
    "login_failures", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_login_failures_username_at", "username", "at"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(80), nullable=False),
    Column("action", String(64), nullable=False, index=True),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(128), nullable=False, index=True),
    Column("before", JSON),
    Column("after", JSON),
    Column("source", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)

# -- fund security: verification, bank details changes, payout controls (migration 0004) -------

# One row per party that has submitted an identity or been reviewed; no row means "pending,
# nothing submitted". The identity is encrypted (associated data "kyc:<party_id>").
party_verifications = Table(
    "party_verifications", metadata,
    Column("party_id", String(64), ForeignKey("parties.party_id"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("details_ciphertext", LargeBinary),
    Column("details_key_id", String(32)),
    Column("details_masked", JSON),
    Column("submitted_by", String(80)),
    Column("submitted_at", UtcDateTime),
    Column("reviewed_by", String(80)),
    Column("reviewed_at", UtcDateTime),
    Column("review_note", Text),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Every change of a party's bank details: who made it, and who (another person) approved it.
bank_detail_changes = Table(
    "bank_detail_changes", metadata,
    Column("change_id", BigId, primary_key=True, autoincrement=True),
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("bank_masked", String(64), nullable=False),
    Column("changed_by", String(80), nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("approved_by", String(80)),
    Column("approved_at", UtcDateTime),
    Column("note", Text),
)

# Per payout: who started the run that made it, the four-eyes decision, and holds.
payout_controls = Table(
    "payout_controls", metadata,
    Column("payout_id", String(36), ForeignKey("payouts.payout_id"), primary_key=True),
    Column("started_by", String(80), nullable=False),
    Column("needs_approval", Boolean, nullable=False),
    Column("threshold_minor", BigInteger),
    Column("bank_change_id", BigInteger),      # the bank details the payout was made for
    Column("decision", String(16)),            # approved / rejected
    Column("decided_by", String(80)),
    Column("decided_at", UtcDateTime),
    Column("decision_reason", Text),
    Column("held_from", String(16)),           # the status a held payout returns to
    Column("held_at", UtcDateTime),
    Column("held_reason", Text),
)

# -- webhooks (migration 0004) ------------------------------------------------------------------

webhook_subscriptions = Table(
    "webhook_subscriptions", metadata,
    Column("subscription_id", String(36), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("description", String(200), nullable=False, default=""),
    Column("secret_ciphertext", LargeBinary, nullable=False),  # "webhook:<subscription_id>"
    Column("secret_key_id", String(32), nullable=False),
    Column("secret_hint", String(16), nullable=False),          # the first characters, shown
    Column("created_by", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime),
)

# The outbox: written in the transaction of the change it reports.
webhook_events = Table(
    "webhook_events", metadata,
    Column("event_id", String(36), primary_key=True),
    Column("event_type", String(40), nullable=False, index=True),
    Column("payload", JSON, nullable=False),
    Column("actor", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("delivery_id", String(36), primary_key=True),
    Column("event_id", String(36), ForeignKey("webhook_events.event_id"), nullable=False,
           index=True),
    Column("subscription_id", String(36), ForeignKey("webhook_subscriptions.subscription_id"),
           nullable=False, index=True),
    Column("status", String(16), nullable=False),  # pending, delivered, failed, cancelled
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("redelivery_of", String(36)),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("attempt_id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), ForeignKey("webhook_deliveries.delivery_id"),
           nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
)

# The audit chain's head, moved in the same transaction as every append: removing the newest
# records leaves a chain that no longer reaches the head (migration 0005).
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Manual adjustments: requested by one person, booked only when a second approves (0006).
adjustments = Table(
    "adjustments", metadata,
    Column("adjustment_id", String(36), primary_key=True),
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),  # + owed more to the party, - less
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending -> approved | rejected
    Column("requested_by", String(80), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("decided_by", String(80)),
    Column("decided_at", UtcDateTime),
    Column("entry_id", String(36)),
)
