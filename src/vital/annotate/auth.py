"""Annotators, one-time login links and sessions.

A login link carries 256 random bits; the database keeps only their SHA-256,
so a copy of the database cannot be turned into a login.  Spending a token is
one conditional ``UPDATE ... WHERE used_at IS NULL``: two simultaneous clicks
cannot both succeed.  Sessions work the same way (hashed cookie value) and
carry the CSRF token the pages send back in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from vital.annotate.config import LOGIN_TTL_HOURS
from vital.annotate.db import AnnotationDB, LoginToken, SessionRow, User
from vital.errors import InputError

SESSION_TTL_HOURS = 12.0


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    is_admin: bool


@dataclass(frozen=True)
class LoginSession:
    token: str
    csrf_token: str
    annotator: Annotator
    max_age: int


def _annotator(user: User) -> Annotator:
    return Annotator(user.id, user.name, user.is_admin)


def add_user(db: AnnotationDB, name: str, *, admin: bool = False) -> tuple[Annotator, bool]:
    """Create an annotator, or find the existing one (promoted to admin if asked); returns (user, created)."""
    name = name.strip()
    if not name or len(name) > 200 or any(ch.isspace() and ch != " " for ch in name):
        raise InputError("a user name must be 1-200 characters on one line", field="NAME")
    with db.write() as session:
        user = session.scalar(select(User).where(User.name == name))
        created = user is None
        if user is None:
            user = User(name=name, is_admin=admin, created_at=time.time())
            session.add(user)
            session.flush()
        elif admin and not user.is_admin:
            user.is_admin = True
        return _annotator(user), created


def list_users(db: AnnotationDB) -> list[Annotator]:
    with db.read() as session:
        return [_annotator(user) for user in session.scalars(select(User).order_by(User.id))]


def issue_login_token(db: AnnotationDB, user: Annotator, *, ttl_hours: float = LOGIN_TTL_HOURS) -> str:
    """A fresh single-use login token for ``user`` (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    with db.write() as session:
        session.add(
            LoginToken(token_hash=_hash(token), user_id=user.id, created_at=now, expires_at=now + ttl_hours * 3600.0)
        )
    return token


def login_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/login?token={token}"


def _usable(token: str) -> bool:
    return bool(token) and len(token) <= 200


def login_token_owner(db: AnnotationDB, token: str) -> Annotator | None:
    """Whom a login token signs in, without spending it; ``None`` if it is unknown, used or expired."""
    if not _usable(token):
        return None
    with db.read() as session:
        user = session.scalar(
            select(User)
            .join(LoginToken, LoginToken.user_id == User.id)
            .where(
                LoginToken.token_hash == _hash(token),
                LoginToken.used_at.is_(None),
                LoginToken.expires_at > time.time(),
            )
        )
    return _annotator(user) if user else None


def redeem_login_token(db: AnnotationDB, token: str, *, ttl_hours: float = SESSION_TTL_HOURS) -> LoginSession | None:
    """Spend a login token and open a session; ``None`` if the token is unknown, used or expired."""
    if not _usable(token):
        return None
    now = time.time()
    with db.write() as session:
        spent = session.execute(
            update(LoginToken)
            .where(
                LoginToken.token_hash == _hash(token),
                LoginToken.used_at.is_(None),
                LoginToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(LoginToken.user_id)
        ).first()
        if spent is None:
            return None
        user = session.get_one(User, spent.user_id)
        session_token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        max_age = int(ttl_hours * 3600)
        session.add(
            SessionRow(
                token_hash=_hash(session_token),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + max_age,
            )
        )
        session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
        return LoginSession(session_token, csrf, _annotator(user), max_age)


def session_annotator(db: AnnotationDB, session_token: str | None) -> tuple[Annotator, str] | None:
    """The annotator and CSRF token of a live session cookie, or ``None``."""
    if session_token is None or not _usable(session_token):
        return None
    with db.read() as session:
        row = session.execute(
            select(User, SessionRow.csrf_token)
            .join(SessionRow, SessionRow.user_id == User.id)
            .where(SessionRow.token_hash == _hash(session_token), SessionRow.expires_at > time.time())
        ).first()
    return (_annotator(row[0]), row[1]) if row else None


def end_session(db: AnnotationDB, session_token: str) -> None:
    with db.write() as session:
        session.execute(delete(SessionRow).where(SessionRow.token_hash == _hash(session_token)))
