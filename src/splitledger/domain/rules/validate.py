"""Static checks of a ruleset: everything that can be known before an order arrives.

Every problem names the rule and the field; all problems are reported at once. Overlap:
two rules of equal priority that give a share to the same recipient must have conditions that
provably exclude each other (some field where their values cannot both hold), otherwise the
result for an order matching both would depend on rule order, and the ruleset is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from itertools import combinations

from splitledger.domain.money import BPS_PER_UNIT
from splitledger.domain.rules.model import (
    LINE_FIELDS,
    AllOf,
    AnyOf,
    Band,
    Basis,
    Condition,
    Match,
    Not,
    Role,
    Rule,
    Ruleset,
    Share,
    Window,
)
from splitledger.errors import InvalidRuleset

FUNDERS = ("platform", "merchant")


@dataclass(frozen=True, slots=True)
class Problem:
    """``rule_index``: the rule's position in the file, so that adapters can point at the right
    rule even when an id is duplicated."""

    rule_id: str | None
    field: str
    message: str
    rule_index: int | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, str | None]:
        return {"rule_id": self.rule_id, "field": self.field, "message": self.message}


def check_ruleset(ruleset: Ruleset) -> None:
    """Raise InvalidRuleset listing every problem, or return quietly."""
    problems = validate_ruleset(ruleset)
    if problems:
        first = problems[0]
        where = f"rule {first.rule_id}: " if first.rule_id else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidRuleset(f"invalid ruleset {ruleset.version!r}: {where}{first.field}: "
                             f"{first.message}{more}",
                             problems=[p.as_dict() for p in problems])


def validate_ruleset(ruleset: Ruleset) -> list[Problem]:
    problems: list[Problem] = []
    if not ruleset.version.strip():
        problems.append(Problem(None, "version", "a ruleset needs a version"))
    if ruleset.psp_fee_bearer not in FUNDERS:
        problems.append(Problem(None, "psp_fee_bearer", "must be 'platform' or 'merchant'"))
    for kind, funder in ruleset.discount_funding:
        if funder not in FUNDERS:
            problems.append(Problem(None, f"discount_funding.{kind}",
                                    "must be 'platform' or 'merchant'"))
    cap = ruleset.constraints.max_share_to_others_bps
    if cap is not None and not 0 <= cap <= BPS_PER_UNIT:
        problems.append(Problem(None, "constraints.max_share_to_others_bps",
                                "must be between 0 and 10000"))
    receivers = ruleset.constraints.max_receivers
    if receivers is not None and receivers < 1:
        problems.append(Problem(None, "constraints.max_receivers", "must be at least 1"))
    if ruleset.remainder.role not in (None, Role.MERCHANT, Role.PLATFORM):
        problems.append(Problem(None, "remainder",
                                "the remainder goes to the merchant, the platform or a named "
                                "party"))
    seen: set[str] = set()
    for index, rule in enumerate(ruleset.rules):
        if not rule.rule_id.strip():
            problems.append(Problem(None, f"rules[{index}].id", "every rule needs an id"))
        elif rule.rule_id in seen:
            problems.append(Problem(rule.rule_id, "id", "duplicate rule id", index))
        seen.add(rule.rule_id)
        problems.extend(replace(p, rule_index=index) for p in _check_rule(rule))
    problems.extend(_check_overlaps(ruleset.rules))
    return problems


def _check_rule(rule: Rule) -> list[Problem]:
    problems = [Problem(rule.rule_id, f"when.{f}", m) for f, m in _check_condition(rule.when)]
    if not rule.shares:
        problems.append(Problem(rule.rule_id, "shares", "a rule needs at least one share"))
    line_bps: dict[Basis, int] = {}
    recipients: set[tuple[str, bool]] = set()
    order_scoped = False
    for i, share in enumerate(rule.shares):
        where = f"shares[{i}]"
        problems += [Problem(rule.rule_id, f"{where}.{f}", m) for f, m in _check_share(share)]
        key = (str(share.to), share.line_scoped)
        if key in recipients:
            problems.append(Problem(rule.rule_id, f"{where}.to",
                                    f"two shares to {share.to} in one rule"))
        recipients.add(key)
        if share.line_scoped:
            top = max([share.bps, *(t.bps for t in share.tiers)])
            line_bps[share.of] = line_bps.get(share.of, 0) + top
        else:
            order_scoped = True
        if share.to.role is Role.SUPPLIER and not share.line_scoped:
            problems.append(Problem(rule.rule_id, f"{where}.of",
                                    "a share to the line's supplier needs a line basis"))
    for basis, total in line_bps.items():
        if total > BPS_PER_UNIT:
            problems.append(Problem(rule.rule_id, "shares",
                                    f"shares of {basis} add up to {total} bps, over 100 %"))
    if order_scoped and _uses_line_fields(rule.when):
        problems.append(Problem(rule.rule_id, "when",
                                "an order-level share (shipping, order_total, psp_fee) cannot "
                                "depend on line conditions"))
    return problems


def _check_share(share: Share) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if share.to.role is None and not share.to.party_id:
        problems.append(("to", "unknown recipient"))
    if not 0 <= share.bps <= BPS_PER_UNIT:
        problems.append(("bps", f"{share.bps} bps is outside 0..10000 (0 % to 100 %)"))
    if share.fixed_minor < 0:
        problems.append(("fixed_minor", "a fixed amount cannot be negative"))
    for name in ("min_minor", "max_minor"):
        value = getattr(share, name)
        if value is not None and value < 0:
            problems.append((name, "a cap cannot be negative"))
    if share.min_minor is not None and share.max_minor is not None \
            and share.min_minor > share.max_minor:
        problems.append(("min_minor", "the minimum is above the maximum"))
    if share.max_minor is not None and share.fixed_minor > share.max_minor:
        problems.append(("fixed_minor", "the fixed amount alone breaks the maximum cap"))
    if share.tiers:
        if not share.line_scoped:
            problems.append(("tiers", "volume tiers use the line's merchant GMV: they need a "
                                      "line basis (line_net, line_gross or line_paid)"))
        if share.bps:
            problems.append(("tiers", "give either bps or tiers, not both"))
        if share.tiers[0].from_gmv_minor != 0:
            problems.append(("tiers", "the first tier must start at 0 GMV"))
        starts = [t.from_gmv_minor for t in share.tiers]
        if starts != sorted(set(starts)):
            problems.append(("tiers", "tiers must start at strictly increasing GMV"))
        for t in share.tiers:
            if not 0 <= t.bps <= BPS_PER_UNIT:
                problems.append(("tiers", f"{t.bps} bps is outside 0..10000"))
        if not 1 <= share.window_days <= 366:
            problems.append(("window_days", "the GMV window must be 1 to 366 days"))
    if not (share.bps or share.fixed_minor or share.tiers or share.min_minor):
        problems.append(("bps", "the share gives nothing: set bps, fixed_minor or tiers"))
    return problems


def _check_condition(cond: Condition, path: str = "") -> list[tuple[str, str]]:
    if isinstance(cond, AllOf | AnyOf):
        name = "all" if isinstance(cond, AllOf) else "any"
        if not cond.items:
            return [(f"{path}{name}", "must list at least one condition")]
        return [p for i, c in enumerate(cond.items)
                for p in _check_condition(c, f"{path}{name}[{i}].")]
    if isinstance(cond, Not):
        return _check_condition(cond.item, f"{path}not.")
    problems: list[tuple[str, str]] = []
    for band_name in ("line_amount", "order_amount"):
        band: Band | None = getattr(cond, band_name)
        if band and band.min_minor is not None and band.max_minor is not None \
                and band.min_minor > band.max_minor:
            problems.append((f"{path}{band_name}", "min_minor is above max_minor"))
    if cond.time and cond.time.start and cond.time.end and cond.time.start >= cond.time.end:
        problems.append((f"{path}time", "the window ends before it starts"))
    for f in fields(Match):
        value = getattr(cond, f.name)
        if isinstance(value, tuple) and (not value or any(not str(v).strip() for v in value)):
            problems.append((f"{path}{f.name}", "values must be non-empty"))
    return problems


def _uses_line_fields(cond: Condition) -> bool:
    if isinstance(cond, AllOf | AnyOf):
        return any(_uses_line_fields(c) for c in cond.items)
    if isinstance(cond, Not):
        return _uses_line_fields(cond.item)
    return any(getattr(cond, name) is not None for name in LINE_FIELDS)


# -- overlap ------------------------------------------------------------------------------------

def _top_categories(cond: Condition) -> frozenset[str] | None:
    """The first path segments of a rule's top-level categories (None: not a category rule).
    Two categories can only be prefix-related if they share the first segment."""
    if not isinstance(cond, Match) or cond.category is None:
        return None
    return frozenset(c.strip("/").split("/")[0] for c in cond.category)


def _candidate_pairs(rules: tuple[Rule, ...]) -> list[tuple[int, int]]:
    """Pairs of equal priority that may overlap. Category rules are bucketed by their top
    segment: rules without a common one are disjoint anyway, and a table of thousands of
    category rules must not cost millions of comparisons."""
    groups: dict[int, list[int]] = {}
    for index, rule in enumerate(rules):
        groups.setdefault(rule.priority, []).append(index)
    pairs: set[tuple[int, int]] = set()
    for members in groups.values():
        buckets: dict[str, list[int]] = {}
        anywhere: list[int] = []
        for index in members:
            tops = _top_categories(rules[index].when)
            if tops is None:
                anywhere.append(index)
            else:
                for top in tops:
                    buckets.setdefault(top, []).append(index)
        for i in anywhere:
            pairs.update((min(i, j), max(i, j)) for j in members if j != i)
        for bucket in buckets.values():
            pairs.update(combinations(bucket, 2))
    return sorted(pairs)


def _check_overlaps(rules: tuple[Rule, ...]) -> list[Problem]:
    problems = []
    for i, j in _candidate_pairs(rules):
        a, b = rules[i], rules[j]
        common = ({(str(s.to), s.line_scoped) for s in a.shares}
                  & {(str(s.to), s.line_scoped) for s in b.shares})
        if common and not disjoint(a.when, b.when):
            who = ", ".join(sorted(r for r, _ in common))
            problems.append(Problem(
                b.rule_id, "priority",
                f"overlaps rule {a.rule_id} at the same priority {a.priority} for {who}: give "
                "one a higher priority or make their conditions exclusive", j))
    return problems


def disjoint(a: Condition, b: Condition) -> bool:
    """True only if no order line can satisfy both conditions (conservative: False when
    unsure)."""
    if isinstance(a, AnyOf):
        return all(disjoint(item, b) for item in a.items)
    if isinstance(b, AnyOf):
        return all(disjoint(a, item) for item in b.items)
    if isinstance(a, AllOf):
        return any(disjoint(item, b) for item in a.items)
    if isinstance(b, AllOf):
        return any(disjoint(a, item) for item in b.items)
    if isinstance(a, Not) or isinstance(b, Not):
        return (isinstance(a, Not) and a.item == b) or (isinstance(b, Not) and b.item == a)
    return _matches_disjoint(a, b)


def _matches_disjoint(a: Match, b: Match) -> bool:
    if a.category is not None and b.category is not None and not any(
            _prefix_related(x, y) for x in a.category for y in b.category):
        return True
    for name in ("merchant_tier", "merchant", "supplier", "channel", "region", "payment_method"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and not set(x) & set(y):
            return True
    for name in ("has_supplier", "has_affiliate"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and x != y:
            return True
    for name in ("line_amount", "order_amount"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and _bands_disjoint(x, y):
            return True
    return a.time is not None and b.time is not None and _windows_disjoint(a.time, b.time)


def _prefix_related(x: str, y: str) -> bool:
    x, y = x.strip("/"), y.strip("/")
    return x == y or x.startswith(y + "/") or y.startswith(x + "/")


def _bands_disjoint(x: Band, y: Band) -> bool:
    return ((x.max_minor is not None and y.min_minor is not None and x.max_minor < y.min_minor)
            or (y.max_minor is not None and x.min_minor is not None
                and y.max_minor < x.min_minor))


def _windows_disjoint(x: Window, y: Window) -> bool:
    return ((x.end is not None and y.start is not None and x.end <= y.start)
            or (y.end is not None and x.start is not None and y.end <= x.start))
