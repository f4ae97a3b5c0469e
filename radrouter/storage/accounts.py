"""People and services who use the web app: local accounts (argon2 hashes), sign-in lock-out, service
tokens (stored as SHA-256 of a random secret) and the access audit (sign-ins, failures, sign-outs)."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from radrouter.config.access import Role, SignInSettings
from radrouter.storage.index import Base, Index, coded, utc_iso, utcnow

HASHER = PasswordHasher()
#: Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_UNKNOWN_USER_HASH = HASHER.hash(secrets.token_urlsafe(16))
TOKEN_PREFIX = "rr_"


class AccountSource(enum.StrEnum):
    """Where an account's identity comes from."""

    LOCAL = "local"
    OIDC = "oidc"


class AccessKind(enum.StrEnum):
    """What the access audit records."""

    SIGNED_IN = "signed_in"
    SIGN_IN_FAILED = "sign_in_failed"
    LOCKED = "locked"
    SIGNED_OUT = "signed_out"
    SESSION_EXPIRED = "session_expired"


class User(Base):
    """A person who signs in to the pages; OIDC accounts have no password and take their role at sign-in."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[Role] = mapped_column(coded(Role))
    source: Mapped[AccountSource] = mapped_column(coded(AccountSource), default=AccountSource.LOCAL)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceToken(Base):
    """A named, revocable API token for a script or remote worker; only its SHA-256 is kept."""

    __tablename__ = "service_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[Role] = mapped_column(coded(Role))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class AccessEvent(Base):
    """One sign-in, failed sign-in, lock-out or sign-out: who (a known account only) and from where."""

    __tablename__ = "access_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AccessKind] = mapped_column(coded(AccessKind))
    user: Mapped[str | None] = mapped_column(String(100), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AccountError(Exception):
    """A request about accounts that cannot be done, said in a sentence."""


@dataclass(frozen=True)
class SignIn:
    """The outcome of a password check: the account on success, else why not."""

    user: str | None
    role: Role | None
    refused: str | None = None


def record_access(session: Session, kind: AccessKind, user: str | None, **detail: Any) -> None:
    session.add(AccessEvent(kind=kind, user=user, detail=detail))


def add_user(index: Index, name: str, role: Role, password: str) -> None:
    with index.session() as session:
        if session.get(User, name) is not None:
            raise AccountError(f"user {name!r} exists already")
        session.add(User(name=name, role=role, password_hash=HASHER.hash(password)))


def set_password(index: Index, name: str, password: str) -> None:
    """A new password; sessions signed in before it end, and a lock-out is lifted."""
    with index.session() as session:
        user = session.get(User, name)
        if user is None or user.source != AccountSource.LOCAL:
            raise AccountError(f"no local user {name!r}")
        user.password_hash, user.password_changed_at = HASHER.hash(password), utcnow()
        user.failures, user.locked_until = 0, None


def remove_user(index: Index, name: str) -> None:
    with index.session() as session:
        user = session.get(User, name)
        if user is None:
            raise AccountError(f"no user {name!r}")
        session.delete(user)


def users(index: Index) -> list[dict[str, Any]]:
    with index.session() as session:
        return [
            {
                "name": u.name,
                "role": u.role.value,
                "source": u.source.value,
                "locked_until": utc_iso(u.locked_until),
                "created_at": utc_iso(u.created_at),
            }
            for u in session.scalars(select(User).order_by(User.name)).all()
        ]


def has_users(index: Index) -> bool:
    with index.session() as session:
        return session.scalars(select(User.name).limit(1)).first() is not None


def check_password(index: Index, name: str, password: str, rules: SignInSettings, **where: Any) -> SignIn:
    """Check a sign-in, counting wrong passwords; ``rules.max_failures`` in a row lock the account."""
    now = utcnow()
    with index.session() as session:
        user = session.get(User, name)
        if user is None or user.password_hash is None:
            _verify(_UNKNOWN_USER_HASH, password)
            record_access(session, AccessKind.SIGN_IN_FAILED, None, known=False, **where)
            return SignIn(None, None, "wrong name or password")
        if user.locked_until is not None and user.locked_until > now:
            record_access(session, AccessKind.SIGN_IN_FAILED, user.name, locked=True, **where)
            return SignIn(
                None, None, f"account locked until {utc_iso(user.locked_until)} (too many failures)"
            )
        if not _verify(user.password_hash, password):
            user.failures += 1
            record_access(session, AccessKind.SIGN_IN_FAILED, user.name, failures=user.failures, **where)
            if user.failures >= rules.max_failures:
                user.failures, user.locked_until = 0, now + timedelta(minutes=rules.lockout_min)
                record_access(session, AccessKind.LOCKED, user.name, minutes=rules.lockout_min, **where)
            return SignIn(None, None, "wrong name or password")
        user.failures, user.locked_until = 0, None
        if HASHER.check_needs_rehash(user.password_hash):
            user.password_hash = HASHER.hash(password)
        record_access(session, AccessKind.SIGNED_IN, user.name, **where)
        return SignIn(user.name, user.role)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session_user(index: Index, name: str, signed_in_at: datetime) -> Role | None:
    """The role of a session's account now; None if it went, or its password changed since sign-in."""
    with index.session() as session:
        user = session.get(User, name)
        if user is None or (user.source == AccountSource.LOCAL and user.password_changed_at > signed_in_at):
            return None
        return user.role


