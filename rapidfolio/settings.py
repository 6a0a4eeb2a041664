"""Settings read from the environment.

With nothing set, Rapidfolio runs embedded: a SQLite file under var/ and an in-process Dramatiq
worker, so `make run` needs no services. DATABASE_URL selects PostgreSQL and REDIS_URL the Redis
broker for production.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RAPIDFOLIO_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _embedded_secret_key() -> str:
    # The embedded default keeps a generated key on disk so sessions and encrypted connection
    # secrets survive a restart; production must set SECRET_KEY.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


DEBUG = env_flag("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or _embedded_secret_key()
# A separate key for connection credentials lets SECRET_KEY rotate without losing them.
CONNECTION_ENCRYPTION_KEY = os.environ.get("CONNECTION_ENCRYPTION_KEY", "")
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_filters",
    "django_dramatiq",
    # For its templates and static Swagger UI: the API docs load nothing from a CDN (CSP).
    "ninja",
    "procedures",
    "runs",
    "reviews",
    "rapidfolio",  # for its management commands: serve, seed_demo, run_scheduler
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "rapidfolio.urls"
WSGI_APPLICATION = "rapidfolio.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"].endswith("postgresql") and env_flag(
        "DATABASE_PREPARED_STATEMENTS", True
    ):
        # Parameters bound by the server, and a statement run twice on a connection is
        # prepared: the engine and the start-run API repeat the same few statements, and
        # PostgreSQL then skips parsing and planning them (about a quarter of its CPU per run in
        # `make bench`). Set DATABASE_PREPARED_STATEMENTS=0 behind a pooler that cannot keep
        # prepared statements (PgBouncer in transaction mode before 1.21).
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=2
        )
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "rapidfolio.sqlite3",
            # WAL and IMMEDIATE transactions let the in-process worker threads and the web
            # threads write without "database is locked" errors.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # A file, not :memory:, so worker threads and the browser tests' server share it.
            # One per test process, so parallel test runs never share (or delete) a file.
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Broker ---------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
DRAMATIQ_NAMESPACE = os.environ.get("DRAMATIQ_NAMESPACE", "rapidfolio")
DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "rapidfolio.broker.LoadToolsAtBoot",
]
if REDIS_URL:
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {
            "url": REDIS_URL,
            "namespace": DRAMATIQ_NAMESPACE,
            # How long before a dead worker's unacknowledged messages are given to another.
            "heartbeat_timeout": int(os.environ.get("DRAMATIQ_HEARTBEAT_TIMEOUT_MS", "60000")),
            # Out of a million broker commands, how many also look for dead workers' messages.
            "maintenance_chance": int(os.environ.get("DRAMATIQ_MAINTENANCE_CHANCE", "1000")),
            "dead_message_ttl": 7 * 24 * 3600 * 1000,
        },
        "MIDDLEWARE": DRAMATIQ_MIDDLEWARE,
    }
else:
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.stub.StubBroker",
        "OPTIONS": {},
        "MIDDLEWARE": DRAMATIQ_MIDDLEWARE,
    }
DRAMATIQ_TASKS_DATABASE = "default"
EMBEDDED_WORKER_THREADS = int(os.environ.get("EMBEDDED_WORKER_THREADS", "4"))

# --- Engine ---------------------------------------------------------------------------------
# A pending or running run that shows no progress for this long is re-enqueued by the reaper.
RUN_LEASE_SECONDS = int(os.environ.get("RUN_LEASE_SECONDS", "300"))
TOOL_HTTP_TIMEOUT_SECONDS = float(os.environ.get("TOOL_HTTP_TIMEOUT_SECONDS", "30"))

# --- Ledger (runs/ledger.py, rapidfolio/keys.py, docs/evidence.md) --------------------------
# The log's name in every checkpoint; auditors pin it with the public key.
LEDGER_ORIGIN = os.environ.get("LEDGER_ORIGIN", "rapidfolio.local/ledger")
# The Ed25519 signing key is never in the database: base64 of its 32-byte seed, or a file
# holding that. With neither, one is generated into var/ (mode 0600): the embedded default.
# Production must set one (`manage.py check --deploy` says so).
LEDGER_SIGNING_KEY = os.environ.get("LEDGER_SIGNING_KEY", "")
LEDGER_SIGNING_KEY_FILE = os.environ.get("LEDGER_SIGNING_KEY_FILE", "")
LEDGER_GENERATED_KEY_FILE = VAR_DIR / "ledger-signing.key"
# Every checkpoint is also written here, one file each, never rewritten.
LEDGER_CHECKPOINT_DIR = Path(os.environ.get("LEDGER_CHECKPOINT_DIR", VAR_DIR / "checkpoints"))
# Optional: each checkpoint is also POSTed, signed, to an auditor's endpoint.
LEDGER_CHECKPOINT_WEBHOOK_URL = os.environ.get("LEDGER_CHECKPOINT_WEBHOOK_URL", "")
LEDGER_CHECKPOINT_WEBHOOK_SECRET = os.environ.get("LEDGER_CHECKPOINT_WEBHOOK_SECRET", "")
LEDGER_SEAL_INTERVAL_SECONDS = float(os.environ.get("LEDGER_SEAL_INTERVAL_SECONDS", "1"))

# --- Outbound webhooks (runs/webhooks.py) ---------------------------------------------------
WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", "1"))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "8"))
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Security -------------------------------------------------------------------------------
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_flag("HTTPS"):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- I18N / static --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise expects it even before collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the source folders too, so a fresh clone works before collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
