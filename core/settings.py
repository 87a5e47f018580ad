"""Django settings, read from the environment (every variable is in the README's table).

Unset ``DATABASE_URL`` means the embedded PostgreSQL under ``.data/`` (core/embedded_postgres.py).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.embedded_postgres import APP_USER as EMBEDDED_APP_USER
from core.embedded_postgres import embedded_postgres
from core.environment import database_from_url, env_bool, env_int, env_list, env_networks
from core.roles import OWNER_ALIAS

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    """``SECRET_KEY`` from the environment; else, for a checkout on one machine (its
    embedded database, or ``DEBUG``), one random key generated once and kept in
    ``.data/secret-key`` (mode 0600), which the server and every ``manage.py`` command of
    the checkout share: sessions, cursors and checkpoints signed by one verify in the
    others. A server named by ``DATABASE_URL`` with ``DEBUG`` off needs its own."""
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    if not DEBUG and os.environ.get("DATABASE_URL", "").strip():
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off and DATABASE_URL names a database "
            "server. Set it to the same value for the server and every manage.py command "
            "(it signs sessions, cursors and, unless AUDIT_SEAL_KEY is set, checkpoints); "
            "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    data = BASE_DIR / ".data"
    path = data / "secret-key"
    legacy = data / "dev-secret-key"  # the name of the file before it served every mode
    if not path.exists() and legacy.exists():
        legacy.rename(path)
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of the checkout made it first
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Proxies whose X-Forwarded-For is believed when finding the client IP (core/client_ip.py).
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "strawberry_django",
    "core",
    "audit",
    "graphql_api",
]

# Django's own middleware, with hooks that run inline under ASGI (core/middleware.py).
MIDDLEWARE = [
    "core.middleware.SecurityMiddleware",
    "core.middleware.SessionMiddleware",
    "core.middleware.CommonMiddleware",
    "core.middleware.CsrfViewMiddleware",
    "core.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "core.middleware.MessageMiddleware",
    "core.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "core.urls"
ASGI_APPLICATION = "core.asgi.application"
AUTH_USER_MODEL = "core.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------
# Two connections to one database (README, "Database roles"): "default", the role the
# server runs as, which may only read and append audit data; and "owner" (core.roles),
# the role that owns the tables, for migrations, backups and restores.
_database_url = os.environ.get("DATABASE_URL", "").strip()
_owner_url = os.environ.get("DATABASE_OWNER_URL", "").strip()
if _database_url:
    DATABASES = {"default": {"ENGINE": "core.postgresql", **database_from_url(_database_url)}}
    DATABASES[OWNER_ALIAS] = {
        "ENGINE": "core.postgresql",
        **database_from_url(_owner_url or _database_url),
    }
    if _owner_url:
        _app, _owner = DATABASES["default"], DATABASES[OWNER_ALIAS]
        if not _app["USER"]:
            raise ImproperlyConfigured(
                "DATABASE_URL must name its user (postgres://USER@host/db) when "
                "DATABASE_OWNER_URL is set: migrations grant that role its privileges"
            )
        if (_app["NAME"], _app["HOST"], _app["PORT"]) != (
            _owner["NAME"],
            _owner["HOST"],
            _owner["PORT"],
        ):
            raise ImproperlyConfigured(
                "DATABASE_URL and DATABASE_OWNER_URL must name the same database on the same "
                "server; they differ only in the role"
            )
elif _owner_url:
    raise ImproperlyConfigured("DATABASE_OWNER_URL is set but DATABASE_URL is not")
else:
    _embedded = embedded_postgres()
    DATABASES = {
        "default": {
            "ENGINE": "core.embedded_db",
            **_embedded.connection_settings(user=EMBEDDED_APP_USER),
            "OPTIONS": {},
        },
        OWNER_ALIAS: {
            "ENGINE": "core.embedded_db",
            **_embedded.connection_settings(),
            "OPTIONS": {},
        },
    }

for _alias in DATABASES.values():
    _alias.update(
        {
            # Pooled connections for the server (psycopg_pool, below). Under ASGI, persistent
            # connections would leak: each request's ORM work runs on a thread that is
            # retired afterwards.
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": True,
            "TEST": {"NAME": os.environ.get("TEST_DATABASE_NAME") or None},
        }
    )
_pool = {
    "min_size": env_int("DB_POOL_MIN_SIZE", 1),
    "max_size": env_int("DB_POOL_MAX_SIZE", 10, minimum=1),
    "timeout": env_int("DB_POOL_TIMEOUT", 10, minimum=1),
}
if _pool["min_size"] > _pool["max_size"]:
    raise ImproperlyConfigured("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
DATABASES["default"]["OPTIONS"] = {**DATABASES["default"]["OPTIONS"], "pool": _pool}  # type: ignore[dict-item]
# The longest a single SQL statement may run (lock waits included) before PostgreSQL cancels
# it and the request gets a TIMEOUT error; 0 for no limit. Migrations, imports and the
# demo seed lift it for themselves (core.database.without_statement_timeout); the owner's
# connection (migrations, backups) has none.
DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 10_000, minimum=0)
if DB_STATEMENT_TIMEOUT_MS:
    _options = DATABASES["default"]["OPTIONS"]
    _options["options"] = (  # type: ignore[index]
        f"{_options.get('options', '')} -c statement_timeout={DB_STATEMENT_TIMEOUT_MS}".strip()  # type: ignore[attr-defined]
    )

# --- auth, i18n, static -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["core.backends.UserBackend"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/audit-logs/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"
# Serve /static/ from the app itself (admin and GraphiQL assets). Turn off when a reverse
# proxy or CDN serves `manage.py collectstatic` output instead.
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# --- security -----------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# HTTPS (README, "Production"): these belong to how the site is served, so they are off
# unless set. Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips a
# client's own), TRUST_X_FORWARDED_PROTO=1 lets Django see the request as HTTPS.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Django finds its security middleware by dotted path and ours are subclasses (inline
# hooks, core/middleware.py): core/checks.py runs those checks again against them.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

# --- GraphQL ------------------------------------------------------------------------------
# Cost limits for every GraphQL document (README, "Limits"); beyond them, BAD_USER_INPUT.
GRAPHQL_MAX_DEPTH = env_int("GRAPHQL_MAX_DEPTH", 10, minimum=1)
GRAPHQL_MAX_ALIASES = env_int("GRAPHQL_MAX_ALIASES", 15, minimum=0)
GRAPHQL_MAX_TOKENS = env_int("GRAPHQL_MAX_TOKENS", 2000, minimum=100)
# The compiled read path (graphql_api/compiled.py): on by default; off for diagnosis.
GRAPHQL_COMPILED_READS = env_bool("GRAPHQL_COMPILED_READS", True)
# A total with ip, search or details counts the matching entries (audit/totals.py): at
# most this many; past it, totalCount is refused with TOTAL_COUNT_TOO_COSTLY.
AUDIT_LOG_SEARCH_TOTAL_MAX = env_int("AUDIT_LOG_SEARCH_TOTAL_MAX", 100_000, minimum=1)
# The live stream, auditLogCreated (README, "Following new events live").
# Entries a subscriber may fall behind by before it is dropped with SLOW_CONSUMER.
AUDIT_STREAM_BUFFER = env_int("AUDIT_STREAM_BUFFER", 1000, minimum=1)
# How often the stream looks for new entries when no notification arrives (a safety net:
# commits notify the stream at once).
AUDIT_STREAM_POLL_SECONDS = env_int("AUDIT_STREAM_POLL_SECONDS", 5, minimum=1)
# How often an open stream checks that its caller may still read (revoked token, ended
# session, lost role); the stream ends with a coded error when not.
AUDIT_STREAM_RECHECK_SECONDS = env_int("AUDIT_STREAM_RECHECK_SECONDS", 30, minimum=1)
# Live streams that may be open at once per API token (or signed-in user), over every
# server; more get SUBSCRIPTION_LIMIT.
AUDIT_STREAM_MAX_PER_HOLDER = env_int("AUDIT_STREAM_MAX_PER_HOLDER", 20, minimum=1)
# Database connections per server process for reading the stream, besides its one
# listening connection (and the request pool, DB_POOL_*).
AUDIT_STREAM_DB_CONNECTIONS = env_int("AUDIT_STREAM_DB_CONNECTIONS", 4, minimum=1)
# Log streams (README, "Log streams"; audit/log_streams.py): pushing entries to HTTPS
# destinations. Entries per request, and how long a partial batch may wait to fill.
AUDIT_LOG_STREAM_BATCH = env_int("AUDIT_LOG_STREAM_BATCH", 500, minimum=1)
AUDIT_LOG_STREAM_BATCH_WAIT_MS = env_int("AUDIT_LOG_STREAM_BATCH_WAIT_MS", 100, minimum=0)
# A request's timeout, and the most of a response that is read (the rest is a failure).
AUDIT_LOG_STREAM_TIMEOUT_SECONDS = env_int("AUDIT_LOG_STREAM_TIMEOUT_SECONDS", 10, minimum=1)
AUDIT_LOG_STREAM_RESPONSE_MAX_BYTES = env_int(
    "AUDIT_LOG_STREAM_RESPONSE_MAX_BYTES", 65_536, minimum=0
)
# Retries after a failure wait 1 s, 2 s, 4 s, ... up to this (with +-50% jitter).
AUDIT_LOG_STREAM_RETRY_MAX_SECONDS = env_int("AUDIT_LOG_STREAM_RETRY_MAX_SECONDS", 300, minimum=1)
# A destination failing for longer than this is paused (its position kept) until an
# administrator enables it again.
AUDIT_LOG_STREAM_PAUSE_AFTER_HOURS = env_int("AUDIT_LOG_STREAM_PAUSE_AFTER_HOURS", 72, minimum=1)
# Networks destinations may be in although they are private, loopback or link-local
# (refused by default: a stream must not reach into the server's own network), e.g.
# 10.20.0.0/16. CIDRs, comma-separated.
AUDIT_LOG_STREAM_ALLOWED_NETWORKS = env_networks("AUDIT_LOG_STREAM_ALLOWED_NETWORKS")
# A PEM bundle of the certificate authorities destinations are verified against, instead
# of the system's (for a receiver with a private CA).
AUDIT_LOG_STREAM_CA_FILE = os.environ.get("AUDIT_LOG_STREAM_CA_FILE", "")
# Whether server processes (manage.py serve) deliver streams themselves, besides any
# `manage.py deliver_audit_streams` workers (a lease keeps one deliverer per stream).
AUDIT_LOG_STREAM_DELIVER_IN_SERVER = env_bool("AUDIT_LOG_STREAM_DELIVER_IN_SERVER", True)
# Origins of browser pages allowed to open a WebSocket to /graphql/ (with the user's
# cookies) besides the server's own origin, e.g. https://admin.example.com; "*" for any.
GRAPHQL_WS_ALLOWED_ORIGINS = env_list("GRAPHQL_WS_ALLOWED_ORIGINS", [])
# Rate limits of /graphql/ (core/rate_limit.py): requests per window per API token and
# per client address; 0 turns one off. Beyond them, HTTP 429 and RATE_LIMITED.
RATE_LIMIT_WINDOW_SECONDS = env_int("RATE_LIMIT_WINDOW_SECONDS", 60, minimum=1)
RATE_LIMIT_PER_TOKEN = env_int("RATE_LIMIT_PER_TOKEN", 3000, minimum=0)
RATE_LIMIT_PER_ADDRESS = env_int("RATE_LIMIT_PER_ADDRESS", 6000, minimum=0)
# Tamper evidence (audit/integrity.py, README "Tamper evidence"): the key that signs each
# organization's checkpoints. It must not be stored in the database; unset, it is derived
# from SECRET_KEY. Keys in AUDIT_SEAL_KEY_FALLBACKS still verify older checkpoints.
AUDIT_SEAL_KEY = os.environ.get("AUDIT_SEAL_KEY", "")
AUDIT_SEAL_KEY_FALLBACKS = env_list("AUDIT_SEAL_KEY_FALLBACKS", [])
# Entries per checkpoint (at most).
AUDIT_SEAL_BLOCK_ENTRIES = env_int("AUDIT_SEAL_BLOCK_ENTRIES", 10_000, minimum=1)
# The external witness (audit/witness.py): seal_audit_log appends each checkpoint's signed
# head to this file, kept where the database's administrators cannot write; empty: none.
AUDIT_WITNESS_FILE = os.environ.get("AUDIT_WITNESS_FILE", "")
# Retention (prune_audit_logs, README "Retention"): days audit entries are kept, per plan;
# an organization's own setting (Organization.audit_retention_days) wins; 0 keeps forever.
AUDIT_RETENTION_DAYS_PAID = env_int("AUDIT_RETENTION_DAYS_PAID", 365, minimum=0)
AUDIT_RETENTION_DAYS_FREE = env_int("AUDIT_RETENTION_DAYS_FREE", 365, minimum=0)
# The shortest period prune_audit_logs applies: an organization set shorter is skipped
# with a warning (its setting is written by the application; this is the operator's).
AUDIT_RETENTION_MIN_DAYS = env_int("AUDIT_RETENTION_MIN_DAYS", 30, minimum=1)
# Entries removed per transaction (each batch holds its row locks that long).
AUDIT_PRUNE_BATCH = env_int("AUDIT_PRUNE_BATCH", 5_000, minimum=1)
# The in-browser IDE at GET /graphql/ (its page loads GraphiQL from a public CDN).
GRAPHIQL = env_bool("GRAPHIQL", True)

# --- logging ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO").upper()},
}
