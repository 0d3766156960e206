"""All database models. Each capability keeps its models in its own module, imported here so that
``Base.metadata`` (and Alembic) sees every table."""

from engine.models.accounts import ROLES, ApiToken, User
from engine.models.audit import AuditEvent
from engine.models.backups import Backup
from engine.models.base import Base, utcnow
from engine.models.jobs import ACTIVE_STATUSES, ITEM_STATUSES, JOB_STATUSES, Job, JobItem
from engine.models.records import Cliente, Processo

__all__ = [
    "ACTIVE_STATUSES", "ITEM_STATUSES", "JOB_STATUSES", "ROLES",
    "ApiToken", "AuditEvent", "Backup", "Base", "Cliente", "Job", "JobItem", "Processo", "User", "utcnow",
]
