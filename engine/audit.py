"""The audit trail: who did what, when, to which entity, with the state before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from engine.context import current_request_id
from engine.models import AuditEvent
from engine.security import require


def _row(*, actor: Any, action: str, entity_type: str, entity_id: str | int, before: dict[str, Any] | None,
         after: dict[str, Any] | None, source: str) -> dict[str, Any]:
    return {
        "actor_id": getattr(actor, "id", None),
        "actor_label": getattr(actor, "email", str(actor)) if actor is not None else "anônimo",
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "before": before,
        "after": after,
        "request_id": current_request_id(),
        "source": source,
    }


def record(
    session: Session,
    *,
    actor: Any,
    action: str,
    entity_type: str = "",
    entity_id: str | int = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    source: str = "",
) -> AuditEvent:
    """Add an audit row to ``session`` (committed with the change it describes)."""
    event = AuditEvent(**_row(actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
                              before=before, after=after, source=source))
    session.add(event)
    return event


def insert_event(
    session: Session,
    *,
    actor: Any,
    action: str,
    entity_type: str = "",
    entity_id: str | int = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    source: str = "",
) -> None:
    """The row ``record`` adds, written at once with a Core INSERT in the caller's transaction: for hot paths
    where the unit-of-work flush costs more than the work it audits (draft saves)."""
    session.execute(insert(AuditEvent), [_row(actor=actor, action=action, entity_type=entity_type,
                                              entity_id=entity_id, before=before, after=after, source=source)])


def _filtered(query: Select, *, action: str | None, entity_type: str | None, actor_id: int | None,
              since: datetime | None, until: datetime | None, search: str | None) -> Select:
    if action:
        query = query.where(AuditEvent.action == action)
    if entity_type:
        query = query.where(AuditEvent.entity_type == entity_type)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    if search:
        like = f"%{search}%"
        query = query.where(AuditEvent.entity_id.ilike(like) | AuditEvent.actor_label.ilike(like))
    return query


def list_events(
    session: Session,
    *,
    actor: Any,
    action: str | None = None,
    entity_type: str | None = None,
    actor_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[AuditEvent], int]:
    """A page of audit events, newest first, and the total that match."""
    require(actor, "audit.view")
    filters = dict(action=action, entity_type=entity_type, actor_id=actor_id, since=since, until=until,
                   search=search)
    total = session.scalar(_filtered(select(func.count(AuditEvent.id)), **filters)) or 0
    rows = session.scalars(
        _filtered(select(AuditEvent), **filters).order_by(AuditEvent.id.desc()).offset(offset).limit(limit)
    ).all()
    return list(rows), total


def distinct_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
