"""The one settings module. Everything that differs between machines comes from the environment.

Every variable is documented in `.env.example`. The embedded defaults (SQLite, a filesystem
Celery broker, an in-process cache) let `make run` work on a machine with nothing but Python;
tests and production point the same variables at PostgreSQL, Redis and Mosquitto.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PREPAID_VAR_DIR", BASE_DIR / "var"))

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")


def env_bool(name: str, default: bool) -> bool:
    """A boolean that is neither true nor false is a mistake, not False."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None


def env_url(name: str, default: str, schemes: set[str]) -> str:
    raw = os.environ.get(name) or default
    scheme = urlsplit(raw).scheme
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ImproperlyConfigured(f"{name} must be a URL with one of the schemes {allowed}.")
    return raw


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "prepaid.audit",
    "accounts",
    "meters",
    "tariffs",
    "billing",
    "payments",
    "reports",
    "notifications",
    "portal",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Idle sessions end first, so the two-factor check only ever sees a live session.
    "accounts.middleware.IdleSessionMiddleware",
    "accounts.middleware.TwoFactorMiddleware",
    # Last, so it turns a locked-out sign-in into the lockout page whatever view handled it.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "prepaid.urls"
WSGI_APPLICATION = "prepaid.wsgi.application"
ASGI_APPLICATION = "prepaid.asgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# Database: an embedded SQLite file by default, PostgreSQL in tests and production.
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'prepaid.sqlite3'}",
    {"sqlite", "postgres", "postgresql", "pgsql"},
)
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue instead of failing with "database is locked" mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side binding lets psycopg prepare a statement once a connection has run it five times,
    # so the hot paths (top-ups, charging, ingest) stop paying PostgreSQL's planner on every
    # call. A transaction-mode pooler needs PgBouncer 1.21+ with max_prepared_statements, or
    # DATABASE_PREPARE_THRESHOLD=0 to turn preparing off.
    prepare_threshold = env_int("DATABASE_PREPARE_THRESHOLD", 5)
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": True,
        "prepare_threshold": prepare_threshold or None,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set, a process-local cache otherwise.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    env_url("REDIS_URL", REDIS_URL, {"redis", "rediss"})
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

MQTT_URL = env_url("MQTT_URL", "mqtt://127.0.0.1:1883", {"mqtt", "mqtts"})
# The ingest service's fixed client id: the broker keeps its session (and what it has not yet
# acknowledged) under this name between runs.
MQTT_INGEST_CLIENT_ID = os.environ.get("MQTT_INGEST_CLIENT_ID", "prepaid-ingest")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: it refuses a locked-out identifier before any backend checks a password. Staff
# sign in with their username; tenants with their email or phone, or a one-time code.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "portal.auth.TenantPasswordBackend",
    "portal.auth.SignInCodeBackend",
]
# Failed sign-ins by one identifier from one address before both are locked out for a while.
AXES_FAILURE_LIMIT = env_int("SIGN_IN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SIGN_IN_LOCKOUT_MINUTES", 15))
# Identifier and address together, so nobody can lock a tenant out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "portal/locked_out.html"
AXES_SENSITIVE_PARAMETERS = [
    "username",
    "ip_address",
    "password",
    "code",
    "new_password1",
    "new_password2",
]
# Codes from authenticator apps are listed under this name.
OTP_TOTP_ISSUER = "prepaid"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))

# Email: printed to the console unless an SMTP server is configured.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "prepaid <noreply@localhost>")
# Seconds to wait for the mail server; a notification that times out is retried later.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20)

# SMS: written to the log unless a provider is configured (docs/notifications.md).

SMS_BACKEND = os.environ.get("SMS_BACKEND", "notifications.sms.LogSmsBackend")
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = os.environ.get("TWILIO_FROM_NUMBER", "")
TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID", "")

# Payment providers (docs/payments.md). Secrets stored in the database are sealed with this
# Fernet key, or with one derived from SECRET_KEY when it is unset.
PAYMENTS_SECRETS_KEY = os.environ.get("PAYMENTS_SECRETS_KEY", "")
# Where providers reach our webhooks, when that is not the address the payer used.
PAYMENTS_PUBLIC_URL = os.environ.get("PAYMENTS_PUBLIC_URL", "")
# Rejected notifications tolerated from one address a minute before it is refused (429).
PAYMENTS_WEBHOOK_REJECTIONS_PER_MINUTE = env_int("PAYMENTS_WEBHOOK_REJECTIONS_PER_MINUTE", 30)
# Failed automatic top-ups in a row after which a tenant's auto top-up turns itself off.
PAYMENTS_AUTOTOPUP_MAX_FAILURES = env_int("PAYMENTS_AUTOTOPUP_MAX_FAILURES", 3)
# Finished report exports are kept this long for download, then deleted.
REPORT_EXPORT_KEEP_HOURS = env_int("REPORT_EXPORT_KEEP_HOURS", 72)
REPORT_EXPORT_DIR = VAR_DIR / "exports"
# Exports of more rows than this run as a background job instead of streaming at once.
REPORT_INLINE_EXPORT_ROWS = env_int("REPORT_INLINE_EXPORT_ROWS", 20_000)

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
# Minutes without a request after which anyone signed in is signed out
# (accounts.middleware.IdleSessionMiddleware).
SESSION_IDLE_MINUTES = env_int("SESSION_IDLE_MINUTES", 30)
if SESSION_IDLE_MINUTES < 1:
    raise ImproperlyConfigured("SESSION_IDLE_MINUTES must be at least 1.")
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)

