from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.models.base import Base, utcnow

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
ITEM_STATUSES = ("pending", "processing", "done", "failed", "skipped")


class Job(Base):
    """One background job. The row is the truth; the queue only carries its id."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
        Index("ix_jobs_kind_created", "kind", "created_at"),
        # At most one active job per dedupe key, enforced by the database so concurrent requests cannot
        # both start one (create_job turns the violation into "return the active job").
        Index("uq_jobs_active_dedupe_key", "dedupe_key", unique=True,
              sqlite_where=text("status IN ('queued', 'running') AND dedupe_key IS NOT NULL"),
              postgresql_where=text("status IN ('queued', 'running') AND dedupe_key IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    counters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(String(500), default="")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    traceback: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    task_id: Mapped[str] = mapped_column(String(64), default="")
    worker: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)

    items: Mapped[list[JobItem]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                                order_by="JobItem.id")

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class JobItem(Base):
    """Per-item status inside a job (one document, one batch, one file...)."""

    __tablename__ = "job_items"
    __table_args__ = (Index("ix_job_items_job_key", "job_id", "key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    job: Mapped[Job] = relationship(back_populates="items")
