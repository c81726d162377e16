"""Rules engine throughput: order lines split per second for rulesets of 10, 200 and 2,000
rules, on one core, with the simple commission configuration measured in the same run as the
baseline (these machines are shared: compare ratios, not absolute figures).

    .venv/bin/python bench/rules_bench.py [--lines 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime

from splitledger.domain.orders import Discount, Funder, Order, OrderLine, Shipping
from splitledger.domain.parties import Party, PartyRole
from splitledger.domain.rules.engine import RulesPolicy
from splitledger.domain.split import SimpleCommissionPolicy
from splitledger.rules_io import ruleset_from_data

TOP = ["electronics", "apparel", "home", "food", "beauty", "sports", "toys", "books", "garden",
       "auto"]


def categories(count: int, rng: random.Random) -> list[str]:
    paths = set()
    while len(paths) < count:
        depth = rng.choice([1, 2, 2, 3])
        paths.add("/".join([rng.choice(TOP)] + [f"c{rng.randrange(40)}" for _ in range(depth - 1)]))
    return sorted(paths)


def ruleset(rule_count: int, cats: list[str], rng: random.Random) -> RulesPolicy:
    """A realistic shape: one default, a category commission table, tier overrides, a supplier
    share, an affiliate share and a campaign."""
    rules: list[dict] = [
        {"id": "default", "shares": [{"to": "platform", "bps": 500}]},
        {"id": "supplier", "when": {"has_supplier": True},
         "shares": [{"to": "supplier", "bps": 6000}]},
        {"id": "affiliate", "when": {"has_affiliate": True},
         "shares": [{"to": "affiliate", "bps": 300}]},
        {"id": "shipping", "shares": [{"to": "platform", "of": "shipping", "bps": 500}]},
    ]
    # Each category gets its own priority band so that nested categories never tie.
    for i, cat in enumerate(rng.sample(cats, min(len(cats), rule_count - len(rules)))):
        rules.append({"id": f"cat-{i}", "priority": 10 + cat.count("/") * 10,
                      "when": {"category": cat},
                      "shares": [{"to": "platform", "bps": rng.randrange(100, 1500)}]})
    return RulesPolicy(ruleset_from_data({
        "version": f"bench-{rule_count}", "effective_from": "2026-11-01T00:00:00+00:00",
        "rules": rules}))


def orders(count_lines: int, cats: list[str], rng: random.Random) -> list[Order]:
    result, made = [], 0
    when = datetime(2026, 11, 11, tzinfo=UTC)
    while made < count_lines:
        n = rng.randint(1, 4)
        lines = tuple(OrderLine(
            str(j), f"sku{j}", rng.choice(cats), f"m{rng.randrange(50)}", rng.randint(1, 3),
            rng.randrange(100, 100_000), "s1" if rng.random() < 0.3 else None,
            (Discount(50, Funder.PLATFORM),) if rng.random() < 0.2 else ()) for j in range(n))
        result.append(Order(f"o{made}", "CNY", lines, when, Shipping(800, "l1"),
                            psp_fee_minor=60, affiliate_id="a1" if rng.random() < 0.1 else None))
        made += n
    return result


def parties() -> dict[str, Party]:
    result = {f"m{i}": Party(f"m{i}", f"M{i}", PartyRole.MERCHANT, tier="gold" if i % 3 else None)
              for i in range(50)}
    for pid, role in (("platform", PartyRole.PLATFORM), ("psp", PartyRole.PSP),
                      ("s1", PartyRole.SUPPLIER), ("l1", PartyRole.LOGISTICS),
                      ("a1", PartyRole.AFFILIATE)):
        result[pid] = Party(pid, pid, role)
    return result


def lines_per_second(policy, batch: list[Order], who: dict[str, Party]) -> float:
    best = 0.0
    lines = sum(len(o.lines) for o in batch)
    for _ in range(3):  # best of three: the least disturbed run
        start = time.perf_counter()
        for order in batch:
            policy.split(order, who)
        best = max(best, lines / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(7)
    cats = categories(2_500, rng)
    batch = orders(args.lines, cats, rng)
    who = parties()
    baseline = lines_per_second(SimpleCommissionPolicy(), batch, who)
    rows = []
    for count in (10, 200, 2_000):
        policy = ruleset(count, cats, rng)
        rate = lines_per_second(policy, batch, who)
        rows.append({"rules": count, "lines_per_s": round(rate), "vs_simple": rate / baseline,
                     "goal_lines_per_s": 100_000})
    if args.json:
        print(json.dumps({"baseline_simple_lines_per_s": round(baseline), "rows": rows}))
        return
    print(f"baseline (simple commission config): {baseline:,.0f} lines/s")
    print("| rules | lines/s | x baseline | goal at 200 rules |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['rules']:,} | {row['lines_per_s']:,} | {row['vs_simple']:.2f} | 100,000 |")


if __name__ == "__main__":
    main()
