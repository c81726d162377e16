"""Six weeks of a marketplace, driven through the real services on a simulated clock.

Everything is decided up front from the seed (orders, confirmations, refunds, chargebacks and
their times), then played in time order together with the daily jobs: settlement at midnight
(logistics daily, everyone else on Mondays, as their schedules say), release of due orders at
02:00 and the bank's answers on payouts at 10:00. Exactly one payout is returned by the bank;
the merchant's money goes back to available and is paid with its next statement.

Only services write; the demo never touches the database itself.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from splitledger.demo.marketplace import (
    AFFILIATES,
    CATEGORIES,
    LOGISTICS,
    PLATFORM_ID,
    PSP_FEE_BPS,
    RULES_APPROVER,
    RULES_DRAFTER,
    SUPPLIER_FOR_SEGMENT,
    Marketplace,
    bank_for,
    build_marketplace,
    demo_rules,
)
from splitledger.domain.lifecycle import ChargebackPolicy
from splitledger.domain.money import BPS_PER_UNIT
from splitledger.domain.orders import Discount, Funder, Order, OrderLine, Shipping
from splitledger.domain.parties import PartyRole
from splitledger.errors import Conflict, DuplicateParty, UnknownParty, ValidationError
from splitledger.rules_io import ruleset_from_data
from splitledger.services import fundsec
from splitledger.services import orders as order_service
from splitledger.services import rules as rules_service
from splitledger.services import settlement as settlement_service
from splitledger.services.context import Context
from splitledger.services.export import list_payouts, marketplace_summary
from splitledger.services.parties import register_party, set_bank_details
from splitledger.services.verify import VerifyReport, verify_ledger

CAPTURE_DAYS = 35      # orders arrive over the first five weeks (fewer in the fifth)...
SIMULATED_DAYS = 42    # ...and the books run for six weeks, closing with a settlement
REFUND_RATE = 0.08
CAMPAIGN_DAY = 10      # a three-day sales campaign with a lower commission
BANK_APPROVER = "user:risk-officer"  # approves changed bank details (four-eyes)
USD_RATE = 0.15
CONFIRM_RATE = 0.25
HOUR_WEIGHTS = [1, .5, .3, .2, .2, .3, .6, 1, 1.5, 2, 2.5, 2.5,
                2.5, 2, 2, 2, 2, 2.2, 2.5, 3, 3.5, 3.5, 3, 2]
REFUND_REASONS = ["尺码不合适 wrong size", "运输损坏 damaged in transit",
                  "与描述不符 not as described", "七天无理由退货 changed mind",
                  "发货延迟 shipped late"]
FAILURE_REASON = "收款账户已销户 beneficiary account closed"

# Priorities of things that happen at the same moment: jobs before buyers.
SETTLE, RELEASE, BANK, BUYER = 0, 1, 2, 3


class SimClock:
    """The simulated "now" every booking is stamped with."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class PlannedRefund:
    at: datetime
    stage: str          # before_release | after_release | after_payout (as planned)
    fraction: float     # of what is left of the order; 1.0 refunds all of it
    reason: str


@dataclass
class PlannedOrder:
    order: Order
    hold_until: datetime
    release_at: datetime
    confirm_at: datetime | None = None
    refunds: list[PlannedRefund] = field(default_factory=list)
    chargeback: tuple[datetime, ChargebackPolicy] | None = None


@dataclass
class DemoResult:
    start: datetime
    end: datetime
    seed: int
    parties: int = 0
    captured: Counter[str] = field(default_factory=Counter)
    confirmations: int = 0
    releases: int = 0
    refunds: Counter[str] = field(default_factory=Counter)   # by stage as booked
    chargebacks: int = 0
    settlement_runs: int = 0
    statements: int = 0
    payouts_created: int = 0
    payouts_paid: int = 0
    failed_payout: dict[str, Any] | None = None
    repaid_payout: dict[str, Any] | None = None
    summary: dict[str, dict[str, int]] = field(default_factory=dict)
    verify: VerifyReport | None = None
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verify is not None and self.verify.ok


def default_start(now: datetime | None = None) -> date:
    """The Monday six weeks before the latest Monday that has passed, so that the simulated
    books end in the recent past and later real-time commands carry on from them."""
    today = (now or datetime.now(UTC)) - timedelta(hours=1)
    last_monday = today.date() - timedelta(days=today.weekday())
    return last_monday - timedelta(days=SIMULATED_DAYS)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _next_job(moment: datetime, hour: int) -> datetime:
    """The first daily job at ``hour`` at or after ``moment``."""
    candidate = _midnight(moment.date()) + timedelta(hours=hour)
    return candidate if candidate >= moment else candidate + timedelta(days=1)


