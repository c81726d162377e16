"""Compiled rulesets: the split policy of the rule language.

How a plan is made:

1. Each line is a **pool**: its net price (gross less the discounts the merchant funds).
   Platform-funded discounts become a negative ``subsidy`` allocation to the platform.
2. For each line, the candidate rules (from the category index) are tried in precedence order
   (priority high to low, then file order). For each recipient, the first matching rule with a
   share to that recipient decides it; later rules cannot give that recipient a second share
   of the same line. A share is ``bps`` of its basis (or a volume tier's rate) plus
   ``fixed_minor``, clamped to ``[min_minor, max_minor]``, and may never exceed its basis.
3. Order-level shares (bases ``shipping``, ``order_total``, ``psp_fee``) are decided the same
   way once per order. Shipping shares come out of the shipping pool, whose remainder goes to
   the carrier; ``order_total`` and ``psp_fee`` shares come out of the line pools in proportion
   to their amounts.
4. Each pool's exact shares and its remainder (to the ruleset's remainder party, normally the
   line's merchant) are rounded together by the one rounding rule (``allocate_exact``), so a
   pool always splits to the last minor unit.
5. The PSP fee goes to the PSP, borne by the platform or by the merchants.
6. Platform-wide constraints are checked; a breach refuses the order before money moves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from splitledger.domain.money import BPS_PER_UNIT, allocate, allocate_unchecked
from splitledger.domain.orders import Order, OrderLine
from splitledger.domain.parties import Party, PartyRole
from splitledger.domain.rules.model import (
    AllOf,
    AnyOf,
    Basis,
    Condition,
    Match,
    Not,
    Recipient,
    Role,
    Rule,
    Ruleset,
    Share,
)
from splitledger.domain.rules.validate import check_ruleset
from splitledger.domain.split import Allocation, ShareKind, SplitFacts, SplitPlan
from splitledger.errors import SplitRefused

ROLE_KIND = {
    Role.PLATFORM: ShareKind.COMMISSION, Role.MERCHANT: ShareKind.MERCHANT_PROCEEDS,
    Role.SUPPLIER: ShareKind.SUPPLIER_COST, Role.LOGISTICS: ShareKind.SHIPPING,
    Role.AFFILIATE: ShareKind.AFFILIATE, Role.AFFILIATE_PARENT: ShareKind.AFFILIATE,
    Role.TAX: ShareKind.TAX,
}
PARTY_ROLE_KIND = {
    PartyRole.PLATFORM: ShareKind.COMMISSION, PartyRole.MERCHANT: ShareKind.MERCHANT_PROCEEDS,
    PartyRole.SUPPLIER: ShareKind.SUPPLIER_COST, PartyRole.LOGISTICS: ShareKind.SHIPPING,
    PartyRole.AFFILIATE: ShareKind.AFFILIATE, PartyRole.TAX: ShareKind.TAX,
    PartyRole.PSP: ShareKind.PSP_FEE,
}


@dataclass(slots=True)
class _Piece:
    """A share before rounding: exactly ``num / den`` minor units (integers, no floats and no
    Fraction objects on the hot path)."""

    party_id: str
    kind: ShareKind
    num: int
    den: int
    rule_id: str
    line_id: str | None
    basis: str
    basis_minor: int
    rate_bps: int | None
    explanation: str


def matches(cond: Condition, order: Order, line: OrderLine | None,
            parties: Mapping[str, Party]) -> bool:
    """Whether ``cond`` holds for the order (and the line, for line conditions)."""
    if isinstance(cond, Match):
        return _match(cond, order, line, parties)
    if isinstance(cond, AllOf):
        return all(matches(c, order, line, parties) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(matches(c, order, line, parties) for c in cond.items)
    assert isinstance(cond, Not)
    return not matches(cond.item, order, line, parties)


def _in(values: tuple[str, ...] | None, value: str | None) -> bool:
    return values is None or (value is not None and value in values)


def _match(m: Match, order: Order, line: OrderLine | None, parties: Mapping[str, Party]) -> bool:
    if not (_in(m.channel, order.channel) and _in(m.region, order.region)
            and _in(m.payment_method, order.payment_method)):
        return False
    if m.has_affiliate is not None and bool(order.affiliate_id) != m.has_affiliate:
        return False
    if m.order_amount is not None and not m.order_amount.contains(order.total_minor):
        return False
    if m.time is not None and not m.time.contains(order.captured_at):
        return False
    if m.tags is not None and not set(m.tags) & set(order.tags):
        return False
    if line is None:
        return True
    if m.category is not None:
        path = line.category.strip("/")
        if not any(path == c.strip("/") or path.startswith(c.strip("/") + "/")
                   for c in m.category):
            return False
    merchant = parties.get(line.merchant_id)
    if not (_in(m.merchant, line.merchant_id) and _in(m.supplier, line.supplier_id)
            and _in(m.merchant_tier, merchant.tier if merchant else None)):
        return False
    if m.has_supplier is not None and bool(line.supplier_id) != m.has_supplier:
        return False
    return m.line_amount is None or m.line_amount.contains(line.gross_minor)


Predicate = Callable[[Order, "OrderLine | None", Mapping[str, Party]], bool]


def compile_condition(cond: Condition, *, skip_category: bool = False) -> Predicate:
    """A predicate equivalent to ``matches(cond, ...)`` that tests only the fields the
    condition sets. ``skip_category``: the caller found the rule through the category index,
    so its top-level category already matched."""
    if not isinstance(cond, Match):
        return lambda order, line, parties: matches(cond, order, line, parties)
    order_checks: list[Callable[[Order], bool]] = []
    line_checks: list[Callable[[OrderLine, Mapping[str, Party]], bool]] = []
    for name in ("channel", "region", "payment_method"):
        values = getattr(cond, name)
        if values is not None:
            allowed = frozenset(values)
            order_checks.append(lambda o, n=name, a=allowed: getattr(o, n) in a)
    if cond.has_affiliate is not None:
        order_checks.append(lambda o, v=cond.has_affiliate: bool(o.affiliate_id) == v)
    if cond.order_amount is not None:
        order_checks.append(lambda o, b=cond.order_amount: b.contains(o.total_minor))
    if cond.time is not None:
        order_checks.append(lambda o, w=cond.time: w.contains(o.captured_at))
    if cond.tags is not None:
        order_checks.append(lambda o, t=frozenset(cond.tags): not t.isdisjoint(o.tags))
    if cond.category is not None and not skip_category:
        prefixes = tuple(c.strip("/") for c in cond.category)
        line_checks.append(lambda ln, p, c=prefixes: any(
            ln.category.strip("/") == x or ln.category.strip("/").startswith(x + "/") for x in c))
    if cond.merchant is not None:
        line_checks.append(lambda ln, p, a=frozenset(cond.merchant): ln.merchant_id in a)
    if cond.supplier is not None:
        line_checks.append(lambda ln, p, a=frozenset(cond.supplier): ln.supplier_id in a)
    if cond.merchant_tier is not None:
        def tier_ok(ln: OrderLine, p: Mapping[str, Party], a=frozenset(cond.merchant_tier)
                    ) -> bool:
            merchant = p.get(ln.merchant_id)
            return merchant is not None and merchant.tier in a
        line_checks.append(tier_ok)
    if cond.has_supplier is not None:
        line_checks.append(lambda ln, p, v=cond.has_supplier: bool(ln.supplier_id) == v)
    if cond.line_amount is not None:
        line_checks.append(lambda ln, p, b=cond.line_amount: b.contains(ln.gross_minor))
    if not order_checks and not line_checks:
        return lambda order, line, parties: True

    def predicate(order: Order, line: OrderLine | None, parties: Mapping[str, Party]) -> bool:
        for check in order_checks:
            if not check(order):
                return False
        if line is None:
            return True
        for line_check in line_checks:
            if not line_check(line, parties):
                return False
        return True

    return predicate


_LINE_NET, _LINE_GROSS = Basis.LINE_NET, Basis.LINE_GROSS
REMAINDER_TEXT = "what is left of the line after the shares above"
SHIPPING_REMAINDER_TEXT = "what is left of the shipping charge after the shares above"
DECISION_CACHE_SIZE = 100_000  # distinct line shapes remembered per compiled ruleset


def _conditions(cond: Condition) -> list[Match]:
    if isinstance(cond, Match):
        return [cond]
    if isinstance(cond, Not):
        return _conditions(cond.item)
    return [m for item in cond.items for m in _conditions(item)]


def _fact_key_function(rules: tuple[Rule, ...]
                       ) -> Callable[[Order, OrderLine, Mapping[str, Party]], tuple[object, ...]]:
    """A function giving, for a line, the tuple of every fact some condition of ``rules`` can
    test: equal tuples mean every condition evaluates alike. Amount bands and time windows
    enter as which of them contain the line's amount or the capture time, not as the values."""
    matches_ = [m for rule in rules for m in _conditions(rule.when)]
    used = {name for m in matches_ for name in Match.__dataclass_fields__
            if getattr(m, name) is not None}
    line_bands = list(dict.fromkeys(m.line_amount for m in matches_ if m.line_amount))
    order_bands = list(dict.fromkeys(m.order_amount for m in matches_ if m.order_amount))
    windows = list(dict.fromkeys(m.time for m in matches_ if m.time))
    getters: list[Callable[[Order, OrderLine, Mapping[str, Party]], object]] = [
        lambda o, ln, p: ln.category]
    simple = {
        "merchant": lambda o, ln, p: ln.merchant_id,
        "supplier": lambda o, ln, p: ln.supplier_id,
        "has_supplier": lambda o, ln, p: bool(ln.supplier_id),
        "has_affiliate": lambda o, ln, p: bool(o.affiliate_id),
        "channel": lambda o, ln, p: o.channel,
        "region": lambda o, ln, p: o.region,
        "payment_method": lambda o, ln, p: o.payment_method,
        "tags": lambda o, ln, p: o.tags,
        "merchant_tier": lambda o, ln, p: getattr(p.get(ln.merchant_id), "tier", None),
    }
    getters += [getter for name, getter in simple.items() if name in used]
    if line_bands:
        getters.append(lambda o, ln, p: tuple(b.contains(ln.gross_minor) for b in line_bands))
    if order_bands:
        getters.append(lambda o, ln, p: tuple(b.contains(o.total_minor) for b in order_bands))
    if windows:
        getters.append(lambda o, ln, p: tuple(w.contains(o.captured_at) for w in windows))
    return lambda o, ln, p: tuple([getter(o, ln, p) for getter in getters])


