"""Split plans: who gets what of one order, with the reason for every amount.

The seam to the rules engine is ``SplitPolicy``: anything that turns an order into a plan. The
simple commission configuration below is the first policy; the declarative rule language plugs
in behind the same protocol. Whatever the policy, a plan always sums exactly to the captured
amount, and ``SplitPlan.__post_init__`` proves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from splitledger.domain.money import BPS_PER_UNIT, allocate
from splitledger.domain.orders import Funder, Order, OrderLine
from splitledger.domain.parties import Party
from splitledger.errors import ConfigurationError, InvariantViolation, ValidationError


class ShareKind(StrEnum):
    COMMISSION = "commission"          # platform's take on a line
    MERCHANT_PROCEEDS = "merchant"     # the remainder of a line, to its merchant
    SUPPLIER_COST = "supplier"         # S2B2C: the supplier's share of a line
    AFFILIATE = "affiliate"            # promoter commission
    SHIPPING = "shipping"              # to the logistics company
    PSP_FEE = "psp_fee"                # withheld by the payment provider
    PSP_FEE_BORNE = "psp_fee_borne"    # negative: the party that bears the PSP fee
    PLATFORM_SUBSIDY = "subsidy"       # negative: platform-funded discounts
    TAX = "tax"


# Kinds booked to a system account instead of the party's own pending account.
SYSTEM_TARGETS: dict[ShareKind, str] = {
    ShareKind.PSP_FEE: "psp_fees",
    ShareKind.PLATFORM_SUBSIDY: "platform_subsidy",
    ShareKind.TAX: "tax",
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where an allocation is booked: a party's own accounts, or a named system account."""

    party_id: str | None = None
    system: str | None = None

    def __str__(self) -> str:
        return f"party:{self.party_id}" if self.party_id else f"system:{self.system}"


