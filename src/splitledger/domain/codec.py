"""Orders to and from plain JSON-able dicts, with errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from splitledger.domain.orders import Discount, Funder, Order, OrderLine, Shipping
from splitledger.errors import ValidationError


def _req(data: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValidationError(f"{where or 'order'} must be an object", field=where or "order")
    if key not in data:
        raise ValidationError(f"missing field {where}{key}", field=f"{where}{key}")
    return data[key]


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    return value


def parse_time(value: Any, field: str = "captured_at") -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(_str(value, field).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationError(f"{field} is not an ISO 8601 time: {value!r}",
                                  field=field) from exc
    if moment.tzinfo is None:
        raise ValidationError(f"{field} needs a time zone (for example 2026-11-11T10:00:00Z)",
                              field=field)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is before the first UTC instant
        raise ValidationError(f"{field} is out of range: {value!r}", field=field) from exc


def _funder(value: Any, field: str) -> Funder:
    try:
        return Funder(value)
    except ValueError as exc:
        raise ValidationError(f"{field} must be one of {[f.value for f in Funder]}",
                              field=field) from exc


def order_from_dict(data: dict[str, Any]) -> Order:
    """Build an Order from its JSON form; shape errors raise ValidationError (amount checks are
    ``validate_order``'s job)."""
    lines = []
    raw_lines = _req(data, "lines", "")
    if not isinstance(raw_lines, list):
        raise ValidationError("lines must be a list", field="lines")
    for i, raw in enumerate(raw_lines):
        where = f"lines[{i}]."
        discounts = tuple(
            Discount(_req(d, "amount_minor", f"{where}discounts[{j}]."),
                     _funder(d.get("funded_by", "merchant"), f"{where}discounts[{j}].funded_by"),
                     _str(d.get("kind", "coupon"), f"{where}discounts[{j}].kind"))
            for j, d in enumerate(raw.get("discounts", []) if isinstance(raw, dict) else []))
        lines.append(OrderLine(
            line_id=_str(raw.get("line_id", str(i + 1)) if isinstance(raw, dict) else None,
                         f"{where}line_id"),
            sku=_str(_req(raw, "sku", where), f"{where}sku"),
            category=_str(_req(raw, "category", where), f"{where}category"),
            merchant_id=_str(_req(raw, "merchant_id", where), f"{where}merchant_id"),
            quantity=_req(raw, "quantity", where),
            unit_price_minor=_req(raw, "unit_price_minor", where),
            supplier_id=raw.get("supplier_id"),
            discounts=discounts))
    shipping = None
    if data.get("shipping") is not None:
        raw_shipping = data["shipping"]
        shipping = Shipping(_req(raw_shipping, "amount_minor", "shipping."),
                            _str(_req(raw_shipping, "logistics_party_id", "shipping."),
                                 "shipping.logistics_party_id"))
    return Order(
        order_id=_str(_req(data, "order_id", ""), "order_id"),
        currency=_str(_req(data, "currency", ""), "currency"),
        lines=tuple(lines),
        captured_at=parse_time(_req(data, "captured_at", "")),
        shipping=shipping,
        psp_fee_minor=data.get("psp_fee_minor", 0),
        channel=_str(data.get("channel", "web"), "channel"),
        region=_str(data.get("region", ""), "region"),
        payment_method=_str(data.get("payment_method", ""), "payment_method"),
        affiliate_id=data.get("affiliate_id"),
        tags=tuple(data.get("tags", ())),
        captured_minor=data.get("captured_minor"),
        buyer_ref=_str(data.get("buyer_ref", ""), "buyer_ref"),
    )


def order_to_dict(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "currency": order.currency,
        "captured_at": order.captured_at.isoformat(),
        "lines": [
            {"line_id": line.line_id, "sku": line.sku, "category": line.category,
             "merchant_id": line.merchant_id, "supplier_id": line.supplier_id,
             "quantity": line.quantity, "unit_price_minor": line.unit_price_minor,
             "discounts": [{"amount_minor": d.amount_minor, "funded_by": d.funded_by.value,
                            "kind": d.kind} for d in line.discounts]}
            for line in order.lines],
        "shipping": ({"amount_minor": order.shipping.amount_minor,
                      "logistics_party_id": order.shipping.logistics_party_id}
                     if order.shipping else None),
        "psp_fee_minor": order.psp_fee_minor,
        "channel": order.channel,
        "region": order.region,
        "payment_method": order.payment_method,
        "affiliate_id": order.affiliate_id,
        "tags": list(order.tags),
        "captured_minor": order.total_minor,
        "buyer_ref": order.buyer_ref,
    }