def _next_monday(moment: datetime) -> datetime:
    """The first Monday midnight strictly after ``moment``."""
    return _midnight(moment.date()) + timedelta(days=7 - moment.weekday())


# -- planning ----------------------------------------------------------------------------------

def _capture_times(rng: random.Random, start: datetime, count: int) -> list[datetime]:
    day_weights = []
    for day in range(CAPTURE_DAYS):
        moment = start + timedelta(days=day)
        weight = 1.4 if moment.weekday() >= 5 else 1.0
        if day >= 28:
            weight /= 2  # the season winds down
        if day == 9:
            weight = 4.0  # the flash sale
        if (moment.month, moment.day) in ((11, 11), (12, 12), (6, 18)):
            weight = 5.0  # Singles' Day, Double Twelve, 618
        day_weights.append(weight)
    times = []
    for _ in range(count):
        day = rng.choices(range(CAPTURE_DAYS), day_weights)[0]
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        times.append(start + timedelta(days=day, hours=hour, minutes=rng.randrange(60),
                                       seconds=rng.randrange(60)))
    return sorted(times)


def _price(rng: random.Random, bounds: tuple[int, int]) -> int:
    return rng.randint(*bounds) * 100 - rng.choice([0, 0, 1, 10])


def _make_order(rng: random.Random, market: Marketplace, order_id: str, at: datetime) -> Order:
    usd = rng.random() < USD_RATE
    currency = "USD" if usd else "CNY"
    pool = market.usd_merchants if usd else market.cny_merchants
    merchant = rng.choice(pool)
    lines = []
    for index in range(rng.choices([1, 2, 3], [55, 30, 15])[0]):
        if index and rng.random() < 0.3:
            merchant = rng.choice(pool)  # a multi-vendor cart
        segment = market.segments[merchant]
        category, cny_range, usd_range = rng.choice(CATEGORIES[segment])
        quantity = rng.choices([1, 2, 3, 5], [70, 18, 8, 4])[0]
        unit = _price(rng, usd_range if usd else cny_range)
        gross = unit * quantity
        discounts = []
        if rng.random() < 0.18:
            face = rng.choice([100, 300, 500] if usd else [500, 1_000, 2_000, 5_000])
            discounts.append(Discount(max(1, min(gross // 10, face)), Funder.PLATFORM,
                                      "platform_coupon"))
        if rng.random() < 0.15:
            discounts.append(Discount(max(1, gross * rng.choice([5, 10, 15]) // 100),
                                      Funder.MERCHANT, "store_coupon"))
        supplier = SUPPLIER_FOR_SEGMENT[segment] if rng.random() < 0.3 else None
        lines.append(OrderLine(str(index + 1), f"SKU-{category.split('/')[1][:4].upper()}-"
                               f"{rng.randrange(1, 500):04d}", category, merchant, quantity, unit,
                               supplier, tuple(discounts)))
    shipping = None
    if rng.random() < 0.6:
        amount = rng.choice([499, 799, 999] if usd else [600, 800, 1_000, 1_200, 1_800])
        shipping = Shipping(amount, rng.choice(LOGISTICS)[0])
    affiliate = None
    if rng.random() < 0.15:
        affiliate = rng.choice([a for a, _, cur in AFFILIATES if currency in cur])
    draft = Order(order_id, currency, tuple(lines), at, shipping, affiliate_id=affiliate)
    fee = (draft.total_minor * PSP_FEE_BPS + BPS_PER_UNIT // 2) // BPS_PER_UNIT
    return dataclasses.replace(
        draft, psp_fee_minor=fee,
        channel=rng.choices(["app", "mini_program", "web"], [55, 30, 15])[0],
        region=rng.choice(["US-CA", "US-NY", "US-WA", "SG", "HK"] if usd else
                          ["CN-GD", "CN-SH", "CN-BJ", "CN-ZJ", "CN-SC", "CN-JS"]),
        payment_method=rng.choice(["card", "paypal"] if usd else
                                  ["alipay", "wechat_pay", "unionpay"]),
        buyer_ref=f"B-{rng.randrange(1, 400):04d}")


def _released_at(plan: PlannedOrder) -> datetime:
    return min(plan.release_at, plan.confirm_at or plan.release_at)


def _refund_time(rng: random.Random, plan: PlannedOrder, stage: str, end: datetime
                 ) -> datetime:
    captured, released = plan.order.captured_at, _released_at(plan)
    if stage == "after_payout":
        # Right after the Monday statement that paid the released share out, before the
        # day's releases: the parties' available balances are empty, so this makes debts.
        paid = _next_monday(released) + timedelta(minutes=rng.uniform(10, 110))
        if paid < end:
            return paid
        stage = "after_release"
    if stage == "after_release":
        return min(released + timedelta(hours=rng.uniform(1, 72)),
                   end - timedelta(minutes=rng.uniform(10, 600)))
    return captured + (released - captured) * rng.uniform(0.05, 0.9)


def plan_marketplace(rng: random.Random, market: Marketplace, count: int, start: datetime,
                     default_hold_days: int) -> list[PlannedOrder]:
    """Every order of the run and what will happen to it."""
    end = start + timedelta(days=SIMULATED_DAYS)
    plans: list[PlannedOrder] = []
    for number, at in enumerate(_capture_times(rng, start, count), start=1):
        order = _make_order(rng, market, f"DEMO-{at:%Y%m%d}-{number:05d}", at)
        hold = max(market.hold_days(line.merchant_id, default_hold_days) for line in order.lines)
        hold_until = at + timedelta(days=hold)
        plan = PlannedOrder(order, hold_until, _next_job(hold_until, 2))
        if rng.random() < CONFIRM_RATE and hold > 1:
            plan.confirm_at = at + timedelta(hours=rng.uniform(20, hold * 24 - 4))
        plans.append(plan)
    if not plans:
        return plans

    # Chargebacks: 2 (3 from 500 orders) on early orders, weeks later, right after a Monday
    # statement paid them out; merchants bear the first two (debts), the platform the third.
    early = [p for p in plans if p.order.captured_at < start + timedelta(days=19)] or plans
    disputed = rng.sample(early, min(len(early), 2 if count < 500 else 3))
    for index, plan in enumerate(disputed):
        monday = max(_next_monday(_released_at(plan)), start + timedelta(days=28))
        when = min(monday, start + timedelta(days=35)) + timedelta(minutes=rng.uniform(10, 110))
        plan.chargeback = (when, ChargebackPolicy.PLATFORM if index == 2
                           else ChargebackPolicy.MERCHANT)

    # Refunds: about 8 % of the orders, some several times, before and after release and
    # after payout.
    candidates = [p for p in plans if p.chargeback is None]
    if not candidates:
        return plans
    # One certain story first: an early order of a merchant that keeps selling afterwards,
    # refunded in full after the merchant was paid: a debt that later earnings recover.
    late_sellers = {line.merchant_id for p in plans
                    if p.order.captured_at >= start + timedelta(days=18) for line in p.order.lines}
    stories = [p for p in candidates if p.order.captured_at < start + timedelta(days=10)
               and p.order.lines[0].merchant_id in late_sellers] or candidates
    story = rng.choice(stories)
    others = [p for p in candidates if p is not story]
    refunded = [story] + rng.sample(
        others, min(len(others), max(0, round(count * REFUND_RATE) - 1)))
    for index, plan in enumerate(refunded):
        if index == 0:
            stages = ["after_payout"]
        else:
            times = rng.choices([1, 2, 3], [60, 30, 10])[0]
            stages = sorted(rng.choices(["before_release", "after_release", "after_payout"],
                                        [40, 35, 25], k=times),
                            key=["before_release", "after_release", "after_payout"].index)
        moments = sorted(_refund_time(rng, plan, stage, end) for stage in stages)
        for number, (stage, moment) in enumerate(zip(stages, moments, strict=True)):
            last = number == len(stages) - 1
            full = index == 0 or (last and rng.random() < 0.5)
            plan.refunds.append(PlannedRefund(moment, stage,
                                              1.0 if full else rng.uniform(0.15, 0.5),
                                              rng.choice(REFUND_REASONS)))
    return plans


# -- running -----------------------------------------------------------------------------------

def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(),
                    MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                    TimeElapsedColumn(), console=console)


def seed_parties(ctx: Context, market: Marketplace, tick: Callable[[], None]) -> int:
    for party in market.parties:
        try:
            # Onboarded (identity and bank account checked) before the books start.
            register_party(ctx, party, market.banks.get(party.party_id), verified=True)
        except DuplicateParty as exc:
            raise Conflict(f"the demo needs an empty database, and party {party.party_id!r} "
                           "already exists (run it on a new file or database)") from exc
        tick()
    return len(market.parties)


def run_demo(base: Context, *, orders: int = 1_000, seed: int = 42, start: date | None = None,
             console: Console | None = None) -> DemoResult:
    """Seed the demo marketplace into an empty database, play six weeks of trading, then
    summarise and verify. Raises ValidationError for a bad order count and Conflict when the
    database already holds parties."""
    if orders < 0 or orders > 1_000_000:
        raise ValidationError("--orders must be between 0 and 1,000,000", field="orders")
    console = console or Console()
    base.cipher  # noqa: B018 - fail now, not half-way through seeding, if no key is configured
    try:
        settlement_service.party_or_error(base, PLATFORM_ID)
    except UnknownParty:
        pass
    else:
        raise Conflict("the demo needs an empty database, and this one already has parties "
                       "(run it on a new file or database)")
    began = time.perf_counter()
    first_day = start or default_start()
    first_day -= timedelta(days=first_day.weekday())  # periods close on Mondays
    t0 = _midnight(first_day)
    end = t0 + timedelta(days=SIMULATED_DAYS)
    clock = SimClock(t0)
    ctx = dataclasses.replace(base, clock=clock)
    rng = random.Random(seed)
    market = build_marketplace()
    result = DemoResult(t0, end, seed)
    plans = plan_marketplace(rng, market, orders, t0, ctx.settings.default_hold_days)
    roles = {p.party_id: p.role for p in market.parties}

    events: list[tuple[datetime, int, int, str, Any]] = []
    sequence = 0

    def push(at: datetime, priority: int, kind: str, payload: Any = None) -> None:
        nonlocal sequence
        if priority == BUYER and at >= end:
            return  # after the books close
        sequence += 1
        heapq.heappush(events, (at, priority, sequence, kind, payload))

    campaign = (t0 + timedelta(days=CAMPAIGN_DAY), t0 + timedelta(days=CAMPAIGN_DAY + 3))
    # Version 2 lowers apparel's commission from day 22: drafted on day 20, approved on day 21.
    push(t0 + timedelta(days=20, hours=9), RELEASE, "rules", ("demo-rules-2", 22, 700, campaign))
    for day in range(SIMULATED_DAYS + 1):
        midnight = t0 + timedelta(days=day)
        push(midnight, SETTLE, "settle", midnight)
        if day < SIMULATED_DAYS:
            push(midnight + timedelta(hours=2), RELEASE, "release")
            push(midnight + timedelta(hours=10), BANK, "bank")
    for plan in plans:
        push(plan.order.captured_at, BUYER, "capture", plan)
        if plan.confirm_at is not None:
            push(plan.confirm_at, BUYER, "confirm", plan)
        for number, refund in enumerate(plan.refunds):
            push(refund.at, BUYER, "refund", (plan, number))
        if plan.chargeback is not None:
            push(plan.chargeback[0], BUYER, "chargeback", plan)

    remaining: dict[str, int] = {}
    last_payday: list[datetime] = [t0]  # the latest Monday settlement

    with _progress(console) as progress:
        seeding = progress.add_task("Seeding the marketplace", total=len(market.parties),
                                    note="")
        result.parties = seed_parties(ctx, market,
                                      lambda: progress.advance(seeding))
        _adopt_rules(ctx, clock, "demo-rules-1", t0, 800, campaign)
        days = progress.add_task("Simulating six weeks", total=SIMULATED_DAYS + 1, note="")
        captures = progress.add_task("Capturing orders", total=len(plans), note="")
        while events:
            at, _, _, kind, payload = heapq.heappop(events)
            clock.now = max(clock.now, at)
            if kind == "settle":
                clock.now = at + timedelta(minutes=1)
                run = settlement_service.run_settlement(ctx, at)
                if at.weekday() == 0:
                    last_payday[0] = at
                result.settlement_runs += 1
                result.statements += run.statements
                result.payouts_created += run.payouts
                progress.update(days, advance=1, note=f"{at:%a %Y-%m-%d}")
            elif kind == "rules":
                version, day, apparel_bps, window = payload
                _adopt_rules(ctx, clock, version, t0 + timedelta(days=day), apparel_bps, window)
            elif kind == "release":
                count = order_service.release_due(ctx)
                result.releases += count
            elif kind == "bank":
                _bank_day(ctx, clock, result, roles, market)
            elif kind == "capture":
                response = order_service.capture_order(
                    ctx, payload.order, idempotency_key=f"demo-capture-{payload.order.order_id}")
                remaining[payload.order.order_id] = response["captured_minor"]
                result.captured[payload.order.currency] += 1
                progress.advance(captures)
            elif kind == "confirm":
                outcome = order_service.confirm_order(ctx, payload.order.order_id)
                if not outcome["already_released"]:
                    result.confirmations += 1
            elif kind == "refund":
                plan, number = payload
                _refund(ctx, plan, number, remaining, result, last_payday[0])
            elif kind == "chargeback":
                order_id = payload.order.order_id
                if remaining[order_id] > 0:
                    response = order_service.chargeback_order(
                        ctx, order_id, remaining[order_id], policy=payload.chargeback[1],
                        reason="持卡人争议 cardholder dispute: item not received",
                        idempotency_key=f"demo-chargeback-{order_id}")
                    remaining[order_id] = response["remaining_minor"]
                    result.chargebacks += 1
        checking = progress.add_task("Verifying the ledger", total=1, note="")
        result.summary = marketplace_summary(ctx)
        result.verify = verify_ledger(ctx)
        progress.advance(checking)
    result.elapsed_seconds = time.perf_counter() - began
    return result


def _adopt_rules(ctx: Context, clock: SimClock, version: str, effective_from: datetime,
                 apparel_bps: int, campaign: tuple[datetime, datetime]) -> None:
    """Finance drafts a ruleset; risk, a second person, approves it (four-eyes)."""
    ruleset = ruleset_from_data(demo_rules(version, effective_from, campaign, apparel_bps))
    rules_service.draft_ruleset(ctx, ruleset, by=RULES_DRAFTER)
    clock.now = max(clock.now, min(effective_from, clock.now + timedelta(hours=1)))
    rules_service.approve_ruleset(ctx, version, by=RULES_APPROVER)


def _refund(ctx: Context, plan: PlannedOrder, number: int, remaining: dict[str, int],
            result: DemoResult, last_payday: datetime) -> None:
    order_id = plan.order.order_id
    left = remaining[order_id]
    if left <= 0:
        return
    refund = plan.refunds[number]
    amount = left if refund.fraction >= 1 else max(1, int(left * refund.fraction))
    response = order_service.refund_order(ctx, order_id, amount, reason=refund.reason,
                                          idempotency_key=f"demo-refund-{order_id}-{number}")
    remaining[order_id] = response["remaining_minor"]
    if not response["released"]:
        stage = "before_release"
    elif _released_at(plan) < last_payday:
        stage = "after_payout"  # a Monday statement has paid the released shares out
    else:
        stage = "after_release"
    result.refunds[stage] += 1


def _bank_day(ctx: Context, clock: SimClock, result: DemoResult,
              roles: dict[str, PartyRole], market: Marketplace) -> None:
    """The bank answers for every payout whose value date has come: paid, except one merchant
    payout in weeks three to five that bounces; its merchant then updates its bank details."""
    now = clock.now
    due = [p for p in list_payouts(ctx, status="in_transit") if p["value_date"] <= now]
    day = (now - result.start).days
    if result.failed_payout is None and 15 <= day <= 29:
        merchants = [p for p in due if roles.get(p["party_id"]) is PartyRole.MERCHANT]
        if merchants:
            victim = max(merchants, key=lambda p: (p["amount_minor"], p["party_id"]))
            settlement_service.mark_payout_failed(ctx, victim["payout_id"], FAILURE_REASON)
            result.failed_payout = {**victim, "failed_at": now}
            party = next(p for p in market.parties if p.party_id == victim["party_id"])
            clock.now = now + timedelta(minutes=30)
            # The merchant enters its new account; a risk officer, a second person, approves
            # it, so that the next payout need not wait for the cooling-off period.
            set_bank_details(dataclasses.replace(ctx, actor=f"user:{party.party_id}-owner"),
                             party.party_id,
                             bank_for(party, random.Random(f"new-bank-{party.party_id}")))
            fundsec.approve_bank_details(dataclasses.replace(ctx, actor=BANK_APPROVER),
                                         party.party_id)
            due = [p for p in due if p["payout_id"] != victim["payout_id"]]
    for payout in due:
        settlement_service.mark_payout_paid(ctx, payout["payout_id"])
        result.payouts_paid += 1
        failed = result.failed_payout
        if (failed is not None and result.repaid_payout is None
                and payout["party_id"] == failed["party_id"]
                and payout["currency"] == failed["currency"]
                and payout["created_at"] > failed["failed_at"]):
            result.repaid_payout = {**payout, "paid_at": clock.now}
