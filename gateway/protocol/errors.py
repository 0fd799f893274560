"""One error taxonomy: what the client is told, and what the usage record says happened.

Two vocabularies, never mixed:

- `AnthropicType` is the `error.type` a client receives on the Anthropic endpoints, in a JSON
  body or an SSE `error` event. Only Anthropic's documented types exist, because the SDKs map
  exactly those (Claude Code retries `overloaded_error`, `rate_limit_error` and `api_error`).
  The OpenAI endpoints translate it with `openai_error_fields` into OpenAI's types and codes.
- `ErrorType` is our own classification, stored in `UsageRecord.error_type` (and the JSONL and
  the dashboard): why the request failed, as precisely as we know it — a cut tool call, a
  broken stream, no usable credential. It goes into records and messages, never into the
  client-facing type.

Client errors are built here and only here (`ClientError` refuses undocumented types, and
`tests/protocol/test_errors.py` checks that no other module constructs one).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final


class AnthropicType(StrEnum):
    """Anthropic's documented error types (docs: API errors), with their usual status."""

    INVALID_REQUEST = "invalid_request_error"  # 400
    AUTHENTICATION = "authentication_error"  # 401
    BILLING = "billing_error"  # 402
    PERMISSION = "permission_error"  # 403
    NOT_FOUND = "not_found_error"  # 404
    REQUEST_TOO_LARGE = "request_too_large"  # 413
    RATE_LIMIT = "rate_limit_error"  # 429
    API = "api_error"  # 500 (and our 502/503)
    TIMEOUT = "timeout_error"  # 504
    OVERLOADED = "overloaded_error"  # 529


class ErrorType(StrEnum):
    """Why a request failed, as stored in `UsageRecord.error_type` (README: "Error types")."""

    # Refused before anything went upstream.
    INVALID_REQUEST = "invalid_request"
    INVALID_HOST = "invalid_host"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TOO_LARGE = "request_too_large"
    MODEL_NOT_FOUND = "model_not_found"
    KEY_RPM_LIMIT = "key_rpm_limit"
    KEY_DAILY_TOKEN_BUDGET = "key_daily_token_budget"
    KEY_MONTHLY_TOKEN_BUDGET = "key_monthly_token_budget"
    KEY_DAILY_CREDIT_BUDGET = "key_daily_credit_budget"
    KEY_MONTHLY_CREDIT_BUDGET = "key_monthly_credit_budget"
    # The pool and the upstream attempts (the attempt outcomes of protocol.classify.Outcome).
    NO_CREDENTIALS = "no_credentials"
    UPSTREAM_EXHAUSTED = "upstream_exhausted"
    QUOTA_EXHAUSTED = "quota_exhausted"
    ACCOUNT_THROTTLED = "account_throttled"
    ACCOUNT_RPM_LIMIT = "account_rpm_limit"
    ACCOUNT_SUSPENDED = "account_suspended"
    AUTH_FAILED = "auth_failed"
    TRANSIENT = "transient"
    NETWORK_ERROR = "network_error"
    BAD_REQUEST = "bad_request"
    UNKNOWN = "unknown"
    # The answer itself.
    UPSTREAM_EXCEPTION = "upstream_exception"
    EMPTY_ANSWER = "empty_answer"
    TOOL_JSON_CUT = "tool_json_cut"
    STREAM_INTERRUPTED = "stream_interrupted"
    WEB_SEARCH_FAILED = "web_search_failed"
    CLIENT_DISCONNECTED = "client_disconnected"
    INTERNAL_ERROR = "internal_error"


