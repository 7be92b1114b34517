"""Typed settings read once from the environment and an optional `.env` file.

`load_settings()` reads `.env` (never overriding real environment variables), then builds one frozen
`Settings` struct; every process entry point calls it and passes the struct down. `database_url()`
prefers DATABASE_URL and otherwise composes one from DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import msgspec
from dotenv import load_dotenv


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    amqp_url: str
    queue_prefix: str
    backend_host: str
    backend_port: int
    secret_key: str
    maxplatform_url: str
    auth_mode: str
    maxplatform_me_path: str
    http_allowed_hosts: tuple[str, ...]
    lease_seconds: float
    heartbeat_seconds: float
    recovery_interval: float
    redispatch_after: float
    lease_recoveries: int
    worker_grace_seconds: float
    db_pool_size: int
    log_level: str
    ui_dist: str
    batch_concurrency: int = 100
    eager_steps: int = 32
    db_pipeline: bool = True
    # observability (README "Observability")
    metrics_token: str = ""  # METRICS_TOKEN: if set, /metrics needs "Authorization: Bearer <it>"
    metrics_port: int = 0  # METRICS_PORT: a worker/orchestrator started alone serves /metrics here
    metrics_cache_seconds: float = 5.0  # METRICS_CACHE_SECONDS: one DB query set per interval
    ops_cache_seconds: float = 2.0  # OPS_CACHE_SECONDS: ops stats computed once per interval
    log_format: str = "text"  # LOG_FORMAT: text | json
    otel_endpoint: str = ""  # OTEL_EXPORTER_OTLP_ENDPOINT: traces on when set


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    user = quote(_env("DB_USER", "postgres"), safe="")
    password = os.environ.get("DB_PASSWORD", "")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = _env("DB_HOST", "127.0.0.1")
    port = _env("DB_PORT", "5432")
    name = _env("DB_NAME", "flowstudio")
    return f"postgresql://{auth}@{host}:{port}/{name}"


def load_settings(env_file: str | None = ".env") -> Settings:
    if env_file and os.path.exists(env_file):
        load_dotenv(env_file, override=False)
    lease = float(_env("LEASE_SECONDS", "30"))
    allowed = tuple(h.strip() for h in _env("HTTP_ALLOWED_HOSTS", "").split(",") if h.strip())
    return Settings(
        database_url=database_url(),
        amqp_url=_env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        queue_prefix=_env("QUEUE_PREFIX", "flowstudio"),
        backend_host=_env("BACKEND_HOST", "localhost"),
        backend_port=int(_env("BACKEND_PORT", "8005")),
        secret_key=_env("SECRET_KEY", ""),
        maxplatform_url=_env("MAXPLATFORM_URL", "http://localhost:8000"),
        auth_mode=_env("AUTH_MODE", "local"),
        maxplatform_me_path=_env("MAXPLATFORM_ME_PATH", "/api/auth/me"),
        http_allowed_hosts=allowed,
        lease_seconds=lease,
        heartbeat_seconds=float(_env("HEARTBEAT_SECONDS", str(min(5.0, lease / 3)))),
        recovery_interval=float(_env("RECOVERY_INTERVAL", "2")),
        redispatch_after=float(_env("REDISPATCH_AFTER", "60")),
        lease_recoveries=int(_env("LEASE_RECOVERIES", "5")),
        worker_grace_seconds=float(_env("WORKER_GRACE_SECONDS", "10")),
        db_pool_size=int(_env("DB_POOL_SIZE", "10")),
        log_level=_env("LOG_LEVEL", "INFO"),
        ui_dist=_env("UI_DIST", "frontend/dist"),
        batch_concurrency=int(_env("BATCH_CONCURRENCY", "100")),
        eager_steps=int(_env("EAGER_STEPS", "32")),
        db_pipeline=_env("DB_PIPELINE", "1").strip().lower() not in ("0", "false", "no", "off"),
        metrics_token=_env("METRICS_TOKEN", ""),
        metrics_port=int(_env("METRICS_PORT", "0")),
        metrics_cache_seconds=float(_env("METRICS_CACHE_SECONDS", "5")),
        ops_cache_seconds=float(_env("OPS_CACHE_SECONDS", "2")),
        log_format=_env("LOG_FORMAT", "text").strip().lower(),
        otel_endpoint=_env("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
    )
