"""Capture, refund, chargeback, confirmation and release of orders."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from splitledger.domain.codec import order_to_dict
from splitledger.domain.ledger import EntryKind, JournalEntry, Posting, Purpose
from splitledger.domain.lifecycle import (
    ChargebackPolicy,
    OrderMoney,
    borne_reversal,
    capture_postings,
    proportional_reversal,
    release_postings,
)
from splitledger.domain.orders import Order, validate_order
from splitledger.domain.parties import Party, PartyRole
from splitledger.domain.split import SplitPlan
from splitledger.errors import (
    CurrencyMismatch,
    DuplicateOrder,
    InvalidAmount,
    UnknownOrder,
    UnknownParty,
    ValidationError,
)
from splitledger.services import audit, webhooks
from splitledger.services.context import Context, UnitOfWork
from splitledger.services.idempotency import run_idempotent
from splitledger.services.rules import policy_for, split_facts

CLOCK_SKEW = timedelta(minutes=5)


def new_id() -> str:
    return str(uuid.uuid4())


def _expected_roles(order: Order, cfg_platform: str) -> dict[str, PartyRole]:
    roles = {line.merchant_id: PartyRole.MERCHANT for line in order.lines}
    roles.update({line.supplier_id: PartyRole.SUPPLIER for line in order.lines if line.supplier_id})
    if order.shipping:
        roles[order.shipping.logistics_party_id] = PartyRole.LOGISTICS
    if order.affiliate_id:
        roles[order.affiliate_id] = PartyRole.AFFILIATE
    return roles


def _check_parties(order: Order, parties: dict[str, Party]) -> None:
    roles = _expected_roles(order, "")
    missing = sorted(set(roles) - set(parties))
    if missing:
        raise UnknownParty(f"unknown part{'y' if len(missing) == 1 else 'ies'}: "
                           f"{', '.join(missing)}", party_ids=missing)
    for party_id, role in roles.items():
        party = parties[party_id]
        if party.role is not role:
            raise ValidationError(f"party {party_id} is a {party.role.value}, not a {role.value}",
                                  party_id=party_id)
        if order.currency not in party.currencies:
            raise CurrencyMismatch(f"party {party_id} is not paid in {order.currency}",
                                   party_id=party_id, currency=order.currency)


def _plan_summary(plan: SplitPlan) -> list[dict[str, Any]]:
    return [{"party_id": party, "amount_minor": amount}
            for party, amount in plan.net_by_party().items()]


def capture_order(ctx: Context, order: Order, *, idempotency_key: str | None = None
                  ) -> dict[str, Any]:
    """Split a captured order and hold every share in pending.

    Raises ValidationError (and its amount/currency subclasses), UnknownParty, DuplicateOrder,
    IdempotencyConflict.
    """
    validate_order(order)
    now = ctx.now()
    if order.captured_at > now + CLOCK_SKEW:
        raise ValidationError("captured_at is in the future", field="captured_at")
    request = order_to_dict(order)

    def work(uow: UnitOfWork) -> dict[str, Any]:
        if uow.repo.order_exists(order.order_id):
            raise DuplicateOrder(f"order {order.order_id} was already captured",
                                 order_id=order.order_id)
        policy = policy_for(ctx, uow, order.captured_at)
        parties = uow.repo.get_parties(order.party_ids() | policy.referenced_party_ids())
        _check_parties(order, parties)
        affiliate = parties.get(order.affiliate_id or "")
        if affiliate and affiliate.parent_party_id:
            parties.update(uow.repo.get_parties([affiliate.parent_party_id]))
        plan = policy.split(order, parties, split_facts(uow, policy, order))
        unknown = sorted({a.party_id for a in plan.allocations} - set(parties))
        if unknown:
            raise UnknownParty(f"the split names unknown parties: {', '.join(unknown)}",
                               party_ids=unknown)
        merchants = sorted({line.merchant_id for line in order.lines})
        hold_days = max(parties[m].hold_days if parties[m].hold_days is not None
                        else ctx.settings.default_hold_days for m in merchants)
        hold_until = order.captured_at + timedelta(days=hold_days)
        entry = JournalEntry(new_id(), EntryKind.CAPTURE, now, capture_postings(plan),
                             order_id=order.order_id, memo=f"capture of order {order.order_id}")
        uow.repo.post(entry)
        uow.repo.insert_order(body=request, plan=plan, captured_at=order.captured_at,
                              hold_until=hold_until, psp_fee_minor=order.psp_fee_minor,
                              merchant_ids=merchants, entry_id=entry.entry_id)
        uow.repo.insert_order_merchants(order)
        audit.record(uow, ctx, "order.capture", "order", order.order_id,
                     after={"currency": order.currency, "captured_minor": plan.total_minor,
                            "policy_version": plan.policy_version,
                            "entry_id": entry.entry_id})
        webhooks.emit(uow, ctx, "order.captured", {
            "order_id": order.order_id, "currency": order.currency,
            "captured_minor": plan.total_minor, "captured_at": order.captured_at.isoformat(),
            "hold_until": hold_until.isoformat(), "policy_version": plan.policy_version,
            "allocations": _plan_summary(plan)})
        return {"order_id": order.order_id, "currency": order.currency,
                "captured_minor": plan.total_minor, "entry_id": entry.entry_id,
                "hold_until": hold_until.isoformat(), "policy_version": plan.policy_version,
                "allocations": _plan_summary(plan)}

    return run_idempotent(ctx, "capture", idempotency_key, request, work)


def _order_money(uow: UnitOfWork, row: Any) -> tuple[OrderMoney, SplitPlan]:
    plan = uow.repo.get_plan(row)
    money = OrderMoney(row.currency, plan.net_by_target(), row.captured_minor,
                       row.refunded_minor, row.other_reversed_minor, row.released_at is not None)
    return money, plan


def _locked_order(uow: UnitOfWork, order_id: str) -> Any:
    row = uow.repo.get_order(order_id, lock=True)
    if row is None:
        raise UnknownOrder(f"unknown order {order_id!r}", order_id=order_id)
    return row


def refund_order(ctx: Context, order_id: str, amount_minor: int, *, reason: str = "",
                 idempotency_key: str | None = None) -> dict[str, Any]:
    """Refund part or all of what is left of an order, reversing every share in proportion.

    Before release the shares come out of pending; after it, out of available, where a party
    that has already been paid carries a debt. Raises InvalidAmount, UnknownOrder,
    RefundExceedsCaptured, IdempotencyConflict.
    """
    return _reverse(ctx, "refund", order_id, amount_minor, ChargebackPolicy.PROPORTIONAL, reason,
                    idempotency_key)


def chargeback_order(ctx: Context, order_id: str, amount_minor: int, *,
                     policy: ChargebackPolicy | None = None, reason: str = "",
                     idempotency_key: str | None = None) -> dict[str, Any]:
    """Book a chargeback, borne as ``policy`` says (the configured default otherwise).
    Raises like ``refund_order``."""
    return _reverse(ctx, "chargeback", order_id, amount_minor,
                    policy or ctx.settings.chargeback_policy, reason, idempotency_key)


def _reverse(ctx: Context, kind: str, order_id: str, amount_minor: int, policy: ChargebackPolicy,
             reason: str, idempotency_key: str | None) -> dict[str, Any]:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvalidAmount("amount_minor must be an integer number of minor units",
                            field="amount_minor")
    if amount_minor <= 0:
        raise InvalidAmount(f"a {kind} amount must be positive", field="amount_minor")
    request = {"order_id": order_id, "amount_minor": amount_minor, "policy": policy.value,
               "reason": reason}

    def work(uow: UnitOfWork) -> dict[str, Any]:
        row = _locked_order(uow, order_id)
        money, _ = _order_money(uow, row)
        now = ctx.now()
        if policy is ChargebackPolicy.PROPORTIONAL:
            postings = proportional_reversal(money, amount_minor)
            counters = {"refunded_minor": row.refunded_minor + amount_minor}
        else:
            cfg = getattr(ctx.policy, "config", None)
            postings = borne_reversal(money, amount_minor, policy,
                                      getattr(cfg, "platform_party_id", "platform"),
                                      list(row.merchant_ids))
            counters = {"other_reversed_minor": row.other_reversed_minor + amount_minor}
        entry_kind = EntryKind.REFUND if kind == "refund" else EntryKind.CHARGEBACK
        entry = JournalEntry(new_id(), entry_kind, now, postings, order_id=order_id,
                             reverses_entry_id=row.capture_entry_id,
                             memo=f"{kind} of {amount_minor} on order {order_id}"
                                  + (f": {reason}" if reason else ""))
        uow.repo.post(entry)
        reversal_id = new_id()
        uow.repo.insert_reversal(reversal_id=reversal_id, order_id=order_id, kind=kind,
                                 policy=policy.value, amount_minor=amount_minor, reason=reason,
                                 created_at=now, entry_id=entry.entry_id)
        uow.repo.update_order(order_id, **counters)
        remaining = money.remaining_minor - amount_minor
        audit.record(uow, ctx, f"order.{kind}", "order", order_id,
                     before={"remaining_minor": money.remaining_minor},
                     after={"remaining_minor": remaining, "amount_minor": amount_minor,
                            "policy": policy.value, "reason": reason})
        webhooks.emit(uow, ctx, "order.refunded" if kind == "refund" else "order.chargeback", {
            "order_id": order_id, "reversal_id": reversal_id, "currency": row.currency,
            "amount_minor": amount_minor, "remaining_minor": remaining,
            "policy": policy.value, "reason": reason, "released": money.released})
        return {"reversal_id": reversal_id, "kind": kind, "order_id": order_id,
                "amount_minor": amount_minor, "policy": policy.value,
                "remaining_minor": remaining, "entry_id": entry.entry_id,
                "released": money.released}

    return run_idempotent(ctx, kind, idempotency_key, request, work)


def _release_locked(ctx: Context, uow: UnitOfWork, row: Any, now: datetime, why: str,
                    postings: tuple[Posting, ...] | None = None) -> str | None:
    if postings is None:
        postings = release_postings(_order_money(uow, row)[0])
    entry_id = None
    if postings:  # an order refunded in full has nothing left to release
        entry = JournalEntry(new_id(), EntryKind.RELEASE, now, postings, order_id=row.order_id,
                             memo=f"release of order {row.order_id} ({why})")
        uow.repo.post(entry)
        entry_id = entry.entry_id
    uow.repo.update_order(row.order_id, released_at=now)
    webhooks.emit(uow, ctx, "order.released", {
        "order_id": row.order_id, "currency": row.currency, "released_at": now.isoformat(),
        "reason": why, "released": [
            {"party_id": p.account.party_id, "amount_minor": -p.amount_minor}
            for p in postings if p.account.purpose is Purpose.AVAILABLE]})
    audit.record(uow, ctx, "order.release", "order", row.order_id,
                 after={"why": why, "entry_id": entry_id})
    return entry_id


def confirm_order(ctx: Context, order_id: str) -> dict[str, Any]:
    """The buyer confirmed receipt: release the order now, before its hold ends. Confirming a
    released order again changes nothing. Raises UnknownOrder."""
    with ctx.uow() as uow:
        row = _locked_order(uow, order_id)
        if row.released_at is not None:
            return {"order_id": order_id, "released_at": row.released_at.isoformat(),
                    "entry_id": None, "already_released": True}
        now = ctx.now()
        entry_id = _release_locked(ctx, uow, row, now, "confirmed")
        uow.commit()
        return {"order_id": order_id, "released_at": now.isoformat(), "entry_id": entry_id,
                "already_released": False}


def release_due(ctx: Context, *, batch_size: int = 200, limit: int | None = None) -> int:
    """Release every order whose hold has ended, a batch per transaction. Safe to run from
    several workers at once: each order is locked and released once. Returns the count."""
    released = 0
    now = ctx.now()
    while limit is None or released < limit:
        with ctx.uow() as uow:
            ids = uow.repo.due_order_ids(now, batch_size)
            if not ids:
                return released
            rows = [uow.repo.get_order(order_id, lock=True) for order_id in ids]
            due = [(row, release_postings(_order_money(uow, row)[0]))
                   for row in rows if row.released_at is None]
            # One transaction posts many entries here: take every account lock up front, in
            # the one order all writers use, or a concurrent capture can deadlock with it.
            uow.repo.lock_accounts(p.account for _, postings in due for p in postings)
            for row, postings in due:
                _release_locked(ctx, uow, row, now, "hold ended", postings)
                released += 1
            uow.commit()
    return released
