"""Users, roles, passwords and API tokens."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import AuthenticationFailed, Conflict, LimitExceeded, NotFound, ValidationFailed
from engine.models import ROLES, ApiToken, User, utcnow
from engine.security import (
    TOKEN_PREFIX,
    generate_password,
    generate_token,
    hash_password,
    hash_token,
    needs_rehash,
    require,
    verify_password,
)

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


def _user_snapshot(user: User) -> dict[str, Any]:
    return {"email": user.email, "name": user.name, "role": user.role, "is_active": user.is_active}


def _check_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise ValidationFailed(f"E-mail inválido: {email!r}.", errors=[{"field": "email",
                                                                        "message": "e-mail inválido"}])
    return email


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed(f"Perfil desconhecido {role!r}; use um de: {', '.join(ROLES)}.",
                               errors=[{"field": "role", "message": "perfil desconhecido"}])
    return role


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"A senha precisa de ao menos {MIN_PASSWORD_LENGTH} caracteres.",
                               errors=[{"field": "password", "message": "senha curta"}])
    return password


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_email(session: Session, *, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def list_users(session: Session, *, actor: Any, search: str = "") -> list[User]:
    require(actor, "users.manage")
    query = select(User).order_by(User.email)
    if search:
        query = query.where(User.email.ilike(f"%{search}%") | User.name.ilike(f"%{search}%"))
    return list(session.scalars(query))


def create_user(session: Session, *, actor: Any, email: str, role: str, password: str | None = None,
                name: str = "") -> tuple[User, str | None]:
    """Create a user. Returns the user and the generated password when none was given (shown once)."""
    require(actor, "users.manage")
    email = _check_email(email)
    _check_role(role)
    if get_user_by_email(session, email=email) is not None:
        raise Conflict(f"Já existe um usuário com o e-mail {email}.", entity="user", key=email)
    generated = None
    if password is None:
        password = generated = generate_password()
    user = User(email=email, name=name.strip(), role=role, password_hash=hash_password(_check_password(password)))
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="user.create", entity_type="user", entity_id=user.id,
                 after=_user_snapshot(user))
    return user, generated


def _require_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"Usuário {user_id} não encontrado.", entity="user", key=user_id)
    return user


def update_user(session: Session, *, actor: Any, user_id: int, role: str | None = None,
                name: str | None = None, is_active: bool | None = None) -> User:
    require(actor, "users.manage")
    user = _require_user(session, user_id)
    before = _user_snapshot(user)
    if role is not None:
        user.role = _check_role(role)
    if name is not None:
        user.name = name.strip()
    if is_active is not None:
        if not is_active and getattr(actor, "id", None) == user.id:
            raise ValidationFailed("Você não pode desativar a sua própria conta.")
        user.is_active = is_active
    _forget_tokens_on_commit(session, user.id)
    audit.record(session, actor=actor, action="user.update", entity_type="user", entity_id=user.id,
                 before=before, after=_user_snapshot(user))
    return user


def reset_password(session: Session, *, actor: Any, user_id: int, password: str | None = None) -> str | None:
    """Set a new password (generated and returned when not given). Existing API tokens stay valid."""
    if getattr(actor, "id", None) != user_id:
        require(actor, "users.manage")
    user = _require_user(session, user_id)
    generated = None
    if password is None:
        password = generated = generate_password()
    user.password_hash = hash_password(_check_password(password))
    audit.record(session, actor=actor, action="user.password_reset", entity_type="user", entity_id=user.id)
    return generated


class LoginLimiter:
    """Failed logins per key within a sliding minute (in-process; each web process limits its own)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            window = self._failures[key]
            while window and now - window[0] > 60:
                window.popleft()
            if len(window) >= self.per_minute:
                retry = int(60 - (now - window[0])) + 1
                raise LimitExceeded(f"Muitas tentativas. Tente de novo em {retry} s.", retry_after=retry)

    def failed(self, key: str) -> None:
        with self._lock:
            self._failures[key].append(time.monotonic())


def authenticate(session: Session, *, email: str, password: str, limiter: LoginLimiter | None = None,
                 client: str = "") -> User:
    """The active user with this e-mail and password, or ``AuthenticationFailed`` (same message either way)."""
    key = f"{email.strip().lower()}|{client}"
    if limiter is not None:
        limiter.check(key)
    user = get_user_by_email(session, email=email)
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        if limiter is not None:
            limiter.failed(key)
        audit.record(session, actor=None, action="login.failed", entity_type="user",
                     entity_id=email.strip().lower()[:200], source="web")
        raise AuthenticationFailed("E-mail ou senha incorretos.")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    audit.record(session, actor=user, action="login", entity_type="user", entity_id=user.id, source="web")
    return user


