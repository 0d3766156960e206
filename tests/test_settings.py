from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigurationError
from engine.settings import DEVELOPMENT_SECRET, Settings, describe

GOOD_SECRET = "x" * 48


def test_development_defaults_need_no_configuration() -> None:
    s = Settings.from_environ({})
    assert s.env == "development"
    assert s.resolved_database_url.startswith("sqlite:///")
    assert s.redis_url == ""
    assert s.checkpoint_ttl_seconds == 1200 and s.autosave_debounce_ms == 1500
    assert s.checkpoint_max_payload_kb == 128 and s.checkpoint_rate_limit_per_minute == 10


@pytest.mark.parametrize("secret", ["", DEVELOPMENT_SECRET, "changeme", "secret", "  changethis  "])
@pytest.mark.parametrize("env", ["production", "test"])
def test_known_or_missing_secret_refused_outside_development(env: str, secret: str) -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        Settings.from_environ({"OFICINA_ENV": env, "SECRET_KEY": secret})


def test_missing_secret_refused_in_production() -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        Settings.from_environ({"OFICINA_ENV": "production"})


def test_short_secret_refused_in_production() -> None:
    with pytest.raises(ConfigurationError, match="32"):
        Settings.from_environ({"OFICINA_ENV": "production", "SECRET_KEY": "a-unique-but-short-key"})


def test_production_with_strong_secret_and_services() -> None:
    s = Settings.from_environ({
        "OFICINA_ENV": "production", "SECRET_KEY": GOOD_SECRET,
        "DATABASE_URL": "postgresql+psycopg://u@db/oficina", "REDIS_URL": "redis://r:6379/0",
        "S3_BUCKET": "b", "WORKER_COUNT": "8", "LOG_JSON": "false", "ALLOWED_ORIGINS": "a.example, b.example",
    })
    assert s.is_postgres and s.worker_count == 8 and s.log_json is False
    assert s.allowed_origins == ("a.example", "b.example")


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="WORKER_COUNT"):
        Settings.from_environ({"WORKER_COUNT": "muitos"})
    with pytest.raises(ConfigurationError, match="OFICINA_ENV"):
        Settings.from_environ({"OFICINA_ENV": "staging"})
    with pytest.raises(ConfigurationError, match="JOB_STALE_SECONDS"):
        Settings.from_environ({"JOB_HEARTBEAT_SECONDS": "10", "JOB_STALE_SECONDS": "15"})
    with pytest.raises(ConfigurationError, match="BACKUP_KEEP"):
        Settings.from_environ({"BACKUP_KEEP": "0"})
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        Settings.from_environ({"CHECKPOINT_STORAGE": "redis"})


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("WORKER_COUNT=3\nBACKUP_KEEP=9\n")
    s = Settings.from_environ({"BACKUP_KEEP": "2"}, env_file=env_file)
    assert s.worker_count == 3 and s.backup_keep == 2


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [var for var, _default, _help in describe() if f"`{var}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"