#: One line per record error type, for the README's SQL section and the admin's filter.
ERROR_TYPE_MEANINGS: Final[dict[ErrorType, str]] = {
    ErrorType.INVALID_REQUEST: "the body was malformed or failed validation (400)",
    ErrorType.INVALID_HOST: "the Host header is not in ALLOWED_HOSTS (400)",
    ErrorType.AUTHENTICATION: "no API key, or an unknown or disabled one (401)",
    ErrorType.PERMISSION: "the request was forbidden (403)",
    ErrorType.NOT_FOUND: "no such path under /v1 (404)",
    ErrorType.METHOD_NOT_ALLOWED: "a method the endpoint does not take (405)",
    ErrorType.REQUEST_TOO_LARGE: "the body is over KIRO_MAX_BODY_BYTES (413)",
    ErrorType.MODEL_NOT_FOUND: "strict model resolution: no credential lists the model (404)",
    ErrorType.KEY_RPM_LIMIT: "the client key's requests-per-minute limit (429)",
    ErrorType.KEY_DAILY_TOKEN_BUDGET: "the client key's daily token budget (429)",
    ErrorType.KEY_MONTHLY_TOKEN_BUDGET: "the client key's monthly token budget (429)",
    ErrorType.KEY_DAILY_CREDIT_BUDGET: "the client key's daily credit budget (429)",
    ErrorType.KEY_MONTHLY_CREDIT_BUDGET: "the client key's monthly credit budget (429)",
    ErrorType.NO_CREDENTIALS: "no credential could serve the model or group (503)",
    ErrorType.UPSTREAM_EXHAUSTED: "every attempt failed; the last upstream error is answered",
    ErrorType.QUOTA_EXHAUSTED: "the upstream said the account's quota is used up",
    ErrorType.ACCOUNT_THROTTLED: "every usable credential is cooling down (429)",
    ErrorType.ACCOUNT_RPM_LIMIT: "every usable credential is at its per-account RPM limit (429)",
    ErrorType.ACCOUNT_SUSPENDED: "the upstream said the account is suspended",
    ErrorType.AUTH_FAILED: "the token could not be refreshed or was refused",
    ErrorType.TRANSIENT: "a retryable upstream failure (5xx, 429) ended the request",
    ErrorType.NETWORK_ERROR: "the upstream could not be reached",
    ErrorType.BAD_REQUEST: "the upstream refused the request as invalid (400)",
    ErrorType.UNKNOWN: "an upstream failure nothing else describes",
    ErrorType.UPSTREAM_EXCEPTION: "the upstream ended the answer with an exception frame",
    ErrorType.EMPTY_ANSWER: "the upstream ended the answer without any content",
    ErrorType.TOOL_JSON_CUT: "a tool call's JSON input was cut off (never delivered complete)",
    ErrorType.STREAM_INTERRUPTED: "the upstream stream broke off before the answer was complete",
    ErrorType.WEB_SEARCH_FAILED: "a web search of the web-search loop failed",
    ErrorType.CLIENT_DISCONNECTED: "the client went away before the answer was complete",
    ErrorType.INTERNAL_ERROR: "a bug in the gateway (logged with its traceback, 500)",
}

#: The record's type when a builder is not told a more precise one.
_DEFAULT_KIND: Final[dict[AnthropicType, ErrorType]] = {
    AnthropicType.INVALID_REQUEST: ErrorType.INVALID_REQUEST,
    AnthropicType.AUTHENTICATION: ErrorType.AUTHENTICATION,
    AnthropicType.BILLING: ErrorType.QUOTA_EXHAUSTED,
    AnthropicType.PERMISSION: ErrorType.PERMISSION,
    AnthropicType.NOT_FOUND: ErrorType.NOT_FOUND,
    AnthropicType.REQUEST_TOO_LARGE: ErrorType.REQUEST_TOO_LARGE,
    AnthropicType.RATE_LIMIT: ErrorType.TRANSIENT,
    AnthropicType.API: ErrorType.UNKNOWN,
    AnthropicType.TIMEOUT: ErrorType.TRANSIENT,
    AnthropicType.OVERLOADED: ErrorType.TRANSIENT,
}


@dataclass(frozen=True, slots=True)
class ClientError:
    """What the client receives when the request ends in failure, and what the record says.

    `error_type` is Anthropic's documented type (anything else raises ValueError); `kind` is
    the record's `ErrorType`."""

    status: int
    error_type: str
    message: str
    retry_after: int | None = None
    kind: str = ""

    def __post_init__(self) -> None:
        anthropic = AnthropicType(self.error_type)  # ValueError: not a documented type
        kind = ErrorType(self.kind) if self.kind else _DEFAULT_KIND[anthropic]
        object.__setattr__(self, "kind", kind)

    def body(self) -> dict[str, Any]:
        """Return Anthropic's error body."""
        return anthropic_body(self.error_type, self.message)

    def with_kind(self, kind: ErrorType) -> ClientError:
        """Return the same answer with another record type."""
        return ClientError(self.status, self.error_type, self.message, self.retry_after, kind)


