"""An independent reference model of splitledger's money, written from the business rules.

It does not call splitledger's split, lifecycle or settlement code. It recomputes every share with
plain integer arithmetic and the one documented rounding primitive, ``money.allocate`` (largest
remainder, ties to the part that comes first), and it keeps each balance as people read it:

* per party and currency: ``pending`` (held), ``available`` (owed, negative is a debt) and
  ``in_transit`` (paid out, not yet confirmed by the bank);
* per currency: ``clearing`` (money held at the PSP), ``psp_fees`` (owed to the PSP),
  ``platform_subsidy`` (spent on platform-funded discounts) and ``chargeback_losses``.

The rules it encodes (DESIGN.md, "Lifecycle of funds", with the simple commission configuration
at its defaults):

1. Each line's price less merchant-funded discounts is shared 5 % to the platform, 60 % to the
   line's supplier if it names one, 3 % to the referring affiliate if any, the rest to the
   merchant. Platform-funded discounts are a platform subsidy; shipping goes to its carrier; the
   PSP fee is withheld for the PSP and borne by the platform.
2. Capture puts the whole payment in clearing and holds each share in pending.
3. A refund (or a chargeback reversed proportionally) of ``x`` takes back from every share the
   part that makes the refunds so far, ``R``, reverse exactly ``allocate(R, shares)``; from
   pending before release, from available after.
4. A chargeback borne by merchants is taken from their available balances in proportion to their
   shares (equally if none has a positive share); one borne by the platform is a loss.
5. Release (hold ended or order confirmed) moves what is left of each party's share from pending
   to available.
6. A settlement for a period ending at midnight ``E`` pays a settling party (not the platform,
   the PSP or the tax authority) what it was owed at ``E``, but never more than it is owed now,
   when that is positive and at least its minimum payout; once per party, currency and period,
   never for a period ending before its last statement, and only for currencies in which it has
   ever had an available balance.
7. A paid payout leaves clearing; a failed one returns to available.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from splitledger.domain.money import allocate
from splitledger.domain.orders import Funder, Order
from splitledger.domain.parties import Party, PartyRole

COMMISSION_BPS = 500
SUPPLIER_BPS = 6_000
AFFILIATE_BPS = 300
WHOLE_BPS = 10_000
PLATFORM = "platform"
PSP = "psp"
NOT_SETTLED = {PartyRole.PLATFORM, PartyRole.PSP, PartyRole.TAX}
DEBIT_NORMAL = {"clearing", "platform_subsidy", "chargeback_losses"}

# Where a share is booked: ("party", party_id) or ("system", account purpose).
Share = tuple[str, str]
# A balance: (party_id or None, purpose, currency).
Account = tuple[str | None, str, str]


@dataclass
class ModelOrder:
    order_id: str
    currency: str
    captured_minor: int
    shares: dict[Share, int]      # in the order shares first appear in the plan
    merchant_ids: list[str]       # sorted
    hold_until: datetime
    refunded_minor: int = 0       # refunds and proportional chargebacks
    borne_minor: int = 0          # chargebacks borne by one side
    released: bool = False

    @property
    def remaining_minor(self) -> int:
        return self.captured_minor - self.refunded_minor - self.borne_minor

    def reversed_after(self, refunded_minor: int) -> dict[Share, int]:
        """How much of each share refunds totalling ``refunded_minor`` have taken back."""
        held = [(share, amount) for share, amount in self.shares.items() if amount]
        parts = allocate(refunded_minor, [amount for _, amount in held])
        return {share: part for (share, _), part in zip(held, parts, strict=True)}

    def net_by_party(self) -> dict[str, int]:
        owners = {"psp_fees": PSP, "platform_subsidy": PLATFORM}
        nets: dict[str, int] = defaultdict(int)
        for (kind, name), amount in self.shares.items():
            nets[name if kind == "party" else owners[name]] += amount
        return dict(nets)


@dataclass
class ModelPayout:
    party_id: str
    currency: str
    amount_minor: int
    status: str = "in_transit"


@dataclass
class LedgerModel:
    parties: dict[str, Party]
    default_hold_days: int = 7
    balances: dict[Account, int] = field(default_factory=lambda: defaultdict(int))
    orders: dict[str, ModelOrder] = field(default_factory=dict)
    payouts: dict[str, ModelPayout] = field(default_factory=dict)
    # Every change to an available balance, to know what was owed at a period's end.
    available_moves: dict[tuple[str, str], list[tuple[datetime, int]]] = field(
        default_factory=lambda: defaultdict(list))
    last_statement_end: dict[tuple[str, str], datetime] = field(default_factory=dict)

    @classmethod
    def of(cls, parties: Iterable[Party], default_hold_days: int = 7) -> LedgerModel:
        return cls({p.party_id: p for p in parties}, default_hold_days)

    # -- balances ---------------------------------------------------------------------------------
    def _owe(self, party_id: str, purpose: str, currency: str, amount: int, at: datetime) -> None:
        """The platform owes ``party_id`` ``amount`` more in ``purpose``."""
        if amount:
            self.balances[(party_id, purpose, currency)] += amount
            if purpose == "available":
                self.available_moves[(party_id, currency)].append((at, amount))

    def _system(self, purpose: str, currency: str, amount: int) -> None:
        self.balances[(None, purpose, currency)] += amount

    def _book_share(self, order: ModelOrder, share: Share, amount: int, at: datetime) -> None:
        """Book ``amount`` more of a share of the plan (negative: take it back)."""
        kind, name = share
        if kind == "party":
            purpose = "available" if order.released else "pending"
            self._owe(name, purpose, order.currency, amount, at)
        elif name == "platform_subsidy":
            self._system(name, order.currency, -amount)  # a subsidy share is negative
        else:
            self._system(name, order.currency, amount)

    def normal_balance(self, account: Account) -> int:
        return self.balances.get(account, 0)

    def raw_balance(self, account: Account) -> int:
        """The debit-positive figure the ledger stores."""
        sign = 1 if account[1] in DEBIT_NORMAL else -1
        return sign * self.normal_balance(account)

    # -- the split --------------------------------------------------------------------------------
    def shares_of(self, order: Order) -> dict[Share, int]:
        shares: dict[Share, int] = {}

        def add(share: Share, amount: int) -> None:
            shares[share] = shares.get(share, 0) + amount

        for line in order.lines:
            merchant_funded = sum(d.amount_minor for d in line.discounts
                                  if d.funded_by == Funder.MERCHANT)
            platform_funded = sum(d.amount_minor for d in line.discounts
                                  if d.funded_by == Funder.PLATFORM)
            basis = line.quantity * line.unit_price_minor - merchant_funded
            takers = [(PLATFORM, COMMISSION_BPS)]
            if line.supplier_id:
                takers.append((line.supplier_id, SUPPLIER_BPS))
            if order.affiliate_id:
                takers.append((order.affiliate_id, AFFILIATE_BPS))
            takers.append((line.merchant_id, WHOLE_BPS - sum(bps for _, bps in takers)))
            for (party_id, _), amount in zip(
                    takers, allocate(basis, [bps for _, bps in takers]), strict=True):
                add(("party", party_id), amount)
            if platform_funded:
                add(("system", "platform_subsidy"), -platform_funded)
        if order.shipping and order.shipping.amount_minor:
            add(("party", order.shipping.logistics_party_id), order.shipping.amount_minor)
        if order.psp_fee_minor:
            add(("system", "psp_fees"), order.psp_fee_minor)
            add(("party", PLATFORM), -order.psp_fee_minor)
        return shares

    # -- the lifecycle ----------------------------------------------------------------------------
    def capture(self, order: Order, now: datetime) -> ModelOrder:
        merchants = sorted({line.merchant_id for line in order.lines})
        hold_days = max(self.parties[m].hold_days if self.parties[m].hold_days is not None
                        else self.default_hold_days for m in merchants)
        shares = self.shares_of(order)
        captured = sum(shares.values())
        model = ModelOrder(order.order_id, order.currency, captured, shares, merchants,
                           order.captured_at + timedelta(days=hold_days))
        self.orders[order.order_id] = model
        self._system("clearing", order.currency, captured)
        for share, amount in shares.items():
            self._book_share(model, share, amount, now)
        return model

    def refund(self, order_id: str, amount: int, now: datetime) -> None:
        """A refund, or a chargeback reversed in proportion."""
        order = self.orders[order_id]
        assert 0 < amount <= order.remaining_minor
        before = order.reversed_after(order.refunded_minor)
        after = order.reversed_after(order.refunded_minor + amount)
        self._system("clearing", order.currency, -amount)
        for share, cumulative in after.items():
            self._book_share(order, share, -(cumulative - before.get(share, 0)), now)
        order.refunded_minor += amount

    def chargeback_borne(self, order_id: str, amount: int, by_platform: bool,
                         now: datetime) -> None:
        order = self.orders[order_id]
        assert 0 < amount <= order.remaining_minor
        self._system("clearing", order.currency, -amount)
        if by_platform:
            self._system("chargeback_losses", order.currency, amount)
        else:
            weights = [max(order.shares.get(("party", m), 0), 0) for m in order.merchant_ids]
            if sum(weights) <= 0:
                weights = [1] * len(weights)
            for merchant_id, part in zip(order.merchant_ids, allocate(amount, weights),
                                         strict=True):
                self._owe(merchant_id, "available", order.currency, -part, now)
        order.borne_minor += amount

    def release(self, order_id: str, now: datetime) -> bool:
        """Release an order; False when it was released already."""
        order = self.orders[order_id]
        if order.released:
            return False
        reversed_so_far = order.reversed_after(order.refunded_minor)
        for (kind, party_id), amount in order.shares.items():
            if kind == "party":
                left = amount - reversed_so_far.get((kind, party_id), 0)
                self._owe(party_id, "pending", order.currency, -left, now)
                self._owe(party_id, "available", order.currency, left, now)
        order.released = True
        return True

    def release_due(self, now: datetime) -> int:
        due = [o.order_id for o in self.orders.values()
               if not o.released and o.hold_until <= now]
        for order_id in due:
            self.release(order_id, now)
        return len(due)

    # -- settlement and payouts -------------------------------------------------------------------
    def settle(self, period_end: datetime, now: datetime) -> dict[tuple[str, str], int]:
        """Close the period for every settling party; the payouts it makes, by party and
        currency (name them with ``name_payout``)."""
        payouts: dict[tuple[str, str], int] = {}
        for party_id, currency in sorted(self.available_moves):
            if self.parties[party_id].role in NOT_SETTLED:
                continue
            last = self.last_statement_end.get((party_id, currency))
            if last is not None and last >= period_end:
                continue  # settled already, or a later period was
            self.last_statement_end[(party_id, currency)] = period_end
            owed_at_end = sum(amount for at, amount in self.available_moves[(party_id, currency)]
                              if at < period_end)
            payable = min(owed_at_end, self.normal_balance((party_id, "available", currency)))
            if payable > 0 and payable >= self.parties[party_id].min_payout(currency):
                self._owe(party_id, "available", currency, -payable, now)
                self._owe(party_id, "in_transit", currency, payable, now)
                payouts[(party_id, currency)] = payable
        return payouts

    def name_payout(self, payout_id: str, party_id: str, currency: str, amount: int) -> None:
        self.payouts[payout_id] = ModelPayout(party_id, currency, amount)

    def resolve_payout(self, payout_id: str, status: str, now: datetime) -> str:
        """``changed``, ``unchanged`` (the same answer twice) or ``invalid_state``."""
        payout = self.payouts[payout_id]
        if payout.status == status:
            return "unchanged"
        if payout.status != "in_transit":
            return "invalid_state"
        self._owe(payout.party_id, "in_transit", payout.currency, -payout.amount_minor, now)
        if status == "paid":
            self._system("clearing", payout.currency, -payout.amount_minor)
        else:
            self._owe(payout.party_id, "available", payout.currency, payout.amount_minor, now)
        payout.status = status
        return "changed"
