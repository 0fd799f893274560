"""Exact upstream error bodies (spec kiro-protocol §7.4, §8.6, §8.9, §13 #57).

Rows marked "spec" are copied verbatim from the spec; rows marked "invented" are plausible
bodies built to trip exactly the detector of §7.4 that the row is named after, because the
spec quotes only a reason or a substring for them.
"""

from __future__ import annotations

import json
from typing import Any


def json_body(obj: Any) -> bytes:
    """Serialize a JSON body compactly, raw UTF-8, as the upstream does (spec §2.10)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# --- data plane (generateAssistantResponse, MCP, REST) -------------------------------------

# spec §7.4: 402 quota exhausted (H and Z detectors)
QUOTA_MONTHLY = json_body(
    {"message": "You have reached the limit.", "reason": "MONTHLY_REQUEST_COUNT"}
)
# spec §7.4: 402 overage exhausted (Z detector)
QUOTA_OVERAGE = json_body(
    {
        "message": "You have reached the limit for overages.",
        "reason": "OVERAGE_REQUEST_LIMIT_EXCEEDED",
    }
)
# spec §7.4: 401/403 bearer invalid (substring match on the sentence)
BEARER_INVALID = json_body({"message": "The bearer token included in the request is invalid."})
# spec §7.4: 403 account suspended ("suspended" + "locked your account")
SUSPENDED = json_body(
    {
        "message": "Your User ID (736048611274) temporarily is suspended. We've locked your "
        "account as a security precaution. Please contact support to restore access.",
        "reason": None,
    }
)
# spec §7.4: 429 account throttled ("suspicious activity" + "temporary limits")
THROTTLED = json_body(
    {
        "message": "Due to suspicious activity, we are imposing temporary limits on how "
        "frequently your account (d-9067c98495.84f894a8) can send a request to Kiro while we "
        "investigate.",
        "reason": None,
    }
)
# spec §7.4 names only the reason; message invented
RATE_LIMITED = json_body(
    {"message": "Rate exceeded. Please try again later.", "reason": "SERVICE_REQUEST_RATE_EXCEEDED"}
)
# spec §7.4 names only the reason; message invented (must not contain "Input is too long")
CONTENT_LENGTH_EXCEEDED = json_body(
    {
        "message": "The conversation has exceeded the maximum context length for this model.",
        "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD",
    }
)
# spec §7.4: "400 body containing Input is too long"; the rest invented
INPUT_TOO_LONG = json_body({"message": "Input is too long for requested model.", "reason": None})
# spec §7.4 verbatim
TOOL_SCHEMA_INVALID = json_body(
    {
        "__type": "ValidationException",
        "message": "input_schema does not support oneOf, allOf, or anyOf at the top level",
        "reason": "TOOL_SCHEMA_INVALID",
    }
)
# spec §7.4 verbatim
IMPROPERLY_FORMED = json_body({"message": "Improperly formed request.", "reason": None})
# spec §7.4 names the reason; message reused from the improperly-formed row
TOOL_USE_RESULT_MISMATCH = json_body(
    {"message": "Improperly formed request.", "reason": "TOOL_USE_RESULT_MISMATCH"}
)
# spec §7.4 / §8.9 verbatim
PROFILE_ARN_REQUIRED = json_body({"message": "profileArn is required for this request."})
# spec §13.2 F6 message, as the body of a plain 500
INTERNAL_ERROR = json_body(
    {
        "message": "Encountered an unexpected error when processing the request, please try again.",
        "reason": None,
    }
)
# invented
SERVICE_UNAVAILABLE = json_body(
    {"message": "Service is temporarily unavailable. Please try again later.", "reason": None}
)
# invented, shaped to hit the §7.4 gateway-timeout detector ("524" + "status code")
GATEWAY_TIMEOUT_524 = json_body(
    {"message": "Upstream request failed with status code 524 (gateway timeout).", "reason": None}
)
# invented; the spec has no body for unknown model ids
INVALID_MODEL = json_body(
    {
        "message": "Invalid model. Please select a different model to continue.",
        "reason": "INVALID_MODEL_ID",
    }
)


def expected_tool_results(message_index: int, tool_use_ids: list[str]) -> bytes:
    """Build the 400 for unanswered toolUses; hits the "Expected toolResult blocks" detector."""
    return json_body(
        {
            "message": f"Expected toolResult blocks at messages.{message_index}.content for the "
            f"following Ids: {', '.join(tool_use_ids)}",
            "reason": "TOOL_USE_RESULT_MISMATCH",
        }
    )


# --- token endpoints ------------------------------------------------------------------------

# spec §13 #57 verbatim (contains "invalid_grant" with quotes and the sentence of §8.6)
INVALID_GRANT = json_body(
    {"error": "invalid_grant", "error_description": "Invalid refresh token provided"}
)
# invented, AWS SSO-OIDC style
INVALID_CLIENT = json_body(
    {"error": "invalid_client", "error_description": "Invalid client provided"}
)
# invented, Entra style (spec §8.5: `invalid_grant` anywhere in a 400 body)
ENTRA_INVALID_GRANT = json_body(
    {
        "error": "invalid_grant",
        "error_description": "AADSTS70000: The provided value for the 'refresh_token' is not "
        "valid. Invalid refresh token provided",
        "error_codes": [70000],
    }
)
UNSUPPORTED_GRANT = json_body(
    {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}
)
AUTHORIZATION_PENDING = json_body(
    {"error": "authorization_pending", "error_description": "Authorization pending"}
)
