"""Roles, permissions, password hashing and API-token hashing.

Every service that changes or reveals data calls ``require(actor, permission)`` first. ``actor`` is a
``User`` or ``SYSTEM`` (the worker, the CLI run by an operator on the server, migrations).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from engine.errors import PermissionDenied


class _System:
    """The trusted actor for the worker and the operator's CLI."""

    id = None
    email = "sistema"
    role = "system"
    is_active = True

    def __repr__(self) -> str:
        return "<SYSTEM>"


SYSTEM: Any = _System()

# What each role may do. Permissions are "area.action"; "area.*" grants every action of an area.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "staff": frozenset({
        "jobs.view", "jobs.cancel", "jobs.retry", "drafts.*", "clientes.*", "processos.*",
        "financeiro.*", "documentos.*", "webhooks.use", "records.read",
    }),
    "analyst": frozenset({
        "jobs.view", "jobs.cancel", "jobs.retry", "drafts.*", "imports.*", "charts.*", "reports.*",
        "records.read", "documentos.read",
    }),
    "viewer": frozenset({"jobs.view", "records.read", "documentos.read"}),
}

# Pages of the dashboard and the permission each needs (the navigation shows only what the role may use).
PAGE_PERMISSIONS: dict[str, str] = {
    "jobs": "jobs.view",
    "users": "users.manage",
    "audit": "audit.view",
    "backups": "backups.create",
}


def can(actor: Any, permission: str) -> bool:
    if actor is SYSTEM:
        return True
    if actor is None or not getattr(actor, "is_active", False):
        return False
    granted = ROLE_PERMISSIONS.get(actor.role, frozenset())
    area = permission.split(".", 1)[0]
    return "*" in granted or permission in granted or f"{area}.*" in granted


def require(actor: Any, permission: str) -> None:
    if not can(actor, permission):
        role = getattr(actor, "role", "anônimo")
        raise PermissionDenied(
            f"Seu perfil ({role}) não permite esta ação ({permission}).", action=permission, role=role
        )


def is_admin(actor: Any) -> bool:
    return actor is SYSTEM or getattr(actor, "role", None) == "admin"


_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


TOKEN_PREFIX = "ofc_"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(12)


@functools.lru_cache(maxsize=64)  # few (secret, purpose) pairs, asked on every draft save and load
def _purpose_key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()


def sign(secret_key: str, message: bytes, *, purpose: str) -> str:
    """HMAC-SHA256 hex of ``message`` with a key derived per purpose (drafts, blobs, cookies...)."""
    return hmac.digest(_purpose_key(secret_key, purpose), message, "sha256").hex()


def verify_signature(secret_key: str, message: bytes, signature: str, *, purpose: str) -> bool:
    return hmac.compare_digest(sign(secret_key, message, purpose=purpose), signature or "")