def create_token(session: Session, *, actor: Any, user_id: int, name: str = "") -> tuple[ApiToken, str]:
    """Create an API token for ``user_id``. The clear token is returned once and never stored."""
    if getattr(actor, "id", None) != user_id:
        require(actor, "users.manage")
    user = _require_user(session, user_id)
    clear = generate_token()
    token = ApiToken(user_id=user.id, name=name.strip(), prefix=clear[: len(TOKEN_PREFIX) + 6],
                     token_hash=hash_token(clear))
    session.add(token)
    session.flush()
    audit.record(session, actor=actor, action="token.create", entity_type="api_token", entity_id=token.id,
                 after={"user": user.email, "name": token.name, "prefix": token.prefix})
    return token, clear


def list_tokens(session: Session, *, actor: Any, user_id: int) -> list[ApiToken]:
    if getattr(actor, "id", None) != user_id:
        require(actor, "users.manage")
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def revoke_token(session: Session, *, actor: Any, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"Token {token_id} não encontrado.", entity="api_token", key=token_id)
    if getattr(actor, "id", None) != token.user_id:
        require(actor, "users.manage")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        _forget_tokens_on_commit(session, token.user_id)
        audit.record(session, actor=actor, action="token.revoke", entity_type="api_token", entity_id=token.id)
    return token


class TokenCache:
    """Recently checked tokens (by SHA-256) and a detached copy of their owner, so a busy API does not read
    the token and user rows on every call. An entry lives ``seconds``; revoking a token or changing a user
    (role, deactivation) in this process forgets that user's entries when the change commits, and a lookup
    that raced with such a change is not kept. Other processes see the change within ``seconds``."""

    def __init__(self, *, clock: Any = time.monotonic, size: int = 10_000) -> None:
        self.clock = clock
        self.size = size
        self._entries: dict[str, tuple[float, User]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, digest: str) -> User | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(digest, None)
            return None
        return entry[1]

    @property
    def generation(self) -> int:
        return self._generation

    def put(self, digest: str, user: User, *, seconds: float, generation: int) -> None:
        copy = User(id=user.id, email=user.email, name=user.name, role=user.role, is_active=user.is_active,
                    created_at=user.created_at, last_login_at=user.last_login_at)
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[digest] = (self.clock() + seconds, copy)

    def forget(self, user_id: int | None = None) -> None:
        """Drop ``user_id``'s entries (everyone's when None)."""
        with self._lock:
            self._generation += 1
            if user_id is None:
                self._entries.clear()
            else:
                for digest in [d for d, (_, u) in self._entries.items() if u.id == user_id]:
                    self._entries.pop(digest, None)


TOKENS = TokenCache()


def _forget_tokens_on_commit(session: Session, user_id: int) -> None:
    """Forget ``user_id``'s cached tokens now (lookups until the commit read the old rows and are not
    kept) and again once ``session`` commits."""
    TOKENS.forget(user_id)
    event.listen(session, "after_commit", lambda _s: TOKENS.forget(user_id), once=True)


def cached_user_for_token(token: str) -> User | None:
    """The owner of ``token`` when ``user_for_token`` checked it within its ``cache_seconds``, else None
    (no database needed)."""
    return TOKENS.get(hash_token(token.strip()))


def user_for_token(session: Session, *, token: str, cache_seconds: float = 0) -> User:
    """The active owner of a valid, unrevoked token, or ``AuthenticationFailed``.

    One round trip: the token is found by its SHA-256 (a unique index) together with its owner. With
    ``cache_seconds`` > 0 the answer is also kept in ``TOKENS`` for that long, for ``cached_user_for_token``
    (which callers ask first)."""
    digest = hash_token(token.strip())
    generation = TOKENS.generation
    found = session.execute(
        select(User, ApiToken.id, ApiToken.revoked_at, ApiToken.last_used_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest)
    ).first()
    if found is None:
        raise AuthenticationFailed("Token de API inválido ou revogado.")
    user, token_id, revoked_at, last_used_at = found
    if revoked_at is not None or not user.is_active:
        raise AuthenticationFailed("Token de API inválido ou revogado.")
    now = utcnow()
    if last_used_at is None or (now - last_used_at).total_seconds() > 60:
        session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
    if cache_seconds > 0:
        TOKENS.put(digest, user, seconds=cache_seconds, generation=generation)
    return user


def ensure_demo_admin(session: Session, *, email: str = "admin@oficina.local") -> tuple[User, str] | None:
    """Create an admin when there are no users at all; returns it with its password (printed once)."""
    from engine.security import SYSTEM

    if count_users(session) > 0:
        return None
    user, password = create_user(session, actor=SYSTEM, email=email, role="admin", name="Administrador")
    assert password is not None
    return user, password
