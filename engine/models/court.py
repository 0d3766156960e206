"""Court documents and webhooks: Documento (one file of a processo), webhook endpoints, deliveries and
their attempt log. The Processo itself lives in ``engine.models.records``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.models.base import Base, utcnow

DOCUMENT_STATUSES = ("pending", "processing", "available", "failed")
# The only moves a Documento may make; anything else is refused and logged.
DOCUMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"processing"}),
    "processing": frozenset({"available", "failed"}),
    "failed": frozenset({"pending"}),
    "available": frozenset(),
}

DELIVERY_STATUSES = ("pending", "retrying", "succeeded", "failed", "stopped")


class Documento(Base):
    """A file attached to a processo, fetched from the court and streamed to storage."""

    __tablename__ = "documentos"
    __table_args__ = (
        UniqueConstraint("processo_id", "external_id", name="uq_documentos_processo_external"),
        Index("ix_documentos_processo_status", "processo_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    processo_id: Mapped[int] = mapped_column(ForeignKey("processos.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(100))
    nome: Mapped[str] = mapped_column(String(300), default="")
    tipo: Mapped[str] = mapped_column(String(80), default="")
    data_documento: Mapped[datetime | None] = mapped_column(default=None)
    tamanho: Mapped[int | None] = mapped_column(BigInteger, default=None)
    hash_declarado: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    storage_key: Mapped[str] = mapped_column(String(600), default="")
    content_type: Mapped[str] = mapped_column(String(120), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)
    link_url: Mapped[str] = mapped_column(Text, default="")
    link_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    available_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookEndpoint(Base):
    """A registered webhook target with its own ``whsec_`` secret (shown once, at creation)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(300), default="")
    secret: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One message to one URL. Its ``message_id`` (``webhook-id``) stays the same across retries."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(80))
    url: Mapped[str] = mapped_column(String(2000))
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="SET NULL"), default=None, index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    processo_id: Mapped[int | None] = mapped_column(
        ForeignKey("processos.id", ondelete="SET NULL"), default=None, index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    schedule: Mapped[list[Any]] = mapped_column(default=list)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)

    attempt_log: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", order_by="WebhookAttempt.id"
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: when, how long, what came back."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(20), default="auto")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempt_log")
