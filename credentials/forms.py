"""Admin forms: secrets are write-only inputs with a masked preview, never re-rendered."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.html import format_html

from credentials import kiro_files
from credentials.models import (
    ROUND_TRIP_SETTINGS,
    AuthMethod,
    Credential,
    GatewaySettings,
    ProxyEntry,
    sha256_hex,
)
from credentials.services import proxy_mask
from gateway.kiro.proxies import proxy_url_problem
from gateway.protocol.models import ConversionError, resolve_model


def https_urls(field: models.Field, **kwargs: Any) -> forms.Field | None:
    """Build form fields assuming https for scheme-less URLs, as Django 6 does."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


def secret_preview(value: str) -> str:
    """Describe a stored secret without revealing it: length and a hash fingerprint."""
    if not value:
        return "not set"
    return f"set · {len(value)} characters · fingerprint {sha256_hex(value)[:8]}"


class SecretField(forms.CharField):
    """A write-only secret: empty input keeps the stored value."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        kwargs.setdefault(
            "widget",
            forms.PasswordInput(
                render_value=False, attrs={"autocomplete": "new-password", "size": 60}
            ),
        )
        super().__init__(**kwargs)


class SecretFieldsMixin:
    """Swap the listed model fields for write-only inputs plus a 'clear' checkbox each."""

    secret_fields: tuple[str, ...] = ()
    instance: Any
    fields: dict[str, forms.Field]
    cleaned_data: dict[str, Any]

    def _init_secrets(self) -> None:
        for name in self.secret_fields:
            current = getattr(self.instance, name, "") if self.instance.pk else ""
            label = self.instance._meta.get_field(name).verbose_name.capitalize()
            self.fields[name] = SecretField(
                label=label,
                help_text=format_html(
                    "Write-only. Stored: <b>{}</b>. Leave empty to keep it.",
                    secret_preview(current),
                ),
            )
            if current:
                self.fields[f"{name}__clear"] = forms.BooleanField(
                    required=False, label=f"Clear {label.lower()}"
                )

    def _secret_value(self, name: str) -> str:
        """Return the secret to store: the new input, '' if cleared, else the stored one."""
        new = self.cleaned_data.get(name) or ""
        if new:
            return new
        if self.cleaned_data.get(f"{name}__clear"):
            return ""
        return getattr(self.instance, name, "") if self.instance.pk else ""


class CredentialForm(SecretFieldsMixin, forms.ModelForm):
    secret_fields = (
        "refresh_token",
        "access_token",
        "client_secret",
        "kiro_api_key",
        "proxy_password",
    )

    class Meta:
        model = Credential
        formfield_callback = https_urls
        fields = [
            "name", "auth_method", "provider", "priority", "groups", "endpoint",
            "refresh_token", "access_token", "expires_at", "client_id", "client_secret",
            "kiro_api_key", "start_url", "token_endpoint", "issuer_url", "scopes",
            "region", "auth_region", "api_region", "machine_id", "profile_arn",
            "proxy_url", "proxy_username", "proxy_password",
            "email", "subscription_title", "source_channel",
        ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_secrets()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        method = data.get("auth_method")
        refresh = self._secret_value("refresh_token")
        api_key = self._secret_value("kiro_api_key")
        if refresh and self.cleaned_data.get("refresh_token"):
            problem = kiro_files.refresh_token_problem(refresh)
            if problem:
                self.add_error("refresh_token", f"Refresh token {problem}.")
        if method in (AuthMethod.SOCIAL, AuthMethod.IDC, AuthMethod.EXTERNAL_IDP) and not refresh:
            self.add_error("refresh_token", "This kind of credential needs a refresh token.")
        if method == AuthMethod.IDC and not (
            data.get("client_id") and self._secret_value("client_secret")
        ):
            self.add_error("client_id", "IdC credentials need a client id and a client secret.")
        if method == AuthMethod.API_KEY and not api_key:
            self.add_error("kiro_api_key", "API-key credentials need a Kiro API key (ksk_…).")
        if method == AuthMethod.EXTERNAL_IDP:
            endpoint = data.get("token_endpoint") or ""
            problem = kiro_files.validate_token_endpoint(endpoint) if endpoint else "is required"
            if problem:
                self.add_error("token_endpoint", f"Token endpoint {problem}.")
        others = Credential.objects.exclude(pk=self.instance.pk)
        if refresh and others.filter(refresh_token_hash=sha256_hex(refresh)).exists():
            self.add_error("refresh_token", "Another credential already has this refresh token.")
        if api_key and others.filter(kiro_api_key_hash=sha256_hex(api_key)).exists():
            self.add_error("kiro_api_key", "Another credential already has this API key.")
        return data

    def save(self, commit: bool = True) -> Credential:
        credential = super().save(commit=False)
        credential.set_refresh_token(self._secret_value("refresh_token"))
        credential.set_kiro_api_key(self._secret_value("kiro_api_key"))
        for name in ("access_token", "client_secret", "proxy_password"):
            setattr(credential, name, self._secret_value(name))
        if commit:
            credential.save()
            self.save_m2m()
        return credential


class GatewaySettingsForm(SecretFieldsMixin, forms.ModelForm):
    secret_fields = ("proxy_password", "count_tokens_api_key")

    class Meta:
        model = GatewaySettings
        formfield_callback = https_urls
        # api_key is left out: the system client key is rotated from its client-key page; the
        # round-trip fields are shown read-only (they only travel to config.json and back).
        fields = [
            f.name
            for f in GatewaySettings._meta.concrete_fields
            if f.editable and f.name not in ("id", "api_key", *ROUND_TRIP_SETTINGS)
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_secrets()

    def clean_proxy_url(self) -> str:
        """The global proxy follows the one grammar (gateway.kiro.proxies)."""
        value = (self.cleaned_data.get("proxy_url") or "").strip()
        problem = proxy_url_problem(value) if value else None
        if problem:
            raise ValidationError(f"Invalid proxy URL: {problem}.")
        return value

    def clean_fallback_model(self) -> str:
        """Refuse what no client could send as a model id (control characters, …)."""
        value = (self.cleaned_data.get("fallback_model") or "").strip()
        if value:
            try:
                resolve_model(value)
            except ConversionError as exc:
                raise ValidationError(f"Not a model id: {exc.detail}") from None
        return value

    def save(self, commit: bool = True) -> GatewaySettings:
        row = super().save(commit=False)
        for name in self.secret_fields:
            setattr(row, name, self._secret_value(name))
        if commit:
            row.save()
        return row


class KiroImportForm(forms.Form):
    config = forms.FileField(required=False, label="config.json")
    credentials = forms.FileField(required=False, label="credentials.json")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("config") and not data.get("credentials"):
            raise ValidationError("Choose config.json, credentials.json, or both.")
        for name in ("config", "credentials"):
            upload = data.get(name)
            if upload is None:
                continue
            try:
                data[f"{name}_text"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                self.add_error(name, f"{upload.name} is not UTF-8 text.")
            data[f"{name}_name"] = upload.name
        return data


# --- operator console (spec kiro-ops §7, §10 #122–#153) ----------------------------------------


class MaskedUrlInput(forms.TextInput):
    """A text input that never echoes a proxy password back into the page."""

    def format_value(self, value: Any) -> str | None:
        formatted = super().format_value(value)
        return proxy_mask(formatted) if formatted else formatted


class ProxyEntryForm(forms.ModelForm):
    """Add or edit a pool proxy; the URL is validated as kiro-rs does (spec kiro-ops §7)."""

    class Meta:
        model = ProxyEntry
        fields = ["url", "label", "enabled"]
        widgets = {"url": MaskedUrlInput(attrs={"size": 60})}

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        problem = proxy_url_problem(url)
        if problem:
            raise ValidationError(f"Invalid proxy URL: {problem}.")
        return url

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        url = data.get("url") or self.instance.url
        if not (data.get("label") or "").strip() and url:
            # The label names the entry in history and messages: never the password.
            data["label"] = proxy_mask(url)
        return data


class ProxyBulkAddForm(forms.Form):
    urls = forms.CharField(
        label="Proxy URLs",
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "autocomplete": "off"}),
        help_text="One per line: scheme://[user:pass@]host:port with http, https, socks5 or "
        "socks5h (socks4 is not supported). Empty lines and lines starting with # are skipped.",
    )


class GroupEditForm(forms.Form):
    mode = forms.ChoiceField(
        choices=[
            ("replace", "Replace the groups with these"),
            ("append", "Add these groups"),
            ("remove", "Remove these groups"),
        ],
        widget=forms.RadioSelect,
        initial="append",
    )
    groups = forms.CharField(
        required=False,
        help_text="Group names separated by commas; new names create groups. "
        "Replace with nothing clears the groups.",
    )

    def clean_groups(self) -> list[str]:
        names = [n.strip() for n in self.cleaned_data["groups"].split(",") if n.strip()]
        too_long = [n for n in names if len(n) > 64]
        if too_long:
            raise ValidationError("Group names are at most 64 characters.")
        return names


class AssignProxyForm(forms.Form):
    proxy = forms.ModelChoiceField(
        queryset=ProxyEntry.objects.none(),
        required=False,
        empty_label="(no proxy: use the global one)",
        help_text="The URL is copied onto the credentials; later pool edits do not follow.",
    )
    direct = forms.BooleanField(
        required=False, label="Connect directly ('direct'), bypassing the global proxy"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["proxy"]
        field.queryset = ProxyEntry.objects.order_by("pk")  # type: ignore[attr-defined]
        field.label_from_instance = lambda entry: (  # type: ignore[attr-defined]
            f"{entry.label} — {proxy_mask(entry.url)} ({entry.health})"
            if entry.label != proxy_mask(entry.url)
            else f"{proxy_mask(entry.url)} ({entry.health})"
        )

    def chosen_url(self) -> str:
        if self.cleaned_data.get("direct"):
            return "direct"
        entry = self.cleaned_data.get("proxy")
        return entry.url if entry else ""


class ModelTestForm(forms.Form):
    model = forms.ChoiceField(choices=())

    def __init__(self, *args: Any, models: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m, m) for m in models]


class CredentialConsoleForm(CredentialForm):
    """The credential form with a proxy URL whose password is never echoed (spec §7 pool)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "proxy_url" in self.fields:
            self.fields["proxy_url"].widget = MaskedUrlInput(attrs={"size": 60})

    def clean_proxy_url(self) -> str:
        value = (self.cleaned_data.get("proxy_url") or "").strip()
        stored = self.instance.proxy_url if self.instance.pk else ""
        # The page shows the masked form; sending it back unchanged keeps the stored URL.
        if stored and value == proxy_mask(stored):
            return stored
        problem = proxy_url_problem(value) if value and value.lower() != "direct" else None
        if problem:
            raise ValidationError(f"Invalid proxy URL: {problem}.")
        return value


