"""Tables of the imports capability: sensors and their readings (the bulk-imported data), uploaded files
waiting to be imported, and the column mapping each user last used per kind of import.

``Leitura`` is keyed by (sensor_id, ts): the primary key is the (sensor_id, ts) index the readings are
looked up by, and the key imports deduplicate on. There is deliberately no foreign-key constraint from
``leituras.sensor_id`` to ``sensores``: PostgreSQL checks a foreign key with one trigger call per inserted
row, which more than doubles the time of a bulk load. The import creates unknown sensors in the same
transaction that writes the readings, and ``engine.imports`` is the only writer, so the reference holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Double, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from engine.models.base import Base, utcnow

UPLOAD_STATUSES = ("received", "importing", "imported", "failed", "removed")


class Sensor(Base):
    """A sensor, known by the code printed on it (the ``Sensor`` column of reading files)."""

    __tablename__ = "sensores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    codigo: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    nome: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Leitura(Base):
    """One reading of one sensor at one instant (UTC)."""

    __tablename__ = "leituras"

    sensor_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    valor: Mapped[float] = mapped_column(Double)
    unidade: Mapped[str] = mapped_column(String(16), default="")


class ImportMapping(Base):
    """The column mapping (field -> column header) a user last used for a kind of import."""

    __tablename__ = "import_mappings"
    __table_args__ = (Index("ix_import_mappings_user_kind", "user_id", "kind", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Upload(Base):
    """A file received for import. ``path`` is where its bytes are on the shared data disk; files the
    application received (``external`` false) are removed when their import ends or is abandoned."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1000))
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    file_type: Mapped[str] = mapped_column(String(10))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(20), default="received")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    removed_at: Mapped[datetime | None] = mapped_column(default=None)