# Celery: a filesystem broker by default so `make run` needs no server; Redis in tests and
# production. JSON only, and tasks acknowledge after they finish so a killed worker loses nothing.
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", "filesystem://", {"filesystem", "redis", "rediss", "memory"}
)
CELERY_BROKER_DIR = VAR_DIR / "celery"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than any ETA we schedule, so a delayed task is not delivered twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_DEFAULT_QUEUE = "default"
# Task modules beside an app's tasks.py, which autodiscovery does not find on its own.
CELERY_IMPORTS = ("billing.tasks_bills", "billing.tasks_debts")
# Queues are named for their work so each can get its own workers.
CELERY_TASK_ROUTES = {
    "billing.tasks.*": {"queue": "billing"},
    "billing.tasks_debts.*": {"queue": "billing"},
    "billing.tasks_bills.*": {"queue": "billing"},
    "meters.tasks.execute_relay_command": {"queue": "commands"},
    "meters.tasks.check_relay_confirmation": {"queue": "commands"},
    "meters.tasks.resume_relay_commands": {"queue": "commands"},
    # Restoring supply after a payment must not wait behind a charge run.
    "billing.tasks.restore_supply": {"queue": "commands"},
    # Telling tenants must never wait behind, or hold up, the money.
    "billing.tasks.notify_warning": {"queue": "notify"},
    "billing.tasks.notify_topup": {"queue": "notify"},
    "billing.tasks.notify_relay_switched": {"queue": "notify"},
    "meters.tasks.poll_*": {"queue": "poll"},
    # Detection follows each charge run, with the money's work.
    "meters.tasks.detect_property_task": {"queue": "billing"},
    "notifications.tasks.*": {"queue": "notify"},
    "portal.tasks.send_sign_in_code": {"queue": "notify"},
    "payments.tasks.*": {"queue": "payments"},
    "reports.tasks.*": {"queue": "reports"},
}
# Loaded into django-celery-beat's database schedule, where staff can change it.
CELERY_BEAT_SCHEDULE = {
    "poll-due-gateways": {"task": "meters.tasks.poll_due_gateways", "schedule": 60.0},
    "charge-new-readings": {"task": "billing.tasks.charge_new_readings_task", "schedule": 60.0},
    "cutoff-sweep": {"task": "billing.tasks.cutoff_sweep_task", "schedule": 60.0},
    "resume-relay-commands": {"task": "meters.tasks.resume_relay_commands", "schedule": 60.0},
    "credit-warnings": {"task": "billing.tasks.credit_warnings_task", "schedule": 900.0},
    # Not at a fixed hour: the job finds which properties' local days are over, so it follows
    # every time zone and DST change and catches up on midnights no worker saw.
    "daily-freeze": {"task": "billing.tasks.daily_freeze_task", "schedule": 300.0},
    "stranded-payments": {"task": "payments.tasks.stranded_payments_task", "schedule": 300.0},
    "autotopup-sweep": {"task": "payments.tasks.autotopup_sweep_task", "schedule": 300.0},
    "notification-retries": {
        "task": "notifications.tasks.retry_due_notifications",
        "schedule": 60.0,
    },
    "exports-expire": {"task": "reports.tasks.exports_expire_task", "schedule": 3600.0},
    # Like the daily freeze: finds the properties whose local month has ended since.
    "monthly-statements": {"task": "reports.tasks.monthly_statements_task", "schedule": 900.0},
    # Postpaid accounts' instalments onto their wallets on their due dates (billing.debts).
    "instalments-due": {
        "task": "billing.tasks_debts.instalments_due_sweep_task",
        "schedule": 900.0,
    },
    # The freeze issues each month's bills as it completes; this catches a lost hand-over.
    "postpaid-bills": {"task": "billing.tasks_bills.bills_issue_due_task", "schedule": 900.0},
    "bill-reminders": {"task": "billing.tasks_bills.reminders_task", "schedule": 3600.0},
}
# django-celery-beat's database schedule, fired by one beat at a time (prepaid/beat.py).
CELERY_BEAT_SCHEDULER = "prepaid.beat:SingleBeatScheduler"
BEAT_LEASE_KEY = os.environ.get("BEAT_LEASE_KEY", "prepaid:beat:leader")
CELERY_TIMEZONE = "UTC"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an unauthenticated request gets 401 with a WWW-Authenticate header.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "prepaid.api.pagination.PageNumberPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "prepaid.api.exceptions.exception_handler",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "prepaid API",
    "DESCRIPTION": "Prepaid and postpaid metering: properties, units, tenants, accounts, meters.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a field called "kind"; name each choice set for what it is.
    "ENUM_NAME_OVERRIDES": {
        "UnitKindEnum": "accounts.models.Unit.Kind",
        "ChargeKindEnum": "billing.models.Charge.Kind",
        "LedgerTransactionKindEnum": "billing.models.LedgerTransaction.Kind",
        "LedgerAccountKindEnum": "billing.models.LedgerAccount.Kind",
        "TariffKindEnum": "tariffs.models.TariffVersion.Kind",
        "NotificationChannelEnum": "notifications.models.Channel",
        "LanguageEnum": "accounts.models.Tenant.Language",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # The Twilio SDK logs every request and response header at INFO.
        "twilio.http_client": {"level": "WARNING"},
    },
}
