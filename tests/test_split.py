"""A split plan always sums exactly to what the buyer paid, and every amount has its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitledger.domain.orders import Discount, Funder, Order, OrderLine, Shipping, validate_order
from splitledger.domain.parties import Party, PartyRole
from splitledger.domain.split import (
    Allocation,
    CommissionConfig,
    ShareKind,
    SimpleCommissionPolicy,
    SplitPlan,
)
from splitledger.errors import ConfigurationError, InvariantViolation, ValidationError

WHEN = datetime(2026, 11, 11, 10, tzinfo=UTC)
PARTIES = {
    party.party_id: party for party in (
        Party("platform", "Mall", PartyRole.PLATFORM),
        Party("psp", "PayCo", PartyRole.PSP),
        Party("m1", "Gold Store", PartyRole.MERCHANT, tier="gold"),
        Party("m2", "Corner Shop", PartyRole.MERCHANT, tier="standard"),
        Party("m3", "New Shop", PartyRole.MERCHANT),
        Party("s1", "Supplier", PartyRole.SUPPLIER),
        Party("s2", "Other Supplier", PartyRole.SUPPLIER),
        Party("l1", "Carrier", PartyRole.LOGISTICS),
        Party("a1", "Promoter", PartyRole.AFFILIATE),
    )}
LINE_SHARE_KINDS = {ShareKind.COMMISSION, ShareKind.SUPPLIER_COST, ShareKind.AFFILIATE,
                    ShareKind.MERCHANT_PROCEEDS}
CATEGORIES = ["electronics", "electronics/phones", "electronics/phones/android", "books",
              "home/kitchen", "fashion/shoes"]


def line(line_id: str = "1", *, price: int = 10_000, quantity: int = 1, merchant: str = "m1",
         supplier: str | None = None, category: str = "electronics/phones",
         discounts: tuple[Discount, ...] = ()) -> OrderLine:
    return OrderLine(line_id, f"SKU-{line_id}", category, merchant, quantity, price, supplier,
                     discounts)


def make_order(*lines: OrderLine, shipping: int = 0, fee: int = 0,
               affiliate: str | None = None) -> Order:
    return Order("o-1", "CNY", lines, WHEN, Shipping(shipping, "l1") if shipping else None,
                 psp_fee_minor=fee, affiliate_id=affiliate)


def split(order: Order, **config: object) -> SplitPlan:
    validate_order(order)
    return SimpleCommissionPolicy(CommissionConfig(**config)).split(order, PARTIES)  # type: ignore[arg-type]


def of_kind(plan: SplitPlan, kind: ShareKind) -> list[Allocation]:
    return [a for a in plan.allocations if a.kind is kind]


# -- random orders and configurations -------------------------------------------------------------

bps = st.integers(min_value=0, max_value=10_000)


@st.composite
def order_lines(draw: st.DrawFn, line_id: str) -> OrderLine:
    quantity = draw(st.integers(min_value=1, max_value=5))
    price = draw(st.integers(min_value=0, max_value=500_000))
    gross = quantity * price
    discounts = []
    left = gross
    for funder in draw(st.lists(st.sampled_from(Funder), max_size=3)):
        if left <= 0:
            break
        amount = draw(st.integers(min_value=1, max_value=left))
        discounts.append(Discount(amount, funder))
        left -= amount
    return OrderLine(line_id, f"SKU-{line_id}", draw(st.sampled_from(CATEGORIES)),
                     draw(st.sampled_from(["m1", "m2", "m3"])), quantity, price,
                     draw(st.sampled_from([None, "s1", "s2"])), tuple(discounts))


@st.composite
def orders(draw: st.DrawFn) -> Order:
    count = draw(st.integers(min_value=1, max_value=5))
    lines = tuple(draw(order_lines(str(i + 1))) for i in range(count))
    shipping_minor = draw(st.integers(min_value=0, max_value=5_000))
    paid = sum(item.net_minor for item in lines) + shipping_minor
    if paid <= 0:  # nothing was paid: give the first line a price nobody discounted
        first = lines[0]
        lines = (OrderLine(first.line_id, first.sku, first.category, first.merchant_id, 1,
                           draw(st.integers(min_value=1, max_value=10_000)), first.supplier_id),
                 *lines[1:])
        paid = sum(item.net_minor for item in lines) + shipping_minor
    return Order("o-1", "CNY", lines, WHEN,
                 Shipping(shipping_minor, "l1") if shipping_minor else None,
                 psp_fee_minor=draw(st.integers(min_value=0, max_value=paid)),
                 affiliate_id=draw(st.sampled_from([None, "a1"])))


@st.composite
def configs(draw: st.DrawFn) -> CommissionConfig:
    # Commission, supplier and affiliate shares of one line must stay within 100 %.
    supplier = draw(st.integers(min_value=0, max_value=8_000))
    affiliate = draw(st.integers(min_value=0, max_value=10_000 - supplier - 2_000))
    commission = st.integers(min_value=0, max_value=10_000 - supplier - affiliate)
    return CommissionConfig(
        default_commission_bps=draw(commission),
        category_commission_bps=draw(st.dictionaries(st.sampled_from(CATEGORIES), commission,
                                                     max_size=4)),
        tier_discount_bps=draw(st.dictionaries(st.sampled_from(["gold", "standard"]), bps,
                                               max_size=2)),
        supplier_share_bps=supplier,
        affiliate_bps=affiliate,
        psp_fee_bearer=draw(st.sampled_from(["platform", "merchant"])))


@given(orders(), configs())
def test_a_plan_always_sums_exactly_to_what_the_buyer_paid(order, config):
    validate_order(order)
    plan = SimpleCommissionPolicy(config).split(order, PARTIES)
    assert plan.total_minor == order.total_minor
    assert sum(a.amount_minor for a in plan.allocations) == order.total_minor
    assert sum(plan.net_by_party().values()) == order.total_minor
    assert sum(plan.net_by_target().values()) == order.total_minor


@given(orders(), configs())
def test_every_line_is_shared_out_exactly_and_no_share_exceeds_its_basis(order, config):
    validate_order(order)
    plan = SimpleCommissionPolicy(config).split(order, PARTIES)
    for item in order.lines:
        shares = [a for a in plan.allocations
                  if a.line_id == item.line_id and a.kind in LINE_SHARE_KINDS]
        assert sum(a.amount_minor for a in shares) == item.merchant_basis_minor
        for share in shares:
            assert share.basis_minor == item.merchant_basis_minor
            assert 0 <= share.amount_minor <= share.basis_minor
            assert share.explanation


@given(orders(), configs())
def test_the_payment_fee_is_withheld_whole_and_borne_by_the_configured_side(order, config):
    validate_order(order)
    plan = SimpleCommissionPolicy(config).split(order, PARTIES)
    withheld = of_kind(plan, ShareKind.PSP_FEE)
    borne = of_kind(plan, ShareKind.PSP_FEE_BORNE)
    assert sum(a.amount_minor for a in withheld) == order.psp_fee_minor
    assert sum(a.amount_minor for a in borne) == -order.psp_fee_minor
    assert all(a.amount_minor < 0 for a in borne)
    if config.psp_fee_bearer == "platform":
        assert {a.party_id for a in borne} <= {"platform"}
    elif any(item.merchant_basis_minor for item in order.lines):
        assert {a.party_id for a in borne} <= {item.merchant_id for item in order.lines}


@given(orders(), configs())
def test_platform_funded_discounts_are_a_platform_subsidy_of_exactly_their_amount(order, config):
    validate_order(order)
    plan = SimpleCommissionPolicy(config).split(order, PARTIES)
    subsidies = of_kind(plan, ShareKind.PLATFORM_SUBSIDY)
    expected = sum(item.discount_minor(Funder.PLATFORM) for item in order.lines)
    assert sum(a.amount_minor for a in subsidies) == -expected
    assert all(a.party_id == "platform" and a.amount_minor < 0 for a in subsidies)


def test_the_longest_matching_category_prefix_sets_the_commission():
    config = {"category_commission_bps": {"electronics": 800, "electronics/phones": 300,
                                          "books/": 1_200},
              "default_commission_bps": 500, "supplier_share_bps": 0, "affiliate_bps": 0}
    cases = {"electronics/phones/android": 300, "electronics/phones": 300, "electronics/tv": 800,
             "/electronics/": 800, "electronicsx": 500, "books": 1_200, "garden/tools": 500}
    for category, rate in cases.items():
        plan = split(make_order(line(category=category, merchant="m3")), **config)
        [commission] = of_kind(plan, ShareKind.COMMISSION)
        assert (commission.rate_bps, commission.amount_minor) == (rate, rate), category


def test_a_merchant_tier_lowers_the_commission_but_never_below_zero():
    config = {"default_commission_bps": 500, "tier_discount_bps": {"gold": 200, "standard": 900}}
    gold = split(make_order(line(merchant="m1")), **config)
    standard = split(make_order(line(merchant="m2")), **config)
    untiered = split(make_order(line(merchant="m3")), **config)
    assert of_kind(gold, ShareKind.COMMISSION)[0].amount_minor == 300
    assert of_kind(gold, ShareKind.COMMISSION)[0].rule_id == "default+tier:gold"
    assert of_kind(standard, ShareKind.COMMISSION)[0].amount_minor == 0
    assert of_kind(untiered, ShareKind.COMMISSION)[0].amount_minor == 500
    assert of_kind(gold, ShareKind.MERCHANT_PROCEEDS)[0].amount_minor == 9_700


def test_a_platform_coupon_is_a_subsidy_and_the_merchant_is_settled_on_the_full_price():
    coupon = Discount(2_000, Funder.PLATFORM)
    plan = split(make_order(line(price=10_000, merchant="m3", discounts=(coupon,))))
    assert plan.total_minor == 8_000
    assert of_kind(plan, ShareKind.MERCHANT_PROCEEDS)[0].amount_minor == 9_500
    assert of_kind(plan, ShareKind.COMMISSION)[0].amount_minor == 500
    [subsidy] = of_kind(plan, ShareKind.PLATFORM_SUBSIDY)
    assert (subsidy.party_id, subsidy.amount_minor) == ("platform", -2_000)
    assert plan.net_by_party() == {"platform": 500 - 2_000, "m3": 9_500}


def test_a_merchant_coupon_lowers_the_price_the_merchant_is_settled_on():
    coupon = Discount(2_000, Funder.MERCHANT)
    plan = split(make_order(line(price=10_000, merchant="m3", discounts=(coupon,))))
    assert plan.net_by_party() == {"platform": 400, "m3": 7_600}
    assert not of_kind(plan, ShareKind.PLATFORM_SUBSIDY)


def test_supplier_affiliate_shipping_and_fee_each_get_their_documented_share():
    plan = split(make_order(line(price=10_000, merchant="m3", supplier="s1"), shipping=800,
                            fee=60, affiliate="a1"))
    assert plan.net_by_party() == {"platform": 500 - 60, "s1": 6_000, "a1": 300, "m3": 3_200,
                                   "l1": 800, "psp": 60}


def test_merchants_bear_the_payment_fee_in_proportion_to_their_lines():
    plan = split(make_order(line("1", price=30_000, merchant="m1"),
                            line("2", price=10_000, merchant="m3"), fee=101),
                 psp_fee_bearer="merchant")
    borne = {a.party_id: a.amount_minor for a in of_kind(plan, ShareKind.PSP_FEE_BORNE)}
    assert borne == {"m1": -76, "m3": -25}  # 75.75 and 25.25: the larger remainder takes the unit


def test_a_plan_that_does_not_sum_to_the_captured_amount_is_a_broken_invariant():
    allocations = (Allocation("platform", ShareKind.COMMISSION, 500, "default"),
                   Allocation("m1", ShareKind.MERCHANT_PROCEEDS, 9_499, "remainder"))
    with pytest.raises(InvariantViolation):
        SplitPlan("o-1", "CNY", 10_000, "simple-1", allocations)


def test_shares_over_one_hundred_percent_are_refused_naming_the_line():
    order = make_order(line("1", supplier=None), line("2", supplier="s1"), affiliate="a1")
    with pytest.raises(ValidationError) as refused:
        split(order, default_commission_bps=3_500, supplier_share_bps=6_000, affiliate_bps=600)
    assert refused.value.details["line_id"] == "2"
    assert "2" in refused.value.message and "10100 bps" in refused.value.message


@pytest.mark.parametrize("config", [
    {"default_commission_bps": -1}, {"supplier_share_bps": 10_001},
    {"category_commission_bps": {"books": 20_000}}, {"psp_fee_bearer": "buyer"},
    {"affiliate_bps": 2.5}])
def test_a_commission_configuration_with_an_impossible_rate_is_refused(config):
    with pytest.raises(ConfigurationError):
        CommissionConfig(**config)
