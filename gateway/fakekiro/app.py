"""Route upstream requests to the fake's behaviour (spec kiro-protocol §1, §8, §9.3, §11.3).

All hosts share one port: the gateway's base-URL settings point the API, social-auth and
IdC-auth hosts here, and routes are told apart by method, path and, for the AWS JSON 1.0
calls on `POST /`, the `x-amz-target` header.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from gateway.fakekiro import bodies, catalog
from gateway.fakekiro.http import Request, Response
from gateway.fakekiro.script import Script, iter_events, render
from gateway.fakekiro.state import Account, FakeState, RecordedRequest
from gateway.fakekiro.validate import Problem, check_generate_request

TARGET_GENERATE = "AmazonCodeWhispererStreamingService.GenerateAssistantResponse"
TARGET_PROFILES = "AmazonCodeWhispererService.ListAvailableProfiles"
EVENTSTREAM = "application/vnd.amazon.eventstream"
CONTENT_TYPES = {"ide": "application/json", "cli": "application/x-amz-json-1.0"}
_ERROR_TYPES = {
    400: "ValidationException",
    401: "UnauthorizedException",
    402: "ServiceQuotaExceededException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}

Route = Callable[[Request, RecordedRequest], Response]


def _json(obj: Any) -> bytes:
    return bodies.json_body(obj)


class FakeKiroApp:
    """Turn one HTTP request into one response, recording it in the state."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def __call__(self, request: Request) -> Response:
        """Record the request, dispatch it, and note the answered status."""
        if request.path.startswith("/__fake__/"):
            return self.route_control(request)  # control calls stay out of the log
        entry = self.state.record(
            request.method, request.path, request.query, request.headers, request.body
        )
        route = self._route(request)
        entry.route = route.__name__.removeprefix("route_") if route else "unknown"
        self.state.count_route(entry.route)
        response = route(request, entry) if route else self._not_found()
        entry.status = response.status
        return response

    def _route(self, request: Request) -> Route | None:
        method, path = request.method, request.path
        if method == "POST":
            if path == "/generateAssistantResponse":
                return self.route_chat
            if path == "/":
                target = request.header("x-amz-target")
                if target == TARGET_GENERATE:
                    return self.route_chat
                if target == TARGET_PROFILES:
                    return self.route_profiles
                return None
            if path == "/mcp":
                return self.route_mcp
            if path == "/refreshToken":
                return self.route_refresh
            if path == "/token":
                return self.route_token
            if path.endswith("/oauth2/v2.0/token"):
                return self.route_refresh_external
            if path == "/setUserPreference":
                return self.route_preference
            if path == "/client/register":
                return self.route_register
            if path == "/device_authorization":
                return self.route_device
            if path == "/oauth/token":
                return self.route_login
        elif method == "GET":
            if path == "/getUsageLimits":
                return self.route_usage
            if path == "/ListAvailableModels":
                return self.route_models
            if path.startswith("/stable/metadata-"):
                return self.route_version
        return None

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _not_found() -> Response:
        return Response(
            404,
            [
                ("content-type", "application/json"),
                ("x-amzn-errortype", "UnknownOperationException"),
            ],
            _json({"message": "Unknown operation", "reason": None}),
        )

    @staticmethod
    def _plain(status: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> Response:
        headers = [
            ("content-type", "application/json"),
            ("x-amzn-requestid", str(uuid.uuid4())),
        ]
        if status >= 400 and status in _ERROR_TYPES:
            headers.append(("x-amzn-errortype", _ERROR_TYPES[status]))
        return Response(status, headers + (extra or []), body)

    def _serve(
        self, script: Script, entry: RecordedRequest, on_complete: Callable[[], None] | None = None
    ) -> Response:
        """Turn a script into a response under the current delivery settings."""
        entry.script = script.label or None
        config = self.state.config
        if not script.is_stream:
            headers = [
                ("content-type", script.content_type or "application/json"),
                ("x-amzn-requestid", str(uuid.uuid4())),
            ]
            if script.status >= 400 and script.status in _ERROR_TYPES:
                headers.append(("x-amzn-errortype", _ERROR_TYPES[script.status]))
            return Response(
                script.status,
                headers + list(script.headers),
                script.body or b"",
                first_byte_delay=script.first_byte_delay,
            )
        actions = render(script, slicing=config.slicing, pace=config.pace)
        return Response(
            script.status,
            [
                ("content-type", EVENTSTREAM),
                ("x-amzn-requestid", str(uuid.uuid4())),
                *script.headers,
            ],
            actions=actions,
            transfer=script.transfer or config.transfer,
            first_byte_delay=script.first_byte_delay,
            reset_grace=config.reset_grace,
            on_complete=on_complete,
        )

    def _bearer_account(self, request: Request, entry: RecordedRequest) -> Account | None:
        auth = request.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        account = self.state.account_for_bearer(token.strip(), request.header("tokentype"))
        if account is not None:
            entry.account_id = account.id
        return account

    @staticmethod
    def _body_json(request: Request) -> Any:
        try:
            return json.loads(request.body)
        except ValueError:
            return None

    # --- data plane -----------------------------------------------------------------------

    def route_chat(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve generateAssistantResponse (ide §1.2, cli §1.3) after checking it (§2, §7.4)."""
        endpoint = "ide" if request.path == "/generateAssistantResponse" else "cli"
        entry.endpoint = endpoint
        account = self._bearer_account(request, entry)
        if account is None:
            entry.problems = ["bearer token unknown, expired, or tokentype mismatch"]
            return self._plain(403, bodies.BEARER_INVALID)
        body = self._body_json(request)
        config = self.state.config
        if config.validate:
            problems = check_generate_request(body, endpoint=endpoint)
            content_type = (request.header("content-type") or "").split(";")[0].strip()
            if content_type != CONTENT_TYPES[endpoint]:
                problems.insert(
                    0, Problem(f"content-type must be {CONTENT_TYPES[endpoint]} on {endpoint}")
                )
            if problems:
                entry.problems = [p.text for p in problems]
                return self._plain(problems[0].status, problems[0].body)
        fault = self._account_fault(account, body, endpoint, request)
        if fault is not None:
            entry.problems = [fault[1]]
            return self._plain(400 if fault[0] is not bodies.QUOTA_MONTHLY else 402, fault[0])
        script = self.state.take_script("chat", account.id) or default_reply(body, request.body)
        credits = sum(
            float(e.payload.get("usage", 0.0))
            for e in iter_events(script)
            if e.event_type == "meteringEvent" and isinstance(e.payload, dict)
        )
        account_id = account.id
        self.state.count_chat(account_id)
        return self._serve(
            script, entry, on_complete=lambda: self.state.add_usage(account_id, credits)
        )

    def _account_fault(
        self, account: Account, body: Any, endpoint: str, request: Request
    ) -> tuple[bytes, str] | None:
        """Apply the opt-in per-account checks (profileArn, models, quota, context size)."""
        user = _current_user(body)
        if account.require_profile_arn and endpoint == "ide":
            arn = body.get("profileArn") if isinstance(body, dict) else None
            if arn not in account.profiles:
                return bodies.PROFILE_ARN_REQUIRED, "profileArn missing or not one of the account's"
        if account.enforce_models:
            model = user.get("modelId")
            if model not in account.models:
                return bodies.INVALID_MODEL, f"model {model!r} not available to this account"
            if "opus" in str(model) and "FREE" in account.subscription_title.upper():
                return bodies.INVALID_MODEL, "opus is not available on a FREE subscription"
        if (
            account.enforce_quota
            and account.current_usage >= account.usage_limit
            and account.overage_status != "ENABLED"
        ):
            return bodies.QUOTA_MONTHLY, "monthly usage limit reached"
        limit = self.state.config.context_limit_bytes
        if limit is not None and len(request.body) > limit:
            return bodies.CONTENT_LENGTH_EXCEEDED, f"body of {len(request.body)} bytes > {limit}"
        return None

    def route_mcp(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve the MCP web_search tool call (spec §1.4, §11.3)."""
        account = self._bearer_account(request, entry)
        if account is None:
            return self._plain(403, bodies.BEARER_INVALID)
        body = self._body_json(request)
        if not isinstance(body, dict):
            return self._plain(400, bodies.IMPROPERLY_FORMED)
        request_id = body.get("id")
        params = body.get("params") if isinstance(body.get("params"), dict) else {}
        arguments = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        query = arguments.get("query")
        if body.get("jsonrpc") != "2.0" or not isinstance(request_id, str):
            return self._plain(200, _json(catalog.mcp_error(request_id, -32600, "Invalid Request")))
        if body.get("method") != "tools/call":
            return self._plain(
                200, _json(catalog.mcp_error(request_id, -32601, "Method not found"))
            )
        if params.get("name") != "web_search" or not isinstance(query, str) or not query.strip():
            return self._plain(200, _json(catalog.mcp_error(request_id, -32602, "Invalid params")))
        script = self.state.take_script("mcp", account.id)
        if script is not None and script.body is not None and script.status == 200:
            scripted = json.loads(script.body)
            if isinstance(scripted, dict) and "__mcp_results__" in scripted:
                inner = {
                    "results": scripted["__mcp_results__"],
                    "totalResults": len(scripted["__mcp_results__"]),
                    "query": scripted.get("query") or query,
                }
                answer = Script.json(catalog.mcp_result(request_id, inner))
                script = replace(answer, first_byte_delay=script.first_byte_delay)
            elif isinstance(scripted, dict) and "__mcp_error__" in scripted:
                err = scripted["__mcp_error__"]
                answer = Script.json(catalog.mcp_error(request_id, err["code"], err["message"]))
                script = replace(answer, first_byte_delay=script.first_byte_delay)
        if script is None:
            script = Script.json(catalog.mcp_result(request_id, catalog.search_results(query)))
        return self._serve(script, entry)

    def route_usage(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve getUsageLimits (spec §1.5, §9.3)."""
        account = self._bearer_account(request, entry)
        if account is None:
            return self._plain(403, bodies.BEARER_INVALID)
        query = request.query
        if query.get("origin") != "AI_EDITOR" or query.get("resourceType") != "AGENTIC_REQUEST":
            entry.problems = ["origin=AI_EDITOR and resourceType=AGENTIC_REQUEST are required"]
            return self._plain(400, bodies.IMPROPERLY_FORMED)
        script = self.state.take_script("usage", account.id)
        if script is not None:
            return self._serve(script, entry)
        include_email = query.get("isEmailRequired") == "true"
        return self._plain(200, _json(catalog.usage_body(account, include_email=include_email)))

    def route_models(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve ListAvailableModels (spec §1.6)."""
        account = self._bearer_account(request, entry)
        if account is None:
            return self._plain(403, bodies.BEARER_INVALID)
        if request.query.get("origin") != "AI_EDITOR":
            return self._plain(400, bodies.IMPROPERLY_FORMED)
        script = self.state.take_script("models", account.id)
        if script is not None:
            return self._serve(script, entry)
        return self._plain(200, _json(catalog.models_body(account)))

    def route_profiles(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve ListAvailableProfiles (AWS JSON 1.0 on POST /, spec §1.6)."""
        account = self._bearer_account(request, entry)
        if account is None:
            return self._plain(403, bodies.BEARER_INVALID)
        script = self.state.take_script("profiles", account.id)
        if script is not None:
            return self._serve(script, entry)
        return self._plain(200, _json(catalog.profiles_body(account)))

    def route_preference(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve setUserPreference: store the overage status (spec §1.6)."""
        account = self._bearer_account(request, entry)
        if account is None:
            return self._plain(403, bodies.BEARER_INVALID)
        script = self.state.take_script("preference", account.id)
        if script is not None:
            return self._serve(script, entry)
        body = self._body_json(request)
        config = body.get("overageConfiguration") if isinstance(body, dict) else None
        status = config.get("overageStatus") if isinstance(config, dict) else None
        if status not in ("ENABLED", "DISABLED"):
            return self._plain(400, bodies.IMPROPERLY_FORMED)
        self.state.update_account(account.id, overage_status=status)
        return self._plain(200, b"{}")

    def route_version(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve the Kiro IDE version metadata (spec §9.2)."""
        body = {"currentRelease": "0.12.301", "releases": [{"version": "0.12.301"}]}
        return self._plain(200, _json(body))

    # --- token endpoints (spec §8.3-§8.5) -------------------------------------------------

    def _refresh_answer(
        self, kind: str, token: str, entry: RecordedRequest, **client: str | None
    ) -> tuple[Response | None, Any]:
        """Count, apply a scripted answer, else run the grant; return (response, result)."""
        aid = self.state.count_refresh(token)
        entry.account_id = aid
        script = self.state.take_script("refresh", aid)
        if script is not None:
            return self._serve(script, entry), None
        return None, self.state.refresh(kind, token, **client)  # type: ignore[arg-type]

    def route_refresh(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve the social refresh (spec §8.3)."""
        body = self._body_json(request)
        token = body.get("refreshToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return self._plain(400, bodies.INVALID_GRANT)
        response, result = self._refresh_answer("social", token, entry)
        if response is not None:
            return response
        if isinstance(result, str):
            return self._plain(401 if result == "invalid_client" else 400, _token_error(result))
        account, access, refresh = result
        answer: dict[str, Any] = {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresIn": account.expires_in,
        }
        if account.profile_arn:
            answer["profileArn"] = account.profile_arn
        return self._plain(200, _json(answer))

    def route_token(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve SSO-OIDC CreateToken: refresh_token and device_code grants (spec §8.4, §8.10)."""
        body = self._body_json(request)
        if not isinstance(body, dict):
            return self._plain(400, bodies.UNSUPPORTED_GRANT)
        grant = body.get("grantType")
        client_id, client_secret = body.get("clientId"), body.get("clientSecret")
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            script = self.state.take_script("device", None)  # slow_down, expired_token, ...
            if script is not None:
                return self._serve(script, entry)
            result = self.state.poll_device(
                str(body.get("deviceCode")), str(client_id), str(client_secret)
            )
            if isinstance(result, str):
                body_bytes = (
                    bodies.AUTHORIZATION_PENDING
                    if result == "authorization_pending"
                    else bodies.INVALID_GRANT
                )
                return self._plain(400, body_bytes)
            entry.account_id = result.id
            return self._plain(
                200, _json(_idc_answer(result, result.access_token or "", result.refresh_token))
            )
        if grant != "refresh_token":
            return self._plain(400, bodies.UNSUPPORTED_GRANT)
        token = body.get("refreshToken")
        if not isinstance(token, str) or not token:
            return self._plain(400, bodies.INVALID_GRANT)
        response, result = self._refresh_answer(
            "idc", token, entry, client_id=client_id, client_secret=client_secret
        )
        if response is not None:
            return response
        if isinstance(result, str):
            return self._plain(401 if result == "invalid_client" else 400, _token_error(result))
        account, access, refresh = result
        return self._plain(200, _json(_idc_answer(account, access, refresh)))

    def route_refresh_external(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve an Entra-style form-encoded refresh_token grant (spec §8.5)."""
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "refresh_token":
            return self._plain(400, bodies.UNSUPPORTED_GRANT)
        token = form.get("refresh_token", "")
        if not token:
            return self._plain(400, bodies.ENTRA_INVALID_GRANT)
        response, result = self._refresh_answer(
            "external_idp", token, entry, client_id=form.get("client_id")
        )
        if response is not None:
            return response
        if isinstance(result, str):
            body = (
                bodies.ENTRA_INVALID_GRANT if result == "invalid_grant" else bodies.INVALID_CLIENT
            )
            return self._plain(400, body)
        account, access, refresh = result
        answer = {
            "token_type": "Bearer",
            "scope": form.get("scope") or account.scopes or "openid offline_access",
            "expires_in": account.expires_in,
            "ext_expires_in": account.expires_in,
            "access_token": access,
            "refresh_token": refresh,
        }
        return self._plain(200, _json(answer))

    def route_register(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve SSO-OIDC RegisterClient (spec §8.10)."""
        client_id, secret = self.state.register_client()
        now = int(time.time())
        answer = {
            "clientId": client_id,
            "clientSecret": secret,
            "clientIdIssuedAt": now,
            "clientSecretExpiresAt": now + 90 * 86400,
        }
        return self._plain(200, _json(answer))

    def route_device(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve SSO-OIDC StartDeviceAuthorization (spec §8.10)."""
        body = self._body_json(request) or {}
        session = self.state.start_device(
            str(body.get("clientId")), str(body.get("clientSecret")), str(body.get("startUrl", ""))
        )
        if session is None:
            return self._plain(401, bodies.INVALID_CLIENT)
        host = request.header("host") or "127.0.0.1"
        answer = {
            "deviceCode": session.device_code,
            "userCode": session.user_code,
            "verificationUri": f"http://{host}/device",
            "verificationUriComplete": f"http://{host}/device?user_code={session.user_code}",
            "expiresIn": self.state.config.device_expires_in,
            "interval": self.state.config.device_interval,
        }
        return self._plain(200, _json(answer))

    def route_login(self, request: Request, entry: RecordedRequest) -> Response:
        """Serve the social PKCE code exchange: any fresh code logs in a new account (§8.10)."""
        body = self._body_json(request) or {}
        if not body.get("code_verifier") or not body.get("redirect_uri"):
            return self._plain(400, bodies.INVALID_GRANT)
        account = self.state.exchange_login_code(str(body.get("code") or ""))
        if account is None:
            return self._plain(400, bodies.INVALID_GRANT)
        entry.account_id = account.id
        answer = {
            "accessToken": account.access_token,
            "refreshToken": account.refresh_token,
            "expiresIn": account.access_expires_in,
            "profileArn": account.profile_arn,
        }
        return self._plain(200, _json(answer))

    # --- control API ----------------------------------------------------------------------

    def route_control(self, request: Request) -> Response:
        """Serve `/__fake__/...`: drive the fake from another process."""
        from gateway.fakekiro.control import handle_control

        status, payload = handle_control(
            self.state, request.method, request.path, request.query, self._body_json(request)
        )
        return self._plain(status, _json(payload))


def _token_error(code: str) -> bytes:
    return bodies.INVALID_CLIENT if code == "invalid_client" else bodies.INVALID_GRANT


def _idc_answer(account: Account, access: str, refresh: str) -> dict[str, Any]:
    return {
        "accessToken": access,
        "tokenType": "Bearer",
        "expiresIn": account.expires_in,
        "refreshToken": refresh,
    }


def _current_user(body: Any) -> dict[str, Any]:
    try:
        user = body["conversationState"]["currentMessage"]["userInputMessage"]
    except (KeyError, TypeError):
        return {}
    return user if isinstance(user, dict) else {}


def default_reply(body: Any, raw: bytes) -> Script:
    """Answer an unscripted chat call with an echo of what was sent, plus a usage tail."""
    user = _current_user(body)
    content = user.get("content") if isinstance(user.get("content"), str) else ""
    context = user.get("userInputMessageContext")
    results = context.get("toolResults") if isinstance(context, dict) else None
    if content:
        text = f"Echo: {content}"
    elif results:
        ids = ", ".join(str(r.get("toolUseId")) for r in results if isinstance(r, dict))
        text = f"Echo: received tool results for {ids}"
    else:
        text = "Echo: (empty message)"
    text = text[:4000]
    input_tokens = max(1, len(raw) // 4)
    window = 1_000_000 if str(user.get("modelId", "")).endswith("4.6") else 200_000
    return replace(
        Script.text(text, chunks=min(3, len(text))).with_usage(
            context_percentage=round(min(100.0, input_tokens * 100 / window), 4),
            input_tokens=input_tokens,
            output_tokens=max(1, len(text) // 4),
        ),
        label="default",
    )
