"""Parties: everyone who is owed money from a sale."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from splitledger.domain.money import check_currency, check_minor
from splitledger.errors import ValidationError


class PartyRole(StrEnum):
    PLATFORM = "platform"
    MERCHANT = "merchant"
    SUPPLIER = "supplier"
    LOGISTICS = "logistics"
    AFFILIATE = "affiliate"
    TAX = "tax"
    PSP = "psp"


# Roles whose money stays in system accounts and is never settled to a bank account by us.
UNSETTLED_ROLES = frozenset({PartyRole.PLATFORM, PartyRole.TAX, PartyRole.PSP})


class PayoutFrequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


PARTY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Party:
    """A party and its payout terms.

    Attributes:
      party_id: the platform's own stable identifier (letters, digits, ``_ . -``; 64 at most).
      name: display name.
      role: what the party is in a sale.
      tier: merchant tier used by commission rules (``None`` for other roles).
      currencies: currencies the party can be paid in.
      payout_frequency: how often settlement runs cover this party.
      payout_delay_days: the N in T+N: days after a period closes before it is paid.
      min_payout_minor: per currency, the smallest payout; smaller balances carry forward.
      hold_days: days funds stay pending after capture unless the order is confirmed sooner;
        ``None`` uses the platform default.
      parent_party_id: for affiliates, the referrer one level up (used by the rules engine).
    """

    party_id: str
    name: str
    role: PartyRole
    tier: str | None = None
    currencies: tuple[str, ...] = ("CNY",)
    payout_frequency: PayoutFrequency = PayoutFrequency.WEEKLY
    payout_delay_days: int = 1
    min_payout_minor: dict[str, int] = field(default_factory=dict)
    hold_days: int | None = None
    parent_party_id: str | None = None

    def __post_init__(self) -> None:
        if not PARTY_ID.match(self.party_id or ""):
            raise ValidationError(f"invalid party id {self.party_id!r}", field="party_id")
        if not self.name.strip():
            raise ValidationError("party name must not be empty", field="name")
        if not self.currencies:
            raise ValidationError("a party needs at least one currency", field="currencies")
        for currency in self.currencies:
            check_currency(currency)
        for currency, minimum in self.min_payout_minor.items():
            check_currency(currency)
            if check_minor(minimum, "min_payout_minor") < 0:
                raise ValidationError("minimum payout cannot be negative", field="min_payout_minor")
        if self.payout_delay_days < 0 or (self.hold_days is not None and self.hold_days < 0):
            raise ValidationError("days cannot be negative", field="hold_days")

    @property
    def settles(self) -> bool:
        """Whether settlement runs produce statements and payouts for this party."""
        return self.role not in UNSETTLED_ROLES

    def min_payout(self, currency: str) -> int:
        return self.min_payout_minor.get(currency, 0)
