"""Money as integer minor units with an ISO 4217 currency, and exact allocation.

Rounding rule (the only one in splitledger, used by every split and every reversal):
``allocate`` gives each part the floor of its exact share, then hands the leftover minor units,
one each, to the parts with the largest fractional remainders; equal remainders go to the part
that comes first in the order the caller passed. The parts therefore always sum to the total,
no part is more than one minor unit from its exact share, and the same input always gives the
same output.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from splitledger.domain.currencies import EXPONENTS
from splitledger.errors import CurrencyMismatch, InvalidAmount, UnknownCurrency

BPS_PER_UNIT = 10_000  # basis points in 100 %


def check_currency(currency: object) -> str:
    """Return the currency code if it is an active ISO 4217 code, else raise UnknownCurrency."""
    if not isinstance(currency, str) or currency not in EXPONENTS:
        raise UnknownCurrency(f"unknown currency {currency!r}: expected an ISO 4217 code such "
                              "as CNY",
                              currency=str(currency))
    return currency


def check_minor(amount_minor: object, what: str = "amount_minor") -> int:
    """Return ``amount_minor`` if it is an integer; refuse floats, decimals, strings and bools."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvalidAmount(
            f"{what} must be an integer number of minor units, got {type(amount_minor).__name__} "
            f"{amount_minor!r}", field=what)
    return amount_minor


def exponent(currency: str) -> int:
    """Digits of the currency's minor unit (CNY 2, JPY 0, KWD 3)."""
    return EXPONENTS[check_currency(currency)]


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency.

    Attributes:
      amount_minor: integer count of the currency's minor unit (fen, cents, yen); may be negative.
      currency: ISO 4217 code.
    """

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        check_minor(self.amount_minor)
        check_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Read a decimal major-unit string ("12.34") exactly; more digits than the currency has
        are an error, never rounded away."""
        try:
            value = Decimal(text.strip())
        except Exception as exc:  # decimal raises its own InvalidOperation family
            raise InvalidAmount(f"not a decimal amount: {text!r}", field="amount") from exc
        if not value.is_finite():
            raise InvalidAmount(f"not a finite amount: {text!r}", field="amount")
        scaled = value.scaleb(exponent(currency))
        if scaled != scaled.to_integral_value():
            raise InvalidAmount(
                f"{text!r} has more decimals than {currency} allows ({exponent(currency)})",
                field="amount")
        return cls(int(scaled), currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}",
                                   currencies=[self.currency, other.currency])

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor >= other.amount_minor

    def __bool__(self) -> bool:
        return self.amount_minor != 0

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        return [Money(part, self.currency) for part in allocate(self.amount_minor, weights)]

    def to_decimal(self) -> Decimal:
        """Major units as an exact Decimal (for display and exports only)."""
        return Decimal(self.amount_minor).scaleb(-exponent(self.currency))

    def format(self) -> str:
        return f"{self.to_decimal():,.{exponent(self.currency)}f} {self.currency}"

    def __str__(self) -> str:
        return f"{self.to_decimal():.{exponent(self.currency)}f} {self.currency}"


def total(amounts: Iterable[Money], currency: str) -> Money:
    """Sum of amounts of one currency (an empty sum is zero of ``currency``)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result


def allocate(total_minor: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_minor`` in proportion to integer ``weights`` so that the parts sum exactly.

    Weights may be negative (a subsidy in a split being reversed) as long as they sum to a
    positive number. Largest remainder method; ties go to the earlier weight (see module doc).
    """
    check_minor(total_minor, "total_minor")
    if not weights:
        raise InvalidAmount("cannot allocate over no parts")
    for weight in weights:
        check_minor(weight, "weight")
    if sum(weights) <= 0:
        raise InvalidAmount("allocation weights must sum to a positive number",
                            weights=list(weights))
    return allocate_unchecked(total_minor, weights)


def allocate_unchecked(total_minor: int, weights: Sequence[int]) -> list[int]:
    """``allocate`` without argument checks, for hot paths whose inputs are already integers
    with a positive sum. All remainders share the denominator ``sum(weights)``, so comparing
    the integer remainders orders the fractional parts exactly."""
    weight_sum = sum(weights)
    parts = []
    remainders = []
    for weight in weights:
        quotient, remainder = divmod(total_minor * weight, weight_sum)  # floor, also if < 0
        parts.append(quotient)
        remainders.append(remainder)
    leftover = total_minor - sum(parts)  # 0 <= leftover < len(weights)
    if leftover == 1:  # the common case: the first of the largest remainders, no sort
        parts[remainders.index(max(remainders))] += 1
    elif leftover:
        by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for index in by_remainder[:leftover]:
            parts[index] += 1
    return parts


def allocate_exact(total_minor: int, exact_parts: Sequence[Fraction]) -> list[int]:
    """Round exact parts that sum to ``total_minor`` into integers that still sum to it, by
    the same rule as ``allocate``: floors first, then one unit each to the largest fractional
    remainders, ties to the earlier part."""
    check_minor(total_minor, "total_minor")
    if sum(exact_parts) != total_minor:
        raise InvalidAmount("exact parts do not sum to the total")
    if total_minor == 0:
        return [0] * len(exact_parts)
    denominator = math.lcm(*(part.denominator for part in exact_parts))
    # Parts over a common denominator are the weights whose exact shares of the total they are.
    return allocate_unchecked(total_minor, [int(part * denominator) for part in exact_parts])


def bps_of(amount_minor: int, bps: int) -> Fraction:
    """Exact ``amount * bps / 10 000`` (no rounding yet: callers allocate the whole at once)."""
    return Fraction(amount_minor * bps, BPS_PER_UNIT)