class RulesPolicy:
    """A ruleset compiled for splitting: validated once, rules indexed by category."""

    def __init__(self, ruleset: Ruleset) -> None:
        check_ruleset(ruleset)
        self.ruleset = ruleset
        ranked = sorted(enumerate(ruleset.rules), key=lambda ir: (-ir[1].priority, ir[0]))
        self._ranked = [rule for _, rule in ranked]
        self._rank = {id(rule): i for i, rule in enumerate(self._ranked)}
        self._by_category: dict[str, list[Rule]] = {}
        self._anywhere: list[Rule] = []
        for rule in self._ranked:
            if not any(s.line_scoped for s in rule.shares):
                continue
            categories = rule.when.category if isinstance(rule.when, Match) else None
            if categories is None:
                self._anywhere.append(rule)
            else:
                for category in categories:
                    self._by_category.setdefault(category.strip("/"), []).append(rule)
        self._order_rules = [r for r in self._ranked if any(not s.line_scoped for s in r.shares)]
        self._candidates: dict[str, list[Rule]] = {}
        self._funders = ruleset.funder_overrides
        indexed = {id(rule) for rules in self._by_category.values() for rule in rules}
        self._line_predicate = {id(r): compile_condition(r.when, skip_category=id(r) in indexed)
                                for r in self._ranked}
        self._order_predicate = {id(r): compile_condition(r.when) for r in self._order_rules}
        self._fact_key = _fact_key_function(ruleset.rules)
        limits = ruleset.constraints
        self._constrained = (limits.max_share_to_others_bps is not None
                             or limits.max_receivers is not None)
        self._rate_text = {id(s): f"{s.bps / 100:g}% of {s.of.value} (rule {r.rule_id})"
                           for r in ruleset.rules for s in r.shares}
        self._decisions: dict[tuple[object, ...], list[tuple[Rule, Share, str]]] = {}

    @property
    def version(self) -> str:
        return self.ruleset.version

    def gmv_windows(self) -> frozenset[int]:
        return frozenset(s.window_days for r in self.ruleset.rules for s in r.shares if s.tiers)

    def referenced_party_ids(self) -> frozenset[str]:
        rs = self.ruleset
        named = {s.to.party_id for r in rs.rules for s in r.shares if s.to.party_id}
        if rs.remainder.party_id:
            named.add(rs.remainder.party_id)
        return frozenset({rs.platform_party_id, rs.psp_party_id, rs.tax_party_id, *named})

    def candidates(self, category: str) -> list[Rule]:
        """The rules that can apply to a line of ``category``, in precedence order."""
        path = category.strip("/")
        found = self._candidates.get(path)
        if found is None:
            parts = path.split("/")
            rules = list(self._anywhere)
            for depth in range(1, len(parts) + 1):
                rules += self._by_category.get("/".join(parts[:depth]), [])
            found = sorted(set(rules), key=lambda r: self._rank[id(r)])
            self._candidates[path] = found
        return found

    # -- splitting ------------------------------------------------------------------------------
    def split(self, order: Order, parties: Mapping[str, Party],
              facts: SplitFacts | None = None) -> SplitPlan:
        facts = facts or SplitFacts()
        rs = self.ruleset
        pools: list[tuple[OrderLine, int, list[_Piece]]] = []
        subsidies: list[Allocation] = []
        funders = self._funders
        for line in order.lines:
            pool = line.quantity * line.unit_price_minor
            platform_funded = 0
            for discount in line.discounts:
                if funders.get(discount.kind, discount.funded_by.value) == "platform":
                    platform_funded += discount.amount_minor
                else:
                    pool -= discount.amount_minor
            pools.append((line, pool, self._line_pieces(order, line, pool, parties, facts)))
            if platform_funded:
                subsidies.append(Allocation(
                    rs.platform_party_id, ShareKind.PLATFORM_SUBSIDY, -platform_funded,
                    "discount_funding", line.line_id, "platform_funded_discount",
                    platform_funded, None,
                    f"platform-funded discounts of {platform_funded} on line {line.line_id}"))
        total = order.total_minor
        shipping_pieces, spread = self._order_pieces(order, total, parties, facts)
        allocations: list[Allocation] = []
        self._spread(spread, pools)
        for line, pool, pieces in pools:
            remainder = self._resolve(rs.remainder, order, line, parties)
            allocations += self._round_pool(pool, pieces, remainder, "remainder", line.line_id)
        if order.shipping and order.shipping.amount_minor:
            allocations += self._round_pool(order.shipping.amount_minor, shipping_pieces,
                                            order.shipping.logistics_party_id,
                                            "shipping_remainder", None)
        allocations += subsidies
        allocations += self._psp_fee(order, pools)
        plan = SplitPlan(order.order_id, order.currency, total, rs.version,
                         tuple(a for a in allocations if a.amount_minor))
        if self._constrained:
            self._check_constraints(order, plan)
        return plan

    def line_decisions(self, order: Order, line: OrderLine, parties: Mapping[str, Party]
                       ) -> list[tuple[Rule, Share, str]]:
        """The (rule, share, recipient key) deciding each recipient of a line's shares.

        Memoised on the facts the ruleset's conditions can look at (see ``_fact_key_function``):
        two lines with equal facts are decided alike, so each shape of line is matched once.
        """
        key = self._fact_key(order, line, parties)
        found = self._decisions.get(key)
        if found is not None:
            return found
        decided: set[str] = set()
        found = []
        predicates = self._line_predicate
        for rule in self.candidates(line.category):
            if not predicates[id(rule)](order, line, parties):
                continue
            for share in rule.shares:
                recipient = str(share.to)
                if share.line_scoped and recipient not in decided:
                    decided.add(recipient)
                    found.append((rule, share, recipient))
        if len(self._decisions) >= DECISION_CACHE_SIZE:
            self._decisions.clear()
        self._decisions[key] = found
        return found

    def _line_pieces(self, order: Order, line: OrderLine, pool: int,
                     parties: Mapping[str, Party], facts: SplitFacts) -> list[_Piece]:
        pieces: list[_Piece] = []
        for rule, share, _ in self.line_decisions(order, line, parties):
            party_id = self._resolve(share.to, order, line, parties)
            if party_id is not None:
                of = share.of
                basis = (pool if of is _LINE_NET else line.gross_minor if of is _LINE_GROSS
                         else line.net_minor)
                pieces.append(self._piece(share, rule, party_id, basis, line, parties, facts))
        return pieces

    def _order_pieces(self, order: Order, total: int, parties: Mapping[str, Party],
                      facts: SplitFacts) -> tuple[list[_Piece], list[_Piece]]:
        shipping = order.shipping.amount_minor if order.shipping else 0
        bases = {Basis.SHIPPING: shipping, Basis.ORDER_TOTAL: total,
                 Basis.PSP_FEE: order.psp_fee_minor}
        decided: set[str] = set()
        shipping_pieces: list[_Piece] = []
        spread: list[_Piece] = []
        for rule in self._order_rules:
            if not self._order_predicate[id(rule)](order, None, parties):
                continue
            for share in rule.shares:
                key = str(share.to)
                if share.line_scoped or key in decided:
                    continue
                decided.add(key)
                party_id = self._resolve(share.to, order, None, parties)
                if party_id is None or not bases[share.of]:
                    continue  # nobody to pay, or nothing to share (no shipping, no fee)
                piece = self._piece(share, rule, party_id, bases[share.of], None, parties, facts)
                (shipping_pieces if share.of is Basis.SHIPPING else spread).append(piece)
        return shipping_pieces, spread

    def _piece(self, share: Share, rule: Rule, party_id: str, basis_minor: int,
               line: OrderLine | None, parties: Mapping[str, Party], facts: SplitFacts
               ) -> _Piece:
        rate, how = share.bps, ""
        if share.tiers and line is not None:
            gmv = facts.merchant_gmv_minor.get((line.merchant_id, share.window_days), 0)
            tier = [t for t in share.tiers if t.from_gmv_minor <= gmv][-1]
            rate = tier.bps
            how = (f" (volume tier from {tier.from_gmv_minor}: merchant GMV {gmv} over "
                   f"{share.window_days} days)")
        num = basis_minor * rate + share.fixed_minor * BPS_PER_UNIT  # over BPS_PER_UNIT
        # The basis amount is recorded beside the text (basis_minor), so the usual text is fixed
        # per share and costs nothing to build.
        text = f"{rate / 100:g}% of {share.of.value}{how}" if how else ""
        if share.fixed_minor:
            text = (text or f"{share.bps / 100:g}% of {share.of.value}") + \
                f" + fixed {share.fixed_minor}"
        if share.min_minor is not None and num < share.min_minor * BPS_PER_UNIT:
            num = share.min_minor * BPS_PER_UNIT
            text = (text or f"{share.bps / 100:g}% of {share.of.value}") + \
                f", raised to the minimum {share.min_minor}"
        if share.max_minor is not None and num > share.max_minor * BPS_PER_UNIT:
            num = share.max_minor * BPS_PER_UNIT
            text = (text or f"{share.bps / 100:g}% of {share.of.value}") + \
                f", capped at {share.max_minor}"
        text = f"{text} (rule {rule.rule_id})" if text else self._rate_text[id(share)]
        if num > basis_minor * BPS_PER_UNIT:
            where = f"line {line.line_id}" if line else "the order"
            raise SplitRefused(
                f"rule {rule.rule_id}: share to {share.to} ({num / BPS_PER_UNIT:.2f}) exceeds "
                f"its basis {share.of.value} {basis_minor} on {where}", rule_id=rule.rule_id)
        kind = self._kind(share.to, party_id, parties)
        return _Piece(party_id, kind, num, BPS_PER_UNIT, rule.rule_id,
                      line.line_id if line else None,
                      share.of.value, basis_minor, rate, text)

    def _spread(self, spread: list[_Piece], pools: list[tuple[OrderLine, int, list[_Piece]]]
                ) -> None:
        """Take order_total / psp_fee shares out of the line pools in proportion.

        Each share is rounded once as a whole (the one rounding rule over the lines' total),
        then its whole minor units are spread over the lines by the same rule: a share keeps
        its exact total, fixed amount and caps however many lines it is spread over (rounding
        each line's fraction separately could lose or add a unit per line)."""
        if not spread:
            return
        weights = [pool for _, pool, _ in pools]
        total_pool = sum(weights)
        if total_pool <= 0:
            raise SplitRefused("order-level shares need lines with a positive amount")
        den = math.lcm(*(p.den for p in spread))
        nums = [p.num * (den // p.den) for p in spread]
        rest = total_pool * den - sum(nums)
        if rest < 0:
            raise SplitRefused(f"order-level shares add up to {sum(nums) / den:.2f}, more than "
                               f"the order's lines {total_pool}",
                               rule_ids=sorted({p.rule_id for p in spread}))
        totals = allocate_unchecked(total_pool, [*nums, rest])[:-1]
        for piece, amount in zip(spread, totals, strict=True):
            parts = allocate_unchecked(amount, weights) if amount else [0] * len(weights)
            for (line, pool, pieces), part in zip(pools, parts, strict=True):
                if pool:
                    pieces.append(_Piece(
                        piece.party_id, piece.kind, part, 1, piece.rule_id, line.line_id,
                        piece.basis, piece.basis_minor, piece.rate_bps,
                        piece.explanation + f", line {line.line_id}'s part"))

    def _round_pool(self, pool: int, pieces: list[_Piece], remainder_party: str | None,
                    remainder_rule: str, line_id: str | None) -> list[Allocation]:
        if all(p.den == BPS_PER_UNIT for p in pieces):  # no order-level part: the usual case
            den = BPS_PER_UNIT
            nums = [p.num for p in pieces]
        else:
            den = math.lcm(*(p.den for p in pieces))
            nums = [p.num * (den // p.den) for p in pieces]
        taken = sum(nums)
        if taken > pool * den:
            where = f"line {line_id}" if line_id else "shipping"
            raise SplitRefused(f"shares on {where} add up to {taken / den:.2f}, more than its "
                               f"amount {pool}", rule_ids=sorted({p.rule_id for p in pieces}))
        if remainder_party is None:
            raise SplitRefused(f"no remainder party for line {line_id}")
        nums.append(pool * den - taken)  # the remainder's exact share
        # Numerators over one denominator are weights whose exact shares of the pool they are:
        # the one rounding rule (largest remainder, ties to the earlier share) applies as is.
        amounts = allocate_unchecked(pool, nums) if pool else [0] * len(nums)
        result = [Allocation(p.party_id, p.kind, amount, p.rule_id, p.line_id, p.basis,
                             p.basis_minor, p.rate_bps, p.explanation)
                  for p, amount in zip(pieces, amounts, strict=False)]  # last: the remainder
        result.append(Allocation(
            remainder_party, ShareKind.MERCHANT_PROCEEDS if line_id else ShareKind.SHIPPING,
            amounts[-1], remainder_rule, line_id, "line_net" if line_id else "shipping", pool,
            None, REMAINDER_TEXT if line_id else SHIPPING_REMAINDER_TEXT))
        return result

    def _psp_fee(self, order: Order, pools: list[tuple[OrderLine, int, list[_Piece]]]
                 ) -> list[Allocation]:
        fee, rs = order.psp_fee_minor, self.ruleset
        if not fee:
            return []
        result = [Allocation(rs.psp_party_id, ShareKind.PSP_FEE, fee, "psp_fee", None,
                             "psp_fee", fee, None, "fee withheld by the payment provider")]
        by_merchant: dict[str, int] = {}
        for line, pool, _ in pools:
            by_merchant[line.merchant_id] = by_merchant.get(line.merchant_id, 0) + pool
        if rs.psp_fee_bearer == "platform" or not any(by_merchant.values()):
            return result + [Allocation(rs.platform_party_id, ShareKind.PSP_FEE_BORNE, -fee,
                                        "psp_fee_bearer", None, "psp_fee", fee, None,
                                        "the platform bears the payment fee")]
        merchants = list(by_merchant)
        for merchant_id, part in zip(merchants, allocate(fee, [by_merchant[m] for m in merchants]),
                                     strict=True):
            result.append(Allocation(merchant_id, ShareKind.PSP_FEE_BORNE, -part,
                                     "psp_fee_bearer", None, "psp_fee", fee, None,
                                     f"{part} of the {fee} payment fee, in proportion to the "
                                     "merchant's lines"))
        return result

    # -- recipients and constraints ------------------------------------------------------------
    def _resolve(self, to: Recipient, order: Order, line: OrderLine | None,
                 parties: Mapping[str, Party]) -> str | None:
        if to.party_id:
            return to.party_id
        rs = self.ruleset
        match to.role:
            case Role.PLATFORM:
                return rs.platform_party_id
            case Role.TAX:
                return rs.tax_party_id
            case Role.MERCHANT:
                return line.merchant_id if line else None
            case Role.SUPPLIER:
                return line.supplier_id if line else None
            case Role.LOGISTICS:
                return order.shipping.logistics_party_id if order.shipping else None
            case Role.AFFILIATE:
                return order.affiliate_id
            case Role.AFFILIATE_PARENT:
                affiliate = parties.get(order.affiliate_id or "")
                return affiliate.parent_party_id if affiliate else None
        return None

    def _kind(self, to: Recipient, party_id: str, parties: Mapping[str, Party]) -> ShareKind:
        if to.role is not None:
            return ROLE_KIND[to.role]
        party = parties.get(party_id)
        return PARTY_ROLE_KIND[party.role] if party else ShareKind.COMMISSION

    def _check_constraints(self, order: Order, plan: SplitPlan) -> None:
        limits = self.ruleset.constraints
        merchants = {line.merchant_id for line in order.lines}
        psp = self.ruleset.psp_party_id
        others = [a for a in plan.allocations if a.amount_minor > 0
                  and a.party_id not in merchants and a.party_id != psp]
        cap = limits.max_share_to_others_bps
        if cap is not None:
            shared = sum(a.amount_minor for a in others)
            if shared * BPS_PER_UNIT > cap * plan.total_minor:
                raise SplitRefused(
                    f"order {order.order_id} would share {shared} of {plan.total_minor} with "
                    f"parties other than its merchants, over the {cap / 100:g}% cap",
                    constraint="max_share_to_others_bps")
        receivers = {a.party_id for a in others}
        if limits.max_receivers is not None and len(receivers) > limits.max_receivers:
            raise SplitRefused(
                f"order {order.order_id} would pay {len(receivers)} receivers besides its "
                f"merchants, over the limit of {limits.max_receivers}",
                constraint="max_receivers")
