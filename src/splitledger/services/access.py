"""Users, sessions and API keys: turning credentials into a ``Principal``.

Passwords are hashed with argon2id. API keys look like ``slk_<prefix>_<secret>``: the prefix is
stored in clear to find and show the key, the whole key only as a SHA-256 digest (it has 192
bits of entropy, so a fast hash is safe), and it is shown once, at creation. Session tokens
are random bearer tokens, stored as digests, valid for a limited time. Logins are throttled per
username: after ``MAX_FAILURES`` failures within ``FAILURE_WINDOW`` further attempts are refused
until the window has passed, whatever the password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, update

from splitledger.domain.access import PARTY_ROLES, ROLE_PERMISSIONS, Permission, Principal, Role
from splitledger.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    TooManyAttempts,
    UnknownParty,
    ValidationError,
)
from splitledger.services import audit
from splitledger.services.context import Context
from splitledger.store import tables as t

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)
MIN_PASSWORD = 12
_hasher = PasswordHasher()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_binding(uow: Any, role: Role, party_id: str | None) -> None:
    if (role in PARTY_ROLES) != (party_id is not None):
        raise ValidationError("party roles, and only they, must name their party",
                              field="party_id")
    if party_id is not None:
        party = uow.repo.get_party(party_id)
        if party is None:
            raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
        if party.role.value != role.value:
            raise ValidationError(f"party {party_id} is a {party.role.value}, not a "
                                  f"{role.value}", field="role")


# -- users --------------------------------------------------------------------------------------

def create_user(ctx: Context, username: str, password: str, role: Role,
                party_id: str | None = None, language: str = "en") -> dict[str, Any]:
    """Raises ValidationError (weak password, bad binding), Conflict (name taken)."""
    if not username or len(username) > 64 or not username.replace(".", "").replace(
            "_", "").replace("-", "").isalnum():
        raise ValidationError("username: 1 to 64 letters, digits, '.', '_' or '-'",
                              field="username")
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"password must have at least {MIN_PASSWORD} characters",
                              field="password")
    with ctx.uow() as uow:
        _check_binding(uow, role, party_id)
        if uow.conn.execute(select(t.users.c.username)
                            .where(t.users.c.username == username)).first():
            raise Conflict(f"user {username!r} already exists")
        uow.conn.execute(insert(t.users).values(
            username=username, password_hash=_hasher.hash(password), role=role.value,
            party_id=party_id, language=language, created_at=ctx.now()))
        after = {"username": username, "role": role.value, "party_id": party_id}
        audit.record(uow, ctx, "user.create", "user", username, after=after)
        uow.commit()
    return after


def login(ctx: Context, username: str, password: str) -> dict[str, Any]:
    """Check a password and open a session. Raises AuthenticationFailed, TooManyAttempts."""
    now = ctx.now()
    with ctx.uow() as uow:
        failures = uow.conn.execute(select(func.count()).select_from(t.login_failures).where(
            t.login_failures.c.username == username,
            t.login_failures.c.at > now - FAILURE_WINDOW)).scalar_one()
        if failures >= MAX_FAILURES:
            raise TooManyAttempts("too many failed logins for this user; try again later",
                                  retry_after_s=int(FAILURE_WINDOW.total_seconds()))
        row = uow.conn.execute(select(t.users).where(t.users.c.username == username)).first()
        ok = False
        if row is not None and row.disabled_at is None:
            try:
                ok = _hasher.verify(row.password_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        else:
            _hasher.hash(password)  # spend the same time whether or not the user exists
        if not ok:
            uow.conn.execute(insert(t.login_failures).values(username=username,
                                                             source=ctx.source, at=now))
            uow.commit()
            raise AuthenticationFailed("wrong username or password")
        token = secrets.token_urlsafe(32)
        uow.conn.execute(insert(t.sessions).values(
            token_hash=_digest(token), username=username, created_at=now,
            expires_at=now + SESSION_LIFETIME))
        uow.conn.execute(delete(t.login_failures).where(t.login_failures.c.username == username))
        uow.commit()
    return {"token": token, "expires_at": (now + SESSION_LIFETIME).isoformat(),
            "username": username, "role": row.role, "party_id": row.party_id}


def logout(ctx: Context, token: str) -> None:
    with ctx.uow() as uow:
        uow.conn.execute(update(t.sessions).where(t.sessions.c.token_hash == _digest(token))
                         .values(revoked_at=ctx.now()))
        uow.commit()


def principal_for_session(ctx: Context, token: str) -> Principal:
    with ctx.uow() as uow:
        row = uow.conn.execute(
            select(t.users.c.username, t.users.c.role, t.users.c.party_id,
                   t.users.c.disabled_at, t.sessions.c.expires_at, t.sessions.c.revoked_at)
            .select_from(t.sessions.join(t.users, t.users.c.username == t.sessions.c.username))
            .where(t.sessions.c.token_hash == _digest(token))).first()
    if (row is None or row.revoked_at is not None or row.disabled_at is not None
            or row.expires_at <= ctx.now()):
        raise AuthenticationFailed("invalid or expired session")
    return Principal(f"user:{row.username}", Role(row.role), row.party_id)


# -- API keys -----------------------------------------------------------------------------------

def create_api_key(ctx: Context, name: str, role: Role, party_id: str | None = None,
                   scopes: list[Permission] | None = None) -> dict[str, Any]:
    """Make a key; the returned ``key`` is shown this once and never stored."""
    prefix = secrets.token_hex(6)
    key = f"slk_{prefix}_{secrets.token_urlsafe(24)}"
    with ctx.uow() as uow:
        _check_binding(uow, role, party_id)
        uow.conn.execute(insert(t.api_keys).values(
            prefix=prefix, secret_hash=_digest(key), name=name, role=role.value,
            party_id=party_id, scopes=[s.value for s in scopes] if scopes is not None else None,
            created_by=ctx.actor, created_at=ctx.now()))
        after = {"prefix": prefix, "name": name, "role": role.value, "party_id": party_id,
                 "scopes": [s.value for s in scopes] if scopes is not None else None}
        audit.record(uow, ctx, "api_key.create", "api_key", prefix, after=after)
        uow.commit()
    return {**after, "key": key}


def revoke_api_key(ctx: Context, prefix: str) -> None:
    with ctx.uow() as uow:
        done = uow.conn.execute(update(t.api_keys).where(
            t.api_keys.c.prefix == prefix, t.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=ctx.now())).rowcount
        if not done:
            raise NotFound(f"no active API key {prefix!r}")
        audit.record(uow, ctx, "api_key.revoke", "api_key", prefix)
        uow.commit()


def principal_for_api_key(ctx: Context, key: str) -> Principal:
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "slk":
        raise AuthenticationFailed("invalid API key")
    with ctx.uow() as uow:
        row = uow.conn.execute(select(t.api_keys).where(t.api_keys.c.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(
            row.secret_hash, _digest(key)):
        raise AuthenticationFailed("invalid API key")
    scopes = frozenset(Permission(s) for s in row.scopes) if row.scopes is not None else None
    return Principal(f"key:{row.prefix}", Role(row.role), row.party_id, scopes)


# -- listings (for the API and the CLI; never a password hash, a key or its digest) ----------

def _user_view(row: Any) -> dict[str, Any]:
    return {"username": row.username, "role": row.role, "party_id": row.party_id,
            "language": row.language, "created_at": row.created_at.isoformat(),
            "disabled_at": row.disabled_at.isoformat() if row.disabled_at else None}


def list_users(ctx: Context, after: str | None = None, limit: int = 100
               ) -> list[dict[str, Any]]:
    u = t.users
    stmt = select(u.c.username, u.c.role, u.c.party_id, u.c.language, u.c.created_at,
                  u.c.disabled_at).order_by(u.c.username).limit(limit)
    if after is not None:
        stmt = stmt.where(u.c.username > after)
    with ctx.uow() as uow:
        return [_user_view(row) for row in uow.conn.execute(stmt)]


def get_user(ctx: Context, username: str) -> dict[str, Any]:
    """Raises NotFound."""
    u = t.users
    with ctx.uow() as uow:
        row = uow.conn.execute(select(u.c.username, u.c.role, u.c.party_id, u.c.language,
                                      u.c.created_at, u.c.disabled_at)
                               .where(u.c.username == username)).first()
    if row is None:
        raise NotFound(f"unknown user {username!r}", username=username)
    return _user_view(row)


def disable_user(ctx: Context, username: str) -> dict[str, Any]:
    """Disable a user and end its sessions at once (idempotent). Raises NotFound."""
    with ctx.uow() as uow:
        row = uow.conn.execute(select(t.users.c.disabled_at)
                               .where(t.users.c.username == username)).first()
        if row is None:
            raise NotFound(f"unknown user {username!r}", username=username)
        if row.disabled_at is None:
            now = ctx.now()
            uow.conn.execute(update(t.users).where(t.users.c.username == username)
                             .values(disabled_at=now))
            uow.conn.execute(update(t.sessions).where(t.sessions.c.username == username,
                                                      t.sessions.c.revoked_at.is_(None))
                             .values(revoked_at=now))
            audit.record(uow, ctx, "user.disable", "user", username,
                         before={"disabled": False}, after={"disabled": True})
            uow.commit()
    return get_user(ctx, username)


def _key_view(row: Any) -> dict[str, Any]:
    return {"prefix": row.prefix, "name": row.name, "role": row.role, "party_id": row.party_id,
            "scopes": row.scopes, "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None}


def _key_columns() -> tuple[Any, ...]:
    k = t.api_keys
    return (k.c.prefix, k.c.name, k.c.role, k.c.party_id, k.c.scopes, k.c.created_by,
            k.c.created_at, k.c.revoked_at, k.c.last_used_at)


def list_api_keys(ctx: Context, after: str | None = None, limit: int = 100
                  ) -> list[dict[str, Any]]:
    stmt = select(*_key_columns()).order_by(t.api_keys.c.prefix).limit(limit)
    if after is not None:
        stmt = stmt.where(t.api_keys.c.prefix > after)
    with ctx.uow() as uow:
        return [_key_view(row) for row in uow.conn.execute(stmt)]


def get_api_key(ctx: Context, prefix: str) -> dict[str, Any]:
    """Raises NotFound."""
    with ctx.uow() as uow:
        row = uow.conn.execute(select(*_key_columns())
                               .where(t.api_keys.c.prefix == prefix)).first()
    if row is None:
        raise NotFound(f"unknown API key {prefix!r}", prefix=prefix)
    return _key_view(row)


def check_scopes(role: Role, scopes: list[Permission] | None) -> None:
    """An API key's scopes may only narrow its role. Raises ValidationError."""
    extra = sorted(s.value for s in (scopes or []) if s not in ROLE_PERMISSIONS[role])
    if extra:
        raise ValidationError(f"a {role.value} key cannot be granted {', '.join(extra)}",
                              field="scopes")
