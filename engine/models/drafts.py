"""Models of the forms capability: drafts (database store), durable draft versions, quarantined copies,
the records created by the ``financeiro`` form, and the public survey's progress and responses."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.models.base import Base, utcnow


class Draft(Base):
    """A draft in the database store. ``body`` is the canonical JSON payload exactly as signed, so that any
    change to the stored bytes is caught by the HMAC in ``signature``."""

    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    form_slug: Mapped[str] = mapped_column(String(60))
    object_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    size: Mapped[int] = mapped_column(Integer, default=0)
    versioned_at: Mapped[float] = mapped_column(default=0.0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class DraftVersion(Base):
    """A durable copy of a draft payload, written on step changes and at most every few minutes, so that a
    lost Redis or a wrong click can be undone. ``hash`` is the HMAC of the payload (checked on restore)."""

    __tablename__ = "draft_versions"
    __table_args__ = (Index("ix_draft_versions_key", "user_id", "form_slug", "object_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    form_slug: Mapped[str] = mapped_column(String(60))
    object_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(20), default="step")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class QuarantinedDraft(Base):
    """A stored draft that failed its integrity check: never applied, kept aside for an admin."""

    __tablename__ = "quarantined_drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    form_slug: Mapped[str] = mapped_column(String(60))
    object_id: Mapped[str] = mapped_column(String(64))
    store: Mapped[str] = mapped_column(String(20))
    raw: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lancamento(Base):
    """A billing entry (one per installment; the installments of one entry share ``grupo``)."""

    __tablename__ = "lancamentos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grupo: Mapped[str] = mapped_column(String(32), index=True)
    tipo: Mapped[str] = mapped_column(String(10))
    descricao: Mapped[str] = mapped_column(String(300))
    categoria: Mapped[str] = mapped_column(String(60), default="")
    valor: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    vencimento: Mapped[date] = mapped_column()
    parcela: Mapped[int] = mapped_column(Integer, default=1)
    parcelas: Mapped[int] = mapped_column(Integer, default=1)
    observacoes: Mapped[str] = mapped_column(Text, default="")
    cliente_id: Mapped[int | None] = mapped_column(ForeignKey("clientes.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class SurveyProgress(Base):
    """A respondent's unfinished public survey, identified by e-mail + survey, kept 30 days."""

    __tablename__ = "survey_progress"
    __table_args__ = (UniqueConstraint("survey_id", "email", name="uq_survey_progress_survey_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(60))
    email: Mapped[str] = mapped_column(String(254))
    step: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SurveyResponse(Base):
    """A submitted survey. Its existence is what makes later saves answer ``ALREADY_SUBMITTED``."""

    __tablename__ = "survey_responses"
    __table_args__ = (UniqueConstraint("survey_id", "email", name="uq_survey_responses_survey_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(60))
    email: Mapped[str] = mapped_column(String(254))
    data: Mapped[dict[str, Any]] = mapped_column()
    cliente_id: Mapped[int | None] = mapped_column(ForeignKey("clientes.id", ondelete="SET NULL"), index=True)
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
