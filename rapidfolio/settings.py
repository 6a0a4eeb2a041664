"""Settings read from the environment.

With nothing set, Rapidfolio runs embedded: a SQLite file under var/ and an in-process Dramatiq
worker, so `make run` needs no services. DATABASE_URL selects PostgreSQL and REDIS_URL the Redis
broker for production.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from rapidfolio import log_context

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
# The address clients use (behind a proxy, its public one), for absolute URLs in API answers and
# webhooks. Unset, each answer uses the address its request came to (rapidfolio/public_url.py).
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")

INSTALLED_APPS = [
    # Django's admin with our site: the two-step sign-in, and a verified session for staff
    # who have an authenticator (rapidfolio/admin_site.py).
    "rapidfolio.admin_app.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_filters",
    "django_dramatiq",
    "axes",  # sign-in lockout (rapidfolio/login_lockout.py)
    "django_otp",
    "django_otp.plugins.otp_totp",  # authenticator-app codes (rapidfolio/two_factor.py)
    # For its templates and static Swagger UI: the API docs load nothing from a CDN (CSP).
    "ninja",
    "procedures",
    "runs",
    "reviews",
    "rapidfolio",  # for its management commands: serve, seed_demo, run_scheduler
]

MIDDLEWARE = [
    # First: one log line per request, timing everything below (rapidfolio/request_log.py).
    "rapidfolio.request_log.RequestLogMiddleware",
    "rapidfolio.api_errors.ApiErrorsMiddleware",  # API errors are JSON whatever fails
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Times each request by its route (rapidfolio/metrics.py); below whitenoise, so static
    # files are not counted.
    "rapidfolio.metrics.RequestMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the code was entered
    # The user's time zone for the pages (rapidfolio/time_zones.py); the API stays in UTC.
    "rapidfolio.time_zones.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: it turns a locked-out sign-in into the locked-out page.
    "axes.middleware.AxesMiddleware",
]

# The HTTP API's own, lean stack (rapidfolio/handlers.py routes /v1/ to it): the same log
# line, JSON errors, metrics and security headers, and none of the dashboard's session, CSRF,
# sign-in, second-factor, messages, HTMX or lockout middlewares, which an API-key request never
# uses. The API's docs page keeps the dashboard's stack.
API_MIDDLEWARE = [
    "rapidfolio.request_log.RequestLogMiddleware",
    "rapidfolio.api_errors.ApiErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "rapidfolio.metrics.RequestMetricsMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
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
_TEST_PROCESS = os.environ.get("PYTEST_XDIST_WORKER")
if _TEST_PROCESS and not DRAMATIQ_NAMESPACE.endswith(f"-{_TEST_PROCESS}"):
    # Parallel test processes each have their own database; their messages must not reach
    # another process's worker, which would look for the run in the wrong database. (A
    # subprocess a test starts inherits both variables and already has the suffix.)
    DRAMATIQ_NAMESPACE += f"-{_TEST_PROCESS}"
DRAMATIQ_MIDDLEWARE = [
    # First, so the message's log fields last until the worker has logged how it ended.
    "rapidfolio.log_context.MessageContext",
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

# --- Outbox (runs/dispatch.py): messages the broker refused or may not have received --------
# How often the scheduler sends what is due: a message the broker refused (it was down) goes
# again within this once the broker is back.
OUTBOX_RETRY_SECONDS = float(os.environ.get("OUTBOX_RETRY_SECONDS", "2"))
# A run message sent at commit, or by the scheduler, is sent again if the run has not moved on
# after this long, then after twice as long each time, up to OUTBOX_MAX_BACKOFF_SECONDS.
OUTBOX_RESEND_AFTER_SECONDS = float(os.environ.get("OUTBOX_RESEND_AFTER_SECONDS", "60"))
OUTBOX_MAX_BACKOFF_SECONDS = float(os.environ.get("OUTBOX_MAX_BACKOFF_SECONDS", "300"))

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

# --- Health and metrics (rapidfolio/health.py, rapidfolio/metrics.py; README) ---------------
# /readyz shows each check's detail to staff and to `Authorization: Bearer <HEALTH_TOKEN>`;
# /metrics answers loopback clients and `Authorization: Bearer <METRICS_TOKEN>`. Unset: none.
HEALTH_TOKEN = os.environ.get("HEALTH_TOKEN", "")
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Not ready when the scheduler has not beaten for this long (or three of its ticks) ...
SCHEDULER_HEARTBEAT_MAX_AGE_SECONDS = float(
    os.environ.get("SCHEDULER_HEARTBEAT_MAX_AGE_SECONDS", "60")
)
# ... or when a run event has waited this long for the ledger's sealer.
LEDGER_SEAL_MAX_DELAY_SECONDS = float(os.environ.get("LEDGER_SEAL_MAX_DELAY_SECONDS", "60"))

# --- Outbound webhooks (runs/webhooks.py) ---------------------------------------------------
WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", "1"))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "8"))
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))
# Inbound: refused deliveries itemised per trigger per minute (runs/triggers/rejections.py).
REJECTED_DELIVERY_ROWS_PER_MINUTE = int(os.environ.get("REJECTED_DELIVERY_ROWS_PER_MINUTE", "20"))

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
AUTHENTICATION_BACKENDS = [
    # First, so a locked-out username and address is refused before any password is checked.
    "rapidfolio.login_lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Sign-in lockout (django-axes; README "Sign-in security"). Failures count per username and
# address together, so nobody can lock a user out from everywhere by guessing at their name;
# a second, wider limit counts every username tried from one address, so one address cannot
# try a few passwords on each of many users.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_ADDRESS_FAILURE_LIMIT = int(os.environ.get("LOGIN_ADDRESS_FAILURE_LIMIT", "20"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_HANDLER = "rapidfolio.login_lockout.LoginLockoutHandler"
AXES_LOCKOUT_CALLABLE = "rapidfolio.login_lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "rapidfolio.login_lockout.client_ip"
AXES_USERNAME_CALLABLE = "rapidfolio.login_lockout.client_username"
# Behind N reverse proxies that append to X-Forwarded-For, the client is the Nth address from
# its right; 0 (the default) uses the connection's own address. Never trust more than you run.
LOGIN_TRUSTED_PROXIES = int(os.environ.get("LOGIN_TRUSTED_PROXIES", "0"))
# Retrying during a lockout does not push the end of the lockout further out, so the page's
# "try again after" stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # every failure, with its address and user agent
# Masked in the recorded request data and the logs, besides the password axes always masks
# (usernames and addresses stay readable: on-call needs them, and the attempt rows hold them).
AXES_SENSITIVE_PARAMETERS = ["code", "csrfmiddlewaretoken"]

# Two-factor sign-in (django-otp TOTP; rapidfolio/two_factor.py).
OTP_TOTP_ISSUER = os.environ.get("OTP_TOTP_ISSUER", "Rapidfolio Runs")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # admins never see a user's secret or QR code
# How long the code step waits after a correct password before asking for it again.
LOGIN_CODE_TIMEOUT_SECONDS = int(os.environ.get("LOGIN_CODE_TIMEOUT_SECONDS", "300"))
# On here, approving or rejecting a live run needs a session verified by a code, whatever the
# admin switch (reviews.ApprovalPolicy) says; off, the admin switch decides.
REQUIRE_OTP_FOR_LIVE_APPROVALS = env_flag("REQUIRE_OTP_FOR_LIVE_APPROVALS")

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
HTTPS = env_flag("HTTPS")
if HTTPS:
    # Behind TLS: plain HTTP is redirected, cookies never travel over it, and browsers are told
    # to use HTTPS only for a year (HSTS_SECONDS to stage it with less, 0 to leave it off).
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", 31_536_000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Only a proxy that terminates TLS and always sets this header (overwriting the client's)
    # may say a request was HTTPS: trusted without one, any client could claim HTTPS.
    if proxy_header := os.environ.get("HTTPS_PROXY_HEADER", "").strip():
        SECURE_PROXY_SSL_HEADER = ("HTTP_" + proxy_header.upper().replace("-", "_"), "https")

# --- I18N / static --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# The zone the pages show times in for a user who has not picked one on their account page
# (an IANA name, e.g. "Europe/Paris"). The API always speaks UTC.
RAPIDFOLIO_DEFAULT_TIME_ZONE = os.environ.get("RAPIDFOLIO_DEFAULT_TIME_ZONE", TIME_ZONE)
USE_I18N = True
USE_TZ = True
# How amounts are written and typed (grouping, decimal sign, where the ISO code goes): a Babel
# locale, one for the whole installation (docs/money.md). "en_US": USD 24,000.00.
MONEY_LOCALE = os.environ.get("MONEY_LOCALE", "en_US")

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

# --- Logs and error tracking (rapidfolio/log_context.py, docs/deploy.md "Logs") -------------
# json (one object per line) by default in production, plain on the embedded default and with
# DEBUG on; one line per request (rapidfolio/request_log.py).
LOG_FORMAT = log_context.log_format(os.environ)
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = log_context.logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)

# Sentry only when SENTRY_DSN is set: without it, sentry_sdk is not even imported.
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = os.environ.get("SENTRY_ENVIRONMENT") or (
    "development" if DEBUG else "production"
)
SENTRY_RELEASE = os.environ.get("SENTRY_RELEASE", "")
SENTRY_TRACES_SAMPLE_RATE = float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE", "0"))
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration
    from sentry_sdk.integrations.logging import ignore_logger

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE or None,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        # No cookies, headers, bodies, user names or addresses: the run record is the place
        # for who did what, and API keys and session cookies must not leave the installation.
        send_default_pii=False,
        integrations=[DjangoIntegration(), DramatiqIntegration()],
    )
    # The Django integration reports a request's exception itself, with the request; the
    # request line would report it again. A bad Host header is a scanner, not a bug.
    ignore_logger("rapidfolio.request")
    ignore_logger("django.security.DisallowedHost")
