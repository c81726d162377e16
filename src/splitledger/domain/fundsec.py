"""Fund security rules (pure): bank details cooling-off and four-eyes payouts.

* New or changed bank details are not paid to until they have been stable for the cooling-off
  period, or a second person (not the one who entered them) approved them. An account
  takeover that swaps the bank account therefore cannot divert the next payout.
* A payout above the configured amount for its currency waits for a second person's approval
  (not the one who started the settlement run) before the bank may send it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class BankStability:
    """Whether bank details may be paid to now, and why.

    Attributes:
      payable: the details may receive a payout.
      cooling_off_until: when they become payable without approval.
      approved: a second person approved them.
    """

    payable: bool
    cooling_off_until: datetime
    approved: bool


def bank_stability(changed_at: datetime, approved: bool, now: datetime,
                   cooling_off: timedelta) -> BankStability:
    until = changed_at + cooling_off
    return BankStability(approved or now >= until, until, approved)


def needs_payout_approval(amount_minor: int, currency: str,
                          thresholds: Mapping[str, int]) -> bool:
    """A payout strictly above the configured amount of its currency needs a second person;
    a currency without a configured amount never does."""
    limit = thresholds.get(currency)
    return limit is not None and amount_minor > limit


class PayoutState:
    """Payout statuses. Only ``in_transit`` may be sent by the bank rail (and then be marked
    paid or failed); ``pending_approval`` waits for a second person, ``held`` for the party's
    reinstatement. Money of a payout in any of those three stays in the party's ``in_transit``
    account; ``failed`` and ``rejected`` returned it to ``available``."""

    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"
    PENDING_APPROVAL = "pending_approval"
    HELD = "held"
    REJECTED = "rejected"


SENDABLE = frozenset({PayoutState.IN_TRANSIT})
HOLDABLE = frozenset({PayoutState.IN_TRANSIT, PayoutState.PENDING_APPROVAL})
