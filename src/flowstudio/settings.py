"""Typed settings read once from the environment and an optional `.env` file.

`load_settings()` reads `.env` (never overriding real environment variables), then builds one frozen
`Settings` struct; every process entry point calls it and passes the struct down. `database_url()`
prefers DATABASE_URL and otherwise composes one from DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME.
`secret_key_problem()` names why a SECRET_KEY is unusable (the .env.example placeholder, < 32 chars);
the long-running commands refuse to start with it (cli.py, exit code 2).
prefers DATABASE_URL and otherwise composes one from DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME; with
neither DATABASE_URL nor DB_HOST (or DATABASE_URL=embedded) it returns `EMBEDDED`, which the CLI
replaces by the URL of the embedded PostgreSQL it starts (home.py). An empty SECRET_KEY is replaced by
the key generated once into FLOWSTUDIO_HOME; QUEUE_BACKEND defaults to rabbitmq when AMQP_URL is set
and to the PostgreSQL queue otherwise.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from urllib.parse import quote

import msgspec
from dotenv import load_dotenv

from flowstudio.home import generated_secret_key


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    amqp_url: str
    amqp_heartbeat_seconds: int = 15  # AMQP_HEARTBEAT_SECONDS (unless AMQP_URL has ?heartbeat=)
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
    batch_concurrency: int = 256
    eager_steps: int = 32
    db_pipeline: bool = True
    # group commit (README "Performance"): a worker's step successes ready together, one transaction
    group_commit: bool = True  # GROUP_COMMIT: on | off (step commits and claims)
    group_commit_max_steps: int = 32  # GROUP_COMMIT_MAX_STEPS: steps per transaction at most
    group_commit_window_ms: float = 0.0  # GROUP_COMMIT_WINDOW_MS: wait this long to gather more
    group_commit_inflight: int = 2  # GROUP_COMMIT_INFLIGHT: a worker's groups committing at once
    one_call_commit: bool = True  # ONE_CALL_COMMIT: on | off (a chain step's success, one call)
    fold_steps: bool = True  # FOLD_STEPS: on | off (pass-through input/output steps, folded)
    # observability (README "Observability")
    metrics_token: str = ""  # METRICS_TOKEN: if set, /metrics needs "Authorization: Bearer <it>"
    metrics_port: int = 0  # METRICS_PORT: a worker/orchestrator started alone serves /metrics here
    metrics_cache_seconds: float = 5.0  # METRICS_CACHE_SECONDS: one DB query set per interval
    ops_cache_seconds: float = 2.0  # OPS_CACHE_SECONDS: ops stats computed once per interval
    log_format: str = "text"  # LOG_FORMAT: text | json
    otel_endpoint: str = ""  # OTEL_EXPORTER_OTLP_ENDPOINT: traces on when set
    # template sandbox and regex limits (nodes/sandbox_limits.py, nodes/data.py)
    template_max_iterations: int = 100_000
    template_max_string: int = 1_000_000
    template_max_output: int = 1_000_000
    regex_timeout_max_s: float = 1.0
    # --- request hardening (README "Security") ---
    flow_max_nodes: int = 2000
    flow_max_edges: int = 10000
    flow_max_bytes: int = 2 * 1024 * 1024
    json_max_depth: int = 64
    cpu_work_limit: int = 2
    cors_origins: tuple[str, ...] = ()
    trusted_origins: tuple[str, ...] = ()
    cookie_secure: str = "auto"  # auto (TLS seen, directly or via a trusted proxy) | true | false
    forwarded_allow_ips: str = "127.0.0.1,::1"
    stream_recheck_s: float = 15.0
    streams_per_user: int = 20
    code_node: str = "sandbox"  # CODE_NODE: sandbox | trusted (unsafe) | off
    code_output_max_bytes: int = 1024 * 1024  # CODE_OUTPUT_MAX_BYTES: a code child's stdout cap
    code_sandbox_bwrap: str = (
        ""  # CODE_SANDBOX_BWRAP: the bwrap binary (empty: /usr/bin, /bin, ...)
    )
    # egress guard (flowstudio/egress) and size caps
    http_max_response_bytes: int = 10_000_000
    http_max_redirects: int = 5
    http_max_seconds: float = 600.0
    document_max_bytes: int = 20_000_000
    batch_max_upload_bytes: int = 1024**3
    batch_max_items: int = 1_000_000
    batch_max_live_items_per_user: int = 1_000_000
    # authentication hardening (README "Authentication and keys")
    maxplatform_role_map: tuple[tuple[str, str], ...] = ()
    maxplatform_default_role: str = "viewer"
    maxplatform_cache_seconds: float = 10.0
    maxplatform_negative_cache_seconds: float = 30.0
    maxplatform_lookups_per_minute: int = 30
    session_idle_minutes: float = 720.0
    session_max_hours: float = 168.0
    api_key_default_days: int = 365
    webhook_tolerance_seconds: int = 300
    login_free_failures: int = 5
    login_ip_free_failures: int = 20
    login_email_free_failures: int = 50
    login_backoff_base_seconds: float = 1.0
    login_backoff_max_seconds: float = 900.0
    login_window_seconds: int = 3600
    # steps one worker process holds at once (mostly idle LLM/HTTP calls): WORKER_CONCURRENCY
    worker_concurrency: int = 256
    # the worker's PostgreSQL pool: steps borrow a connection only to claim/commit/heartbeat
    worker_db_pool_size: int = 20
    # a dead worker's steps are taken over within RECOVERY_INTERVAL (worker/liveness.py)
    fast_takeover: bool = True
    # rabbitmq | postgres: which queue carries step pointers (queue/factory.py)
    queue_backend: str = "rabbitmq"
    # > 0: the orchestrator prunes finished, unpinned runs older than this many days, daily
    prune_after_days: float = 0.0
    # cluster-wide LLM provider limits (providers/): PROVIDER_LIMITS on | off
    provider_limits: bool = True
    # how long a step waits in-process for a provider permit before it is parked durably
    provider_permit_wait_seconds: float = 3.0
    # a provider's concurrency ceiling when no max_concurrency is set (AIMD starts there)
    provider_default_max_concurrency: int = 256
    # an unconfigured provider's first concurrency (slow start doubles it until the first 429)
    provider_initial_concurrency: int = 32
    # slow start: a call still unanswered this long after it went out was admitted by the provider
    # (it raises the concurrency as the call's success would, sooner); 0: only successes count
    provider_accept_after_seconds: float = 0.25
    # workers, orchestrators: the cyclic GC's young-generation threshold after start-up is frozen
    # (0: Python's)
    gc_gen0_threshold: int = 20000
    # EVENT_LOOP (auto | uvloop | asyncio), resolved: the loop of the API, workers, orchestrators
    event_loop: str = "asyncio"


class SettingsError(ValueError):
    """A setting has a value Flowstudio cannot use (the CLI answers exit code 2 with the message)."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