class Allocation(NamedTuple):
    """One amount of a plan and why. (A NamedTuple: immutable, and cheap to create on the
    split hot path, where a frozen dataclass costs several times more.)

    Attributes:
      party_id: who it is for (the platform for subsidies, the PSP for its fee).
      kind: what it is.
      amount_minor: the amount; negative only for PSP_FEE_BORNE and PLATFORM_SUBSIDY.
      rule_id: the rule (or configuration entry) that produced it.
      line_id: the order line it comes from, ``None`` for order-level amounts.
      basis: the name of the amount it was computed from.
      basis_minor: that amount.
      rate_bps: the rate applied, when a rate was.
      explanation: one human sentence: the computation behind the amount.
    """

    party_id: str
    kind: ShareKind
    amount_minor: int
    rule_id: str
    line_id: str | None = None
    basis: str = ""
    basis_minor: int = 0
    rate_bps: int | None = None
    explanation: str = ""

    @property
    def target(self) -> Target:
        system = SYSTEM_TARGETS.get(self.kind)
        return Target(system=system) if system else Target(party_id=self.party_id)


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """The allocation of one order's captured amount. Sums exactly to ``total_minor``."""

    order_id: str
    currency: str
    total_minor: int
    policy_version: str
    allocations: tuple[Allocation, ...]

    def __post_init__(self) -> None:
        allocated = sum(a.amount_minor for a in self.allocations)
        if allocated != self.total_minor:
            raise InvariantViolation(
                f"split plan of order {self.order_id} allocates {allocated}, "
                f"captured {self.total_minor}")

    def net_by_target(self) -> dict[Target, int]:
        """Net amount per booking target, in first-appearance order (the order reversals use)."""
        nets: dict[Target, int] = {}
        for allocation in self.allocations:
            nets[allocation.target] = nets.get(allocation.target, 0) + allocation.amount_minor
        return nets

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data (previews, API responses)."""
        return {"order_id": self.order_id, "currency": self.currency,
                "total_minor": self.total_minor, "ruleset_version": self.policy_version,
                "allocations": [a._asdict() | {"kind": a.kind.value} for a in self.allocations],
                "by_party": self.net_by_party()}

    def net_by_party(self) -> dict[str, int]:
        nets: dict[str, int] = {}
        for allocation in self.allocations:
            nets[allocation.party_id] = nets.get(allocation.party_id, 0) + allocation.amount_minor
        return nets


@dataclass(frozen=True, slots=True)
class SplitFacts:
    """What a policy may need beyond the order and its parties, looked up by the caller.

    Attributes:
      merchant_gmv_minor: per (merchant id, window days), the merchant's GMV in the order's
        currency over that many days before the capture (for volume-tiered commission).
    """

    merchant_gmv_minor: Mapping[tuple[str, int], int] = field(default_factory=dict)


class SplitPolicy(Protocol):
    """Turns a validated order into a plan. ``version`` is recorded on every plan."""

    @property
    def version(self) -> str: ...

    def gmv_windows(self) -> frozenset[int]:
        """The GMV windows (in days) the policy needs facts for; empty if none."""
        ...

    def referenced_party_ids(self) -> frozenset[str]:
        """Parties the policy names itself (platform, PSP, tax, named recipients)."""
        ...

    def split(self, order: Order, parties: Mapping[str, Party],
              facts: SplitFacts | None = None) -> SplitPlan: ...


@dataclass(frozen=True)
class CommissionConfig:
    """The simple commission configuration (the rule language replaces it).

    Attributes:
      version: recorded on every plan it produces.
      default_commission_bps: platform commission on a line's merchant basis.
      category_commission_bps: per category path prefix; the longest matching prefix wins.
      tier_discount_bps: commission reduction per merchant tier (never below zero).
      supplier_share_bps: S2B2C: the supplier's share of a line that names a supplier.
      affiliate_bps: the referring affiliate's share of each line, taken from the merchant's part.
      psp_fee_bearer: ``platform`` or ``merchant`` (merchants in proportion to their lines).
    """

    version: str = "simple-1"
    platform_party_id: str = "platform"
    psp_party_id: str = "psp"
    default_commission_bps: int = 500
    category_commission_bps: Mapping[str, int] = field(default_factory=dict)
    tier_discount_bps: Mapping[str, int] = field(default_factory=dict)
    supplier_share_bps: int = 6_000
    affiliate_bps: int = 300
    psp_fee_bearer: str = "platform"

    def __post_init__(self) -> None:
        rates = [self.default_commission_bps, self.supplier_share_bps, self.affiliate_bps,
                 *self.category_commission_bps.values(), *self.tier_discount_bps.values()]
        if any(not isinstance(r, int) or r < 0 or r > BPS_PER_UNIT for r in rates):
            raise ConfigurationError("every rate must be an integer between 0 and 10000 bps")
        if self.psp_fee_bearer not in ("platform", "merchant"):
            raise ConfigurationError("psp_fee_bearer must be 'platform' or 'merchant'")

    def commission_bps(self, category: str, tier: str | None) -> tuple[int, str]:
        """The rate for a line and the id of the configuration entry that set it."""
        path = category.strip("/")
        best, rule_id = self.default_commission_bps, "default"
        best_len = -1
        for prefix, bps in self.category_commission_bps.items():
            key = prefix.strip("/")
            if (path == key or path.startswith(key + "/")) and len(key) > best_len:
                best, rule_id, best_len = bps, f"category:{key}", len(key)
        discount = self.tier_discount_bps.get(tier or "", 0)
        if discount:
            rule_id += f"+tier:{tier}"
        return max(0, best - discount), rule_id


@dataclass(frozen=True)
class SimpleCommissionPolicy:
    """Splits each line between platform commission, supplier, affiliate and the merchant."""

    config: CommissionConfig = field(default_factory=CommissionConfig)

    @property
    def version(self) -> str:
        return self.config.version

    def gmv_windows(self) -> frozenset[int]:
        return frozenset()

    def referenced_party_ids(self) -> frozenset[str]:
        return frozenset({self.config.platform_party_id, self.config.psp_party_id})

    def split(self, order: Order, parties: Mapping[str, Party],
              facts: SplitFacts | None = None) -> SplitPlan:
        allocations: list[Allocation] = []
        merchant_basis: dict[str, int] = {}
        for line in order.lines:
            merchant = parties.get(line.merchant_id)
            allocations.extend(self._split_line(order, line, merchant.tier if merchant else None))
            merchant_basis[line.merchant_id] = (
                merchant_basis.get(line.merchant_id, 0) + line.merchant_basis_minor)
        if order.shipping and order.shipping.amount_minor:
            allocations.append(Allocation(
                order.shipping.logistics_party_id, ShareKind.SHIPPING,
                order.shipping.amount_minor, "shipping", basis="shipping",
                basis_minor=order.shipping.amount_minor,
                explanation="shipping charged to the buyer, owed to the carrier"))
        if order.psp_fee_minor:
            allocations.extend(self._psp_fee(order, merchant_basis))
        return SplitPlan(order.order_id, order.currency, order.total_minor, self.version,
                         tuple(allocations))

    def _split_line(self, order: Order, line: OrderLine, tier: str | None) -> list[Allocation]:
        cfg = self.config
        basis = line.merchant_basis_minor
        rate, rule_id = cfg.commission_bps(line.category, tier)
        shares: list[tuple[str, ShareKind, int, str]] = [
            (cfg.platform_party_id, ShareKind.COMMISSION, rate, rule_id)]
        if line.supplier_id:
            shares.append((line.supplier_id, ShareKind.SUPPLIER_COST, cfg.supplier_share_bps,
                           "supplier_share"))
        if order.affiliate_id:
            shares.append((order.affiliate_id, ShareKind.AFFILIATE, cfg.affiliate_bps,
                           "affiliate"))
        taken = sum(bps for _, _, bps, _ in shares)
        if taken > BPS_PER_UNIT:
            raise ValidationError(
                f"line {line.line_id}: shares add up to {taken} bps, more than 100 %",
                field="lines", line_id=line.line_id)
        shares.append((line.merchant_id, ShareKind.MERCHANT_PROCEEDS, BPS_PER_UNIT - taken,
                       "remainder"))
        amounts = allocate(basis, [bps for _, _, bps, _ in shares])
        result = [
            Allocation(party, kind, amount, rule, line.line_id, "line_merchant_basis", basis, bps,
                       f"{bps / 100:g}% of {basis} (line {line.line_id} gross {line.gross_minor}"
                       f" less merchant-funded discounts)")
            for (party, kind, bps, rule), amount in zip(shares, amounts, strict=True)
        ]
        subsidy = line.discount_minor(Funder.PLATFORM)
        if subsidy:
            result.append(Allocation(
                cfg.platform_party_id, ShareKind.PLATFORM_SUBSIDY, -subsidy, "platform_coupon",
                line.line_id, "platform_funded_discount", subsidy,
                explanation=f"platform-funded discount of {subsidy} on line {line.line_id}"))
        return result

    def _psp_fee(self, order: Order, merchant_basis: dict[str, int]) -> list[Allocation]:
        cfg, fee = self.config, order.psp_fee_minor
        result = [Allocation(cfg.psp_party_id, ShareKind.PSP_FEE, fee, "psp_fee", basis="psp_fee",
                             basis_minor=fee, explanation="fee withheld by the payment provider")]
        if cfg.psp_fee_bearer == "platform" or not any(merchant_basis.values()):
            result.append(Allocation(cfg.platform_party_id, ShareKind.PSP_FEE_BORNE, -fee,
                                     "psp_fee_bearer", basis="psp_fee", basis_minor=fee,
                                     explanation="the platform bears the payment fee"))
            return result
        merchants = list(merchant_basis)
        shares = allocate(fee, [merchant_basis[m] for m in merchants])
        for merchant_id, share in zip(merchants, shares, strict=True):
            if share:
                result.append(Allocation(
                    merchant_id, ShareKind.PSP_FEE_BORNE, -share, "psp_fee_bearer",
                    basis="psp_fee", basis_minor=fee,
                    explanation=f"{share} of the {fee} payment fee, in proportion to the "
                                f"merchant's lines"))
        return result
