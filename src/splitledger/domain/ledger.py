"""Double-entry journal values: accounts, postings and balanced entries.

Sign convention: a posting's ``amount_minor`` is positive for a debit and negative for a
credit, so every entry sums to zero per currency. Party accounts are liabilities (money the
platform owes the party), so their raw balance is negative when something is owed;
``AccountRef.normal_sign`` turns a raw balance into the figure people read ("owed to the party").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from splitledger.domain.money import check_currency, check_minor
from splitledger.errors import InvariantViolation


class Purpose(StrEnum):
    # A party's accounts: liabilities, owed to the party.
    PENDING = "pending"          # held: the order may still be refunded
    AVAILABLE = "available"      # released, owed to the party (negative owed: a debt)
    IN_TRANSIT = "in_transit"    # payout sent, not yet confirmed
    # System accounts.
    CLEARING = "clearing"                  # asset: money held at the PSP / in escrow
    PSP_FEES = "psp_fees"                  # liability: fees the PSP withholds
    PLATFORM_SUBSIDY = "platform_subsidy"  # expense: platform-funded discounts
    TAX = "tax"                            # liability: tax withheld for the authority
    CHARGEBACK_LOSSES = "chargeback_losses"  # expense: chargebacks the platform absorbs
    ADJUSTMENTS = "adjustments"            # expense: approved manual adjustments to parties


PARTY_PURPOSES = frozenset({Purpose.PENDING, Purpose.AVAILABLE, Purpose.IN_TRANSIT})
DEBIT_NORMAL = frozenset({Purpose.CLEARING, Purpose.PLATFORM_SUBSIDY, Purpose.CHARGEBACK_LOSSES,
                          Purpose.ADJUSTMENTS})


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Names one account: a purpose, a currency and, for party accounts, the party."""

    purpose: Purpose
    currency: str
    party_id: str | None = None

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if (self.purpose in PARTY_PURPOSES) != (self.party_id is not None):
            raise InvariantViolation(f"account {self.purpose} needs a party id exactly when it "
                                     f"is a party account (got {self.party_id!r})")

    @property
    def normal_sign(self) -> int:
        """+1 for debit-normal accounts (assets, expenses), -1 for the others."""
        return 1 if self.purpose in DEBIT_NORMAL else -1

    def __str__(self) -> str:
        owner = f"party:{self.party_id}" if self.party_id else "system"
        return f"{owner}:{self.purpose}:{self.currency}"


def party_account(party_id: str, purpose: Purpose, currency: str) -> AccountRef:
    return AccountRef(purpose, currency, party_id)


def system_account(purpose: Purpose | str, currency: str) -> AccountRef:
    return AccountRef(Purpose(purpose), currency)


@dataclass(frozen=True, slots=True)
class Posting:
    """A debit (positive) or credit (negative) to one account."""

    account: AccountRef
    amount_minor: int


class EntryKind(StrEnum):
    CAPTURE = "capture"
    RELEASE = "release"
    REFUND = "refund"
    CHARGEBACK = "chargeback"
    PAYOUT = "payout"
    PAYOUT_PAID = "payout_paid"
    PAYOUT_FAILED = "payout_failed"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A balanced set of postings booked at one time.

    Attributes:
      entry_id: chosen by the caller (a UUID), so a retried write can be recognised.
      kind: what happened.
      booked_at: when it is booked; balances "as of" a time count entries booked up to it.
      postings: non-zero postings summing to zero per currency.
      order_id, payout_id, statement_id: what the entry belongs to, where it belongs to one.
      memo: one line for people.
    """

    entry_id: str
    kind: EntryKind
    booked_at: datetime
    postings: tuple[Posting, ...]
    order_id: str | None = None
    payout_id: str | None = None
    statement_id: str | None = None
    memo: str = ""
    reverses_entry_id: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_balanced(self.postings, self.entry_id)


def check_balanced(postings: Iterable[Posting], entry_id: str = "?") -> None:
    """Raise InvariantViolation unless the postings are non-empty, non-zero integers summing to
    zero in every currency."""
    sums: dict[str, int] = {}
    count = 0
    for posting in postings:
        check_minor(posting.amount_minor, "posting.amount_minor")
        if posting.amount_minor == 0:
            raise InvariantViolation(f"entry {entry_id}: zero posting to {posting.account}")
        currency = posting.account.currency
        sums[currency] = sums.get(currency, 0) + posting.amount_minor
        count += 1
    if count < 2:
        raise InvariantViolation(f"entry {entry_id}: needs at least two postings")
    unbalanced = {currency: s for currency, s in sums.items() if s}
    if unbalanced:
        raise InvariantViolation(f"entry {entry_id} does not balance: {unbalanced}")


def merge_postings(postings: Iterable[Posting]) -> tuple[Posting, ...]:
    """One posting per account (summed), zero sums dropped, in a stable account order."""
    sums: dict[AccountRef, int] = {}
    for posting in postings:
        sums[posting.account] = sums.get(posting.account, 0) + posting.amount_minor
    ordered = sorted(sums.items(), key=lambda kv: str(kv[0]))
    return tuple(Posting(acc, amt) for acc, amt in ordered if amt)


def transfer(source: AccountRef, destination: AccountRef, owed_minor: int) -> list[Posting]:
    """Move ``owed_minor`` of what is owed from one liability account to another (for example
    pending to available): debit the source, credit the destination."""
    if owed_minor == 0:
        return []
    return [Posting(source, owed_minor), Posting(destination, -owed_minor)]