def oidc_sign_in(index: Index, name: str, role: Role, **where: Any) -> None:
    """Record a single sign-on: the account follows the provider's groups at every sign-in."""
    with index.session() as session:
        user = session.get(User, name)
        if user is None:
            user = User(name=name, role=role, source=AccountSource.OIDC, password_hash=None)
            session.add(user)
        elif user.source != AccountSource.OIDC:
            raise AccountError(f"{name!r} is a local account; it signs in with its password")
        user.role = role
        session.flush()
        record_access(session, AccessKind.SIGNED_IN, name, via="oidc", **where)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(index: Index, name: str, role: Role) -> str:
    """A new service token; the secret is returned once and only its digest is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with index.session() as session:
        if session.scalars(select(ServiceToken).where(ServiceToken.name == name)).first() is not None:
            raise AccountError(f"token {name!r} exists already")
        session.add(ServiceToken(name=name, role=role, digest=_digest(token)))
    return token


def revoke_token(index: Index, name: str) -> None:
    with index.session() as session:
        row = session.scalars(select(ServiceToken).where(ServiceToken.name == name)).first()
        if row is None or row.revoked_at is not None:
            raise AccountError(f"no live token {name!r}")
        row.revoked_at = utcnow()


def tokens(index: Index) -> list[dict[str, Any]]:
    with index.session() as session:
        return [
            {
                "name": t.name,
                "role": t.role.value,
                "created_at": utc_iso(t.created_at),
                "revoked_at": utc_iso(t.revoked_at),
            }
            for t in session.scalars(select(ServiceToken).order_by(ServiceToken.name)).all()
        ]


def token_holder(index: Index, token: str) -> tuple[str, Role] | None:
    """The name and role of a live service token, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with index.session() as session:
        row = session.scalars(
            select(ServiceToken).where(
                ServiceToken.digest == _digest(token), ServiceToken.revoked_at.is_(None)
            )
        ).first()
        return (row.name, row.role) if row is not None else None


def access_events(index: Index, since: datetime | None = None) -> list[dict[str, Any]]:
    query = select(AccessEvent).order_by(AccessEvent.id)
    if since is not None:
        query = query.where(AccessEvent.at >= since)
    with index.session() as session:
        return [
            {"id": e.id, "kind": e.kind.value, "user": e.user, "at": utc_iso(e.at), "detail": e.detail}
            for e in session.scalars(query).all()
        ]
