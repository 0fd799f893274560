"""Classify an upstream answer and decide the next step (spec kiro-protocol §7.2–§7.5, Z rows).

Pure functions: status, headers and body in; a `Verdict` out. The dispatcher acts on it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from gateway.protocol import errors
from gateway.protocol.errors import ClientError, ErrorType

BEARER_INVALID = "The bearer token included in the request is invalid"
_QUOTA_REASONS = ("MONTHLY_REQUEST_COUNT", "OVERAGE_REQUEST_LIMIT_EXCEEDED")
_VALIDATION_REASONS = ("TOOL_USE_RESULT_MISMATCH", "TOOL_SCHEMA_INVALID")


class Outcome(StrEnum):
    """Attempt outcomes as stored (spec kiro-ops §5.4)."""

    SUCCESS = "success"
    QUOTA_EXHAUSTED = "quota_exhausted"
    ACCOUNT_THROTTLED = "account_throttled"
    ACCOUNT_SUSPENDED = "account_suspended"
    AUTH_FAILED = "auth_failed"
    TRANSIENT = "transient"
    NETWORK_ERROR = "network_error"
    BAD_REQUEST = "bad_request"
    UNKNOWN = "unknown"


class Action(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"  # back off, may reuse the same credential
    RETRY_NOW = "retry_now"  # the token was just replaced: try the same credential at once
    SWITCH = "switch"  # penalise/disable this credential and try another at once
    FORCE_REFRESH = "force_refresh"  # refresh this credential's token, then retry it
    FAIL = "fail"  # stop; answer the client with `error`


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    action: Action
    disable_reason: str | None = None  # disable the credential with this reason
    count_failure: bool = False  # consecutive auth failure +1 (3 disable: TooManyFailures)
    cooldown: bool = False  # account throttle cooldown
    throttle_backoff: bool = False  # use the 429 backoff schedule
    error: ClientError | None = None  # final answer when action is FAIL (or budget runs out)


def _json_reason(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    reason = data.get("reason")
    if isinstance(reason, str):
        return reason
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("reason"), str):
        return error["reason"]
    return None


def _json_message(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        for value in (
            data.get("message"),
            (data.get("error") or {}).get("message")
            if isinstance(data.get("error"), dict)
            else None,
        ):
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _reason_matches(body: str, reasons: tuple[str, ...]) -> bool:
    """Z's detector: JSON reason must match; a non-JSON body containing the word counts."""
    if not any(r in body for r in reasons):
        return False
    reason = _json_reason(body)
    if reason is not None:
        return reason in reasons
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


def is_quota_exhausted(body: str) -> bool:
    return _reason_matches(body, _QUOTA_REASONS)


def is_bearer_invalid(body: str) -> bool:
    return BEARER_INVALID in body


def is_account_throttled(body: str) -> bool:
    return "suspicious activity" in body and "temporary limits" in body


def is_account_suspended(body: str) -> bool:
    lowered = body.lower()
    return "suspended" in lowered and "locked your account" in lowered


def is_client_validation(body: str) -> bool:
    return _reason_matches(body, _VALIDATION_REASONS) or "Expected toolResult blocks" in body


