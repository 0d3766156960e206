"""One settings object for the whole application, built from an environment mapping.

``Settings.from_environ(environ)`` reads a plain mapping (tests pass a dict; the CLI, the server and the
worker pass ``os.environ`` merged over an optional ``.env`` file). Every variable, its default and its
meaning is listed in ``FIELDS`` below and in the README's configuration table.

Outside development a missing or well-known ``SECRET_KEY`` is refused loudly, so a production deployment
can never sign drafts, cookies or download links with a key that is printed in our own docs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from engine.errors import ConfigurationError

ENVIRONMENTS = ("development", "test", "production")
DEVELOPMENT_SECRET = "dev-secret-change-me"
# Keys that appear in docs, tutorials and our own examples are never acceptable outside development.
KNOWN_DEFAULT_SECRETS = frozenset(
    {"", DEVELOPMENT_SECRET, "changeme", "change-me", "secret", "changethis", "dev", "development", "test"}
)
MIN_SECRET_LENGTH = 32


def _as_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on", "sim"}:
        return True
    if value in {"0", "false", "no", "off", "nao", "não", ""}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _as_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Typed view of the configuration. Field metadata carries the environment variable and its help."""

    env: str = field(default="development", metadata={"var": "OFICINA_ENV",
                     "help": "development, test or production"})
    secret_key: str = field(default=DEVELOPMENT_SECRET, metadata={"var": "SECRET_KEY",
                            "help": "signs cookies, drafts, download links; required outside development"})
    data_dir: Path = field(default=Path("var"), metadata={"var": "OFICINA_DATA_DIR",
                           "help": "embedded SQLite database, SqliteHuey file and blob directory live here"})
    database_url: str = field(default="", metadata={"var": "DATABASE_URL",
                              "help": "postgresql+psycopg://user@host/db; empty = SQLite under the data dir"})
    redis_url: str = field(default="", metadata={"var": "REDIS_URL",
                           "help": "redis://host:6379/0; empty = SqliteHuey under the data dir"})
    queue_name: str = field(default="oficina", metadata={"var": "QUEUE_NAME",
                            "help": "Huey queue name (separates deployments sharing one Redis)"})
    worker_count: int = field(default=4, metadata={"var": "WORKER_COUNT",
                              "help": "workers per `oficina worker` consumer"})
    worker_type: str = field(default="thread", metadata={"var": "WORKER_TYPE",
                             "help": "thread, process or greenlet"})
    s3_bucket: str = field(default="", metadata={"var": "S3_BUCKET",
                           "help": "bucket for files; empty = local blob directory"})
    s3_endpoint_url: str = field(default="", metadata={"var": "S3_ENDPOINT_URL",
                                 "help": "S3-compatible endpoint (MinIO, moto); empty = AWS"})
    s3_region: str = field(default="us-east-1", metadata={"var": "S3_REGION", "help": "S3 region"})
    public_url: str = field(default="http://localhost:5006", metadata={"var": "PUBLIC_URL",
                            "help": "external base URL of the web app, used in signed links"})
    signed_url_ttl_seconds: int = field(default=3600, metadata={"var": "SIGNED_URL_TTL_SECONDS",
                                        "help": "lifetime of download links"})
    web_port: int = field(default=5006, metadata={"var": "PORT", "help": "Panel server port"})
    web_address: str = field(default="127.0.0.1", metadata={"var": "ADDRESS",
                             "help": "Panel server bind address"})
    web_threads: int = field(default=4, metadata={"var": "WEB_THREADS",
                             "help": "Panel --num-threads (blocking callbacks run there)"})
    allowed_origins: tuple[str, ...] = field(default=("localhost:5006", "127.0.0.1:5006"),
                                             metadata={"var": "ALLOWED_ORIGINS",
                                                       "help": "websocket origins, comma separated"})
    log_level: str = field(default="INFO", metadata={"var": "LOG_LEVEL", "help": "logging level"})
    log_json: bool = field(default=True, metadata={"var": "LOG_JSON",
                           "help": "structured JSON logs (false = human-readable)"})
    job_heartbeat_seconds: int = field(default=5, metadata={"var": "JOB_HEARTBEAT_SECONDS",
                                       "help": "how often a running job beats"})
    job_stale_seconds: int = field(default=60, metadata={"var": "JOB_STALE_SECONDS",
                                   "help": "a running job silent this long is re-enqueued by the sweep"})
    job_max_attempts: int = field(default=5, metadata={"var": "JOB_MAX_ATTEMPTS",
                                  "help": "re-enqueues before a stale job is failed"})
    backup_keep: int = field(default=7, metadata={"var": "BACKUP_KEEP", "help": "backups kept"})
    backup_hour: int = field(default=3, metadata={"var": "BACKUP_HOUR",
                             "help": "hour (server time) of the daily backup"})
    metrics_token: str = field(default="", metadata={"var": "METRICS_TOKEN",
                               "help": "if set, /metrics requires `Authorization: Bearer <token>`"})
    login_rate_limit_per_minute: int = field(default=10, metadata={"var": "LOGIN_RATE_LIMIT_PER_MINUTE",
                                             "help": "failed logins per e-mail and address per minute"})
    api_token_cache_seconds: int = field(default=5, metadata={
        "var": "API_TOKEN_CACHE_SECONDS",
        "help": "how long a checked API token is trusted without reading the database; a token revoked or a "
                "user changed in another process stops working within this time (0 = read every call)"})
    # Forms and drafts (names given by the design).
    checkpoint_storage: str = field(default="db", metadata={"var": "CHECKPOINT_STORAGE",
                                    "help": "db or redis (Redis with TTL, durable versions in the database)"})
    checkpoint_ttl_seconds: int = field(default=1200, metadata={"var": "CHECKPOINT_TTL_SECONDS",
                                        "help": "draft lifetime since last save"})
    checkpoint_max_payload_kb: int = field(default=128, metadata={"var": "CHECKPOINT_MAX_PAYLOAD_KB",
                                           "help": "largest draft payload"})
    checkpoint_rate_limit_per_minute: int = field(default=10, metadata={
        "var": "CHECKPOINT_RATE_LIMIT_PER_MINUTE", "help": "draft saves per user per minute"})
    autosave_debounce_ms: int = field(default=1500, metadata={"var": "AUTOSAVE_DEBOUNCE_MS",
                                      "help": "browser autosave debounce"})
    # Court API and webhooks.
    court_api_url: str = field(default="", metadata={"var": "COURT_API_URL",
                               "help": "court API base URL; empty = built-in simulator"})
    court_api_token: str = field(default="", metadata={"var": "COURT_API_TOKEN",
                                 "help": "JWT bearer token for the court API"})
    webhook_secret: str = field(default="", metadata={"var": "WEBHOOK_SECRET",
                                "help": "whsec_... secret signing webhook deliveries"})
    webhook_allowed_hosts: tuple[str, ...] = field(default=(), metadata={"var": "WEBHOOK_ALLOWED_HOSTS",
                                                   "help": "hosts exempt from the private-address check"})
    # Imports.
    upload_max_mb: int = field(default=2048, metadata={"var": "UPLOAD_MAX_MB",
                               "help": "largest accepted upload"})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = None
                     ) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``) over an optional ``.env`` file."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            from dotenv import dotenv_values

            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            var = f.metadata["var"]
            if var not in values:
                continue
            raw = values[var]
            try:
                kwargs[f.name] = _convert(f.type, raw)
            except ValueError as exc:
                raise ConfigurationError(f"{var}: {exc}", variable=var) from exc
        settings = cls(**kwargs)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ConfigurationError(f"OFICINA_ENV must be one of {', '.join(ENVIRONMENTS)}, got {self.env!r}",
                                     variable="OFICINA_ENV")
        if self.env != "development":
            if self.secret_key.strip().lower() in KNOWN_DEFAULT_SECRETS:
                raise ConfigurationError(
                    "SECRET_KEY is missing or a known default; generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
                    variable="SECRET_KEY",
                )
            if self.env == "production" and len(self.secret_key) < MIN_SECRET_LENGTH:
                raise ConfigurationError(
                    f"SECRET_KEY must have at least {MIN_SECRET_LENGTH} characters in production",
                    variable="SECRET_KEY",
                )
        if self.checkpoint_storage not in {"db", "redis"}:
            raise ConfigurationError("CHECKPOINT_STORAGE must be db or redis", variable="CHECKPOINT_STORAGE")
        if self.checkpoint_storage == "redis" and not self.redis_url:
            raise ConfigurationError("CHECKPOINT_STORAGE=redis needs REDIS_URL", variable="REDIS_URL")
        if self.job_stale_seconds <= 2 * self.job_heartbeat_seconds:
            raise ConfigurationError(
                "JOB_STALE_SECONDS must exceed twice JOB_HEARTBEAT_SECONDS, or healthy jobs would be re-enqueued",
                variable="JOB_STALE_SECONDS")
        if self.api_token_cache_seconds < 0:
            raise ConfigurationError("API_TOKEN_CACHE_SECONDS must be 0 or more", variable="API_TOKEN_CACHE_SECONDS")
        if self.backup_keep < 1:
            raise ConfigurationError("BACKUP_KEEP must be at least 1", variable="BACKUP_KEEP")
        if self.worker_type not in {"thread", "process", "greenlet"}:
            raise ConfigurationError("WORKER_TYPE must be thread, process or greenlet", variable="WORKER_TYPE")

    # Derived values -------------------------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'oficina.sqlite3').resolve()}"

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def huey_sqlite_path(self) -> Path:
        return self.data_dir / "huey.sqlite3"

    def with_overrides(self, **changes: object) -> Settings:
        from dataclasses import replace

        updated = replace(self, **changes)
        updated.validate()
        return updated


def _convert(annotation: object, raw: str) -> object:
    kind = str(annotation)
    if kind == "int":
        return int(raw)
    if kind == "bool":
        return _as_bool(raw)
    if kind == "Path":
        return Path(raw)
    if kind.startswith("tuple"):
        return _as_list(raw)
    return raw


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, help) for every setting: the README table and `oficina config` use it."""
    rows = []
    for f in fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((f.metadata["var"], shown, f.metadata["help"]))
    return rows


_current: Settings | None = None


def get_settings() -> Settings:
    """Process-wide settings from ``os.environ`` and ``./.env``, built once."""
    global _current
    if _current is None:
        _current = Settings.from_environ(env_file=".env")
    return _current


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (composition roots and tests)."""
    global _current
    _current = settings
