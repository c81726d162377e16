"""Rulesets: drafting, four-eyes approval, the version in force at a capture, back-tests.

A ruleset is drafted (and may be redrafted) by one person and approved by another; from
approval on it is immutable (the database refuses changes) and applies to orders captured at
or after its ``effective_from``, until a later approved version takes over. Approval cannot be
retroactive: ``effective_from`` must not be in the past, so an order is always split by the
version that was in force, and known to be, when it was captured.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from splitledger.domain.codec import order_from_dict
from splitledger.domain.orders import Order, validate_order
from splitledger.domain.rules.engine import RulesPolicy
from splitledger.domain.rules.model import Ruleset
from splitledger.domain.split import SplitFacts, SplitPlan, SplitPolicy
from splitledger.errors import (
    ApprovalRequired,
    InvalidRuleset,
    InvalidState,
    NotFound,
    SplitledgerError,
    UnknownParty,
    ValidationError,
)
from splitledger.rules_io import ruleset_from_data, ruleset_to_data
from splitledger.services import audit
from splitledger.services.context import Context, UnitOfWork
from splitledger.store import tables as t

DRAFT, APPROVED = "draft", "approved"
MAX_NAME = 64  # versions and the names of drafters and approvers, as stored


def _check_person(by: str) -> None:
    if not by or len(by) > MAX_NAME:
        raise ValidationError(f"who drafts or approves must be named in 1 to {MAX_NAME} "
                              "characters", field="by")


def _hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def draft_ruleset(ctx: Context, ruleset: Ruleset, *, by: str, source: str = "") -> dict[str, Any]:
    """Store a (validated) ruleset as a draft, replacing an earlier draft of the same version.
    Raises InvalidState if that version is already approved."""
    RulesPolicy(ruleset)  # validates and compiles: an invalid draft is never stored
    if len(ruleset.version) > MAX_NAME:
        raise InvalidRuleset(f"version: at most {MAX_NAME} characters", problems=[
            {"rule_id": None, "field": "version", "message": f"at most {MAX_NAME} characters"}])
    _check_person(by)
    body = ruleset_to_data(ruleset)
    with ctx.uow() as uow:
        row = _get(uow, ruleset.version, lock=True)
        now = ctx.now()
        values = {"effective_from": ruleset.effective_from, "status": DRAFT, "body": body,
                  "source": source, "body_hash": _hash(body), "drafted_by": by,
                  "drafted_at": now}
        if row is None:
            uow.conn.execute(insert(t.rulesets).values(version=ruleset.version, **values))
        elif row.status == APPROVED:
            raise InvalidState(f"ruleset {ruleset.version} is approved and immutable; draft a "
                               "new version", version=ruleset.version)
        else:
            uow.conn.execute(update(t.rulesets).where(t.rulesets.c.version == ruleset.version)
                             .values(**values))
        audit.record(uow, ctx, "ruleset.draft", "ruleset", ruleset.version,
                     after={"drafted_by": by, "body_hash": values["body_hash"],
                            "effective_from": ruleset.effective_from.isoformat()})
        uow.commit()
    return {"version": ruleset.version, "status": DRAFT, "drafted_by": by,
            "body_hash": values["body_hash"]}


def approve_ruleset(ctx: Context, version: str, *, by: str) -> dict[str, Any]:
    """Approve a draft: it becomes active at its effective_from. Four-eyes: the approver must
    not be the person who drafted it. Raises NotFound, ApprovalRequired, InvalidState,
    ValidationError (effective_from in the past, or equal to another approved version's)."""
    _check_person(by)
    with ctx.uow() as uow:
        row = _get(uow, version, lock=True)
        if row is None:
            raise NotFound(f"unknown ruleset version {version!r}", version=version)
        if row.status == APPROVED:
            raise InvalidState(f"ruleset {version} is already approved", version=version)
        if row.drafted_by == by:
            raise ApprovalRequired(f"ruleset {version} was drafted by {by}; another person "
                                   "must approve it", version=version)
        now = ctx.now()
        if row.effective_from < now:
            raise ValidationError(f"ruleset {version} would take effect in the past "
                                  f"({row.effective_from.isoformat()}); draft it again with a "
                                  "future effective_from", field="effective_from")
        clash = uow.conn.execute(select(t.rulesets.c.version).where(
            t.rulesets.c.status == APPROVED,
            t.rulesets.c.effective_from == row.effective_from)).first()
        if clash:
            raise ValidationError(f"ruleset {clash.version} already takes effect at that time",
                                  field="effective_from")
        RulesPolicy(ruleset_from_data(row.body))  # still valid under today's code
        uow.conn.execute(update(t.rulesets).where(t.rulesets.c.version == version)
                         .values(status=APPROVED, approved_by=by, approved_at=now))
        audit.record(uow, ctx, "ruleset.approve", "ruleset", version,
                     before={"status": DRAFT}, after={"status": APPROVED, "approved_by": by})
        uow.commit()
    return {"version": version, "status": APPROVED, "approved_by": by,
            "effective_from": row.effective_from.isoformat()}


def list_rulesets(ctx: Context) -> list[dict[str, Any]]:
    with ctx.uow() as uow:
        rows = uow.conn.execute(select(
            t.rulesets.c.version, t.rulesets.c.effective_from, t.rulesets.c.status,
            t.rulesets.c.drafted_by, t.rulesets.c.approved_by, t.rulesets.c.body_hash)
            .order_by(t.rulesets.c.effective_from, t.rulesets.c.version))
        return [dict(row._mapping) for row in rows]


def get_ruleset(ctx: Context, version: str) -> Ruleset:
    with ctx.uow() as uow:
        row = _get(uow, version)
    if row is None:
        raise NotFound(f"unknown ruleset version {version!r}", version=version)
    return ruleset_from_data(row.body)


def _get(uow: UnitOfWork, version: str, lock: bool = False) -> Any:
    stmt = select(t.rulesets).where(t.rulesets.c.version == version)
    if lock and uow.repo.dialect == "postgresql":
        stmt = stmt.with_for_update()
    return uow.conn.execute(stmt).first()


# -- the policy in force ------------------------------------------------------------------------

def policy_for(ctx: Context, uow: UnitOfWork, moment: datetime) -> SplitPolicy:
    """The approved ruleset in force at ``moment``, compiled (cached per version); without
    any approved ruleset, the context's fallback policy."""
    row = uow.conn.execute(
        select(t.rulesets.c.version, t.rulesets.c.body)
        .where(t.rulesets.c.status == APPROVED, t.rulesets.c.effective_from <= moment)
        .order_by(t.rulesets.c.effective_from.desc()).limit(1)).first()
    if row is None:
        return ctx.policy
    compiled = ctx.compiled_policies.get(row.version)
    if compiled is None:
        compiled = RulesPolicy(ruleset_from_data(row.body))
        ctx.compiled_policies[row.version] = compiled
    return compiled


def split_facts(uow: UnitOfWork, policy: SplitPolicy, order: Order) -> SplitFacts:
    """Look up what the policy needs: merchants' GMV over each window before the capture."""
    windows = policy.gmv_windows()
    if not windows:
        return SplitFacts()
    om = t.order_merchants
    gmv: dict[tuple[str, int], int] = {}
    for merchant_id in sorted({line.merchant_id for line in order.lines}):
        for days in windows:
            total = uow.conn.execute(
                select(func.coalesce(func.sum(om.c.gmv_minor), 0)).where(
                    om.c.merchant_id == merchant_id, om.c.currency == order.currency,
                    om.c.captured_at >= order.captured_at - timedelta(days=days),
                    om.c.captured_at < order.captured_at,
                    om.c.order_id != order.order_id)).scalar_one()
            gmv[(merchant_id, days)] = int(total)
    return SplitFacts(gmv)


def preview_split(ctx: Context, ruleset: Ruleset, order: Order) -> SplitPlan:
    """Split ``order`` with ``ruleset`` as a capture would (parties and merchants' GMV from the
    database), writing nothing. Raises ValidationError, UnknownParty, SplitRefused."""
    validate_order(order)
    policy = RulesPolicy(ruleset)
    with ctx.uow() as uow:
        parties = uow.repo.get_parties(order.party_ids() | policy.referenced_party_ids())
        missing = sorted(order.party_ids() - set(parties))
        if missing:
            raise UnknownParty(f"unknown parties: {', '.join(missing)}", party_ids=missing)
        return policy.split(order, parties, split_facts(uow, policy, order))


# -- back-test ----------------------------------------------------------------------------------

@dataclass
class BacktestReport:
    """What a ruleset would have changed over the orders of a period, without booking.

    Amounts are per (party, currency): ``booked`` by the plans on record, ``simulated`` by the
    ruleset under test. Take rate: the platform's net share of GMV, in basis points.
    """

    version: str
    start: datetime
    end: datetime
    orders: int = 0
    changed_orders: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    booked: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    simulated: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    gmv: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def differences(self) -> dict[tuple[str, str], int]:
        keys = set(self.booked) | set(self.simulated)
        return {k: self.simulated.get(k, 0) - self.booked.get(k, 0) for k in sorted(keys)
                if self.simulated.get(k, 0) != self.booked.get(k, 0)}

    def take_rate_bps(self, which: dict[tuple[str, str], int], platform: str, currency: str
                      ) -> float:
        gmv = self.gmv.get(currency, 0)
        return which.get((platform, currency), 0) * 10_000 / gmv if gmv else 0.0


def backtest(ctx: Context, ruleset: Ruleset, start: datetime, end: datetime) -> BacktestReport:
    """Split every order captured in [start, end) again with ``ruleset`` and compare with what
    was booked. Writes nothing. Orders the ruleset would refuse are listed, not counted."""
    policy = RulesPolicy(ruleset)
    report = BacktestReport(ruleset.version, start, end)
    with ctx.uow() as uow:
        rows = uow.conn.execute(select(t.orders).where(
            t.orders.c.captured_at >= start, t.orders.c.captured_at < end)
            .order_by(t.orders.c.captured_at, t.orders.c.order_id)).all()
        for row in rows:
            order = order_from_dict(row.body)
            booked = uow.repo.get_plan(row).net_by_party()
            parties = uow.repo.get_parties(order.party_ids() | {ruleset.platform_party_id,
                                                                 ruleset.psp_party_id})
            report.orders += 1
            try:
                plan = policy.split(order, parties, split_facts(uow, policy, order))
            except SplitledgerError as exc:
                report.refused.append((order.order_id, str(exc)))
                continue
            report.gmv[order.currency] += plan.total_minor
            simulated = plan.net_by_party()
            if simulated != booked:
                report.changed_orders += 1
            for party, amount in booked.items():
                report.booked[(party, order.currency)] += amount
            for party, amount in simulated.items():
                report.simulated[(party, order.currency)] += amount
    return report


# -- read models for the API --------------------------------------------------------------------

def _record_view(row: Any) -> dict[str, Any]:
    return {"version": row.version, "effective_from": row.effective_from.isoformat(),
            "status": row.status, "drafted_by": row.drafted_by,
            "drafted_at": row.drafted_at.isoformat(), "approved_by": row.approved_by,
            "approved_at": row.approved_at.isoformat() if row.approved_at else None,
            "body_hash": row.body_hash}


def list_ruleset_records(ctx: Context, after: str | None = None, limit: int = 100
                         ) -> list[dict[str, Any]]:
    """Ruleset versions in order of effective_from (then version), starting after the
    version ``after`` (keyset pagination). Raises ValidationError for an unknown ``after``."""
    r = t.rulesets
    stmt = select(r.c.version, r.c.effective_from, r.c.status, r.c.drafted_by, r.c.drafted_at,
                  r.c.approved_by, r.c.approved_at, r.c.body_hash
                  ).order_by(r.c.effective_from, r.c.version).limit(limit)
    with ctx.uow() as uow:
        if after is not None:
            mark = uow.conn.execute(select(r.c.effective_from)
                                    .where(r.c.version == after)).scalar_one_or_none()
            if mark is None:
                raise ValidationError("invalid cursor", field="cursor")
            stmt = stmt.where((r.c.effective_from > mark)
                              | ((r.c.effective_from == mark) & (r.c.version > after)))
        return [_record_view(row) for row in uow.conn.execute(stmt)]


def get_ruleset_record(ctx: Context, version: str) -> dict[str, Any]:
    """One version with its status, who drafted and approved it, and its body. Raises
    NotFound."""
    with ctx.uow() as uow:
        row = _get(uow, version)
    if row is None:
        raise NotFound(f"unknown ruleset version {version!r}", version=version)
    return _record_view(row) | {"body": row.body}
