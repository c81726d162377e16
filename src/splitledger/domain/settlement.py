"""Settlement statements: what a party earned in a period, net of refunds and debts, and what
is paid out for it.

A statement covers the party's ``available`` account over [period_start, period_end): the
opening balance owed, every entry that moved it (releases, refund reversals, chargebacks,
returned payouts, the payout of the previous statement), and the closing balance owed. The
payout is the closing balance when it reaches the party's minimum; a smaller balance carries
forward; a negative one is a debt that the next statements recover before anything is paid.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

from splitledger.domain.parties import PayoutFrequency
from splitledger.errors import InvariantViolation, ValidationError


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One entry on a statement; ``amount_minor`` is the change in what is owed to the party."""

    entry_id: str
    kind: str
    booked_at: datetime
    amount_minor: int
    order_id: str | None = None
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Statement:
    """A party's settlement statement for one period and currency.

    Attributes:
      opening_minor: owed to the party at period start (negative: the party owed a debt).
      lines: every change inside the period, in booking order.
      closing_minor: owed at period end; equals opening plus the lines.
      payout_minor: what this statement pays (0 when below minimum or in debt).
      carried_minor: what stays in the account for the next period (a debt when negative).
    """

    party_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    opening_minor: int
    lines: tuple[StatementLine, ...]
    closing_minor: int
    payout_minor: int
    carried_minor: int

    @property
    def debt_minor(self) -> int:
        return max(0, -self.carried_minor)


def build_statement(party_id: str, currency: str, period_start: datetime, period_end: datetime,
                    opening_minor: int, lines: tuple[StatementLine, ...], closing_minor: int,
                    available_now_minor: int, min_payout_minor: int) -> Statement:
    """Net the period and decide the payout.

    ``available_now_minor`` is what is owed at the moment of the run: refunds booked after the
    period end may have reduced it, and a payout can never exceed it.
    """
    if period_end <= period_start:
        raise ValidationError("a settlement period must end after it starts", field="period_end")
    if opening_minor + sum(line.amount_minor for line in lines) != closing_minor:
        raise InvariantViolation(f"statement of {party_id} {currency} does not add up: opening "
                                 f"{opening_minor} + lines != closing {closing_minor}")
    payable = min(closing_minor, available_now_minor)
    payout = payable if payable > 0 and payable >= min_payout_minor else 0
    return Statement(party_id, currency, period_start, period_end, opening_minor, lines,
                     closing_minor, payout, closing_minor - payout)


def period_start_for(frequency: PayoutFrequency, period_end: datetime) -> datetime:
    """The start of the period of ``frequency`` that ends at ``period_end``."""
    if frequency is PayoutFrequency.DAILY:
        return period_end - timedelta(days=1)
    if frequency is PayoutFrequency.WEEKLY:
        return period_end - timedelta(days=7)
    year, month = (period_end.year, period_end.month - 1) if period_end.month > 1 else (
        period_end.year - 1, 12)
    day = min(period_end.day, calendar.monthrange(year, month)[1])
    return period_end.replace(year=year, month=month, day=day)


def period_closes_at(frequency: PayoutFrequency, moment: datetime) -> bool:
    """Whether a period of ``frequency`` ends at ``moment`` (midnight; Mondays for weekly, the
    first of the month for monthly)."""
    if (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0):
        return False
    if frequency is PayoutFrequency.WEEKLY:
        return moment.weekday() == 0
    if frequency is PayoutFrequency.MONTHLY:
        return moment.day == 1
    return True
