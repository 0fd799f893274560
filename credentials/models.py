"""Upstream Kiro accounts, their groups, client keys and the runtime settings row."""

from __future__ import annotations

import hashlib

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from credentials.crypto import EncryptedTextField


def sha256_hex(value: str) -> str:
    """Hash a secret for lookups and duplicate detection (never reversible)."""
    return hashlib.sha256(value.encode()).hexdigest()


class AuthMethod(models.TextChoices):
    SOCIAL = "social", "Social (GitHub / Google)"
    IDC = "idc", "IdC (Builder ID / Enterprise)"
    EXTERNAL_IDP = "external_idp", "External IdP (Entra ID)"
    API_KEY = "api_key", "Kiro API key"


class DisabledReason(models.TextChoices):
    # spec kiro-ops §3.6
    MANUAL = "Manual", "Manual"
    TOO_MANY_FAILURES = "TooManyFailures", "Too many failures"
    TOO_MANY_REFRESH_FAILURES = "TooManyRefreshFailures", "Too many refresh failures"
    INVALID_REFRESH_TOKEN = "InvalidRefreshToken", "Invalid refresh token"
    QUOTA_EXCEEDED = "QuotaExceeded", "Quota exceeded"
    SUSPENDED = "Suspended", "Suspended"
    INVALID_CONFIG = "InvalidConfig", "Invalid config"


class Endpoint(models.TextChoices):
    IDE = "ide", "ide (generateAssistantResponse)"
    CLI = "cli", "cli (Amazon Q CLI)"


