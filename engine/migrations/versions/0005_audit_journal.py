"""audit journal: audit rows of Redis-kept drafts reach the database from a journal, once each

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-04 19:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('journal_id', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_audit_events_journal_id'), ['journal_id'])


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_events_journal_id'), type_='unique')
        batch_op.drop_column('journal_id')
