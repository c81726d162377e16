"""Money is exact: integer minor units of one known currency, and one rounding rule."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitledger.domain.money import Money, allocate, exponent, total
from splitledger.errors import CurrencyMismatch, InvalidAmount, UnknownCurrency

# -- what Money accepts ---------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [10.5, 10.0, True, False, "1000", Decimal("10"), None],
                         ids=repr)
def test_money_is_only_ever_an_integer_count_of_minor_units(amount):
    with pytest.raises(InvalidAmount) as refused:
        Money(amount, "CNY")
    assert refused.value.code == "invalid_amount"


@pytest.mark.parametrize("currency", ["XYZ", "cny", "", "RMB", None, 156], ids=repr)
def test_money_refuses_a_currency_that_is_not_an_active_iso_4217_code(currency):
    with pytest.raises(UnknownCurrency) as refused:
        Money(100, currency)
    assert refused.value.code == "unknown_currency"


def test_amounts_of_different_currencies_never_combine():
    cny, usd = Money(100, "CNY"), Money(100, "USD")
    for combine in (lambda: cny + usd, lambda: cny - usd, lambda: cny < usd, lambda: cny >= usd,
                    lambda: total([cny, usd], "CNY")):
        with pytest.raises(CurrencyMismatch) as refused:
            combine()
        assert refused.value.code == "currency_mismatch"


def test_amounts_of_one_currency_add_and_subtract_exactly():
    assert Money(10, "CNY") + Money(5, "CNY") == Money(15, "CNY")
    assert Money(10, "CNY") - Money(15, "CNY") == Money(-5, "CNY")
    assert -Money(7, "JPY") == Money(-7, "JPY")
    assert total([], "EUR") == Money.zero("EUR")


@pytest.mark.parametrize(("currency", "digits"), [
    ("JPY", 0), ("KRW", 0), ("CNY", 2), ("EUR", 2), ("USD", 2), ("KWD", 3), ("BHD", 3)])
def test_each_currency_has_its_iso_4217_number_of_minor_digits(currency, digits):
    assert exponent(currency) == digits


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("12.34", "CNY", 1234), ("12.3", "EUR", 1230), ("12.340", "USD", 1234), ("-0.01", "CNY", -1),
    ("1500", "JPY", 1500), ("1.234", "KWD", 1234), (" 0.5 ", "BHD", 500)])
def test_parsing_a_decimal_amount_is_exact(text, currency, minor):
    assert Money.parse(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(("text", "currency"), [
    ("12.345", "CNY"), ("0.001", "USD"), ("1.5", "JPY"), ("1.2345", "KWD")])
def test_parsing_refuses_more_decimals_than_the_currency_has_instead_of_rounding(text, currency):
    with pytest.raises(InvalidAmount):
        Money.parse(text, currency)


@pytest.mark.parametrize("text", ["abc", "", "NaN", "Infinity", "1,5", 12.5], ids=repr)
def test_parsing_refuses_anything_that_is_not_a_finite_decimal_string(text):
    with pytest.raises(InvalidAmount):
        Money.parse(text, "CNY")


def test_money_is_shown_with_the_currency_s_own_digits():
    assert str(Money(123456, "CNY")) == "1234.56 CNY"
    assert str(Money(1500, "JPY")) == "1500 JPY"
    assert Money(1234567, "KWD").format() == "1,234.567 KWD"


# -- the rounding rule ----------------------------------------------------------------------------

totals = st.integers(min_value=-10**12, max_value=10**12)
# Any weights with a positive sum, negative ones included (a subsidy inside a reversed split).
weight_lists = st.lists(st.integers(min_value=-10**6, max_value=10**6), min_size=1,
                        max_size=12).filter(lambda ws: sum(ws) > 0)


@given(totals, weight_lists)
def test_allocation_always_sums_exactly_to_the_total(total_minor, weights):
    assert sum(allocate(total_minor, weights)) == total_minor


@given(totals, weight_lists)
def test_each_allocated_part_is_within_one_minor_unit_of_its_exact_share(total_minor, weights):
    weight_sum = sum(weights)
    for part, weight in zip(allocate(total_minor, weights), weights, strict=True):
        assert abs(part - Fraction(total_minor * weight, weight_sum)) < 1


@given(totals, weight_lists)
def test_allocation_is_deterministic(total_minor, weights):
    assert allocate(total_minor, weights) == allocate(total_minor, list(weights))


@given(totals, weight_lists)
def test_leftover_units_go_to_the_largest_remainders_and_ties_to_the_earlier_part(
        total_minor, weights):
    weight_sum = sum(weights)
    exact = [Fraction(total_minor * w, weight_sum) for w in weights]
    remainders = [share - (share.numerator // share.denominator) for share in exact]
    parts = allocate(total_minor, weights)
    got_a_unit = [part - (share.numerator // share.denominator)
                  for part, share in zip(parts, exact, strict=True)]
    assert set(got_a_unit) <= {0, 1}
    for i, got_i in enumerate(got_a_unit):
        for j, got_j in enumerate(got_a_unit):
            if got_i and not got_j:
                assert (remainders[i], -i) > (remainders[j], -j)


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=10**6),
       st.integers(min_value=2, max_value=10))
def test_equal_weights_never_give_a_later_part_more_than_an_earlier_one(total_minor, weight, n):
    parts = allocate(total_minor, [weight] * n)
    assert parts == sorted(parts, reverse=True)
    assert max(parts) - min(parts) <= 1


def test_rounding_leftovers_go_to_the_earliest_part_on_a_tie():
    assert allocate(1, [1, 1, 1]) == [1, 0, 0]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(-100, [1, 1, 1]) == [-33, -33, -34]


def test_a_larger_remainder_beats_an_earlier_position():
    # exact shares 3.33.., 6.66..: the second has the larger remainder and takes the unit.
    assert allocate(10, [1, 2]) == [3, 7]


def test_negative_weights_allocate_a_negative_part_and_still_sum_exactly():
    parts = allocate(1000, [1200, -300, 100])
    assert parts == [1200, -300, 100]
    assert sum(allocate(7, [5, -2, 3])) == 7


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1], [-5, 2]])
def test_allocation_refuses_weights_without_a_positive_sum(weights):
    with pytest.raises(InvalidAmount):
        allocate(100, weights)


@pytest.mark.parametrize(("total_minor", "weights"), [(10.0, [1]), (10, [1.5, 1]), (10, [True])])
def test_allocation_refuses_non_integer_amounts_and_weights(total_minor, weights):
    with pytest.raises(InvalidAmount):
        allocate(total_minor, weights)


def test_money_allocates_in_its_own_currency():
    assert Money(100, "JPY").allocate([1, 1, 1]) == [
        Money(34, "JPY"), Money(33, "JPY"), Money(33, "JPY")]