class CredentialGroup(models.Model):
    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Credential(models.Model):
    """One Kiro account. The primary key is the kiro-rs credential id, kept across import."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=200, blank=True, help_text="Operator label.")
    auth_method = models.CharField(max_length=16, choices=AuthMethod.choices)
    provider = models.CharField(max_length=64, blank=True)

    # Secrets: encrypted at rest, write-only in the admin. Hashes serve duplicate checks.
    refresh_token = EncryptedTextField(blank=True)
    refresh_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    access_token = EncryptedTextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    client_id = models.CharField(max_length=512, blank=True)
    client_secret = EncryptedTextField(blank=True)
    kiro_api_key = EncryptedTextField(blank=True)
    kiro_api_key_hash = models.CharField(max_length=64, blank=True, db_index=True)

    start_url = models.URLField(max_length=500, blank=True)
    token_endpoint = models.URLField(max_length=500, blank=True)
    issuer_url = models.URLField(max_length=500, blank=True)
    scopes = models.CharField(max_length=1000, blank=True)

    region = models.CharField(max_length=32, blank=True, help_text="Legacy: auth region only.")
    auth_region = models.CharField(max_length=32, blank=True)
    api_region = models.CharField(max_length=32, blank=True)
    machine_id = models.CharField(max_length=64, blank=True)
    profile_arn = models.CharField(max_length=256, blank=True)
    endpoint = models.CharField(
        max_length=8, choices=Endpoint.choices, blank=True, help_text="Blank: the default."
    )

    proxy_url = models.CharField(
        max_length=500, blank=True, help_text="http(s):// or socks5:// URL, or 'direct'."
    )
    proxy_username = models.CharField(max_length=200, blank=True)
    proxy_password = EncryptedTextField(blank=True)

    priority = models.PositiveIntegerField(default=0, help_text="Lower is preferred.")
    groups = models.ManyToManyField(CredentialGroup, blank=True, related_name="credentials")

    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=32, choices=DisabledReason.choices, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    refresh_failure_count = models.PositiveIntegerField(default=0)
    last_refresh_failure_at = models.DateTimeField(
        null=True, blank=True, help_text="When a token refresh last failed (the admin home)."
    )
    total_failure_count = models.PositiveBigIntegerField(default=0)
    success_count = models.PositiveBigIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    cooldown_until = models.DateTimeField(null=True, blank=True)

    self_heal_rounds = models.PositiveIntegerField(default=0)
    self_heal_total = models.PositiveBigIntegerField(default=0)
    last_self_heal_at = models.DateTimeField(null=True, blank=True)
    self_heal_model = models.CharField(max_length=200, blank=True)

    email = models.CharField(max_length=254, blank=True)
    subscription_title = models.CharField(max_length=100, blank=True)
    source_channel = models.CharField(max_length=200, blank=True)
    balance = models.JSONField(null=True, blank=True)
    balance_checked_at = models.DateTimeField(null=True, blank=True)
    # spec kiro-ops §8.1 (Z): OVERAGE_CAPABLE / NOT_OVERAGE_CAPABLE / NOT_AVAILABLE, and
    # ENABLED / DISABLED, as last reported by getUsageLimits.
    overage_capability = models.CharField(max_length=32, blank=True)
    overage_status = models.CharField(max_length=16, blank=True)
    available_models = models.JSONField(
        null=True, blank=True, help_text="Upstream model ids (ListAvailableModels), lower-case."
    )
    models_checked_at = models.DateTimeField(null=True, blank=True)

    # Token refresh single-flight across processes (spec kiro-protocol §8.7): a refresher
    # claims the row with a conditional UPDATE; everyone else waits for token_version to move.
    token_version = models.PositiveBigIntegerField(default=0)
    refresh_claimed_until = models.DateTimeField(null=True, blank=True)
    refresh_claim_owner = models.CharField(max_length=64, blank=True)
    refresh_count = models.PositiveBigIntegerField(default=0)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)

    # kiro-rs interchange: unknown keys kept verbatim for export, plus which keys the source
    # file spelled out and the original spelling of timestamps (see credentials/kiro_files.py).
    kiro_extra = models.JSONField(default=dict, blank=True)
    kiro_created_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        indexes = [models.Index(fields=["enabled", "priority"])]
        permissions = [
            ("import_kiro", "Can import kiro-rs config.json / credentials.json"),
            ("export_kiro", "Can export kiro-rs files (contains secrets)"),
        ]

    def __str__(self) -> str:
        label = self.name or self.email or f"{self.get_auth_method_display()}"
        return f"#{self.pk} {label}"

    def set_refresh_token(self, value: str) -> None:
        self.refresh_token = value
        self.refresh_token_hash = sha256_hex(value) if value else ""

    def set_kiro_api_key(self, value: str) -> None:
        self.kiro_api_key = value
        self.kiro_api_key_hash = sha256_hex(value) if value else ""


class ClientKey(models.Model):
    """A key that clients present to `/v1`; only its SHA-256 hash is stored."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    prefix = models.CharField(max_length=32, help_text="Shown to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True)
    group = models.ForeignKey(
        CredentialGroup,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="client_keys",
        help_text="When set, this key uses only the credentials of this group.",
    )
    enabled = models.BooleanField(default=True)
    is_system = models.BooleanField(
        default=False, help_text="Synced from config.json apiKey (kiro-rs key id 0)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    # Limits (credentials/limits.py); empty means unlimited. Days and months follow TIME_ZONE.
    rpm_limit = models.PositiveIntegerField(
        "requests per minute", null=True, blank=True, help_text="Over any sliding 60 seconds."
    )
    daily_token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Input + output + cache tokens per day."
    )
    monthly_token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Input + output + cache tokens per calendar month."
    )
    daily_credit_budget = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Kiro credits per day."
    )
    monthly_credit_budget = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Kiro credits per calendar month.",
    )

    class Meta:
        ordering = ["-is_system", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_system"],
                condition=models.Q(is_system=True),
                name="one_system_client_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class LoadBalancingMode(models.TextChoices):
    PRIORITY = "priority", "Priority (sticky)"
    BALANCED = "balanced", "Balanced (least used)"


class TlsBackend(models.TextChoices):
    RUSTLS = "rustls", "rustls (bundled roots)"
    NATIVE_TLS = "native-tls", "native-tls (OS trust store)"


class ToolCompatibilityMode(models.TextChoices):
    CLAUDE_CODE = "claude-code", "claude-code"
    RAW = "raw", "raw"


class ModelResolution(models.TextChoices):
    FALLBACK = "fallback", "fallback (send the newest listed model of the family)"
    STRICT = "strict", "strict (answer 404 for a model no credential lists)"


class CountTokensAuthType(models.TextChoices):
    X_API_KEY = "x-api-key", "x-api-key"
    BEARER = "bearer", "bearer"


#: GatewaySettings fields kept only to write kiro-rs's config.json back: kiro.rs's own server,
#: admin API and self-update. The admin shows them read-only; nothing here acts on them.
ROUND_TRIP_SETTINGS = (
    "host",
    "port",
    "admin_api_key",
    "github_token",
    "endpoints",
    "update_auto_apply",
    "update_auto_apply_time",
    "update_previous_version",
    "update_last_applied_at",
)


class GatewaySettings(models.Model):
    """The one row of runtime settings: every field of kiro-rs config.json (spec kiro-ops §1.3).

    host and port are kept only to write config.json back; the server binds to HOST/PORT from
    the environment. Secrets are encrypted at rest and leave only through the kiro-rs export.
    """

    singleton_id = 1

    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(default=8990, validators=[MaxValueValidator(65535)])
    region = models.CharField(max_length=32, default="us-east-1")
    auth_region = models.CharField(max_length=32, blank=True)
    api_region = models.CharField(max_length=32, blank=True)
    kiro_version = models.CharField(max_length=32, default="2.3.0")
    machine_id = models.CharField(max_length=64, blank=True)
    system_version = models.CharField(max_length=64, default="macos")
    node_version = models.CharField(max_length=32, default="22.22.0")
    tls_backend = models.CharField(
        max_length=16, choices=TlsBackend.choices, default=TlsBackend.RUSTLS
    )
    count_tokens_api_url = models.URLField(max_length=500, blank=True)
    count_tokens_api_key = EncryptedTextField(blank=True)
    count_tokens_auth_type = models.CharField(
        max_length=16, choices=CountTokensAuthType.choices, default=CountTokensAuthType.X_API_KEY
    )
    proxy_url = models.CharField(max_length=500, blank=True, help_text="Global outbound proxy.")
    proxy_username = models.CharField(max_length=200, blank=True)
    proxy_password = EncryptedTextField(blank=True)
    # config.json apiKey: the system client key's plaintext, kept (encrypted) only so that the
    # kiro-rs export can write config.json back; authentication uses ClientKey's hash.
    api_key = EncryptedTextField(blank=True)
    admin_api_key = EncryptedTextField(
        blank=True, help_text="kiro-rs adminApiKey; unused here (the Django admin replaces it)."
    )
    github_token = EncryptedTextField(blank=True)
    update_previous_version = models.CharField(max_length=64, blank=True)
    update_last_applied_at = models.CharField(max_length=64, blank=True)
    update_auto_apply = models.BooleanField(default=False)
    update_auto_apply_time = models.CharField(max_length=5, default="03:00")

    load_balancing_mode = models.CharField(
        max_length=16, choices=LoadBalancingMode.choices, default=LoadBalancingMode.PRIORITY
    )
    account_throttle_failover = models.BooleanField(default=True)
    account_throttle_cooldown_secs = models.PositiveIntegerField(
        default=1800, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    account_rpm_limit_enabled = models.BooleanField(
        default=False,
        help_text="Skip a credential that sent this many requests in the last 60 seconds (counted "
        "across every gateway process); 429 when every usable credential is at its limit.",
    )
    account_rpm_limit = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(100000)],
        help_text="Requests per minute per credential, when the limit is on.",
    )
    suspended_detection_enabled = models.BooleanField(default=True)
    self_heal_enabled = models.BooleanField(default=True)
    self_heal_min_interval_secs = models.PositiveIntegerField(
        default=300, validators=[MaxValueValidator(86400)]
    )
    self_heal_max_consecutive_rounds = models.PositiveIntegerField(
        default=5, validators=[MaxValueValidator(1000)]
    )
    model_cache_ttl_secs = models.PositiveIntegerField(default=3600)
    extract_thinking = models.BooleanField(default=True)
    tool_compatibility_mode = models.CharField(
        max_length=16,
        choices=ToolCompatibilityMode.choices,
        default=ToolCompatibilityMode.CLAUDE_CODE,
    )
    default_endpoint = models.CharField(
        max_length=8, choices=Endpoint.choices, default=Endpoint.IDE
    )
    trace_enabled = models.BooleanField(
        default=True,
        help_text="Keep each request's chain of upstream attempts (Usage records → attempts). "
        "Off: the usage record alone is written.",
    )
    trace_retention_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    usage_log_retention_days = models.PositiveIntegerField(
        default=31, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    usage_record_retention_days = models.PositiveIntegerField(
        default=400,
        help_text="Usage records (the SQL history) older than this are deleted; 0 keeps all. "
        "Attempt chains follow trace retention, JSONL files usage-log retention.",
    )
    endpoints = models.JSONField(default=dict, blank=True)
    custom_models = models.JSONField(default=list, blank=True)

    # Gateway-only knobs (not in config.json).
    max_attempts_per_credential = models.PositiveIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    max_attempts_per_request = models.PositiveIntegerField(
        default=9, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    stream_ping_interval_secs = models.PositiveIntegerField(
        default=25, validators=[MinValueValidator(1), MaxValueValidator(600)]
    )
    model_resolution = models.CharField(
        max_length=16,
        choices=ModelResolution.choices,
        default=ModelResolution.FALLBACK,
        help_text="What to do with a model id none of the key's credentials lists: send the "
        "newest listed model of its family (or the fallback model), or refuse with a 404.",
    )
    fallback_model = models.CharField(
        max_length=256,
        blank=True,
        help_text="Model sent when the requested family has nothing listed (a Kiro id such as "
        "claude-sonnet-4.5, a client id or a custom model id). Blank, or not listed: the "
        "newest listed sonnet.",
    )
    prompt_cache_metering = models.BooleanField(
        default=True,
        help_text="Simulate Anthropic's prompt cache from the clients' cache_control "
        "breakpoints (cache_creation / cache_read tokens). Off: the upstream's figures only.",
    )
    # kiro-rs interchange: config.json keys this gateway does not know, written back on export.
    kiro_extra = models.JSONField(default=dict, blank=True, editable=False)
    # Priority mode's sticky current credential (spec kiro-ops §3.2), shared by all processes.
    current_credential_id = models.BigIntegerField(null=True, blank=True, editable=False)

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "gateway settings"
        verbose_name_plural = "gateway settings"

    def __str__(self) -> str:
        return "Gateway settings"

    def save(self, *args: object, **kwargs: object) -> None:
        self.pk = self.singleton_id
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> GatewaySettings:
        """Return the settings row, creating it with defaults on first use."""
        obj, _ = cls.objects.get_or_create(pk=cls.singleton_id)
        return obj


class ProxyHealth(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


class ProxyEntry(models.Model):
    """A proxy of the pool (spec kiro-ops §7): checked for health, assignable to credentials."""

    url = models.CharField(max_length=500, unique=True, help_text="scheme://[user:pass@]host:port")
    label = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    health = models.CharField(
        max_length=16, choices=ProxyHealth.choices, default=ProxyHealth.UNKNOWN
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    auto_disabled = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name = "proxy"
        verbose_name_plural = "proxy pool"

    def __str__(self) -> str:
        return self.label or mask_proxy_url(self.url)


def mask_proxy_url(url: str) -> str:
    """Hide the password of a proxy URL for display: scheme://user:****@host:port."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':****' if colon else ''}@{host}"


class CredentialRequestStamp(models.Model):
    """One request sent upstream as a credential, kept a minute for the per-account RPM limit
    (kiro-ops §3.8). In the database, so that every gateway process counts the same window."""

    credential = models.ForeignKey(Credential, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["credential", "at"])]

    def __str__(self) -> str:
        return f"credential #{self.credential_id} at {self.at:%H:%M:%S}"


class JobLock(models.Model):
    """A lease that lets one of several processes run a background job (claimed by UPDATE)."""

    name = models.CharField(max_length=100, primary_key=True)
    holder = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_result = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class LimitWindowKind(models.TextChoices):
    REQUEST = "request", "Admitted request"
    DAY = "day", "Day"
    MONTH = "month", "Month"


class ClientKeyWindow(models.Model):
    """Usage of a client key in its current day or month, or one admitted request.

    Day and month rows (one each per key) are rolled over in place; the month row also carries
    the key's lifetime totals. A request row is written
    when a request is admitted: it reserves the request's estimate until it is settled (or its
    lease runs out) and, for 60 seconds, counts toward the key's requests per minute.
    """

    client_key = models.ForeignKey(
        ClientKey, on_delete=models.CASCADE, related_name="limit_windows"
    )
    kind = models.CharField(max_length=8, choices=LimitWindowKind.choices)
    start = models.DateTimeField(help_text="Window start, or when the request was admitted.")
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0, help_text="Request rows: the estimate.")
    credits = models.FloatField(default=0.0, help_text="Request rows: the estimate.")
    peak_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    peak_credits = models.FloatField(null=True, blank=True)
    settled = models.BooleanField(default=False)
    # Month rows only: the key's lifetime totals, moved by the same UPDATE as the month's usage
    # and kept across rollovers (like the peaks); zeroed by "Reset lifetime statistics".
    total_requests = models.PositiveBigIntegerField(default=0)
    total_input_tokens = models.PositiveBigIntegerField(default=0)
    total_output_tokens = models.PositiveBigIntegerField(default=0)
    total_credits = models.FloatField(default=0.0)
    totals_since = models.DateTimeField(
        null=True, blank=True, help_text="When the totals started: first use, backfill or reset."
    )

    class Meta:
        indexes = [models.Index(fields=["client_key", "kind", "start"])]
        constraints = [
            models.UniqueConstraint(
                fields=["client_key", "kind"],
                condition=~models.Q(kind="request"),
                name="one_usage_window_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.client_key_id} {self.kind} {self.start:%Y-%m-%d %H:%M}"
