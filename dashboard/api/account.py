"""The authenticated user: ``GET /api/v1/me``."""

from __future__ import annotations

from typing import Any

from dashboard.api.base import API_PREFIX, Call, Returns, endpoint, schema
from engine.models import ROLES
from engine.security import ROLE_PERMISSIONS

ME = schema("Me", {
    "type": "object",
    "required": ["id", "email", "name", "role", "is_active", "permissions", "created_at", "last_login_at"],
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "name": {"type": "string"},
        "role": {"type": "string", "enum": list(ROLES)},
        "is_active": {"type": "boolean"},
        "permissions": {"type": "array", "items": {"type": "string"},
                        "description": "permissões do perfil (`area.acao`, `area.*`, ou `*` para todas)"},
        "created_at": {"type": "string", "format": "date-time"},
        "last_login_at": {"type": ["string", "null"], "format": "date-time"},
    },
    "additionalProperties": False,
})


@endpoint("GET", f"{API_PREFIX}/me", summary="O usuário dono do token", tags=["conta"],
          description="Útil para conferir um token e o que o perfil permite.", returns=Returns(200, ME))
def me(call: Call) -> dict[str, Any]:
    user = call.actor
    return {
        "id": user.id, "email": user.email, "name": user.name, "role": user.role, "is_active": user.is_active,
        "permissions": sorted(ROLE_PERMISSIONS.get(user.role, frozenset())),
        "created_at": user.created_at, "last_login_at": user.last_login_at,
    }