def anthropic_body(error_type: str, message: str) -> dict[str, Any]:
    """Return `{"type": "error", "error": {...}}` (also the SSE `error` event's data)."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


# --- builders: every client error of the gateway is made by one of these ------------------


def invalid_request(message: str, kind: ErrorType = ErrorType.INVALID_REQUEST) -> ClientError:
    return ClientError(400, AnthropicType.INVALID_REQUEST, message, kind=kind)


def authentication(message: str) -> ClientError:
    return ClientError(401, AnthropicType.AUTHENTICATION, message)


def permission(message: str) -> ClientError:
    return ClientError(403, AnthropicType.PERMISSION, message)


def not_found(message: str, kind: ErrorType = ErrorType.NOT_FOUND) -> ClientError:
    return ClientError(404, AnthropicType.NOT_FOUND, message, kind=kind)


def method_not_allowed(message: str) -> ClientError:
    """405: Anthropic has no type of its own for it; it is a request the API refuses."""
    return ClientError(
        405, AnthropicType.INVALID_REQUEST, message, kind=ErrorType.METHOD_NOT_ALLOWED
    )


def too_large(message: str) -> ClientError:
    return ClientError(413, AnthropicType.REQUEST_TOO_LARGE, message)


def rate_limited(
    message: str, retry_after: int | None, kind: ErrorType = ErrorType.TRANSIENT
) -> ClientError:
    return ClientError(429, AnthropicType.RATE_LIMIT, message, retry_after, kind)


def api_error(
    message: str, *, status: int = 502, kind: ErrorType = ErrorType.UNKNOWN
) -> ClientError:
    return ClientError(status, AnthropicType.API, message, kind=kind)


def timeout(message: str, kind: ErrorType = ErrorType.TRANSIENT) -> ClientError:
    return ClientError(504, AnthropicType.TIMEOUT, message, kind=kind)


def overloaded(message: str, kind: ErrorType = ErrorType.TRANSIENT) -> ClientError:
    return ClientError(529, AnthropicType.OVERLOADED, message, kind=kind)


def internal_error() -> ClientError:
    return api_error(
        "The gateway hit an internal error; it was logged. Please retry.",
        status=500,
        kind=ErrorType.INTERNAL_ERROR,
    )


def upstream_kind(code: str) -> AnthropicType:
    """Map a Kiro exception or error code to the Anthropic type a client retries on."""
    lowered = code.lower()
    if any(word in lowered for word in ("throttl", "unavailable", "overload", "toomany")):
        return AnthropicType.OVERLOADED
    return AnthropicType.API


class UpstreamFailure(Exception):
    """A broken upstream answer (§6.12, §6.13): the client's error and the record's type."""

    def __init__(
        self,
        error_type: str,
        message: str,
        status: int = 502,
        *,
        kind: ErrorType = ErrorType.UPSTREAM_EXCEPTION,
    ) -> None:
        super().__init__(message)
        self.error = ClientError(status, error_type, message, kind=kind)

    @property
    def error_type(self) -> str:
        return self.error.error_type

    @property
    def kind(self) -> ErrorType:
        return ErrorType(self.error.kind)

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def status(self) -> int:
        return self.error.status

    def body(self) -> dict[str, Any]:
        """Return the Anthropic error JSON for the client."""
        return self.error.body()


# --- the OpenAI endpoints ------------------------------------------------------------------

#: OpenAI's `error.type` and `error.code` for each Anthropic type (OpenAI's error-codes guide:
#: a bad key is `invalid_request_error` / `invalid_api_key`, quota `insufficient_quota`,
#: request rate `rate_limit_error` / `rate_limit_exceeded`, failures `server_error`).
_OPENAI: Final[dict[AnthropicType, tuple[str, str | None]]] = {
    AnthropicType.INVALID_REQUEST: ("invalid_request_error", None),
    AnthropicType.AUTHENTICATION: ("invalid_request_error", "invalid_api_key"),
    AnthropicType.BILLING: ("insufficient_quota", "insufficient_quota"),
    AnthropicType.PERMISSION: ("invalid_request_error", "permission_denied"),
    AnthropicType.NOT_FOUND: ("invalid_request_error", "not_found"),
    AnthropicType.REQUEST_TOO_LARGE: ("invalid_request_error", "request_too_large"),
    AnthropicType.RATE_LIMIT: ("rate_limit_error", "rate_limit_exceeded"),
    AnthropicType.API: ("server_error", None),
    AnthropicType.TIMEOUT: ("server_error", "timeout"),
    AnthropicType.OVERLOADED: ("server_error", "server_is_overloaded"),
}
#: Every `error.type` the OpenAI endpoints send.
OPENAI_TYPES: Final = frozenset(kind for kind, _ in _OPENAI.values())


_BY_STATUS: Final[dict[int, AnthropicType]] = {
    400: AnthropicType.INVALID_REQUEST,
    401: AnthropicType.AUTHENTICATION,
    402: AnthropicType.BILLING,
    403: AnthropicType.PERMISSION,
    404: AnthropicType.NOT_FOUND,
    413: AnthropicType.REQUEST_TOO_LARGE,
    429: AnthropicType.RATE_LIMIT,
    504: AnthropicType.TIMEOUT,
    529: AnthropicType.OVERLOADED,
}


def type_for_status(status: int) -> AnthropicType:
    """Return the Anthropic type Anthropic uses for an HTTP status (api_error for 5xx)."""
    default = AnthropicType.API if status >= 500 else AnthropicType.INVALID_REQUEST
    return _BY_STATUS.get(status, default)


def openai_error_fields(error_type: str | None, status: int) -> tuple[str, str | None]:
    """Return OpenAI's (type, code) for an Anthropic type, or for the status without one."""
    try:
        anthropic = AnthropicType(error_type or "")
    except ValueError:
        anthropic = type_for_status(status)
    return _OPENAI[anthropic]