def is_gateway_timeout(status: int, body: str) -> bool:
    if status == 524:
        return True
    lowered = body.lower()
    return "524" in body and any(
        s in lowered for s in ("status code", "gateway timeout", "server-side issue")
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> int | None:
    """Return Retry-After in whole seconds (delta-seconds or HTTP-date), or None if invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0, int(delta + 0.999))


# --- client-facing errors (spec §7.5) --------------------------------------------------------

CONTEXT_FULL = errors.invalid_request(
    "Context window is full. Reduce conversation history, system prompt, or tools.",
    ErrorType.BAD_REQUEST,
)
INPUT_TOO_LONG = errors.invalid_request(
    "Input is too long. Reduce the size of your messages.", ErrorType.BAD_REQUEST
)
TOOL_PAIRING = errors.invalid_request(
    "Invalid message sequence: tool_use and tool_result blocks must be correctly paired and "
    "ordered.",
    ErrorType.BAD_REQUEST,
)
UPSTREAM_FAILED = errors.api_error("Upstream API request failed.")
RATE_LIMITED_MESSAGE = "Upstream rate limit exceeded. Retry later."


def bad_request_error(body: str) -> ClientError:
    """Map an upstream 400 to the client's 400 (unlike H/Z, which answer 502)."""
    if "CONTENT_LENGTH_EXCEEDS_THRESHOLD" in body:
        return CONTEXT_FULL
    if "Input is too long" in body:
        return INPUT_TOO_LONG
    if is_client_validation(body):
        return TOOL_PAIRING
    message = _json_message(body) or "Improperly formed request."
    reason = _json_reason(body)
    detail = f" (reason: {reason})" if reason else ""
    return errors.invalid_request(
        f"Upstream rejected the request: {message}{detail}", ErrorType.BAD_REQUEST
    )


def classify(
    status: int,
    body: str,
    *,
    retry_after: str | None = None,
    already_forced_refresh: bool = False,
    suspended_detection: bool = True,
    throttle_failover: bool = True,
    cooldown_secs: int = 1800,
) -> Verdict:
    """Apply the classification table of spec §7.2 (Z's rows; first match wins)."""
    if 200 <= status < 300:
        return Verdict(Outcome.SUCCESS, Action.SUCCESS)
    if status == 402 and is_quota_exhausted(body):
        return Verdict(
            Outcome.QUOTA_EXHAUSTED,
            Action.SWITCH,
            disable_reason="QuotaExceeded",
            error=UPSTREAM_FAILED,
        )
    if is_client_validation(body):  # row 9 (checked before 400 so the message is specific)
        return Verdict(Outcome.BAD_REQUEST, Action.FAIL, error=TOOL_PAIRING)
    if status == 400:
        return Verdict(Outcome.BAD_REQUEST, Action.FAIL, error=bad_request_error(body))
    if status == 403 and suspended_detection and is_account_suspended(body):
        return Verdict(
            Outcome.ACCOUNT_SUSPENDED,
            Action.SWITCH,
            disable_reason="Suspended",
            error=UPSTREAM_FAILED,
        )
    if status in (401, 403):
        if is_bearer_invalid(body) and not already_forced_refresh:
            return Verdict(Outcome.AUTH_FAILED, Action.FORCE_REFRESH, error=UPSTREAM_FAILED)
        return Verdict(
            Outcome.AUTH_FAILED, Action.SWITCH, count_failure=True, error=UPSTREAM_FAILED
        )
    seconds = parse_retry_after(retry_after)
    if status == 429 and throttle_failover and is_account_throttled(body):
        if seconds is not None:
            return Verdict(
                Outcome.ACCOUNT_THROTTLED,
                Action.FAIL,
                cooldown=True,
                error=errors.rate_limited(
                    RATE_LIMITED_MESSAGE, seconds, ErrorType.ACCOUNT_THROTTLED
                ),
            )
        return Verdict(
            Outcome.ACCOUNT_THROTTLED,
            Action.SWITCH,
            cooldown=True,
            error=errors.rate_limited(
                RATE_LIMITED_MESSAGE, cooldown_secs, ErrorType.ACCOUNT_THROTTLED
            ),
        )
    if is_gateway_timeout(status, body):
        return Verdict(
            Outcome.TRANSIENT,
            Action.FAIL,
            error=errors.timeout("Upstream gateway timeout."),
        )
    if status == 429:
        limited = errors.rate_limited(RATE_LIMITED_MESSAGE, seconds)
        if seconds is not None:
            return Verdict(Outcome.TRANSIENT, Action.FAIL, error=limited)
        return Verdict(Outcome.TRANSIENT, Action.RETRY, throttle_backoff=True, error=limited)
    if status == 408 or status >= 500:
        overloaded = status in (503, 529)
        error = (
            errors.overloaded("Upstream is overloaded. Retry later.")
            if overloaded
            else UPSTREAM_FAILED
        )
        return Verdict(Outcome.TRANSIENT, Action.RETRY, error=error)
    if 400 <= status < 500:
        return Verdict(
            Outcome.BAD_REQUEST,
            Action.FAIL,
            error=errors.api_error(
                f"Upstream API request failed with status {status}.", kind=ErrorType.BAD_REQUEST
            ),
        )
    return Verdict(Outcome.UNKNOWN, Action.RETRY, error=UPSTREAM_FAILED)


def network_error_verdict() -> Verdict:
    """Row 2: the request could not be sent; back off without penalising the credential."""
    return Verdict(
        Outcome.NETWORK_ERROR,
        Action.RETRY,
        error=errors.api_error("Upstream could not be reached.", kind=ErrorType.NETWORK_ERROR),
    )


def unusable_proxy_verdict() -> Verdict:
    """The credential's proxy cannot be used at all (a scheme the transport does not speak):
    switch credential at once, without counting a failure against the account."""
    return Verdict(
        Outcome.NETWORK_ERROR,
        Action.SWITCH,
        error=errors.api_error(
            "The credential's proxy cannot be used.", kind=ErrorType.NETWORK_ERROR
        ),
    )


def backoff_seconds(
    attempt: int, *, throttle: bool = False, rng: random.Random | None = None
) -> float:
    """Return the backoff before the next attempt (spec §7.3), jitter included."""
    base_ms = min(1000 * 2**attempt, 8000) if throttle else min(200 * 2**attempt, 2000)
    jitter = (rng or random).uniform(0, base_ms / 4)
    return (base_ms + jitter) / 1000
