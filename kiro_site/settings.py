"""Settings for kiro-gateway: every value has a working default; the environment overrides.

Deploy-time values (database, secret key, hosts, cache) come from the environment, read here
once. Runtime knobs of kiro-rs's config.json live in the database (`GatewaySettings`). Our own
`KIRO_*` values are read at call time through `django.conf.settings`, so tests can override them.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = BASE_DIR / ".env"
if _env_file.is_file():
    environ.Env.read_env(_env_file, overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data")))
if not DATA_DIR.is_absolute():
    DATA_DIR = (BASE_DIR / DATA_DIR).resolve()
# DATA_DIR holds the encrypted secrets, the SQLite database and every usage log: what this
# process creates is readable by its own user only (0700 folders, 0600 files).
os.umask(0o077)
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """Return SECRET_KEY from the environment, else one generated once into DATA_DIR (0600)."""
    from_env = env.str("SECRET_KEY", default="")
    if from_env:
        return from_env
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(50)
    # O_EXCL: two processes starting at once must agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Behind TLS: plain-HTTP requests are redirected (the load balancer's /healthz probe is
    # exempt) and browsers are told to stay on HTTPS. HSTS_SECONDS=0 turns HSTS off.
    SECURE_SSL_REDIRECT = env.bool("SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("HSTS_PRELOAD", default=True)
    # Turned off on purpose by the operator: `check --deploy` need not say it again.
    SILENCED_SYSTEM_CHECKS = [
        check
        for check, on in (
            ("security.W005", SECURE_HSTS_INCLUDE_SUBDOMAINS),
            ("security.W021", SECURE_HSTS_PRELOAD),
        )
        if not on
    ]

INSTALLED_APPS = [
    "daphne",  # must precede staticfiles so `runserver` is the ASGI one
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # admin login throttling
    "django_otp",  # the optional second factor of staff (ADMIN_OTP_REQUIRED)
    "django_otp.plugins.otp_totp",
    "credentials",
    "usage",
    "gateway",
]

# The admin stack. The client API (/v1, /cc/v1) runs without middleware: see asgi.py.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "kiro_site.middleware.reject_nul_in_query",  # Postgres refuses NUL: 400, not a 500
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its 429 page
]

# Admin logins are throttled (django-axes): after ADMIN_LOGIN_FAILURE_LIMIT wrong passwords for
# one username from one address, that pair is refused for ADMIN_LOGIN_COOLOFF_MINUTES. Behind a
# proxy every client shares its address, so the limit then holds per username.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# ADMIN_OTP_REQUIRED=true: staff sign in with their password and a TOTP code (django-otp); set
# up each staff member's device first (admin → TOTP devices), or they cannot sign in.
ADMIN_OTP_REQUIRED = env.bool("ADMIN_OTP_REQUIRED", default=False)
OTP_TOTP_ISSUER = "kiro-gateway"

ROOT_URLCONF = "kiro_site.urls"
ASGI_APPLICATION = "kiro_site.asgi.application"
WSGI_APPLICATION = None

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
            ],
        },
    },
]

# Database: SQLite in DATA_DIR by default, tuned for many readers and short writes; Postgres
# through DATABASE_URL with Django's connection pool (CONN_MAX_AGE must be 0 with the pool).
_SQLITE_INIT = (
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA busy_timeout=10000;"
    "PRAGMA foreign_keys=ON;"
    "PRAGMA temp_store=MEMORY;"
)


def _database() -> dict[str, object]:
    url = env.str("DATABASE_URL", default="")
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {
                "init_command": _SQLITE_INIT,
                "transaction_mode": "IMMEDIATE",
                "timeout": 10,
            },
            "TEST": {"NAME": str(DATA_DIR / "test-db.sqlite3")},
        }
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.postgresql":
        config.setdefault("OPTIONS", {})
        config["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=1),
            "max_size": env.int("DATABASE_POOL_MAX", default=20),
            "timeout": env.int("DATABASE_POOL_TIMEOUT", default=10),
        }
        config["CONN_MAX_AGE"] = 0
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def redis_backends(url: str) -> tuple[dict, dict]:
    """The CACHES and CHANNEL_LAYERS of every process sharing the Redis at `url` (the tests
    use it too, on a database of their own)."""
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "kiro",
        },
        # usage.prompt_cache: the simulated prompt cache, shared by every process.
        "prompt_cache": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "kiro",
        },
    }
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": "kiro"},
        }
    }
    return caches, layers


REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES, CHANNEL_LAYERS = redis_backends(REDIS_URL)
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # usage.prompt_cache: bounded like ZyphrZero's store (4,096 entries).
        "prompt_cache": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "prompt-cache",
            "OPTIONS": {"MAX_ENTRIES": 4096},
        },
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# The gateway accepts large prompts (kiro-rs allows 50 MB bodies, spec kiro-ops §4.1).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("KIRO_MAX_BODY_BYTES", default=50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# How long /healthz reuses its database probe (gateway/api/health.py).
KIRO_HEALTH_CACHE_SECS = env.float("KIRO_HEALTH_CACHE_SECS", default=2.0)
# /healthz on a port of its own, served by a process of its own (`manage.py health_port`,
# started by `manage.py serve --health-port`); 0 turns it off. The workers touch heartbeat
# files in KIRO_HEALTH_BEAT_DIR (a private folder `serve` makes and passes them).
KIRO_HEALTH_PORT = env.int("KIRO_HEALTH_PORT", default=0)
KIRO_HEALTH_HOST = env.str("KIRO_HEALTH_HOST", default="127.0.0.1")
KIRO_HEALTH_BEAT_DIR = env.str("KIRO_HEALTH_BEAT_DIR", default="")
# The health port answers 503 when a worker's event loop has not turned for this long.
KIRO_HEALTH_LOOP_STALL_SECS = env.float("KIRO_HEALTH_LOOP_STALL_SECS", default=10.0)

# Inbound images over these limits are downscaled and re-encoded as JPEG (kiro.rs's variables
# and defaults, checklist item 169); KIRO_RS_IMAGE_RESIZE=off sends every image unchanged.
KIRO_IMAGE_RESIZE = env.bool("KIRO_RS_IMAGE_RESIZE", default=True)
KIRO_IMAGE_MAX_BYTES = max(1024, env.int("KIRO_RS_IMAGE_MAX_BYTES", default=400_000))
KIRO_IMAGE_MAX_LONG_SIDE = max(64, env.int("KIRO_RS_IMAGE_MAX_LONG_SIDE", default=1568))
KIRO_IMAGE_JPEG_QUALITY = min(95, max(35, env.int("KIRO_RS_IMAGE_JPEG_QUALITY", default=85)))

# Encryption at rest of tokens and secrets: comma-separated Fernet keys, newest first.
# Empty means one key derived from SECRET_KEY (see credentials/crypto.py, README "Rotation").
KIRO_ENCRYPTION_KEYS = env.list("KIRO_ENCRYPTION_KEYS", default=[])

# Upstream base URLs with a {region} template (spec kiro-protocol §1.1); tests point them at
# the fake upstream.
KIRO_API_BASE_URL = env.str("KIRO_API_BASE_URL", default="https://q.{region}.amazonaws.com")
KIRO_SOCIAL_AUTH_BASE_URL = env.str(
    "KIRO_SOCIAL_AUTH_BASE_URL", default="https://prod.{region}.auth.desktop.kiro.dev"
)
KIRO_IDC_AUTH_BASE_URL = env.str(
    "KIRO_IDC_AUTH_BASE_URL", default="https://oidc.{region}.amazonaws.com"
)
# The Kiro sign-in portal of the social (Google/GitHub) login in the admin (spec kiro-ops §8.4).
KIRO_SOCIAL_PORTAL_URL = env.str("KIRO_SOCIAL_PORTAL_URL", default="https://app.kiro.dev")
KIRO_PROXY_PROBE_URL = env.str(
    "KIRO_PROXY_PROBE_URL", default="https://www.gstatic.com/generate_204"
)
KIRO_METRICS_TOKEN = env.str("KIRO_METRICS_TOKEN", default="")
# How long a gateway process reuses the settings row it read (seconds). Changes saved in the
# admin apply at once in the process that saved them and within this time in the others.
KIRO_SETTINGS_CACHE_SECS = env.float("KIRO_SETTINGS_CACHE_SECS", default=2.0)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
