"""Invalid rulesets are refused before they can split anything, and every problem names the
rule, the field and (for files) the line; overlapping rules of equal priority are refused while
provably exclusive ones are accepted."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitledger.domain.rules.engine import RulesPolicy
from splitledger.domain.rules.model import (
    AllOf,
    AnyOf,
    Match,
    Recipient,
    Role,
    Rule,
    Ruleset,
    Share,
)
from splitledger.domain.rules.validate import check_ruleset, disjoint, validate_ruleset
from splitledger.errors import InvalidRuleset
from splitledger.rules_io import load_ruleset_yaml, ruleset_from_data

HEAD = 'version: "v1"\neffective_from: 2026-11-01T00:00:00+08:00\nrules:\n'  # lines 1-3
HEAD_LINES = 3


def problems_yaml(text: str) -> list[dict[str, Any]]:
    with pytest.raises(InvalidRuleset) as caught:
        load_ruleset_yaml(text, "rules.yaml")
    assert caught.value.code == "invalid_ruleset"
    problems = caught.value.details["problems"]
    assert problems
    return problems


def problems_data(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(InvalidRuleset) as caught:
        ruleset_from_data(data)
    return caught.value.details["problems"]


def rules_data(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": "v1", "effective_from": "2026-11-01T00:00:00+08:00",
            "rules": list(rules), **top}


def accepted(*rules: dict[str, Any], **top: Any) -> Ruleset:
    ruleset = ruleset_from_data(rules_data(*rules, **top))
    RulesPolicy(ruleset)
    return ruleset


def find(problems: list[dict[str, Any]], rule_id: str | None, field: str) -> dict[str, Any]:
    hits = [p for p in problems if p["rule_id"] == rule_id and p["field"] == field]
    assert hits, f"no problem for rule {rule_id} field {field}: {problems}"
    return hits[0]


PLATFORM_5 = {"to": "platform", "bps": 500}


# -- every kind of problem names its rule and field ----------------------------------------------

BAD_RULES = [
    # (rule, field, words of the message)
    ({"id": "r", "shares": [{"to": "platfrom", "bps": 1}]}, "shares[0].to",
     "unknown party role 'platfrom'"),
    ({"id": "r", "shares": [{"to": "partner", "bps": 1}]}, "shares[0].to", "party:<id>"),
    ({"id": "r", "shares": [{"to": "party:", "bps": 1}]}, "shares[0].to", "unknown party role"),
    ({"id": "r", "shares": [{"to": "platform", "bsp": 500}]}, "shares[0].bsp", "Extra inputs"),
    ({"id": "r", "priorty": 3, "shares": [PLATFORM_5]}, "priorty", "Extra inputs"),
    ({"id": "r", "when": {"categroy": "x"}, "shares": [PLATFORM_5]}, "when.categroy",
     "Extra inputs"),
    ({"id": "r", "when": {"any": [{"chanel": "app"}]}, "shares": [PLATFORM_5]},
     "when.any[0].chanel", "Extra inputs"),
    ({"id": "r", "shares": [{"to": "platform", "of": "line_nett", "bps": 1}]}, "shares[0].of",
     "line_net"),
    ({"id": "r", "shares": [{"to": "platform", "bps": "5%"}]}, "shares[0].bps", "integer"),
    ({"id": "r", "shares": [{"to": "platform", "bps": 10_001}]}, "shares[0].bps",
     "outside 0..10000"),
    ({"id": "r", "shares": [{"to": "platform", "bps": -1}]}, "shares[0].bps", "outside 0..10000"),
    ({"id": "r", "shares": [{"to": "platform", "bps": 6000}, {"to": "supplier", "bps": 4001}]},
     "shares", "add up to 10001 bps"),
    ({"id": "r", "shares": [{"to": "platform", "of": "line_gross", "bps": 9000},
                            {"to": "tax", "of": "line_gross", "tiers": [
                                {"from_gmv_minor": 0, "bps": 100},
                                {"from_gmv_minor": 50, "bps": 1001}]}]},
     "shares", "add up to 10001 bps"),
    ({"id": "r", "shares": [{"to": "platform", "bps": 1, "min_minor": 500, "max_minor": 499}]},
     "shares[0].min_minor", "above the maximum"),
    ({"id": "r", "shares": [{"to": "platform", "fixed_minor": 600, "max_minor": 500}]},
     "shares[0].fixed_minor", "breaks the maximum cap"),
    ({"id": "r", "shares": [{"to": "platform", "fixed_minor": -5}]}, "shares[0].fixed_minor",
     "negative"),
    ({"id": "r", "shares": [{"to": "platform", "bps": 1, "max_minor": -1}]},
     "shares[0].max_minor", "negative"),
    ({"id": "r", "shares": [{"to": "platform", "tiers": [{"from_gmv_minor": 100, "bps": 500}]}]},
     "shares[0].tiers", "start at 0"),
    ({"id": "r", "shares": [{"to": "platform", "tiers": [
        {"from_gmv_minor": 0, "bps": 500}, {"from_gmv_minor": 900, "bps": 400},
        {"from_gmv_minor": 500, "bps": 300}]}]}, "shares[0].tiers", "strictly increasing"),
    ({"id": "r", "shares": [{"to": "platform", "tiers": [
        {"from_gmv_minor": 0, "bps": 500}, {"from_gmv_minor": 0, "bps": 400}]}]},
     "shares[0].tiers", "strictly increasing"),
    ({"id": "r", "shares": [{"to": "platform", "bps": 100, "tiers": [
        {"from_gmv_minor": 0, "bps": 500}]}]}, "shares[0].tiers", "either bps or tiers"),
    ({"id": "r", "shares": [{"to": "platform", "tiers": [{"from_gmv_minor": 0, "bps": 20_000}]}]},
     "shares[0].tiers", "outside 0..10000"),
    ({"id": "r", "shares": [{"to": "platform", "window_days": 0, "tiers": [
        {"from_gmv_minor": 0, "bps": 500}]}]}, "shares[0].window_days", "1 to 366"),
    ({"id": "r", "shares": [{"to": "platform", "of": "shipping", "tiers": [
        {"from_gmv_minor": 0, "bps": 500}]}]}, "shares[0].tiers", "need a line basis"),
    ({"id": "r", "shares": [{"to": "platform"}]}, "shares[0].bps", "gives nothing"),
    ({"id": "r", "shares": []}, "shares", "at least one share"),
    ({"id": "r", "shares": [{"to": "platform", "bps": 1}, {"to": "platform", "bps": 2}]},
     "shares[1].to", "two shares to platform"),
    ({"id": "r", "shares": [{"to": "supplier", "of": "order_total", "bps": 1}]}, "shares[0].of",
     "line basis"),
    ({"id": "r", "when": {"category": "electronics"},
      "shares": [{"to": "platform", "of": "shipping", "bps": 100}]}, "when", "order-level"),
    ({"id": "r", "when": {"not": {"has_supplier": True}},
      "shares": [{"to": "platform", "of": "order_total", "bps": 100}]}, "when", "order-level"),
    ({"id": "r", "when": {"any": [{"channel": "app"}, {"line_amount": {"min_minor": 5}}]},
      "shares": [{"to": "platform", "of": "psp_fee", "bps": 100}]}, "when", "order-level"),
    ({"id": "r", "when": {"line_amount": {"min_minor": 10, "max_minor": 9}},
      "shares": [PLATFORM_5]}, "when.line_amount", "min_minor is above max_minor"),
    ({"id": "r", "when": {"time": {"from": "2026-11-12T00:00:00+08:00",
                                   "until": "2026-11-11T00:00:00+08:00"}},
      "shares": [PLATFORM_5]}, "when.time", "ends before it starts"),
    ({"id": "r", "when": {"time": {"from": "2026-11-11T00:00:00"}}, "shares": [PLATFORM_5]},
     "when.time.from", "time zone"),
    ({"id": "r", "when": {"all": [{"time": {"until": "2026-11-11T00:00:00"}}]},
      "shares": [PLATFORM_5]}, "when.all[0].time.until", "time zone"),
    ({"id": "r", "when": {"all": []}, "shares": [PLATFORM_5]}, "when.all", "at least one"),
    ({"id": "r", "when": {"category": []}, "shares": [PLATFORM_5]}, "when.category",
     "non-empty"),
    ({"id": "r", "when": {"any": [{"tags": ["vip", " "]}]}, "shares": [PLATFORM_5]},
     "when.any[0].tags", "non-empty"),
    ({"id": "r", "when": {"has_supplier": "maybe"}, "shares": [PLATFORM_5]},
     "when.has_supplier", "boolean"),
]


@pytest.mark.parametrize(("rule", "field", "words"), BAD_RULES,
                         ids=[f"{i}-{f}" for i, (_, f, _) in enumerate(BAD_RULES)])
def test_a_bad_rule_is_refused_naming_the_rule_and_the_field(rule, field, words):
    good = {"id": "fine", "priority": -1, "shares": [PLATFORM_5]}
    problem = find(problems_data(rules_data(good, rule)), "r", field)
    assert words in problem["message"]


BAD_TOP = [
    ({"remainder": "supplier"}, "remainder", "merchant, the platform or a named party"),
    ({"remainder": "platfrom"}, "remainder", "unknown party role"),
    ({"psp_fee_bearer": "supplier"}, "psp_fee_bearer", "'platform' or 'merchant'"),
    ({"discount_funding": {"coupon": "supplier"}}, "discount_funding.coupon",
     "'platform' or 'merchant'"),
    ({"constraints": {"max_share_to_others_bps": 10_001}},
     "constraints.max_share_to_others_bps", "between 0 and 10000"),
    ({"constraints": {"max_receivers": 0}}, "constraints.max_receivers", "at least 1"),
    ({"constraints": {"max_recievers": 3}}, "constraints.max_recievers", "Extra inputs"),
    ({"version": "  "}, "version", "needs a version"),
    ({"effective_from": "2026-11-01T00:00:00"}, "effective_from", "time zone"),
    ({"effective_from": "next monday"}, "effective_from", "datetime"),
    ({"rules": "all of them"}, "rules", "list"),
    ({"remaindr": "merchant"}, "remaindr", "Extra inputs"),
]


@pytest.mark.parametrize(("top", "field", "words"), BAD_TOP)
def test_a_bad_ruleset_setting_is_refused_naming_the_field(top, field, words):
    data = rules_data({"id": "default", "shares": [PLATFORM_5]})
    data.update(top)
    problem = find(problems_data(data), None, field)
    assert words in problem["message"]


def test_missing_required_keys():
    problems = problems_data({"rules": [{"shares": [PLATFORM_5]}]})
    assert {p["field"] for p in problems} >= {"version", "effective_from", "id"}
    assert all(p["message"] for p in problems)


def test_every_problem_is_reported_at_once():
    problems = problems_data(rules_data(
        {"id": "a", "shares": [{"to": "platfrom", "bps": 10_001}]},
        {"id": "b", "shares": [{"to": "platform", "fixed_minor": 9, "max_minor": 5}]},
        remainder="supplier"))
    assert {(p["rule_id"], p["field"]) for p in problems} >= {
        ("a", "shares[0].to"), ("a", "shares[0].bps"), ("b", "shares[0].fixed_minor"),
        (None, "remainder")}


def test_duplicate_rule_ids():
    problems = problems_data(rules_data({"id": "dup", "shares": [PLATFORM_5]},
                                        {"id": "other", "priority": 1, "shares": [PLATFORM_5]},
                                        {"id": "dup", "priority": 2, "shares": [PLATFORM_5]}))
    assert find(problems, "dup", "id")["message"] == "duplicate rule id"
    assert len([p for p in problems if p["field"] == "id"]) == 1


def test_domain_rulesets_are_checked_the_same_way():
    """RulesPolicy refuses an invalid domain Ruleset built without the adapter."""
    bad = Ruleset("v", datetime(2026, 11, 1, tzinfo=UTC), (
        Rule("a", (Share(Recipient(Role.PLATFORM), bps=10_001),)),
        Rule("a", (Share(Recipient(), bps=1),)),
        Rule("b", (Share(Recipient(Role.PLATFORM), bps=1, min_minor=9, max_minor=3),),
             priority=5)))
    with pytest.raises(InvalidRuleset) as caught:
        RulesPolicy(bad)
    fields = {(p["rule_id"], p["field"]) for p in caught.value.details["problems"]}
    assert fields >= {("a", "shares[0].bps"), ("a", "id"), ("a", "shares[0].to"),
                      ("b", "shares[0].min_minor")}
    assert "rule a: shares[0].bps" in str(caught.value)


# -- overlap at equal priority -------------------------------------------------------------------

OVERLAPPING = [
    ("no conditions", {}, {}),
    ("parent and child category", {"category": "electronics"},
     {"category": "electronics/phones"}),
    ("child and parent category", {"category": "electronics/phones/android"},
     {"category": ["apparel", "electronics"]}),
    ("same category", {"category": "home"}, {"category": "home/"}),
    ("category and nothing", {"category": "home"}, {}),
    ("touching line bands", {"line_amount": {"max_minor": 100}},
     {"line_amount": {"min_minor": 100}}),
    ("overlapping order bands", {"order_amount": {"min_minor": 0, "max_minor": 500}},
     {"order_amount": {"min_minor": 400, "max_minor": 900}}),
    ("overlapping windows", {"time": {"from": "2026-11-11T00:00:00+08:00",
                                      "until": "2026-11-12T00:00:00+08:00"}},
     {"time": {"from": "2026-11-11T23:00:00+08:00"}}),
    ("windows overlapping across zones", {"time": {"until": "2026-11-11T00:00:00+08:00"}},
     {"time": {"from": "2026-11-10T15:59:59+00:00"}}),
    ("common tier", {"merchant_tier": ["gold", "silver"]}, {"merchant_tier": "silver"}),
    ("different fields", {"channel": "app"}, {"region": "cn-east"}),
    ("any with one overlapping branch", {"any": [{"category": "apparel"},
                                                 {"category": "electronics"}]},
     {"category": "electronics/tv"}),
    ("not of something else", {"not": {"channel": "app"}}, {"channel": "web"}),
]


@pytest.mark.parametrize(("name", "when_a", "when_b"), OVERLAPPING,
                         ids=[o[0] for o in OVERLAPPING])
def test_overlapping_rules_at_equal_priority_are_refused(name, when_a, when_b):
    a = {"id": "a", "priority": 7, "when": when_a, "shares": [{"to": "platform", "bps": 100}]}
    b = {"id": "b", "priority": 7, "when": when_b,
         "shares": [{"to": "supplier", "bps": 100}, {"to": "platform", "bps": 200}]}
    problem = find(problems_data(rules_data(a, b)), "b", "priority")
    assert "overlaps rule a" in problem["message"] and "platform" in problem["message"]
    # one priority step apart, the same rules are fine: the higher one wins
    accepted(a, {**b, "priority": 8})


EXCLUSIVE = [
    ("different categories", {"category": "electronics"}, {"category": "electronicsX"}),
    ("sibling categories", {"category": ["electronics/phones", "home"]},
     {"category": ["electronics/tv", "apparel"]}),
    ("different tiers", {"merchant_tier": "gold"}, {"merchant_tier": ["standard", "new"]}),
    ("disjoint line bands", {"line_amount": {"max_minor": 99}},
     {"line_amount": {"min_minor": 100, "max_minor": 500}}),
    ("disjoint order bands", {"order_amount": {"min_minor": 1000}},
     {"order_amount": {"max_minor": 999}}),
    ("adjacent windows", {"time": {"from": "2026-11-11T00:00:00+08:00",
                                   "until": "2026-11-12T00:00:00+08:00"}},
     {"time": {"from": "2026-11-12T00:00:00+08:00"}}),
    ("adjacent windows across zones", {"time": {"until": "2026-11-11T00:00:00+08:00"}},
     {"time": {"from": "2026-11-10T16:00:00+00:00"}}),
    ("has_supplier", {"has_supplier": True}, {"has_supplier": False}),
    ("has_affiliate", {"has_affiliate": False}, {"has_affiliate": True}),
    ("channels", {"channel": ["app", "mini"]}, {"channel": "web"}),
    ("merchants", {"merchant": "m1"}, {"merchant": "m2"}),
    ("a condition and its negation", {"channel": "app"}, {"not": {"channel": "app"}}),
    ("exclusive inside all", {"all": [{"channel": "app"}, {"category": "home"}]},
     {"category": "apparel"}),
    ("every branch exclusive", {"any": [{"category": "home"}, {"category": "food"}]},
     {"category": "electronics", "channel": "app"}),
]


@pytest.mark.parametrize(("name", "when_a", "when_b"), EXCLUSIVE, ids=[e[0] for e in EXCLUSIVE])
def test_exclusive_rules_at_equal_priority_are_accepted(name, when_a, when_b):
    accepted({"id": "a", "priority": 7, "when": when_a, "shares": [{"to": "platform", "bps": 1}]},
             {"id": "b", "priority": 7, "when": when_b, "shares": [{"to": "platform", "bps": 2}]})


def test_equal_priority_is_fine_for_different_recipients_or_scopes():
    accepted({"id": "commission", "shares": [{"to": "platform", "bps": 500}]},
             {"id": "supplier", "shares": [{"to": "supplier", "bps": 6000}]},
             {"id": "ship", "shares": [{"to": "platform", "of": "shipping", "bps": 1000}]},
             {"id": "named", "shares": [{"to": "party:platform", "bps": 100}]})


def test_a_category_table_of_thousands_of_rules_validates_quickly():
    rules = [{"id": "default", "shares": [PLATFORM_5]}]
    rules += [{"id": f"c{i}", "priority": 10, "when": {"category": f"dept{i % 50}/aisle{i}"},
               "shares": [{"to": "platform", "bps": 100 + i % 900}]} for i in range(3_000)]
    start = time.perf_counter()
    ruleset = ruleset_from_data(rules_data(*rules))
    assert time.perf_counter() - start < 5  # comparing all 4.5 million pairs took 13 s
    rules.append({"id": "clash", "priority": 10, "when": {"category": "dept7"},
                  "shares": [{"to": "platform", "bps": 1}]})
    problems = problems_data(rules_data(*rules))
    assert {p["rule_id"] for p in problems} == {"clash"}
    assert len(problems) == 60  # dept7 has 60 aisles
    assert len(ruleset.rules) == 3_001


# The overlap check only compares the pairs that may overlap; it must find exactly what a
# comparison of every pair finds.

def _naive_overlaps(ruleset: Ruleset) -> set[tuple[str, str]]:
    found = set()
    for a, b in combinations(ruleset.rules, 2):
        common = ({(str(s.to), s.line_scoped) for s in a.shares}
                  & {(str(s.to), s.line_scoped) for s in b.shares})
        if a.priority == b.priority and common and not disjoint(a.when, b.when):
            found.add((a.rule_id, b.rule_id))
    return found


CATS = ["electronics", "electronics/phones", "electronics/tv", "electronicsX", "apparel",
        "/apparel/tops", "food"]


@st.composite
def overlap_rulesets(draw: st.DrawFn) -> Ruleset:
    rules = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["none", "cat", "cat", "tier", "all", "any"]))
        cats = tuple(draw(st.lists(st.sampled_from(CATS), min_size=1, max_size=2, unique=True)))
        when: Any = Match()
        if kind == "cat":
            when = Match(category=cats)
        elif kind == "tier":
            when = Match(merchant_tier=(draw(st.sampled_from(["gold", "std"])),))
        elif kind in ("all", "any"):
            when = (AllOf if kind == "all" else AnyOf)((Match(category=cats),
                                                        Match(has_supplier=draw(st.booleans()))))
        to = draw(st.sampled_from([Role.PLATFORM, Role.SUPPLIER]))
        rules.append(Rule(f"r{i}", (Share(Recipient(to), bps=1),), when,
                          draw(st.integers(0, 2))))
    return Ruleset("v", datetime(2026, 11, 1, tzinfo=UTC), tuple(rules))


@settings(max_examples=300, deadline=None)
@given(ruleset=overlap_rulesets())
def test_the_overlap_check_finds_exactly_what_comparing_every_pair_finds(ruleset):
    found = {(p.message.split("overlaps rule ")[1].split(" ")[0], p.rule_id)
             for p in validate_ruleset(ruleset) if p.field == "priority"}
    assert found == _naive_overlaps(ruleset)
    if found:
        with pytest.raises(InvalidRuleset):
            check_ruleset(ruleset)


# -- files: line numbers, YAML errors -----------------------------------------------------------

def test_the_documented_error_format_with_the_line():
    text = HEAD + (
        "  - id: default\n"                            # 4
        "    shares: [{to: platform, bps: 500}]\n"     # 5
        "  - id: phones\n"                             # 6
        "    priority: 20\n"                           # 7
        "    when: {category: electronics/phones}\n"   # 8
        "    shares:\n"                                # 9
        "      - {to: platfrom, bps: 200}\n")          # 10
    with pytest.raises(InvalidRuleset) as caught:
        load_ruleset_yaml(text, "rules.yaml")
    assert str(caught.value).startswith(
        "rules.yaml:10: rule phones: shares[0].to: unknown party role 'platfrom': use one of "
        "platform, merchant, supplier, logistics, affiliate, affiliate_parent, tax, or "
        "party:<id>")
    assert caught.value.details["problems"] == [
        {"rule_id": "phones", "field": "shares[0].to", "line": 10,
         "message": caught.value.details["problems"][0]["message"]}]


def test_line_numbers_point_at_the_offending_key():
    text = HEAD + (
        "  - id: a\n"                                   # 4
        "    shares:\n"                                 # 5
        "      - to: platform\n"                        # 6
        "        bsp: 500\n"                            # 7
        "  - id: b\n"                                   # 8
        "    priority: 3\n"                             # 9
        "    shares:\n"                                 # 10
        "      - to: platform\n"                        # 11
        "        of: line_net\n"                        # 12
        "        bps: 10001\n"                          # 13
        "      - to: supplier\n"                        # 14
        "        bps: 100\n"                            # 15
        "        min_minor: 700\n"                      # 16
        "        max_minor: 600\n"                      # 17
        "  - id: c\n"                                   # 18
        "    priority: 4\n"                             # 19
        "    when:\n"                                   # 20
        "      category: electronics\n"                 # 21
        "      time:\n"                                 # 22
        "        until: 2026-11-12T00:00:00\n"          # 23
        "    shares: [{to: platform, fixed_minor: 900, max_minor: 100}]\n")  # 24
    problems = problems_yaml(text)
    assert find(problems, "a", "shares[0].bsp")["line"] == 7
    # pydantic refuses the shape first: fix it, and the meaning is checked with lines too
    assert find(problems, "c", "when.time.until")["line"] == 23
    problems = problems_yaml(text.replace("bsp: 500", "bps: 500").replace(
        "until: 2026-11-12T00:00:00", "until: 2026-11-12T00:00:00+08:00"))
    assert find(problems, "b", "shares[0].bps")["line"] == 13
    assert find(problems, "b", "shares")["line"] == 10
    assert find(problems, "b", "shares[1].min_minor")["line"] == 16
    assert find(problems, "c", "shares[0].fixed_minor")["line"] == 24
    assert all(p["rule_id"] != "a" for p in problems)


def test_line_numbers_of_overlaps_duplicates_and_line_conditions():
    text = HEAD + (
        "  - id: all\n"                                           # 4
        "    shares: [{to: platform, bps: 500}]\n"                # 5
        "  - id: elec\n"                                          # 6
        "    priority: 10\n"                                      # 7
        "    when: {category: electronics}\n"                     # 8
        "    shares: [{to: platform, bps: 300}]\n"                # 9
        "  - id: phones\n"                                        # 10
        "    priority: 10\n"                                      # 11
        "    when: {category: electronics/phones}\n"              # 12
        "    shares: [{to: platform, bps: 200}]\n"                # 13
        "  - id: ship\n"                                          # 14
        "    when:\n"                                             # 15
        "      has_supplier: true\n"                              # 16
        "    shares: [{to: tax, of: shipping, bps: 100}]\n"       # 17
        "  - id: elec\n"                                          # 18
        "    priority: 99\n"                                      # 19
        "    shares:\n"                                           # 20
        "      - {to: tax, bps: 20000}\n")                        # 21
    problems = problems_yaml(text)
    assert find(problems, "phones", "priority")["line"] == 11
    assert "overlaps rule elec" in find(problems, "phones", "priority")["message"]
    assert find(problems, "ship", "when")["line"] == 15
    # the duplicate and its own problems point at the second "elec", not the first
    assert find(problems, "elec", "id")["line"] == 18
    assert find(problems, "elec", "shares[0].bps")["line"] == 21


def test_an_overlap_without_a_priority_key_points_at_the_rule():
    text = HEAD + ("  - id: a\n"                                # 4
                   "    shares: [{to: platform, bps: 1}]\n"     # 5
                   "  - id: b\n"                                # 6
                   "    shares: [{to: platform, bps: 2}]\n")    # 7
    assert find(problems_yaml(text), "b", "priority")["line"] == 6


def test_a_naive_effective_from_in_a_file():
    text = 'version: "v1"\neffective_from: 2026-11-01T00:00:00\nrules:\n' \
           "  - id: a\n    shares: [{to: platform, bps: 1}]\n"
    problem = find(problems_yaml(text), None, "effective_from")
    assert problem["line"] == 2 and "time zone" in problem["message"]


@pytest.mark.parametrize(("text", "line"), [
    ('version: "v1"\neffective_from: 2026-11-01T00:00:00+08:00\nrules: [\n  - a\n', 4),
    ("version: v1\n  effective_from: x\n", 2),
    ("version: v1\nrules:\n  - id: a\n    shares: [{to: platform, bps: 1}\n", 5),
    ("\tversion: v1\n", 1),
])
def test_not_yaml_is_refused_with_the_line(text, line):
    (problem,) = problems_yaml(text)
    assert problem["message"].startswith("not valid YAML")
    assert problem["line"] == line
    assert problem["rule_id"] is None


@pytest.mark.parametrize("text", ["- version: v1\n- rules: []\n", "just words\n", "", "42\n",
                                  "~\n"])
def test_a_file_that_is_not_a_mapping_is_refused(text):
    (problem,) = problems_yaml(text)
    assert problem["message"] == "a ruleset file must be a mapping"


def test_a_valid_file_loads():
    ruleset = load_ruleset_yaml(HEAD + (
        "  - id: default\n"
        "    description: everything else\n"
        "    shares: [{to: platform, bps: 500, min_minor: 1, max_minor: 90000}]\n"
        "  - id: campaign\n"
        "    priority: 5\n"
        "    when:\n"
        "      time: {from: 2026-11-11T00:00:00+08:00, until: 2026-11-12T00:00:00+08:00}\n"
        "      tags: [double11]\n"
        "    shares:\n"
        "      - {to: platform, bps: 200}\n"
        "      - {to: party:x-partner, of: order_total, fixed_minor: 100}\n"), "rules.yaml")
    assert [r.rule_id for r in ruleset.rules] == ["default", "campaign"]
    assert ruleset.rules[1].shares[1].to == Recipient(party_id="x-partner")
    assert ruleset.rules[1].when.time.start.utcoffset().total_seconds() == 8 * 3600
