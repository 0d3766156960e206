from __future__ import annotations

import pytest
from sqlalchemy import event, inspect, select, update

from engine import accounts, audit
from engine.db import get_engine, session_scope
from engine.errors import AuthenticationFailed, Conflict, LimitExceeded, PermissionDenied, ValidationFailed
from engine.models import ApiToken, AuditEvent, User, utcnow
from engine.security import SYSTEM, can, require
from engine.settings import Settings


def _make(settings: Settings, email: str, role: str, password: str = "senha-forte-1") -> int:
    with session_scope(settings) as s:
        user, _ = accounts.create_user(s, actor=SYSTEM, email=email, role=role, password=password)
        return user.id


def test_passwords_are_argon2_hashed_and_verified(settings: Settings) -> None:
    _make(settings, "Ana@Example.com", "staff")
    with session_scope(settings) as s:
        user = accounts.get_user_by_email(s, email="ana@example.com")
        assert user is not None and user.password_hash.startswith("$argon2")
        assert "senha-forte-1" not in user.password_hash
        assert accounts.authenticate(s, email="ANA@example.com", password="senha-forte-1").id == user.id
        with pytest.raises(AuthenticationFailed):
            accounts.authenticate(s, email="ana@example.com", password="errada-123")


def test_deactivated_user_cannot_log_in(settings: Settings) -> None:
    uid = _make(settings, "bia@example.com", "viewer")
    with session_scope(settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=uid, is_active=False)
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.authenticate(s, email="bia@example.com", password="senha-forte-1")


def test_login_rate_limit() -> None:
    limiter = accounts.LoginLimiter(per_minute=3)
    for _ in range(3):
        limiter.check("x")
        limiter.failed("x")
    with pytest.raises(LimitExceeded) as exc:
        limiter.check("x")
    assert exc.value.retry_after > 0


def test_duplicate_email_and_bad_input(settings: Settings) -> None:
    _make(settings, "c@example.com", "viewer")
    with session_scope(settings) as s:
        with pytest.raises(Conflict):
            accounts.create_user(s, actor=SYSTEM, email="C@example.com", role="viewer", password="12345678")
        with pytest.raises(ValidationFailed):
            accounts.create_user(s, actor=SYSTEM, email="sem-arroba", role="viewer", password="12345678")
        with pytest.raises(ValidationFailed):
            accounts.create_user(s, actor=SYSTEM, email="d@example.com", role="chefe", password="12345678")
        with pytest.raises(ValidationFailed):
            accounts.create_user(s, actor=SYSTEM, email="d@example.com", role="viewer", password="curta")


def test_only_admins_manage_users(settings: Settings) -> None:
    staff_id = _make(settings, "staff@example.com", "staff")
    with session_scope(settings) as s:
        staff = s.get(User, staff_id)
        with pytest.raises(PermissionDenied):
            accounts.create_user(s, actor=staff, email="x@example.com", role="admin", password="12345678")
        with pytest.raises(PermissionDenied):
            accounts.list_users(s, actor=staff)


def test_tokens_are_hashed_shown_once_and_revocable(settings: Settings) -> None:
    uid = _make(settings, "api@example.com", "analyst")
    with session_scope(settings) as s:
        token, clear = accounts.create_token(s, actor=SYSTEM, user_id=uid, name="script")
        token_id = token.id
        assert clear.startswith("ofc_") and clear not in token.token_hash
    with session_scope(settings) as s:
        assert accounts.user_for_token(s, token=clear).id == uid
        accounts.revoke_token(s, actor=SYSTEM, token_id=token_id)
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.user_for_token(s, token=clear)
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.user_for_token(s, token="ofc_forged")


def test_token_of_deactivated_user_stops_working(settings: Settings) -> None:
    uid = _make(settings, "gone@example.com", "viewer")
    with session_scope(settings) as s:
        _, clear = accounts.create_token(s, actor=SYSTEM, user_id=uid)
        accounts.update_user(s, actor=SYSTEM, user_id=uid, is_active=False)
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.user_for_token(s, token=clear)


def test_audit_rows_record_who_what_before_after(settings: Settings) -> None:
    admin_id = _make(settings, "root@example.com", "admin")
    uid = _make(settings, "e@example.com", "viewer")
    with session_scope(settings) as s:
        admin = s.get(User, admin_id)
        accounts.update_user(s, actor=admin, user_id=uid, role="analyst")
    with session_scope(settings) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "user.update")).one()
        assert event.actor_id == admin_id and event.entity_id == str(uid)
        assert event.before["role"] == "viewer" and event.after["role"] == "analyst"
        events, total = audit.list_events(s, actor=s.get(User, admin_id), action="user.update")
        assert total == 1 and events[0].id == event.id
        with pytest.raises(PermissionDenied):
            audit.list_events(s, actor=s.get(User, uid))


