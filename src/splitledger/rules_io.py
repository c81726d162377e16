"""Reading rulesets from YAML files and JSON documents (the adapter of the rule language).

pydantic checks the shape (types, unknown keys, required fields); the domain's
``validate_ruleset`` checks the meaning. Every error names the rule id and the field, and, for
YAML, the line of the file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic import ValidationError as PydanticError

from splitledger.domain.rules.model import (
    AllOf,
    AnyOf,
    Band,
    Basis,
    Condition,
    Constraints,
    Match,
    Not,
    Recipient,
    Role,
    Rule,
    Ruleset,
    Share,
    Tier,
    Window,
)
from splitledger.domain.rules.validate import validate_ruleset
from splitledger.errors import InvalidRuleset

Funder = Literal["platform", "merchant"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BandIn(_Strict):
    min_minor: StrictInt | None = None
    max_minor: StrictInt | None = None


class WindowIn(_Strict):
    start: datetime | None = Field(None, alias="from")
    end: datetime | None = Field(None, alias="until")

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, for example 2026-11-11T00:00:00+08:00")
        return value


StrOrList = str | list[str]


class WhenIn(_Strict):
    category: StrOrList | None = None
    merchant_tier: StrOrList | None = None
    merchant: StrOrList | None = None
    supplier: StrOrList | None = None
    channel: StrOrList | None = None
    region: StrOrList | None = None
    payment_method: StrOrList | None = None
    has_supplier: bool | None = None
    has_affiliate: bool | None = None
    line_amount: BandIn | None = None
    order_amount: BandIn | None = None
    time: WindowIn | None = None
    tags: StrOrList | None = None
    all_: list[WhenIn] | None = Field(None, alias="all")
    any_: list[WhenIn] | None = Field(None, alias="any")
    not_: WhenIn | None = Field(None, alias="not")


class TierIn(_Strict):
    from_gmv_minor: StrictInt
    bps: StrictInt


class ShareIn(_Strict):
    to: str
    of: Basis = Basis.LINE_NET
    bps: StrictInt = 0
    fixed_minor: StrictInt = 0
    min_minor: StrictInt | None = None
    max_minor: StrictInt | None = None
    tiers: list[TierIn] = []
    window_days: StrictInt = 30


class RuleIn(_Strict):
    id: str
    description: str = ""
    priority: StrictInt = 0
    when: WhenIn = WhenIn()
    shares: list[ShareIn]


class ConstraintsIn(_Strict):
    max_share_to_others_bps: StrictInt | None = None
    max_receivers: StrictInt | None = None


class PartiesIn(_Strict):
    platform: str = "platform"
    psp: str = "psp"
    tax: str = "tax"


class RulesetIn(_Strict):
    version: str
    effective_from: datetime
    description: str = ""
    remainder: str = "merchant"
    psp_fee_bearer: Funder = "platform"
    discount_funding: dict[str, Funder] = {}
    constraints: ConstraintsIn = ConstraintsIn()
    parties: PartiesIn = PartiesIn()
    rules: list[RuleIn]

    @field_validator("effective_from")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, for example 2026-11-01T00:00:00+08:00")
        return value


# -- conversion to the domain -------------------------------------------------------------------

class _UnknownRecipient(ValueError):
    pass


def _recipient(text: str) -> Recipient:
    if text.startswith("party:") and len(text) > 6:
        return Recipient(party_id=text[6:])
    try:
        return Recipient(role=Role(text))
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise _UnknownRecipient(f"unknown party role {text!r}: use one of {roles}, or "
                                "party:<id>") from None


def _values(value: StrOrList | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _condition(w: WhenIn) -> Condition:
    match = Match(
        category=_values(w.category), merchant_tier=_values(w.merchant_tier),
        merchant=_values(w.merchant), supplier=_values(w.supplier), channel=_values(w.channel),
        region=_values(w.region), payment_method=_values(w.payment_method),
        has_supplier=w.has_supplier, has_affiliate=w.has_affiliate,
        line_amount=Band(w.line_amount.min_minor, w.line_amount.max_minor) if w.line_amount
        else None,
        order_amount=Band(w.order_amount.min_minor, w.order_amount.max_minor) if w.order_amount
        else None,
        time=Window(w.time.start, w.time.end) if w.time else None, tags=_values(w.tags))
    items: list[Condition] = [match] if match != Match() else []
    if w.all_ is not None:
        items.append(AllOf(tuple(_condition(c) for c in w.all_)))
    if w.any_ is not None:
        items.append(AnyOf(tuple(_condition(c) for c in w.any_)))
    if w.not_ is not None:
        items.append(Not(_condition(w.not_)))
    if not items:
        return Match()
    return items[0] if len(items) == 1 else AllOf(tuple(items))


def _to_domain(doc: RulesetIn) -> tuple[Ruleset, list[dict[str, Any]]]:
    problems: list[dict[str, Any]] = []
    rules = []
    for index, rule in enumerate(doc.rules):
        shares = []
        for s_index, share in enumerate(rule.shares):
            try:
                recipient = _recipient(share.to)
            except _UnknownRecipient as exc:
                problems.append({"rule_id": rule.id, "field": f"shares[{s_index}].to",
                                 "message": str(exc), "path": ("rules", index, "shares",
                                                               s_index, "to")})
                recipient = Recipient()  # keeps the share so its other fields are checked
            shares.append(Share(recipient, share.of, share.bps, share.fixed_minor,
                                share.min_minor, share.max_minor,
                                tuple(Tier(t.from_gmv_minor, t.bps) for t in share.tiers),
                                share.window_days))
        rules.append(Rule(rule.id, tuple(shares), _condition(rule.when), rule.priority,
                          rule.description))
    remainder = Recipient(role=Role.MERCHANT)
    try:
        remainder = _recipient(doc.remainder)
    except _UnknownRecipient as exc:
        problems.append({"rule_id": None, "field": "remainder", "message": str(exc),
                         "path": ("remainder",)})
    ruleset = Ruleset(
        doc.version, doc.effective_from, tuple(rules), remainder, doc.psp_fee_bearer,
        tuple(sorted(doc.discount_funding.items())),
        Constraints(doc.constraints.max_share_to_others_bps, doc.constraints.max_receivers),
        doc.description, doc.parties.platform, doc.parties.psp, doc.parties.tax)
    return ruleset, problems


# -- entry points -------------------------------------------------------------------------------

def ruleset_from_data(data: Any, *, lines: dict[tuple[Any, ...], int] | None = None,
                      source: str = "ruleset") -> Ruleset:
    """Build and validate a ruleset from its JSON/YAML structure; raise InvalidRuleset listing
    every problem (with ``line`` when ``lines`` maps paths to line numbers)."""
    lines = lines or {}
    try:
        doc = RulesetIn.model_validate(data)
    except PydanticError as exc:
        problems = [_problem_from_pydantic(err, data, lines) for err in exc.errors()]
        raise _invalid(source, problems) from None
    ruleset, problems = _to_domain(doc)
    ids = [rule.id for rule in doc.rules]
    known = {(p["rule_id"], p["field"]) for p in problems}
    for problem in validate_ruleset(ruleset):
        if (problem.rule_id, problem.field) in known:
            continue  # already reported, with more detail, while converting
        path = _path_of(problem.rule_id, problem.field, ids, problem.rule_index)
        problems.append({**problem.as_dict(), "path": path})
    if problems:
        for problem in problems:
            line = _line_for(tuple(problem.pop("path", ())), lines)
            if line is not None:
                problem["line"] = line
        raise _invalid(source, problems)
    return ruleset


def load_ruleset_yaml(text: str, source: str = "<rules>") -> Ruleset:
    """Parse a YAML ruleset file."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = {"rule_id": None, "field": "", "message": f"not valid YAML: {exc}",
                   **({"line": line} if line else {})}
        raise _invalid(source, [problem]) from None
    if not isinstance(data, dict):
        raise _invalid(source, [{"rule_id": None, "field": "",
                                 "message": "a ruleset file must be a mapping"}])
    lines: dict[tuple[Any, ...], int] = {}
    _index_lines(node, (), lines)
    return ruleset_from_data(data, lines=lines, source=source)


