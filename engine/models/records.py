"""Core business records shared by several capabilities (forms, imports, court documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from engine.models.base import Base, utcnow


class Cliente(Base):
    """A client company, keyed by CNPJ (14 digits, check digits validated before it gets here)."""

    __tablename__ = "clientes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cnpj: Mapped[str] = mapped_column(String(14), unique=True, index=True)
    razao_social: Mapped[str] = mapped_column(String(300))
    nome_fantasia: Mapped[str] = mapped_column(String(300), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    telefone: Mapped[str] = mapped_column(String(30), default="")
    endereco: Mapped[dict[str, Any]] = mapped_column(default=dict)
    contatos: Mapped[list[Any]] = mapped_column(default=list)
    guest_code: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Processo(Base):
    """A legal process, numbered in the CNJ format (stored as its 20 digits)."""

    __tablename__ = "processos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    numero: Mapped[str] = mapped_column(String(20), unique=True, index=True)
    tribunal: Mapped[str] = mapped_column(String(20), default="")
    classe: Mapped[str] = mapped_column(String(200), default="")
    assunto: Mapped[str] = mapped_column(String(300), default="")
    partes: Mapped[list[Any]] = mapped_column(default=list)
    metadados: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cliente_id: Mapped[int | None] = mapped_column(ForeignKey("clientes.id", ondelete="SET NULL"), index=True)
    last_fetched_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