# --- login flows (spec kiro-ops §8.4) ----------------------------------------------------------

BUILDER_ID_START_URL = "https://view.awsapps.com/start"


class LoginOptionsForm(forms.Form):
    """What a login adds besides tokens: priority, email and proxy (new credentials only)."""

    priority = forms.IntegerField(required=False, min_value=0, help_text="Lower is preferred.")
    email = forms.EmailField(required=False)
    proxy_url = forms.CharField(
        required=False,
        label="Proxy",
        widget=forms.TextInput(attrs={"size": 60, "autocomplete": "off"}),
        help_text="scheme://[user:pass@]host:port, or 'direct'; empty uses the global proxy. "
        "The login itself also goes through it.",
    )

    def __init__(self, *args: Any, relogin: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if relogin:  # a re-login keeps the credential's priority, email and proxy
            for name in ("priority", "email", "proxy_url"):
                self.fields.pop(name)

    def clean_proxy_url(self) -> str:
        url = (self.cleaned_data.get("proxy_url") or "").strip()
        if url and url.lower() != "direct":
            problem = proxy_url_problem(url)
            if problem:
                raise ValidationError(f"Invalid proxy URL: {problem}.")
        return url


class IdcLoginForm(LoginOptionsForm):
    start_url = forms.URLField(
        initial=BUILDER_ID_START_URL,
        assume_scheme="https",
        label="Start URL",
        widget=forms.URLInput(attrs={"size": 60}),
        help_text=f"{BUILDER_ID_START_URL} means Builder ID; any other start URL is Enterprise.",
    )
    region = forms.RegexField(
        regex=r"^[a-z]{2}(-[a-z]+)+-\d$",
        initial="us-east-1",
        max_length=32,
        error_messages={"invalid": "Enter an AWS region such as us-east-1."},
    )
    field_order = ["start_url", "region", "priority", "email", "proxy_url"]


class SocialLoginForm(LoginOptionsForm):
    pass


class SocialCompleteForm(forms.Form):
    redirect_url = forms.CharField(
        label="Redirect URL",
        max_length=4000,
        widget=forms.TextInput(attrs={"size": 100, "autocomplete": "off"}),
        help_text="The full address the browser ended on (http://127.0.0.1:3128/…?code=…).",
    )