def _invalid(source: str, problems: list[dict[str, Any]]) -> InvalidRuleset:
    first = problems[0]
    where = f"{source}"
    if first.get("line"):
        where += f":{first['line']}"
    rule = f" rule {first['rule_id']}:" if first.get("rule_id") else ""
    field = f" {first['field']}:" if first.get("field") else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InvalidRuleset(f"{where}:{rule}{field} {first['message']}{more}", problems=problems)


def _problem_from_pydantic(err: Any, data: Any, lines: dict[tuple[Any, ...], int]
                           ) -> dict[str, Any]:
    loc = tuple(err["loc"])
    rule_id = None
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            rule_id = data["rules"][loc[1]].get("id")
        except (AttributeError, IndexError, KeyError, TypeError):
            rule_id = None
    # Drop pydantic's union-branch names (e.g. "str", "list[str]") from the field path, and
    # write list positions as the domain does: shares[0].bps.
    field = ""
    for part in (loc[2:] if rule_id is not None or (len(loc) >= 2 and loc[0] == "rules")
                 else loc):
        if part in ("str", "list[str]"):
            continue
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    problem: dict[str, Any] = {"rule_id": rule_id, "field": field, "message": err["msg"]}
    line = _line_for(loc, lines)
    if line is not None:
        problem["line"] = line
    return problem


