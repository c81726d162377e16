"""What comes in: a captured order with its lines, discounts, shipping and PSP fee."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from splitledger.domain.money import check_currency, check_minor
from splitledger.errors import InvalidAmount, ValidationError


class Funder(StrEnum):
    """Who pays for a discount. A platform-funded coupon is a platform subsidy: the merchant is
    settled as if the buyer had paid the undiscounted price."""

    MERCHANT = "merchant"
    PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class Discount:
    """A price reduction on one line.

    Attributes:
      amount_minor: reduction in minor units (> 0).
      funded_by: who bears it.
      kind: free label such as ``coupon`` or ``promotion``, kept for reports.
    """

    amount_minor: int
    funded_by: Funder = Funder.MERCHANT
    kind: str = "coupon"


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of an order.

    Attributes:
      line_id: unique within the order.
      sku: the product.
      category: category path such as ``electronics/phones``.
      merchant_id: the selling merchant, who receives the remainder of the line.
      supplier_id: the goods supplier behind the merchant (S2B2C), if any.
      quantity: units (> 0).
      unit_price_minor: price per unit before discounts (>= 0).
      discounts: reductions on this line.
    """

    line_id: str
    sku: str
    category: str
    merchant_id: str
    quantity: int
    unit_price_minor: int
    supplier_id: str | None = None
    discounts: tuple[Discount, ...] = ()

    @property
    def gross_minor(self) -> int:
        return self.quantity * self.unit_price_minor

    def discount_minor(self, funder: Funder | None = None) -> int:
        return sum(d.amount_minor for d in self.discounts
                   if funder is None or d.funded_by == funder)

    @property
    def net_minor(self) -> int:
        """What the buyer paid for the line."""
        return self.gross_minor - self.discount_minor()

    @property
    def merchant_basis_minor(self) -> int:
        """The price the merchant is settled on: gross less the discounts it funds itself."""
        return self.gross_minor - self.discount_minor(Funder.MERCHANT)


@dataclass(frozen=True, slots=True)
class Shipping:
    """Shipping paid by the buyer, owed to the logistics company that carries it."""

    amount_minor: int
    logistics_party_id: str


@dataclass(frozen=True, slots=True)
class Order:
    """A paid order as the platform reports it at capture.

    Attributes:
      order_id: the platform's order id; one capture per id.
      currency: the currency of every amount in the order.
      lines: at least one.
      shipping: optional shipping charge and its carrier.
      psp_fee_minor: what the payment provider withholds for this payment.
      captured_at: when the payment was captured (the split uses the rules in force then).
      channel, region, payment_method, tags: facts rules can match on.
      affiliate_id: the promoter who referred the buyer, if any.
      captured_minor: the amount the PSP reports captured; must equal the order's own total.
    """

    order_id: str
    currency: str
    lines: tuple[OrderLine, ...]
    captured_at: datetime
    shipping: Shipping | None = None
    psp_fee_minor: int = 0
    channel: str = "web"
    region: str = ""
    payment_method: str = ""
    affiliate_id: str | None = None
    tags: tuple[str, ...] = ()
    captured_minor: int | None = None
    buyer_ref: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def total_minor(self) -> int:
        """What the buyer paid: the lines net of every discount, plus shipping."""
        shipping = self.shipping.amount_minor if self.shipping else 0
        return sum(line.net_minor for line in self.lines) + shipping

    def party_ids(self) -> set[str]:
        ids = {line.merchant_id for line in self.lines}
        ids |= {line.supplier_id for line in self.lines if line.supplier_id}
        if self.shipping:
            ids.add(self.shipping.logistics_party_id)
        if self.affiliate_id:
            ids.add(self.affiliate_id)
        return ids


# The largest amount splitledger accepts anywhere in an order: 10^15 minor units (10 trillion
# yuan). Far above any real payment, far below what a 64-bit database column holds, so no
# product or sum of an order can overflow storage.
MAX_AMOUNT_MINOR = 10**15


def validate_order(order: Order) -> None:
    """Refuse an order that cannot be split honestly; raise the first problem found."""
    if not order.order_id or len(order.order_id) > 128:
        raise ValidationError("order_id must be 1 to 128 characters", field="order_id")
    if not isinstance(order.captured_at, datetime) or order.captured_at.utcoffset() is None:
        raise ValidationError("captured_at needs a time zone (for example 2026-11-11T10:00:00Z)",
                              field="captured_at")
    check_currency(order.currency)
    if not order.lines:
        raise ValidationError("an order needs at least one line", field="lines")
    seen: set[str] = set()
    for index, line in enumerate(order.lines):
        where = f"lines[{index}]"
        if line.line_id in seen:
            raise ValidationError(f"duplicate line_id {line.line_id!r}", field=f"{where}.line_id")
        seen.add(line.line_id)
        if not line.category.strip("/"):
            raise ValidationError("category must not be empty", field=f"{where}.category")
        if check_minor(line.quantity, f"{where}.quantity") <= 0:
            raise InvalidAmount("quantity must be positive", field=f"{where}.quantity")
        if check_minor(line.unit_price_minor, f"{where}.unit_price_minor") < 0:
            raise InvalidAmount("unit price cannot be negative", field=f"{where}.unit_price_minor")
        for d_index, discount in enumerate(line.discounts):
            field_name = f"{where}.discounts[{d_index}].amount_minor"
            if check_minor(discount.amount_minor, field_name) <= 0:
                raise InvalidAmount("discount must be positive", field=field_name)
        if line.gross_minor > MAX_AMOUNT_MINOR:
            raise InvalidAmount(f"the line's amount exceeds the limit of {MAX_AMOUNT_MINOR} "
                                "minor units", field=where)
        if line.discount_minor() > line.gross_minor:
            raise InvalidAmount("discounts exceed the line's gross amount", field=where)
    if order.shipping is not None:
        if check_minor(order.shipping.amount_minor, "shipping.amount_minor") < 0:
            raise InvalidAmount("shipping cannot be negative", field="shipping.amount_minor")
    total = order.total_minor
    if total > MAX_AMOUNT_MINOR:
        raise InvalidAmount(f"the order's total exceeds the limit of {MAX_AMOUNT_MINOR} minor "
                            "units", field="captured_minor")
    if total <= 0:
        raise InvalidAmount("the captured amount must be positive", field="captured_minor")
    if order.captured_minor is not None:
        check_minor(order.captured_minor, "captured_minor")
        if order.captured_minor != total:
            raise InvalidAmount(
                f"captured_minor {order.captured_minor} differs from the order's total {total}",
                field="captured_minor", expected=total)
    fee = check_minor(order.psp_fee_minor, "psp_fee_minor")
    if fee < 0 or fee > total:
        raise InvalidAmount("psp_fee_minor must be between 0 and the captured amount",
                            field="psp_fee_minor")
