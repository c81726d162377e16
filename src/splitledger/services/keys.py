"""Key rotation: re-encrypt every encrypted field under the active key.

Encrypted fields name the key that sealed them, so rotation is: configure the new key beside the
old one and make it active (``SPLITLEDGER_ENCRYPTION_KEYS=k1:...,k2:...``,
``SPLITLEDGER_ACTIVE_KEY_ID=k2``), run ``splitledger keys reencrypt``, then remove the old key.
The command works in batches, one transaction each, and only on rows sealed by another key, so
it can be interrupted and run again (a second run finds nothing to do). A row changed
concurrently (new bank details, written with the active key anyway) is left alone: the update
only applies if the row still holds the ciphertext that was read. Re-encryption changes no
other column: in particular the bank details' change time, which the cooling-off counts from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, func, select, update

from splitledger.services import audit
from splitledger.services.context import Context
from splitledger.store import tables as t


@dataclass(frozen=True)
class EncryptedField:
    """A ciphertext column, its key-id column, and the associated data bound to each row."""

    name: str
    table: Table
    key_column: str
    blob_column: str
    pk_column: str
    associated: Callable[[Any], str]


FIELDS = (
    EncryptedField("party bank details", t.parties, "bank_key_id", "bank_ciphertext",
                   "party_id", lambda row: row.party_id),
    EncryptedField("party identity (KYC)", t.party_verifications, "details_key_id",
                   "details_ciphertext", "party_id", lambda row: f"kyc:{row.party_id}"),
    EncryptedField("webhook secrets", t.webhook_subscriptions, "secret_key_id",
                   "secret_ciphertext", "subscription_id",
                   lambda row: f"webhook:{row.subscription_id}"),
)


@dataclass
class FieldReport:
    name: str
    reencrypted: int = 0
    skipped: int = 0        # changed by someone else while we worked: already current
    remaining: int = 0      # still under another key afterwards (0 when all went well)


def _stale(field: EncryptedField, active: str) -> Any:
    key: Column[Any] = field.table.c[field.key_column]
    return (field.table.c[field.blob_column].is_not(None)) & (key.is_not(None)) & (key != active)


def reencrypt_all(ctx: Context, *, batch_size: int = 200) -> list[FieldReport]:
    """Re-encrypt every field sealed by a key other than the active one. Idempotent. Raises
    ConfigurationError when a row's key is not configured (nothing is lost: run again with
    it)."""
    cipher = ctx.cipher
    active = cipher.active_key_id
    reports = []
    for field in FIELDS:
        report = FieldReport(field.name)
        table, pk = field.table, field.table.c[field.pk_column]
        blob_col, key_col = field.table.c[field.blob_column], field.table.c[field.key_column]
        after: Any = None
        while True:
            with ctx.uow() as uow:
                stmt = (select(table).where(_stale(field, active)).order_by(pk)
                        .limit(batch_size))
                if after is not None:
                    stmt = stmt.where(pk > after)
                rows = uow.conn.execute(stmt).all()
                if not rows:
                    break
                for row in rows:
                    old_key, old_blob = row._mapping[field.key_column], row._mapping[
                        field.blob_column]
                    associated = field.associated(row)
                    plain = cipher.decrypt(old_key, bytes(old_blob), associated=associated)
                    key_id, blob = cipher.encrypt(plain, associated=associated)
                    done = uow.conn.execute(update(table).where(
                        pk == row._mapping[field.pk_column], key_col == old_key,
                        blob_col == old_blob).values({field.key_column: key_id,
                                                      field.blob_column: blob})).rowcount
                    if done:
                        report.reencrypted += 1
                    else:
                        report.skipped += 1
                uow.commit()
                after = rows[-1]._mapping[field.pk_column]
        with ctx.uow() as uow:
            report.remaining = int(uow.conn.execute(
                select(func.count()).select_from(table).where(_stale(field, active))
            ).scalar_one())
        reports.append(report)
    with ctx.uow() as uow:
        audit.record(uow, ctx, "keys.reencrypt", "encryption_key", active, after={
            r.name: {"reencrypted": r.reencrypted, "skipped": r.skipped,
                     "remaining": r.remaining} for r in reports})
        uow.commit()
    return reports
