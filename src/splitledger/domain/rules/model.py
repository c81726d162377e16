"""Rule records. Plain frozen values; parsing and validation live elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Basis(StrEnum):
    """What a share is a percentage of.

    Line bases make a rule apply to each matching line; order bases apply once per order.
    """

    LINE_GROSS = "line_gross"    # quantity x unit price
    LINE_NET = "line_net"        # gross less the discounts the merchant funds (its price)
    LINE_PAID = "line_paid"      # what the buyer paid for the line (less every discount)
    SHIPPING = "shipping"
    ORDER_TOTAL = "order_total"  # what the buyer paid for the whole order
    PSP_FEE = "psp_fee"


LINE_BASES = frozenset({Basis.LINE_GROSS, Basis.LINE_NET, Basis.LINE_PAID})


class Role(StrEnum):
    """Who a share goes to, when it is not a named party."""

    PLATFORM = "platform"
    MERCHANT = "merchant"                  # the line's merchant
    SUPPLIER = "supplier"                  # the line's supplier
    LOGISTICS = "logistics"                # the order's carrier
    AFFILIATE = "affiliate"                # the referring affiliate of the order
    AFFILIATE_PARENT = "affiliate_parent"  # the affiliate one referral level above it
    TAX = "tax"


@dataclass(frozen=True, slots=True)
class Recipient:
    """A role, or a named party (``party:<id>`` in the language)."""

    role: Role | None = None
    party_id: str | None = None

    def __str__(self) -> str:
        return f"party:{self.party_id}" if self.party_id else str(self.role)


# -- conditions ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Band:
    """An amount range [min_minor, max_minor], either end open."""

    min_minor: int | None = None
    max_minor: int | None = None

    def contains(self, amount: int) -> bool:
        return ((self.min_minor is None or amount >= self.min_minor)
                and (self.max_minor is None or amount <= self.max_minor))


@dataclass(frozen=True, slots=True)
class Window:
    """A time range [start, end), either end open (campaign periods)."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        return ((self.start is None or moment >= self.start)
                and (self.end is None or moment < self.end))


@dataclass(frozen=True, slots=True)
class Match:
    """All the given facts must hold (``None`` means "any"). Tuples mean "one of these".

    Attributes:
      category: category path prefixes; ``electronics`` matches ``electronics/phones``.
      merchant_tier, merchant, supplier, channel, region, payment_method: one of the values.
      has_supplier, has_affiliate: presence of a supplier on the line / affiliate on the order.
      line_amount: band on the line's gross amount.
      order_amount: band on the order's total.
      time: window on the capture time.
      tags: the order has at least one of these tags.
    """

    category: tuple[str, ...] | None = None
    merchant_tier: tuple[str, ...] | None = None
    merchant: tuple[str, ...] | None = None
    supplier: tuple[str, ...] | None = None
    channel: tuple[str, ...] | None = None
    region: tuple[str, ...] | None = None
    payment_method: tuple[str, ...] | None = None
    has_supplier: bool | None = None
    has_affiliate: bool | None = None
    line_amount: Band | None = None
    order_amount: Band | None = None
    time: Window | None = None
    tags: tuple[str, ...] | None = None


LINE_FIELDS = frozenset({"category", "merchant_tier", "merchant", "supplier", "has_supplier",
                         "line_amount"})


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


Condition = Match | AllOf | AnyOf | Not


# -- shares and rules ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Tier:
    """Volume tier: from this much merchant GMV in the window, this rate applies."""

    from_gmv_minor: int
    bps: int


@dataclass(frozen=True, slots=True)
class Share:
    """One amount a rule gives.

    Attributes:
      to: the recipient.
      of: the basis.
      bps: rate in basis points of the basis (0 when only ``fixed_minor``).
      fixed_minor: a fixed amount added (per line for line bases, per order otherwise).
      min_minor, max_minor: caps on the resulting share.
      tiers: volume tiers replacing ``bps`` by the merchant's GMV over ``window_days``.
    """

    to: Recipient
    of: Basis = Basis.LINE_NET
    bps: int = 0
    fixed_minor: int = 0
    min_minor: int | None = None
    max_minor: int | None = None
    tiers: tuple[Tier, ...] = ()
    window_days: int = 30

    @property
    def line_scoped(self) -> bool:
        return self.of in LINE_BASES


@dataclass(frozen=True, slots=True)
class Rule:
    """Attributes:
      rule_id: unique within the ruleset; recorded on every amount it produces.
      when: the condition (``Match()`` matches everything).
      shares: what the rule gives.
      priority: higher wins. For one line and one recipient, the matching rule with the
        highest priority that has a share for that recipient decides.
      description: for people.
    """

    rule_id: str
    shares: tuple[Share, ...]
    when: Condition = field(default_factory=Match)
    priority: int = 0
    description: str = ""


@dataclass(frozen=True, slots=True)
class Constraints:
    """Platform-wide limits a plan must respect, else the order is refused before money moves.

    Attributes:
      max_share_to_others_bps: at most this part of the order total may go to parties other
        than the order's merchants (WeChat Pay and Alipay cap profit sharing at 3000 = 30 %).
      max_receivers: at most this many distinct parties besides the merchants and the PSP.
    """

    max_share_to_others_bps: int | None = None
    max_receivers: int | None = None


@dataclass(frozen=True, slots=True)
class Ruleset:
    """A versioned, effective-dated set of rules.

    Attributes:
      version: unique name of this version.
      effective_from: orders captured at or after this time use it (until a later version).
      rules: the rules.
      remainder: who receives what is left of a line (normally its merchant).
      psp_fee_bearer: ``platform`` or ``merchant`` (merchants in proportion to their lines).
      discount_funding: discount kind -> funder (``platform`` or ``merchant``), overriding the
        funder the order states for that kind.
      constraints: platform-wide limits.
    """

    version: str
    effective_from: datetime
    rules: tuple[Rule, ...]
    remainder: Recipient = Recipient(Role.MERCHANT)
    psp_fee_bearer: str = "platform"
    discount_funding: tuple[tuple[str, str], ...] = ()
    constraints: Constraints = Constraints()
    description: str = ""
    platform_party_id: str = "platform"
    psp_party_id: str = "psp"
    tax_party_id: str = "tax"

    @property
    def funder_overrides(self) -> dict[str, str]:
        return dict(self.discount_funding)