def test_role_permissions() -> None:
    class U:
        is_active = True

        def __init__(self, role: str) -> None:
            self.role = role

    assert can(U("admin"), "backups.create")
    assert not can(U("viewer"), "backups.create")
    assert not can(U("staff"), "users.manage")
    assert can(U("analyst"), "imports.run")
    assert not can(U("viewer"), "imports.run")
    inactive = U("admin")
    inactive.is_active = False
    assert not can(inactive, "jobs.view")
    with pytest.raises(PermissionDenied, match="viewer"):
        require(U("viewer"), "backups.create")


def test_demo_admin_only_when_no_users(settings: Settings) -> None:
    with session_scope(settings) as s:
        created = accounts.ensure_demo_admin(s)
        assert created is not None and created[0].role == "admin" and len(created[1]) >= 12
    with session_scope(settings) as s:
        assert accounts.ensure_demo_admin(s) is None


# The API's token cache --------------------------------------------------------------------------------

def _count_queries(settings: Settings) -> list[str]:
    statements: list[str] = []
    event.listen(get_engine(settings), "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: statements.append(statement))
    return statements


def test_a_cached_token_answers_without_the_database_and_expires(settings: Settings) -> None:
    uid = _make(settings, "cache@example.com", "staff")
    with session_scope(settings) as s:
        _, clear = accounts.create_token(s, actor=SYSTEM, user_id=uid)
    now = [1000.0]
    cache = accounts.TokenCache(clock=lambda: now[0])
    original, accounts.TOKENS = accounts.TOKENS, cache
    try:
        statements = _count_queries(settings)
        with session_scope(settings) as s:
            assert accounts.user_for_token(s, token=clear, cache_seconds=5).id == uid
        read = len(statements)
        assert read >= 1
        cached = accounts.cached_user_for_token(clear)
        assert cached is not None and cached.id == uid and cached.role == "staff"
        assert len(statements) == read  # no query
        # A change made behind the engine's back (another process) is seen once the entry expires.
        with get_engine(settings).begin() as conn:
            conn.execute(update(ApiToken).where(ApiToken.user_id == uid).values(revoked_at=utcnow()))
        now[0] += 4.9
        assert accounts.cached_user_for_token(clear) is not None
        now[0] += 0.2
        assert accounts.cached_user_for_token(clear) is None
        with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
            accounts.user_for_token(s, token=clear, cache_seconds=5)
        # Without cache_seconds nothing is kept.
        assert accounts.cached_user_for_token("ofc_outro") is None
    finally:
        accounts.TOKENS = original


def test_revoking_or_changing_a_user_forgets_its_cached_tokens_at_commit(settings: Settings) -> None:
    uid = _make(settings, "forget@example.com", "staff")
    with session_scope(settings) as s:
        token, clear = accounts.create_token(s, actor=SYSTEM, user_id=uid)
        _, other = accounts.create_token(s, actor=SYSTEM, user_id=uid)
        token_id = token.id
    for secret in (clear, other):
        with session_scope(settings) as s:
            accounts.user_for_token(s, token=secret, cache_seconds=60)
    assert accounts.cached_user_for_token(clear) is not None
    with session_scope(settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=uid, role="viewer")
        # A lookup racing with the uncommitted change reads the old row and must not be kept.
        with session_scope(settings) as racing:
            assert accounts.user_for_token(racing, token=clear, cache_seconds=60).role == "staff"
    assert accounts.cached_user_for_token(clear) is None
    with session_scope(settings) as s:
        assert accounts.user_for_token(s, token=clear, cache_seconds=60).role == "viewer"
    assert accounts.cached_user_for_token(clear).role == "viewer"
    with session_scope(settings) as s:
        accounts.revoke_token(s, actor=SYSTEM, token_id=token_id)
    assert accounts.cached_user_for_token(clear) is None and accounts.cached_user_for_token(other) is None
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.user_for_token(s, token=clear, cache_seconds=60)
    with session_scope(settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=uid, is_active=False)
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.user_for_token(s, token=other, cache_seconds=60)


def test_a_cached_user_is_a_detached_copy(settings: Settings) -> None:
    uid = _make(settings, "copy@example.com", "analyst")
    with session_scope(settings) as s:
        _, clear = accounts.create_token(s, actor=SYSTEM, user_id=uid)
    with session_scope(settings) as s:
        live = accounts.user_for_token(s, token=clear, cache_seconds=60)
        cached = accounts.cached_user_for_token(clear)
        assert cached is not live and cached.email == live.email
        assert inspect(cached).transient  # never flushed or lazy-loaded by anyone's session
