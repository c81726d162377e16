"""Who may do what: roles, permissions and party scoping (pure).

Platform staff roles see every party; party roles see only their own party. Permissions are
coarse on purpose: each names a kind of act the business recognises, and each API route
declares the one it needs. An API key carries a role like a user and, optionally, a narrower
set of scopes (permissions) than its role allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"          # platform staff: everything, including users and keys
    FINANCE = "finance"      # money operations: captures, refunds, settlement, payouts, rules
    RISK = "risk"            # approvals, holds, KYC review
    SUPPORT = "support"      # reads everything, changes no money
    AUDITOR = "auditor"      # reads everything, writes nothing
    MERCHANT = "merchant"    # party users: their own party only
    SUPPLIER = "supplier"
    LOGISTICS = "logistics"
    AFFILIATE = "affiliate"


STAFF_ROLES = frozenset({Role.ADMIN, Role.FINANCE, Role.RISK, Role.SUPPORT, Role.AUDITOR})
PARTY_ROLES = frozenset({Role.MERCHANT, Role.SUPPLIER, Role.LOGISTICS, Role.AFFILIATE})


class Permission(StrEnum):
    READ_ALL = "read:all"                # any party's data
    READ_OWN = "read:own"                # the principal's own party's data
    READ_AUDIT = "read:audit"
    WRITE_ORDERS = "write:orders"        # capture, confirm, refund, chargeback
    WRITE_PARTIES = "write:parties"      # create parties, change bank details
    REVIEW_PARTIES = "review:parties"    # KYC decisions, payout holds
    WRITE_RULES = "write:rules"          # draft rulesets
    APPROVE = "approve"                  # the second pair of eyes
    RUN_SETTLEMENT = "run:settlement"    # settlement runs, releases
    WRITE_PAYOUTS = "write:payouts"      # record bank answers, retry
    MANAGE_ACCESS = "manage:access"      # users and API keys
    WRITE_OWN_BANK = "write:own_bank"    # a party changes its own bank details


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission) - {Permission.READ_OWN, Permission.WRITE_OWN_BANK},
    Role.FINANCE: frozenset({Permission.READ_ALL, Permission.READ_AUDIT, Permission.WRITE_ORDERS,
                             Permission.WRITE_PARTIES, Permission.WRITE_RULES,
                             Permission.APPROVE, Permission.RUN_SETTLEMENT,
                             Permission.WRITE_PAYOUTS}),
    Role.RISK: frozenset({Permission.READ_ALL, Permission.READ_AUDIT, Permission.APPROVE,
                          Permission.REVIEW_PARTIES}),
    Role.SUPPORT: frozenset({Permission.READ_ALL}),
    Role.AUDITOR: frozenset({Permission.READ_ALL, Permission.READ_AUDIT}),
    **{role: frozenset({Permission.READ_OWN, Permission.WRITE_OWN_BANK})
       for role in PARTY_ROLES},
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
      subject: ``user:<name>`` or ``key:<prefix>``; recorded in the audit log.
      role: what the caller is.
      party_id: for party roles, the party it acts for (and the only one it may see).
      scopes: for API keys, the permissions granted (a subset of the role's); ``None`` for users.
    """

    subject: str
    role: Role
    party_id: str | None = None
    scopes: frozenset[Permission] | None = field(default=None)

    def __post_init__(self) -> None:
        if (self.role in PARTY_ROLES) != (self.party_id is not None):
            raise ValueError("party roles, and only they, are bound to a party")

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    def can(self, permission: Permission) -> bool:
        allowed = ROLE_PERMISSIONS[self.role]
        if self.scopes is not None:
            allowed = allowed & self.scopes
        return permission in allowed

    def may_read_party(self, party_id: str) -> bool:
        """Staff with read access see every party; a party user only its own."""
        if self.can(Permission.READ_ALL):
            return True
        return self.can(Permission.READ_OWN) and party_id == self.party_id

    def party_filter(self) -> str | None:
        """The one party a list query must be restricted to, or ``None`` for staff."""
        return None if self.can(Permission.READ_ALL) else self.party_id
