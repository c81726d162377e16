"""The postings of each step in the life of an order's money.

capture -> pending; release: pending -> available; refund or chargeback: reversed from pending
before release, from available after (a party that cannot cover it carries a debt: a negative
available balance that later settlements recover); payout: available -> in_transit -> paid
(out of clearing) or failed (back to available).

Proportional reversals are computed cumulatively: after refunds totalling T of a captured C,
each target has been reversed exactly ``allocate(T, nets)``; a new refund books the difference
from the previous total. Every refund therefore sums exactly to its amount, and a full refund
reverses every allocation to the last cent, whatever the number of partial refunds before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from splitledger.domain.ledger import (
    AccountRef,
    Posting,
    Purpose,
    merge_postings,
    party_account,
    system_account,
    transfer,
)
from splitledger.domain.money import allocate
from splitledger.domain.split import SplitPlan, Target
from splitledger.errors import InvalidAmount, RefundExceedsCaptured


class ChargebackPolicy(StrEnum):
    """Who bears a chargeback."""

    PROPORTIONAL = "proportional"  # reversed like a refund: every party its share
    MERCHANT = "merchant"          # the order's merchants, in proportion to their net
    PLATFORM = "platform"          # the platform absorbs it as a loss


def target_account(target: Target, currency: str, released: bool) -> AccountRef:
    if target.system:
        return system_account(target.system, currency)
    assert target.party_id is not None
    purpose = Purpose.AVAILABLE if released else Purpose.PENDING
    return party_account(target.party_id, purpose, currency)


def capture_postings(plan: SplitPlan) -> tuple[Posting, ...]:
    """Money arrives in clearing; each target is credited its net share (held in pending)."""
    postings = [Posting(system_account(Purpose.CLEARING, plan.currency), plan.total_minor)]
    for target, net in plan.net_by_target().items():
        if net:
            postings.append(Posting(target_account(target, plan.currency, False), -net))
    return merge_postings(postings)


def reversed_by_target(nets: Mapping[Target, int], reversed_total_minor: int) -> dict[Target, int]:
    """How much of each target's net is reversed once ``reversed_total_minor`` is refunded."""
    targets = [t for t, net in nets.items() if net]
    if not targets:
        return {}
    parts = allocate(reversed_total_minor, [nets[t] for t in targets])
    return dict(zip(targets, parts, strict=True))


@dataclass(frozen=True, slots=True)
class OrderMoney:
    """What an order's money looks like now, as the reversal rules need it.

    Attributes:
      plan_nets: net per booking target from the split plan.
      captured_minor: the captured amount.
      refunded_minor: refunds and proportional chargebacks so far (reversed proportionally).
      other_reversed_minor: chargebacks borne by one side (not proportional) so far.
      released: whether the order's funds have left pending.
    """

    currency: str
    plan_nets: Mapping[Target, int]
    captured_minor: int
    refunded_minor: int = 0
    other_reversed_minor: int = 0
    released: bool = False

    @property
    def remaining_minor(self) -> int:
        return self.captured_minor - self.refunded_minor - self.other_reversed_minor

    def pending_by_target(self) -> dict[Target, int]:
        """Each target's share still to release: its net less what refunds reversed."""
        done = reversed_by_target(self.plan_nets, self.refunded_minor)
        return {t: net - done.get(t, 0) for t, net in self.plan_nets.items()}


def check_reversal(money: OrderMoney, amount_minor: int) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvalidAmount("amount_minor must be an integer number of minor units",
                            field="amount_minor")
    if amount_minor <= 0:
        raise InvalidAmount("a refund amount must be positive", field="amount_minor")
    if amount_minor > money.remaining_minor:
        raise RefundExceedsCaptured(
            f"refund of {amount_minor} exceeds what is left of the order "
            f"({money.remaining_minor} of {money.captured_minor})",
            remaining_minor=money.remaining_minor)


def proportional_reversal(money: OrderMoney, amount_minor: int) -> tuple[Posting, ...]:
    """Refund ``amount_minor`` to the buyer, reversing every target in proportion."""
    check_reversal(money, amount_minor)
    before = reversed_by_target(money.plan_nets, money.refunded_minor)
    after = reversed_by_target(money.plan_nets, money.refunded_minor + amount_minor)
    postings = [Posting(system_account(Purpose.CLEARING, money.currency), -amount_minor)]
    for target, cumulative in after.items():
        delta = cumulative - before.get(target, 0)
        if delta:
            account = target_account(target, money.currency, money.released)
            postings.append(Posting(account, delta))
    return merge_postings(postings)


def borne_reversal(money: OrderMoney, amount_minor: int, policy: ChargebackPolicy,
                   platform_party_id: str, merchant_ids: list[str]) -> tuple[Posting, ...]:
    """A chargeback borne by one side: merchants (from available, possibly into debt) or the
    platform (as a loss)."""
    check_reversal(money, amount_minor)
    currency = money.currency
    postings = [Posting(system_account(Purpose.CLEARING, currency), -amount_minor)]
    if policy is ChargebackPolicy.PLATFORM:
        postings.append(Posting(system_account(Purpose.CHARGEBACK_LOSSES, currency), amount_minor))
        return merge_postings(postings)
    weights = [max(money.plan_nets.get(Target(party_id=m), 0), 0) for m in merchant_ids]
    if sum(weights) <= 0:
        weights = [1] * len(merchant_ids)
    for merchant_id, share in zip(merchant_ids, allocate(amount_minor, weights), strict=True):
        if share:
            postings.append(Posting(party_account(merchant_id, Purpose.AVAILABLE, currency), share))
    return merge_postings(postings)


def release_postings(money: OrderMoney) -> tuple[Posting, ...]:
    """Move each party's still-held share of the order from pending to available."""
    postings: list[Posting] = []
    for target, remaining in money.pending_by_target().items():
        if target.party_id and remaining:
            postings += transfer(party_account(target.party_id, Purpose.PENDING, money.currency),
                                 party_account(target.party_id, Purpose.AVAILABLE, money.currency),
                                 remaining)
    return merge_postings(postings)


def adjustment_postings(party_id: str, currency: str, owed_minor: int) -> tuple[Posting, ...]:
    """A manual adjustment: ``owed_minor`` more (or, if negative, less) is owed to the party,
    at the platform's expense (or in its favour)."""
    return merge_postings([
        Posting(system_account(Purpose.ADJUSTMENTS, currency), owed_minor),
        Posting(party_account(party_id, Purpose.AVAILABLE, currency), -owed_minor)])


def payout_postings(party_id: str, currency: str, amount_minor: int) -> tuple[Posting, ...]:
    """A payout leaves available for in_transit."""
    return merge_postings(transfer(party_account(party_id, Purpose.AVAILABLE, currency),
                                   party_account(party_id, Purpose.IN_TRANSIT, currency),
                                   amount_minor))


def payout_paid_postings(party_id: str, currency: str, amount_minor: int) -> tuple[Posting, ...]:
    """The bank confirmed it: the money left clearing."""
    return merge_postings([
        Posting(party_account(party_id, Purpose.IN_TRANSIT, currency), amount_minor),
        Posting(system_account(Purpose.CLEARING, currency), -amount_minor)])


def payout_failed_postings(party_id: str, currency: str, amount_minor: int) -> tuple[Posting, ...]:
    """The bank returned it: back to available, to be paid again."""
    return merge_postings(transfer(party_account(party_id, Purpose.IN_TRANSIT, currency),
                                   party_account(party_id, Purpose.AVAILABLE, currency),
                                   amount_minor))