def _path_of(rule_id: str | None, field: str, ids: list[str], index: int | None = None
             ) -> tuple[Any, ...]:
    if rule_id is None or rule_id not in ids:
        return tuple(field.split(".")) if field else ()
    path: list[Any] = ["rules", ids.index(rule_id) if index is None else index]
    for part in field.replace("]", "").split("."):
        name, _, number = part.partition("[")
        path.append(name)
        if number.isdigit():
            path.append(int(number))
    return tuple(path)


def _index_lines(node: Any, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            lines[child] = key.start_mark.line + 1
            _index_lines(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, path + (i,), lines)


def _line_for(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    path = tuple(p for p in path if p not in ("str", "list[str]"))
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


# -- back to data (for storage and the API) -----------------------------------------------------

def ruleset_to_data(ruleset: Ruleset) -> dict[str, Any]:
    def when(cond: Condition) -> dict[str, Any]:
        if isinstance(cond, AllOf):
            return {"all": [when(c) for c in cond.items]}
        if isinstance(cond, AnyOf):
            return {"any": [when(c) for c in cond.items]}
        if isinstance(cond, Not):
            return {"not": when(cond.item)}
        out: dict[str, Any] = {}
        for name in ("category", "merchant_tier", "merchant", "supplier", "channel", "region",
                     "payment_method", "tags"):
            value = getattr(cond, name)
            if value is not None:
                out[name] = list(value)
        for name in ("has_supplier", "has_affiliate"):
            if getattr(cond, name) is not None:
                out[name] = getattr(cond, name)
        for name in ("line_amount", "order_amount"):
            band = getattr(cond, name)
            if band is not None:
                out[name] = {k: v for k, v in (("min_minor", band.min_minor),
                                               ("max_minor", band.max_minor)) if v is not None}
        if cond.time is not None:
            out["time"] = {k: v.isoformat() for k, v in (("from", cond.time.start),
                                                         ("until", cond.time.end)) if v}
        return out

    def share(s: Share) -> dict[str, Any]:
        out: dict[str, Any] = {"to": str(s.to), "of": s.of.value}
        if s.bps:
            out["bps"] = s.bps
        if s.fixed_minor:
            out["fixed_minor"] = s.fixed_minor
        if s.min_minor is not None:
            out["min_minor"] = s.min_minor
        if s.max_minor is not None:
            out["max_minor"] = s.max_minor
        if s.tiers:
            out["tiers"] = [{"from_gmv_minor": t.from_gmv_minor, "bps": t.bps} for t in s.tiers]
            out["window_days"] = s.window_days
        return out

    c = ruleset.constraints
    return {
        "version": ruleset.version,
        "effective_from": ruleset.effective_from.isoformat(),
        "description": ruleset.description,
        "remainder": str(ruleset.remainder),
        "psp_fee_bearer": ruleset.psp_fee_bearer,
        "discount_funding": dict(ruleset.discount_funding),
        "constraints": {k: v for k, v in (("max_share_to_others_bps", c.max_share_to_others_bps),
                                          ("max_receivers", c.max_receivers)) if v is not None},
        "parties": {"platform": ruleset.platform_party_id, "psp": ruleset.psp_party_id,
                    "tax": ruleset.tax_party_id},
        "rules": [{"id": r.rule_id, "description": r.description, "priority": r.priority,
                   "when": when(r.when), "shares": [share(s) for s in r.shares]}
                  for r in ruleset.rules],
    }