EMBEDDED = "embedded"


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    if not os.environ.get("DB_HOST", "").strip():
        return EMBEDDED
    user = quote(_env("DB_USER", "postgres"), safe="")
    password = os.environ.get("DB_PASSWORD", "")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = _env("DB_HOST", "127.0.0.1")
    port = _env("DB_PORT", "5432")
    name = _env("DB_NAME", "flowstudio")
    return f"postgresql://{auth}@{host}:{port}/{name}"


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def resolve_event_loop(choice: str | None = None) -> str:
    """EVENT_LOOP (`choice`, else the environment's) as the loop to run: `uvloop` or `asyncio`.
    auto: uvloop where it is installed (a dependency except on Windows, which it does not
    support), else asyncio. An unknown value, or uvloop where it cannot run, is a SettingsError."""
    value = (_env("EVENT_LOOP", "auto") if choice is None else choice).strip().lower()
    if value not in EVENT_LOOPS:
        raise SettingsError(f"EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, not {value!r}")
    if value == "asyncio":
        return value
    available = sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None
    if value == "uvloop" and not available:
        raise SettingsError("EVENT_LOOP=uvloop: uvloop is not installed or not supported here")
    return "uvloop" if available else "asyncio"


def _int(name: str, default: str) -> int:
    """An integer setting; a value that is not one is a SettingsError naming the variable."""
    value = _env(name, default)
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {value!r}") from None


def _float(name: str, default: str) -> float:
    """A finite number setting; anything else is a SettingsError naming the variable."""
    value = _env(name, default)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise SettingsError(f"{name} must be a number, not {value!r}")
    return number


def _csv(name: str) -> tuple[str, ...]:
    return tuple(v.strip().rstrip("/") for v in _env(name, "").split(",") if v.strip())


ENV_EXAMPLE_SECRET_KEY = "change-me-to-a-long-random-string"
SECRET_KEY_MIN_LENGTH = 32


def secret_key_problem(secret_key: str) -> str | None:
    """Why SECRET_KEY must not be used, or None. Empty is allowed: secrets are then disabled."""
    if not secret_key:
        return None
    if secret_key == ENV_EXAMPLE_SECRET_KEY:
        return "SECRET_KEY is the .env.example placeholder; set a long random value"
    if len(secret_key) < SECRET_KEY_MIN_LENGTH:
        return f"SECRET_KEY is shorter than {SECRET_KEY_MIN_LENGTH} characters"
    return None


