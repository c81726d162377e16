"""The rule language from the command line: validate, draft and approve by two people, preview
a split, and back-test against what the demo booked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from splitledger.demo.marketplace import demo_rules
from splitledger.demo.simulation import CAMPAIGN_DAY
from tests.test_cli import DEMO_START, cli, flat

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def demo_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = cli("demo", "-d", url, "--orders", "80", "--seed", "5", "--start", DEMO_START)
    assert result.exit_code == 0, result.stdout + result.stderr
    return url


def test_validate_accepts_the_example_ruleset_and_names_rule_field_and_line_of_errors(tmp_path):
    ok = cli("rules", "validate", str(EXAMPLES / "rules.yaml"))
    assert ok.exit_code == 0 and "valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: v1\neffective_from: 2026-11-01T00:00:00Z\nrules:\n"
                   "  - id: r1\n    shares:\n      - {to: platfrom, bps: 500}\n")
    result = cli("rules", "validate", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith("error[invalid_ruleset]: ")
    assert f"{bad}:6: rule r1: shares[0].to: unknown party role 'platfrom'" in flat(result.stderr)


def test_a_ruleset_needs_a_second_person_to_approve_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    rules = tmp_path / "r.yaml"
    rules.write_text("version: v-future\neffective_from: 2099-01-01T00:00:00Z\nrules:\n"
                     "  - id: default\n    shares: [{to: platform, bps: 450}]\n")
    assert cli("rules", "draft", str(rules), "--by", "alice", "-d", url).exit_code == 0
    same = cli("rules", "approve", "v-future", "--by", "alice", "-d", url)
    assert same.exit_code == 2 and "error[approval_required]" in same.stderr
    other = cli("rules", "approve", "v-future", "--by", "bob", "-d", url)
    assert other.exit_code == 0, other.stderr
    listing = flat(cli("rules", "list", "-d", url).stdout)
    assert "v-future" in listing and "approved" in listing and "bob" in listing
    redraft = cli("rules", "draft", str(rules), "--by", "carol", "-d", url)
    assert redraft.exit_code == 2 and "error[invalid_state]" in redraft.stderr


def test_split_preview_explains_every_amount_and_sums_to_the_order(tmp_path):
    url = demo_db(tmp_path)
    result = cli("split", "--rules", str(EXAMPLES / "rules.yaml"), "--order",
                 str(EXAMPLES / "order.json"), "--json", "-d", url)
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    order = json.loads((EXAMPLES / "order.json").read_text())
    assert plan["ruleset_version"] == "example-1"
    assert sum(a["amount_minor"] for a in plan["allocations"]) == plan["total_minor"]
    assert plan["total_minor"] == 399900 + 2 * 25800 - 2000 + 1200
    assert all(a["rule_id"] and a["explanation"] for a in plan["allocations"])
    # The order falls in the example's campaign window: 1.5 % on both lines.
    commission = [a for a in plan["allocations"] if a["kind"] == "commission" and a["line_id"]]
    assert {a["rule_id"] for a in commission} == {"campaign-week"}
    assert plan["by_party"]["A-02"] > 0  # the referring affiliate's parent gets its level
    assert order["order_id"] == plan["order_id"]
    table = cli("split", "--rules", str(EXAMPLES / "rules.yaml"), "--order",
                str(EXAMPLES / "order.json"), "-d", url)
    assert table.exit_code == 0 and "campaign-week" in table.stdout


def test_backtest_of_the_ruleset_that_booked_a_period_reports_no_difference(tmp_path):
    url = demo_db(tmp_path)
    t0 = datetime.fromisoformat(DEMO_START).replace(tzinfo=UTC)
    campaign = (t0 + timedelta(days=CAMPAIGN_DAY), t0 + timedelta(days=CAMPAIGN_DAY + 3))
    booked = tmp_path / "v1.yaml"
    booked.write_text(yaml.safe_dump(demo_rules("demo-rules-1", t0, campaign)))
    period = ["--from", t0.isoformat(), "--until", (t0 + timedelta(days=22)).isoformat()]
    same = cli("rules", "backtest", str(booked), *period, "--json", "-d", url)
    assert same.exit_code == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["orders"] > 0
    assert report["changed_orders"] == 0 and report["differences"] == []
    assert report["refused"] == []
    rates = report["take_rate_bps"]["CNY"]
    assert rates["booked"] == rates["simulated"] > 0
    # A cheaper apparel rate moves money from the platform to apparel merchants only.
    cheaper = tmp_path / "cheaper.yaml"
    cheaper.write_text(yaml.safe_dump(demo_rules("cheaper", t0, campaign, apparel_bps=500)))
    changed = json.loads(cli("rules", "backtest", str(cheaper), *period, "--json",
                             "-d", url).stdout)
    assert changed["changed_orders"] > 0
    platform = [d for d in changed["differences"] if d["party_id"] == "platform"]
    assert platform and all(d["difference_minor"] < 0 for d in platform)
    for currency in ("CNY", "USD"):
        moved = [d["difference_minor"] for d in changed["differences"]
                 if d["currency"] == currency]
        assert sum(moved) == 0  # what the platform gives up, the merchants receive
    assert changed["take_rate_bps"]["CNY"]["simulated"] < changed["take_rate_bps"]["CNY"]["booked"]
