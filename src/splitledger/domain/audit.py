"""The audit log as a hash chain (pure).

Each record's hash covers its own canonical content and the previous record's hash, so an
edited, reordered, inserted or removed record breaks every hash after it. Verification
recomputes the chain from the first record and reports the first break.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One change: who did what to which object, when, from where, and the state before and
    after (secrets already masked by the caller)."""

    seq: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    before: Any
    after: Any
    source: str
    prev_hash: str
    hash: str


def record_hash(seq: int, at: datetime, actor: str, action: str, object_type: str,
                object_id: str, before: Any, after: Any, source: str, prev_hash: str) -> str:
    content = json.dumps(
        [seq, at.isoformat(), actor, action, object_type, object_id, before, after, source,
         prev_hash], sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()


def verify_chain(records: Iterable[AuditRecord]) -> tuple[int, str | None]:
    """Check the chain in sequence order. Returns (records checked, first problem or None)."""
    prev, expected_seq, count = GENESIS, 1, 0
    for record in records:
        count += 1
        if record.seq != expected_seq:
            return count, f"record {record.seq}: expected sequence {expected_seq} (a record " \
                          "was removed or reordered)"
        if record.prev_hash != prev:
            return count, f"record {record.seq}: does not follow the previous record's hash"
        digest = record_hash(record.seq, record.at, record.actor, record.action,
                             record.object_type, record.object_id, record.before, record.after,
                             record.source, record.prev_hash)
        if digest != record.hash:
            return count, f"record {record.seq}: content does not match its hash (edited)"
        prev, expected_seq = record.hash, expected_seq + 1
    return count, None