def _role_map(raw: str) -> tuple[tuple[str, str], ...]:
    """MAXPLATFORM_ROLE_MAP="maxrole:flowstudiorole,...": pairs, whitespace ignored."""
    pairs = []
    for item in raw.split(","):
        src, sep, dst = item.partition(":")
        if sep and src.strip() and dst.strip():
            pairs.append((src.strip(), dst.strip()))
    return tuple(pairs)


def load_settings(env_file: str | None = ".env") -> Settings:
    if env_file and os.path.exists(env_file):
        load_dotenv(env_file, override=False)
    lease = _float("LEASE_SECONDS", "30")
    backend = _env("QUEUE_BACKEND", "rabbitmq" if os.environ.get("AMQP_URL") else "postgres")
    if backend not in ("rabbitmq", "postgres"):
        raise SettingsError(f"QUEUE_BACKEND must be rabbitmq or postgres, not {backend!r}")
    allowed = tuple(h.strip() for h in _env("HTTP_ALLOWED_HOSTS", "").split(",") if h.strip())
    # One line per setting (field, variable, default): a table, alike line by line by design.
    return Settings(
        database_url=database_url(),
        amqp_url=_env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        amqp_heartbeat_seconds=max(1, _int("AMQP_HEARTBEAT_SECONDS", "15")),
        queue_prefix=_env("QUEUE_PREFIX", "flowstudio"),
        backend_host=_env("BACKEND_HOST", "localhost"),
        backend_port=_int("BACKEND_PORT", "8005"),
        secret_key=_env("SECRET_KEY", "") or generated_secret_key(),
        maxplatform_url=_env("MAXPLATFORM_URL", "http://localhost:8000"),
        auth_mode=_env("AUTH_MODE", "local"),
        maxplatform_me_path=_env("MAXPLATFORM_ME_PATH", "/api/auth/me"),
        http_allowed_hosts=allowed,
        lease_seconds=lease,
        heartbeat_seconds=_float("HEARTBEAT_SECONDS", str(min(5.0, lease / 3))),
        recovery_interval=_float("RECOVERY_INTERVAL", "2"),
        redispatch_after=_float("REDISPATCH_AFTER", "60"),
        lease_recoveries=_int("LEASE_RECOVERIES", "5"),
        worker_grace_seconds=_float("WORKER_GRACE_SECONDS", "10"),
        db_pool_size=_int("DB_POOL_SIZE", "10"),
        log_level=_env("LOG_LEVEL", "INFO"),
        ui_dist=_env("UI_DIST", ""),
        batch_concurrency=_int("BATCH_CONCURRENCY", "256"),
        eager_steps=_int("EAGER_STEPS", "32"),
        group_commit=_env("GROUP_COMMIT", "on").strip().lower() not in ("0", "false", "no", "off"),
        group_commit_max_steps=_int("GROUP_COMMIT_MAX_STEPS", "32"),
        group_commit_window_ms=_float("GROUP_COMMIT_WINDOW_MS", "0"),
        group_commit_inflight=_int("GROUP_COMMIT_INFLIGHT", "2"),
        one_call_commit=_env("ONE_CALL_COMMIT", "on").strip().lower()
        not in ("0", "false", "no", "off"),
        fold_steps=_env("FOLD_STEPS", "on").strip().lower() not in ("0", "false", "no", "off"),
        queue_backend=backend,
        # Windows' selector event loop (psycopg) handles at most 512 sockets per process
        worker_concurrency=_int("WORKER_CONCURRENCY", "128" if sys.platform == "win32" else "256"),
        worker_db_pool_size=_int("WORKER_DB_POOL_SIZE", "20"),
        fast_takeover=_env("FAST_TAKEOVER", "1").strip().lower() not in ("0", "false", "no", "off"),
        prune_after_days=_float("PRUNE_AFTER_DAYS", "0"),
        provider_limits=_env("PROVIDER_LIMITS", "on").strip().lower()
        not in ("0", "false", "no", "off"),
        provider_permit_wait_seconds=_float("PROVIDER_PERMIT_WAIT_SECONDS", "3"),
        provider_default_max_concurrency=max(1, _int("PROVIDER_DEFAULT_MAX_CONCURRENCY", "256")),
        provider_initial_concurrency=max(1, _int("PROVIDER_INITIAL_CONCURRENCY", "32")),
        provider_accept_after_seconds=max(0.0, _float("PROVIDER_ACCEPT_AFTER_SECONDS", "0.25")),
        gc_gen0_threshold=max(0, _int("GC_GEN0_THRESHOLD", "20000")),
        event_loop=resolve_event_loop(),
        db_pipeline=_env("DB_PIPELINE", "1").strip().lower() not in ("0", "false", "no", "off"),
        metrics_token=_env("METRICS_TOKEN", ""),
        metrics_port=_int("METRICS_PORT", "0"),
        metrics_cache_seconds=_float("METRICS_CACHE_SECONDS", "5"),
        ops_cache_seconds=_float("OPS_CACHE_SECONDS", "2"),
        log_format=_env("LOG_FORMAT", "text").strip().lower(),
        otel_endpoint=_env("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        template_max_iterations=_int("TEMPLATE_MAX_ITERATIONS", "100000"),
        template_max_string=_int("TEMPLATE_MAX_STRING", "1000000"),
        template_max_output=_int("TEMPLATE_MAX_OUTPUT", "1000000"),
        regex_timeout_max_s=_float("REGEX_TIMEOUT_MAX_S", "1.0"),
        flow_max_nodes=_int("FLOW_MAX_NODES", "2000"),
        flow_max_edges=_int("FLOW_MAX_EDGES", "10000"),
        flow_max_bytes=_int("FLOW_MAX_BYTES", str(2 * 1024 * 1024)),
        json_max_depth=_int("JSON_MAX_DEPTH", "64"),
        cpu_work_limit=_int("CPU_WORK_LIMIT", "2"),
        cors_origins=_csv("CORS_ORIGINS"),
        trusted_origins=_csv("TRUSTED_ORIGINS"),
        cookie_secure=_env("COOKIE_SECURE", "auto").strip().lower(),
        forwarded_allow_ips=_env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        stream_recheck_s=_float("STREAM_RECHECK_S", "15"),
        streams_per_user=_int("STREAMS_PER_USER", "20"),
        code_node=_env("CODE_NODE", "sandbox").strip().lower(),
        code_output_max_bytes=_int("CODE_OUTPUT_MAX_BYTES", str(1024 * 1024)),
        code_sandbox_bwrap=_env("CODE_SANDBOX_BWRAP", ""),
        http_max_response_bytes=_int("HTTP_MAX_RESPONSE_BYTES", "10000000"),
        http_max_redirects=_int("HTTP_MAX_REDIRECTS", "5"),
        http_max_seconds=_float("HTTP_MAX_SECONDS", "600"),
        document_max_bytes=_int("DOCUMENT_MAX_BYTES", "20000000"),
        batch_max_upload_bytes=_int("BATCH_MAX_UPLOAD_BYTES", str(1024**3)),
        batch_max_items=_int("BATCH_MAX_ITEMS", "1000000"),
        batch_max_live_items_per_user=_int("BATCH_MAX_LIVE_ITEMS_PER_USER", "1000000"),
        maxplatform_role_map=_role_map(_env("MAXPLATFORM_ROLE_MAP", "")),
        maxplatform_default_role=_env("MAXPLATFORM_DEFAULT_ROLE", "viewer"),
        maxplatform_cache_seconds=_float("MAXPLATFORM_CACHE_SECONDS", "10"),
        maxplatform_negative_cache_seconds=_float("MAXPLATFORM_NEGATIVE_CACHE_SECONDS", "30"),
        maxplatform_lookups_per_minute=_int("MAXPLATFORM_LOOKUPS_PER_MINUTE", "30"),
        session_idle_minutes=_float("SESSION_IDLE_MINUTES", "720"),
        session_max_hours=_float("SESSION_MAX_HOURS", "168"),
        api_key_default_days=_int("API_KEY_DEFAULT_DAYS", "365"),
        webhook_tolerance_seconds=_int("WEBHOOK_TOLERANCE_SECONDS", "300"),
        login_free_failures=_int("LOGIN_FREE_FAILURES", "5"),
        login_ip_free_failures=_int("LOGIN_IP_FREE_FAILURES", "20"),
        login_email_free_failures=_int("LOGIN_EMAIL_FREE_FAILURES", "50"),
        login_backoff_base_seconds=_float("LOGIN_BACKOFF_BASE_SECONDS", "1"),
        login_backoff_max_seconds=_float("LOGIN_BACKOFF_MAX_SECONDS", "900"),
        login_window_seconds=_int("LOGIN_WINDOW_SECONDS", "3600"),
    )


def env_file_warning(env_file: str | None) -> str | None:
    """Why the env file (which holds SECRET_KEY and DB credentials) is unsafe, if it is: readable
    by the group or by others (POSIX only)."""
    if not env_file or os.name != "posix" or not os.path.exists(env_file):
        return None
    mode = os.stat(env_file).st_mode & 0o777
    if mode & 0o077:
        return (
            f"{env_file} is readable by group/others (mode {mode:o}); it holds SECRET_KEY and "
            f"database credentials: chmod 600 {env_file}"
        )
    return None
