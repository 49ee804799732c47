"""One settings module, driven by environment variables.

With nothing set, the platform runs embedded on one machine: SQLite, local-memory cache and rate
limiter, in-memory channel layer and a file-system Celery broker. `DATABASE_URL` and `REDIS_URL`
switch each part to its production engine. `DJANGO_ENV=production` refuses to start without the
variables production needs.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
PRODUCTION = DJANGO_ENV == "production"

if PRODUCTION:
    _missing = [
        name for name in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL") if not env.str(name, "")
    ]
    if _missing:
        raise ImproperlyConfigured(
            "DJANGO_ENV=production needs these environment variables: " + ", ".join(_missing)
        )

DEBUG = env.bool("DEBUG", default=False)
# The development key only ever signs local sessions; production refuses to start without its own.
SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-key-do-not-use-in-production-0123456789")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "apps.core",
    "apps.accounts",
    "apps.nodes",
    "apps.billing",
    "apps.pods",
    "apps.podconnect",
    "apps.providers",
    "apps.sourcing",
    "apps.catalog",
    "apps.portal",
    "apps.proxy",
    "apps.webhooks",
]

MIDDLEWARE = [
    # The request id, request metrics and the access log (docs/observability.md): first, so
    # everything after it runs under the id and its timing covers the whole chain.
    "apps.core.observability.RequestContextMiddleware",
    "apps.core.middleware.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.RequestBodyLimitMiddleware",
    "apps.core.middleware.RateLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.accounts.middleware.StaffMfaMiddleware",
    "apps.core.middleware.SyncBoundaryMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "apps.portal.context_processors.status_enums",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
# HTTP requests one web process serves at once; the rest wait in its event loop. Each holds a
# database connection while it runs, so keep this below DB_POOL_MAX.
WEB_MAX_CONCURRENT_REQUESTS = env.int("WEB_MAX_CONCURRENT_REQUESTS", default=16)
# A request that waits longer than this for one of those slots is shed: 503 with Retry-After.
WEB_QUEUE_TIMEOUT_S = env.float("WEB_QUEUE_TIMEOUT_S", default=5.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI, Django's persistent connections are per request: a pool keeps them warm.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=2),
        "max_size": env.int("DB_POOL_MAX", default=WEB_MAX_CONCURRENT_REQUESTS + 4),
        "timeout": 10,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker, rate limits ------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="gco"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A consumer's receive blocks in BZPOPMIN for up to 5 s (channels_redis'
            # brpop_timeout); redis-py's default 5 s socket timeout would cut that read short
            # and kill an idle consumer (a terminal nobody types in) with a TimeoutError.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery-broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Auth ---------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SITE_ID = 1
LOGIN_REDIRECT_URL = "/dashboard/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
# The portal's (allauth) limits; "key" is the email address asked for, known or not.
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
}

# Second factor (allauth.mfa): TOTP apps and one-time recovery codes. With
# MFA_REQUIRED_FOR_STAFF=true (recommended in production), a staff session without an
# authenticator app is sent to set one up before any other page (the admin included); see
# docs/security.md. A code is accepted one 30 s step early or late (clock drift).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env.str("MFA_TOTP_ISSUER", default="GPU Cloud")
MFA_TOTP_TOLERANCE = 1
MFA_REQUIRED_FOR_STAFF = env.bool("MFA_REQUIRED_FOR_STAFF", default=False)

JWT_ALGORITHM = "HS256"
JWT_LIFETIME = timedelta(hours=env.int("JWT_LIFETIME_HOURS", default=24))
JWT_SIGNING_KEY = env.str("JWT_SIGNING_KEY", default=SECRET_KEY)

# --- Email --------------------------------------------------------------------------------------
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="GPU Cloud <noreply@localhost>")

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.BearerAuthentication",
        "apps.accounts.authentication.ApiKeyHeaderAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Cloud Orchestrator API",
    "DESCRIPTION": "Pods, deployments, billing and GPU hosts. Authenticate with a personal API "
    "key (`Authorization: Bearer gco_…`) or a JWT from `POST /api/v1/auth/login`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "PodStatusEnum": "apps.pods.models.PodStatus",
        "NodeStatusEnum": "apps.nodes.models.NodeStatus",
        "DeploymentStatusEnum": "apps.catalog.models.DeploymentStatus",
        "ReplicaStatusEnum": "apps.catalog.models.ReplicaStatus",
    },
}

# --- GPU hosts ----------------------------------------------------------------------------------
# The platform's own token for registering platform nodes (unset: only provider keys register).
NODE_BOOTSTRAP_TOKEN = env.str("NODE_BOOTSTRAP_TOKEN", default="")
# Dotted paths of callables raw_token -> RegistrationGrant | None (the providers app adds one).
NODE_REGISTRATION_RESOLVERS: list[str] = []
NODE_HEARTBEAT_INTERVAL = env.int("NODE_HEARTBEAT_INTERVAL", default=10)
# The bootstrap token and sourcing instance tokens (`sit_…`) register at most this many nodes,
# within this many seconds of their issue (of their first use for the bootstrap token).
NODE_REGISTRATION_TOKEN_MAX_USES = env.int("NODE_REGISTRATION_TOKEN_MAX_USES", default=1)
NODE_REGISTRATION_TOKEN_TTL_S = env.int("NODE_REGISTRATION_TOKEN_TTL_S", default=3600)
# A heartbeat's `sent_at` must be within this many seconds of the server's clock, and its `seq`
# above the last one accepted (replay protection; required from agent 0.2.0 on).
NODE_HEARTBEAT_REPLAY_WINDOW_S = env.int("NODE_HEARTBEAT_REPLAY_WINDOW_S", default=300)
# The heartbeat's lean path (apps/nodes/heartbeat_asgi.py): database connections per web process
# (its own async pool; beats beyond them wait up to WEB_QUEUE_TIMEOUT_S, then are shed), and
# when to shed: once beats have waited over QUEUE_TARGET_MS for a connection for a whole
# QUEUE_WINDOW_MS (a standing queue, not a burst), new beats are shed until it drains. MAX_WAITING
# bounds the beats one process holds at once (a backstop: at ~1 ms of CPU each, 1,024 beats are
# about a second of work). Then how often buffered GPU readings are written.
NODE_HEARTBEAT_DB_CONNECTIONS = env.int("NODE_HEARTBEAT_DB_CONNECTIONS", default=4)
NODE_HEARTBEAT_QUEUE_TARGET_MS = env.float("NODE_HEARTBEAT_QUEUE_TARGET_MS", default=50.0)
NODE_HEARTBEAT_QUEUE_WINDOW_MS = env.float("NODE_HEARTBEAT_QUEUE_WINDOW_MS", default=500.0)
NODE_HEARTBEAT_MAX_WAITING = env.int("NODE_HEARTBEAT_MAX_WAITING", default=1024)
NODE_TELEMETRY_FLUSH_MS = env.int("NODE_TELEMETRY_FLUSH_MS", default=500)
# Liveness (apps/nodes/liveness.py): SUSPECT after this many missed intervals (an event, no
# action); OFFLINE (pods rescheduled or failed) only after the grace, counted from the last beat.
NODE_MISSED_HEARTBEATS_SUSPECT = 3
NODE_OFFLINE_GRACE_S = env.int("NODE_OFFLINE_GRACE_S", default=300)
# The mass-silence guard: more than this share of the watched fleet silent at once (and at least
# MIN_NODES nodes), or a sweep that did not run for SWEEP_GAP_S, condemns no node and alerts staff.
NODE_MASS_SILENCE_PERCENT = env.int("NODE_MASS_SILENCE_PERCENT", default=30)
NODE_MASS_SILENCE_MIN_NODES = env.int("NODE_MASS_SILENCE_MIN_NODES", default=3)
NODE_LIVENESS_SWEEP_GAP_S = env.int("NODE_LIVENESS_SWEEP_GAP_S", default=60)
# Default asking price per GPU-hour (micro-dollars) for nodes that set none.
GPU_DEFAULT_PRICES = {
    "H200": 3_590_000,
    "H100 SXM": 2_490_000,
    "H100 PCIe": 2_190_000,
    "A100 80GB SXM": 1_690_000,
    "A100 80GB PCIe": 1_490_000,
    "L40S": 990_000,
    "RTX 4090": 690_000,
    "RTX 3090": 390_000,
    "CPU": 50_000,  # a pod without GPUs, per hour
    "default": 1_000_000,
}

# How long an Idempotency-Key's first response is kept for replays (docs/idempotency.md).
IDEMPOTENCY_KEY_TTL_S = env.int("IDEMPOTENCY_KEY_TTL_S", default=24 * 3600)

# --- Billing (owned by the billing app; keep its settings in this block) -----------------------
# How far (micro-dollars) usage may take a wallet below zero before it is refused.
BILLING_OVERDRAFT_MICROS = env.int("BILLING_OVERDRAFT_MICROS", default=0)
# Stripe Checkout top-ups. Without a secret key, deposits answer 503 naming STRIPE_SECRET_KEY.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# Webhook deliveries signed longer ago than this are refused (replay protection).
STRIPE_WEBHOOK_TOLERANCE_S = env.int("STRIPE_WEBHOOK_TOLERANCE_S", default=300)
STRIPE_TIMEOUT_S = env.float("STRIPE_TIMEOUT_S", default=10.0)
# The SDK retries connection errors and 409/5xx with the same Idempotency-Key.
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
STRIPE_CHECKOUT_SUCCESS_URL = env.str(
    "STRIPE_CHECKOUT_SUCCESS_URL",
    default=SITE_URL + "/billing/topup/done?session_id={CHECKOUT_SESSION_ID}",
)
STRIPE_CHECKOUT_CANCEL_URL = env.str(
    "STRIPE_CHECKOUT_CANCEL_URL", default=SITE_URL + "/billing/topup/?cancelled=1"
)
# The demo's local Checkout stand-in (apps/billing/stripe_standin, served by `make run`): the SDK
# talks to it with its own generated test key and webhook secret. Never on unless set; refused
# in production and with anything but a test key.
STRIPE_STANDIN = env.bool("STRIPE_STANDIN", default=False)
if STRIPE_STANDIN:
    if PRODUCTION:
        raise ImproperlyConfigured("STRIPE_STANDIN is for the local demo, not production.")
    STRIPE_SECRET_KEY = env.str("STRIPE_STANDIN_SECRET_KEY", default="")
    STRIPE_WEBHOOK_SECRET = env.str("STRIPE_STANDIN_WEBHOOK_SECRET", default="")
    STRIPE_API_BASE = env.str("STRIPE_STANDIN_URL", default="http://127.0.0.1:7810")
    if not STRIPE_SECRET_KEY.startswith("sk_test_") or not STRIPE_WEBHOOK_SECRET:
        raise ImproperlyConfigured(
            "STRIPE_STANDIN needs STRIPE_STANDIN_SECRET_KEY (sk_test_…) and "
            "STRIPE_STANDIN_WEBHOOK_SECRET (make run generates them into var/stripe-standin.env)."
        )
if STRIPE_SECRET_KEY and not STRIPE_WEBHOOK_SECRET:
    # Checkout without the webhook would take money and never credit it.
    raise ImproperlyConfigured("STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not.")

# --- Pods ---------------------------------------------------------------------------------------
# Where pending pods can be placed, tried in order (the sourcing app adds upstream clouds).
POD_CAPACITY_SOURCES = ["apps.pods.scheduler.community_nodes"]
POD_LOGS_WAIT_S = env.float("POD_LOGS_WAIT_S", default=15)
# Full scheduler passes (the periodic task's) that run at once, whatever the number of Celery
# workers: one more stands aside and leaves the queue to them (apps/pods/scheduler.py). Size it
# to the database's cores: beyond them, passes only contend for the same locks and CPU.
SCHEDULER_MAX_PASSES = env.int("SCHEDULER_MAX_PASSES", default=2)
# The module that stops and reads the logs of pods that are upstream containers (sourcing).
POD_UPSTREAM_BACKEND = ""
# Functions adding rows to the one price list (pod form, /gpus, GET /api/v1/nodes/available).
POD_OFFER_SOURCES: list[str] = []
NODES_AVAILABLE_SELECTOR = "apps.pods.selectors.available_gpus"
# Earnings and billed seconds per node for the providers' dashboard (pods bill them; providers
# sit below pods and never import them).
PROVIDER_NODE_USAGE_SELECTOR = "apps.pods.selectors.node_usage_since"
# What a pod reserves when neither it nor its GPUs' share of the node says (CPU pods; nodes that
# did not report their totals). Reserved for placement, not enforced as a limit (a pod that
# wants a limit asks for vcpus/memory_mb). Millicores: 1000 = one core.
POD_DEFAULT_CPU_MILLICORES = env.int("POD_DEFAULT_CPU_MILLICORES", default=500)
POD_DEFAULT_MEMORY_MB = env.int("POD_DEFAULT_MEMORY_MB", default=1024)
# Volumes: the storage price (micro-dollars per GB per 30-day month, charged by the minute).
VOLUME_PRICE_PER_GB_MONTH = env.int("VOLUME_PRICE_PER_GB_MONTH", default=100_000)
VOLUME_DEFAULT_MOUNT_PATH = "/workspace"
# The platform's cut for nodes whose provider has no profile or fee history (Basic: 20%);
# providers' own fees come from their tier (PROVIDER_TIER_FEE_PERCENT, below).
PROVIDER_DEFAULT_FEE_PERCENT = 20
LOW_BALANCE_WARNING_MINUTES = env.int("LOW_BALANCE_WARNING_MINUTES", default=60)

# --- Outgoing webhooks (apps.webhooks; docs/webhooks.md) ----------------------------------------
# Endpoint secrets are derived from this key (rotating it changes every endpoint's secret).
WEBHOOK_SIGNING_KEY = env.str("WEBHOOK_SIGNING_KEY", default="")
# Private, loopback and reserved addresses are refused unless this is set (development, tests).
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=False)
WEBHOOK_TIMEOUT_S = env.float("WEBHOOK_TIMEOUT_S", default=10.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
# Attempt n+1 waits BASE x 2^(n-1) seconds after attempt n (30 s, 1 min, 2 min, ... <= MAX).
WEBHOOK_RETRY_BASE_S = env.float("WEBHOOK_RETRY_BASE_S", default=30.0)
WEBHOOK_RETRY_MAX_S = env.float("WEBHOOK_RETRY_MAX_S", default=3600.0)

# --- Community providers (owned by the providers app; keep its settings in this block) ---------
# `pk_…` provider keys register nodes under their provider.
NODE_REGISTRATION_RESOLVERS += ["apps.providers.registration.provider_key_grant"]
# The platform's cut of a provider's earnings by tier (percent); a change applies from then on.
PROVIDER_TIER_FEE_PERCENT = {"BASIC": 20, "VERIFIED": 15, "PRO": 10}
# Without an operator-set GpuPriceBand, providers may ask from/to these percentages of the
# platform's default price for the GPU model (GPU_DEFAULT_PRICES).
PROVIDER_DEFAULT_PRICE_BAND_PERCENT = (25, 400)
# Payouts: the smallest one, and how long fresh earnings are held before they can be paid out.
PAYOUT_MINIMUM_MICROS = env.int("PAYOUT_MINIMUM_MICROS", default=10_000_000)
PAYOUT_HOLD_SECONDS = env.int("PAYOUT_HOLD_SECONDS", default=3 * 24 * 3600)
# PayPal Payouts (OAuth2 client credentials). Unset: PayPal payouts stay approved, unsent.
PAYPAL_CLIENT_ID = env.str("PAYPAL_CLIENT_ID", default="")
PAYPAL_CLIENT_SECRET = env.str("PAYPAL_CLIENT_SECRET", default="")
PAYPAL_API_BASE = env.str("PAYPAL_API_BASE", default="https://api-m.paypal.com")
PAYPAL_TIMEOUT_S = env.float("PAYPAL_TIMEOUT_S", default=20.0)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["PayoutMethodEnum"] = (  # type: ignore[index]
    "apps.providers.models.PayoutMethod"
)
if PAYPAL_CLIENT_ID and not PAYPAL_CLIENT_SECRET:
    raise ImproperlyConfigured("PAYPAL_CLIENT_ID is set but PAYPAL_CLIENT_SECRET is not.")
# --- Sourcing (upstream clouds; owned by the sourcing app) --------------------------------------
# Renting upstream machines costs real money: both switches are off unless set.
SOURCING_ENABLED = env.bool("SOURCING_ENABLED", default=False)
AUTO_PROVISIONING_ENABLED = env.bool("AUTO_PROVISIONING_ENABLED", default=False)
SOURCING_MAX_INSTANCES = env.int("SOURCING_MAX_INSTANCES", default=10)
SOURCING_MARKUP_PERCENT = env.int("SOURCING_MARKUP_PERCENT", default=25)
# Per provider, GPU or "provider:GPU", e.g. {"runpod": 20, "vast_ai:H100 SXM": 30}.
SOURCING_MARKUP_OVERRIDES: dict[str, int] = env.json("SOURCING_MARKUP_OVERRIDES", default={})
# Point the clients at the local simulators (the demo: `make run` serves them on 7801-7803).
SOURCING_SIMULATORS = env.bool("SOURCING_SIMULATORS", default=False)
SOURCING_PROVIDERS: dict[str, dict[str, str]] = {
    "vast_ai": {
        "base_url": env.str("VAST_API_URL", default="https://console.vast.ai"),
        "api_key": env.str("VAST_API_KEY", default=""),
    },
    "runpod": {
        "base_url": env.str("RUNPOD_API_URL", default="https://api.runpod.io"),
        "api_key": env.str("RUNPOD_API_KEY", default=""),
    },
    "lambda_labs": {
        "base_url": env.str("LAMBDA_API_URL", default="https://cloud.lambda.ai"),
        "api_key": env.str("LAMBDA_API_KEY", default=""),
    },
}
if SOURCING_SIMULATORS:
    for _port, (_name, _key) in enumerate(
        (
            ("vast_ai", "vast-sim-key"),
            ("runpod", "runpod-sim-key"),
            ("lambda_labs", "lambda-sim-key"),
        ),
        start=7801,
    ):
        SOURCING_PROVIDERS[_name] = {"base_url": f"http://127.0.0.1:{_port}", "api_key": _key}
if SOURCING_ENABLED and not any(p["api_key"] for p in SOURCING_PROVIDERS.values()):
    raise ImproperlyConfigured(
        "SOURCING_ENABLED is set but none of VAST_API_KEY, RUNPOD_API_KEY, LAMBDA_API_KEY is "
        "(or set SOURCING_SIMULATORS=true for the local simulators)."
    )
SOURCING_LAMBDA_SSH_KEY_NAME = env.str("SOURCING_LAMBDA_SSH_KEY_NAME", default="gco")
SOURCING_SEARCH_DEADLINE_S = env.float("SOURCING_SEARCH_DEADLINE_S", default=3.0)
SOURCING_HTTP_TIMEOUT_S = env.float("SOURCING_HTTP_TIMEOUT_S", default=10.0)
# An instance whose agent has not registered by then is FAILED and terminated upstream.
SOURCING_REGISTRATION_TIMEOUT_S = env.int("SOURCING_REGISTRATION_TIMEOUT_S", default=900)
# How long an instance with no pod stays up for the next pod (0: terminate at once).
SOURCING_IDLE_KEEP_S = env.int("SOURCING_IDLE_KEEP_S", default=0)
# Instances a provider reports that we do not track are terminated after this grace.
SOURCING_ORPHAN_GRACE_S = env.int("SOURCING_ORPHAN_GRACE_S", default=600)
# Offer-book lines older than this are not used to provision.
SOURCING_OFFER_MAX_AGE_S = env.int("SOURCING_OFFER_MAX_AGE_S", default=300)
SOURCING_INSTANCE_IMAGE = env.str(
    "SOURCING_INSTANCE_IMAGE", default="nvidia/cuda:12.4.1-runtime-ubuntu22.04"
)
SOURCING_SERVER_URL = env.str("SOURCING_SERVER_URL", default=SITE_URL)
# Send the rent to a worker as soon as the scheduler asks for a machine (else: the next tick).
SOURCING_DISPATCH_ON_REQUEST = env.bool("SOURCING_DISPATCH_ON_REQUEST", default=True)
# The startup script of a rented VM (Lambda's user_data; container clouds run the pod itself);
# {server} and {token} are filled in (the token is a per-instance registration token bound to
# that instance). The simulated VMs run the same script: it fetches our install.sh.
SOURCING_AGENT_BOOTSTRAP = env.str(
    "SOURCING_AGENT_BOOTSTRAP",
    # The real path, for the simulators too: install.sh takes the key from the environment,
    # never from argv (ps would show it).
    default="curl -fsSL {server}/api/v1/nodes/install.sh | GCO_BOOTSTRAP_TOKEN={token} "
    "bash -s -- --server={server}",
)
POD_CAPACITY_SOURCES = [*POD_CAPACITY_SOURCES, "apps.sourcing.capacity.upstream_clouds"]
POD_UPSTREAM_BACKEND = "apps.sourcing.pods_backend"
POD_OFFER_SOURCES = [*POD_OFFER_SOURCES, "apps.sourcing.selectors.upstream_pod_offers"]
# Show customers the provider kind ("upstream container cloud") instead of its name.
SOURCING_HIDE_PROVIDER_NAMES = env.bool("SOURCING_HIDE_PROVIDER_NAMES", default=False)
# How often rentals are polled (the "drive provisioned instances" tick): a container cloud's
# pod learns its state, and a spot interruption is noticed, within one interval.
SOURCING_POLL_INTERVAL_S = 10
NODE_REGISTRATION_RESOLVERS = [
    *NODE_REGISTRATION_RESOLVERS,
    "apps.sourcing.registration.instance_token_grant",
]

# --- Edge protection ----------------------------------------------------------------------------
RATE_LIMITS = env.list("RATE_LIMITS", default=["60/m", "1000/h"])
RATE_LIMIT_ENABLED = env.bool("RATE_LIMIT_ENABLED", default=True)
# Stripe retries webhooks from shared IPs; they are authenticated by signature instead.
RATE_LIMIT_EXEMPT_PATHS = ["/healthz", "/readyz", "/static/", "/webhooks/", "/metrics"]
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Number of proxies in front of us whose X-Forwarded-For entries we trust (0: use REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT
# A credential picks the rate-limit bucket only once one of these verifies it (each answers
# who it belongs to, or None); everything else is counted against the client's IP.
RATE_LIMIT_IDENTITY_RESOLVERS = [
    "apps.accounts.authentication.rate_limit_identity",
    "apps.nodes.authentication.rate_limit_identity",
]
RATE_LIMIT_IDENTITY_CACHE_S = env.int("RATE_LIMIT_IDENTITY_CACHE_S", default=60)
# API login back-off (apps/accounts/throttles.py): per account and per client IP, this many
# failures in WINDOW_S are free, then a lock of BASE_LOCK_S doubling per failure up to MAX_LOCK_S.
AUTH_LOGIN_ACCOUNT_LOCK = {
    "FREE_FAILURES": env.int("AUTH_LOGIN_ACCOUNT_FREE_FAILURES", default=5),
    "WINDOW_S": env.int("AUTH_LOGIN_WINDOW_S", default=900),
    "BASE_LOCK_S": env.float("AUTH_LOGIN_BASE_LOCK_S", default=30.0),
    "MAX_LOCK_S": env.float("AUTH_LOGIN_MAX_LOCK_S", default=900.0),
}
AUTH_LOGIN_IP_LOCK = {
    **AUTH_LOGIN_ACCOUNT_LOCK,
    "FREE_FAILURES": env.int("AUTH_LOGIN_IP_FREE_FAILURES", default=20),
}
# API registrations per client IP and per email address.
AUTH_REGISTER_RATES_PER_IP = env.list("AUTH_REGISTER_RATES_PER_IP", default=["10/h"])
AUTH_REGISTER_RATES_PER_ACCOUNT = env.list("AUTH_REGISTER_RATES_PER_ACCOUNT", default=["3/h"])

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes, scrapers
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Static files -------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed, compressed names need `collectstatic`; development serves from the finders.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env.bool("STATICFILES_MANIFEST", default=PRODUCTION)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=not PRODUCTION)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logs and metrics (docs/observability.md) ---------------------------------------------------
# text: one readable line per record (development); json: one JSON object per line, with the
# request id that follows a request through Celery tasks and agent commands.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
# One line per site/API request (method, route, status, duration, request id). Daphne and
# uvicorn write their own access lines without the id; this is the one to keep in production.
LOG_ACCESS = env.bool("LOG_ACCESS", default=LOG_FORMAT == "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.request_context.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # httpx logs every request it sends at INFO: one line per proxied call on top of the
        # access log. Its warnings and errors still show.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
if LOG_FORMAT == "json":
    # Celery would replace the root handler with its own text format.
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Set (production): every process writes its metrics to files in this directory, which must
# exist and be writable; /metrics sums them (prometheus_client's multi-process mode).
if "PROMETHEUS_MULTIPROC_DIR" in env.ENVIRON:
    _metrics_dir = env.str("PROMETHEUS_MULTIPROC_DIR")
    if not _metrics_dir or not Path(_metrics_dir).is_dir():
        raise ImproperlyConfigured(
            "PROMETHEUS_MULTIPROC_DIR must name an existing directory (unset it to keep "
            f"metrics in memory); got {_metrics_dir!r}."
        )
# /metrics is off (404) unless one of these is set; a scrape must then pass each one set.
# The token's SHA-256 hex digest: `printf %s "$TOKEN" | sha256sum`.
METRICS_TOKEN_SHA256 = env.str("METRICS_TOKEN_SHA256", default="")
# Client networks allowed to scrape (CIDR; the client address honours TRUSTED_PROXY_COUNT).
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
# The ledger zero-sum check scans every entry: each process redoes it at most this often.
METRICS_LEDGER_CHECK_S = env.float("METRICS_LEDGER_CHECK_S", default=60.0)

# --- Model catalog and the OpenAI-compatible proxy (apps.catalog, apps.proxy) -------------------
# How long the proxy trusts what it read of keys and READY replicas (revocations and health
# changes take effect within this).
PROXY_ROUTE_CACHE_S = env.float("PROXY_ROUTE_CACHE_S", default=2.0)
# An expired route is served (while a background read replaces it) for at most this long.
PROXY_ROUTE_MAX_STALE_S = env.float("PROXY_ROUTE_MAX_STALE_S", default=5.0)
# A replica that refused a connection gets no traffic from that web process for this long.
PROXY_REPLICA_COOLDOWN_S = env.float("PROXY_REPLICA_COOLDOWN_S", default=5.0)
PROXY_CONNECT_TIMEOUT_S = env.float("PROXY_CONNECT_TIMEOUT_S", default=2.0)
# Longest silence from a backend (between two chunks, or before its answer) before giving up.
PROXY_READ_TIMEOUT_S = env.float("PROXY_READ_TIMEOUT_S", default=300.0)
PROXY_MAX_CONNECTIONS = env.int("PROXY_MAX_CONNECTIONS", default=1000)
# Audio uploads are larger than API bodies (OpenAI allows 25 MB).
PROXY_MAX_BODY_BYTES = env.int("PROXY_MAX_BODY_BYTES", default=25 * 1024 * 1024)
# Usage rows are written in one INSERT per interval (or sooner past this many rows).
PROXY_USAGE_FLUSH_S = env.float("PROXY_USAGE_FLUSH_S", default=1.0)
PROXY_USAGE_FLUSH_ROWS = env.int("PROXY_USAGE_FLUSH_ROWS", default=500)
# Per-deployment rate limits are counted in-process and summed across web processes through
# Redis this often (no Redis round trip per request).
PROXY_RATE_SYNC_S = env.float("PROXY_RATE_SYNC_S", default=0.1)
# Replicas: a health check every CATALOG_HEALTH_INTERVAL_S; this many failures in a row take a
# READY replica out of service; a replica LOADING longer than the timeout fails.
CATALOG_HEALTH_TIMEOUT_S = env.float("CATALOG_HEALTH_TIMEOUT_S", default=3.0)
CATALOG_HEALTH_FAILURES_UNHEALTHY = env.int("CATALOG_HEALTH_FAILURES_UNHEALTHY", default=2)
CATALOG_LOADING_TIMEOUT_S = env.int("CATALOG_LOADING_TIMEOUT_S", default=1800)
# Host ports handed to host-network replicas (the local CPU backends), one per replica.
CATALOG_HOST_PORT_RANGE = (
    env.int("CATALOG_HOST_PORT_MIN", default=18100),
    env.int("CATALOG_HOST_PORT_MAX", default=18999),
)
# Serverless deployments (issue 14): each web process publishes its outstanding requests to
# Redis this often; a held request re-reads its deployment's replicas this often; economics
# split a deployment's GPU cost between input and output tokens with an output token weighing
# this many input tokens (decoding a token costs more than prefilling one).
PROXY_LOAD_SYNC_S = env.float("PROXY_LOAD_SYNC_S", default=0.25)
PROXY_HOLD_POLL_S = env.float("PROXY_HOLD_POLL_S", default=0.25)
CATALOG_OUTPUT_TOKEN_WEIGHT = env.int("CATALOG_OUTPUT_TOKEN_WEIGHT", default=3)

# --- Real-time voice (apps.proxy.voice: the /ws/* sockets) --------------------------------------
# A session with no frame from the client and nothing in progress for this long closes (4408).
VOICE_IDLE_TIMEOUT_S = env.float("VOICE_IDLE_TIMEOUT_S", default=60.0)
# Open sessions per deployment key, across web processes (4429 past it); a crashed process's
# slots free themselves after the lease.
VOICE_MAX_SESSIONS_PER_KEY = env.int("VOICE_MAX_SESSIONS_PER_KEY", default=20)
VOICE_SESSION_LEASE_S = env.float("VOICE_SESSION_LEASE_S", default=60.0)
# Reply audio goes out at most this far ahead of real-time playback (backpressure, barge-in).
VOICE_AUDIO_LEAD_S = env.float("VOICE_AUDIO_LEAD_S", default=1.0)
# webrtcvad: aggressiveness 0-3; silence that ends an utterance; longest utterance.
VOICE_VAD_AGGRESSIVENESS = env.int("VOICE_VAD_AGGRESSIVENESS", default=2)
VOICE_VAD_END_MS = env.int("VOICE_VAD_END_MS", default=500)
VOICE_MAX_UTTERANCE_S = env.float("VOICE_MAX_UTTERANCE_S", default=30.0)
# Partial transcripts every this many seconds of speech (0: none).
VOICE_PARTIAL_INTERVAL_S = env.float("VOICE_PARTIAL_INTERVAL_S", default=1.0)
VOICE_MAX_REPLY_TOKENS = env.int("VOICE_MAX_REPLY_TOKENS", default=200)
VOICE_HISTORY_MESSAGES = env.int("VOICE_HISTORY_MESSAGES", default=20)
VOICE_HISTORY_CHARS = env.int("VOICE_HISTORY_CHARS", default=6000)
# Bounded queues: utterances waiting for a transcript, speeches waiting to be spoken.
VOICE_PENDING_UTTERANCES = env.int("VOICE_PENDING_UTTERANCES", default=4)
VOICE_PENDING_SPEECHES = env.int("VOICE_PENDING_SPEECHES", default=8)
VOICE_MAX_FRAME_BYTES = env.int("VOICE_MAX_FRAME_BYTES", default=256 * 1024)

# --- Connecting to pods (apps.podconnect: browser terminal, HTTP port proxy) ---------------------
# The agent must dial in within this long of the OPEN_TERMINAL command (it sees the command on
# its next heartbeat); a session with no keystroke and no output for the idle time closes.
POD_TERMINAL_OPEN_TIMEOUT_S = env.float("POD_TERMINAL_OPEN_TIMEOUT_S", default=60.0)
POD_TERMINAL_IDLE_TIMEOUT_S = env.float("POD_TERMINAL_IDLE_TIMEOUT_S", default=900.0)
# How long a web process trusts what it read about a port-proxy credential (session or token)
# and the pod's endpoint: a revoked token stops working within this long everywhere.
POD_PORT_PROXY_AUTH_CACHE_S = env.float("POD_PORT_PROXY_AUTH_CACHE_S", default=2.0)
# Connect and idle-read limits towards the pod's port (a long-poll or a stream may idle).
POD_PORT_PROXY_CONNECT_TIMEOUT_S = env.float("POD_PORT_PROXY_CONNECT_TIMEOUT_S", default=5.0)
POD_PORT_PROXY_READ_TIMEOUT_S = env.float("POD_PORT_PROXY_READ_TIMEOUT_S", default=300.0)
