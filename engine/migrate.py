"""Database migrations (Alembic, shipped inside the package).

Each capability adds its own revision branching from the foundation; ``upgrade()`` applies every head,
so independent capabilities never fight over one linear chain.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from engine.db import get_engine
from engine.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings | None = None, revision: str = "heads") -> None:
    """Bring the database to the newest schema."""
    settings = settings or get_settings()
    config = alembic_config(settings)
    with get_engine(settings).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def pending_heads(settings: Settings | None = None) -> set[str]:
    """Heads of the migration scripts not yet applied to the database (empty when up to date)."""
    from alembic.runtime.migration import MigrationContext

    settings = settings or get_settings()
    script = ScriptDirectory.from_config(alembic_config(settings))
    with get_engine(settings).connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return set(script.get_heads()) - current
