"""The worked examples of docs/rules.md are executed: each gives exactly the documented plan."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from splitledger.domain.codec import order_from_dict
from splitledger.domain.orders import validate_order
from splitledger.domain.parties import Party, PartyRole
from splitledger.domain.rules.engine import RulesPolicy
from splitledger.domain.split import SplitFacts
from splitledger.errors import SplitledgerError
from splitledger.rules_io import load_ruleset_yaml

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"
TEXT = DOC.read_text()
FENCE = re.compile(r"```(\w+)([^\n]*)\n(.*?)```", re.S)


def _parties() -> dict[str, Party]:
    block = next(m for m in FENCE.finditer(TEXT) if m.group(1) == "yaml"
                 and m.group(2).strip() == "parties")
    return {p["party_id"]: Party(p["party_id"], p["party_id"], PartyRole(p["role"]),
                                 tier=p.get("tier"), parent_party_id=p.get("parent_party_id"))
            for p in yaml.safe_load(block.group(3))}


def _examples() -> dict[str, str]:
    parts = re.split(r"<!-- example: ([\w-]+) -->", TEXT)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _expected(section: str) -> dict[tuple[str | None, str, str], int]:
    rows: dict[tuple[str | None, str, str], int] = defaultdict(int)
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"-?\d+", cells[3]):
            line_id = None if cells[0] == "-" else cells[0]
            rows[(line_id, cells[1], cells[2])] += int(cells[3])
    return dict(rows)


EXAMPLES = _examples()


def test_the_rules_page_has_every_required_worked_example():
    assert set(EXAMPLES) >= {"category-table", "merchant-tier", "supplier-s2b2c", "logistics",
                             "affiliate", "campaign", "tiered", "profit-sharing-cap",
                             "psp-fee-rounding"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_gives_the_documented_amounts(name):
    section = EXAMPLES[name]
    blocks = {(m.group(1), m.group(2).strip()): m.group(3) for m in FENCE.finditer(section)}
    policy = RulesPolicy(load_ruleset_yaml(blocks[("yaml", "")], f"rules.md#{name}"))
    order = order_from_dict(json.loads(blocks[("json", "")]))
    validate_order(order)
    gmv = json.loads(blocks.get(("json", "gmv"), "{}"))
    windows = policy.gmv_windows()
    facts = SplitFacts({(m, days): amount for m, amount in gmv.items() for days in windows})
    refusal = re.search(r"Refused: `(\w+)`", section)
    if refusal:
        with pytest.raises(SplitledgerError) as caught:
            policy.split(order, _parties(), facts)
        assert caught.value.code == refusal.group(1)
        return
    plan = policy.split(order, _parties(), facts)
    got: dict[tuple[str | None, str, str], int] = defaultdict(int)
    for allocation in plan.allocations:
        got[(allocation.line_id, allocation.party_id, allocation.kind.value)] += \
            allocation.amount_minor
    assert dict(got) == _expected(section)
    assert sum(got.values()) == order.total_minor
