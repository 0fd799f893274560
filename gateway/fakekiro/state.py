"""In-memory state of the fake: accounts, issued tokens, scripted answers, request log, counters.

Every method takes the one lock, so a test thread can drive a server whose loop runs in
another thread. Nothing here does I/O.
"""

from __future__ import annotations

import calendar
import copy
import secrets
import string
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from gateway.fakekiro.script import Script
from gateway.fakekiro.steps import Slicing, Transfer

AuthKind = Literal["social", "idc", "external_idp", "api_key"]
AUTH_KINDS = ("social", "idc", "external_idp", "api_key")
# Routes whose answers can be scripted.
ROUTES = ("chat", "mcp", "refresh", "usage", "models", "profiles", "preference", "device")

SOCIAL_PROFILE_ARN = "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK"
DEFAULT_MODELS = (
    "claude-sonnet-4.5",
    "claude-sonnet-4.6",
    "claude-sonnet-4",
    "claude-opus-4.5",
    "claude-opus-4.6",
    "claude-haiku-4.5",
    "auto",
)
_ALNUM = string.ascii_letters + string.digits


def _random(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_refresh_token() -> str:
    """Return a refresh token long enough for the proxies' 100-char pre-check (spec §8.2)."""
    return "aorAAAAAG" + _random(160)


def new_access_token() -> str:
    """Return an opaque access token in Kiro's `aoa...` style."""
    return "aoaAAAAAG" + _random(120)


def new_api_key() -> str:
    """Return a Kiro API key (`ksk_...`, spec §8.1)."""
    return "ksk_" + _random(48)


def new_profile_arn() -> str:
    """Return a realistic, random CodeWhisperer profile ARN."""
    account = "".join(secrets.choice(string.digits) for _ in range(12))
    profile = _random(12, string.ascii_uppercase + string.digits)
    return f"arn:aws:codewhisperer:us-east-1:{account}:profile/{profile}"


def next_month_reset(now: float | None = None) -> float:
    """Return the epoch seconds of the first day of next month, 00:00 UTC."""
    t = time.gmtime(now if now is not None else time.time())
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


@dataclass
class Account:
    """A Kiro account as the upstream knows it."""

    id: str
    auth: AuthKind = "social"
    refresh_token: str = ""
    access_token: str | None = None
    access_expires_in: int = 3600
    expires_in: int = 3600
    rotate_refresh_token: bool = False
    client_id: str | None = None
    client_secret: str | None = None
    scopes: str | None = None
    api_key: str | None = None
    profile_arn: str | None = None
    profiles: list[str] = field(default_factory=list)
    email: str = ""
    user_id: str = ""
    subscription_title: str = "KIRO PRO+"
    overage_capability: str = "OVERAGE_CAPABLE"
    overage_status: str = "DISABLED"
    usage_limit: float = 2000.0
    current_usage: float = 0.0
    free_trial: dict[str, Any] | None = None
    bonuses: list[dict[str, Any]] = field(default_factory=list)
    next_reset: float = 0.0
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    enforce_models: bool = False
    enforce_quota: bool = False
    require_profile_arn: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-able copy."""
        return asdict(self)


@dataclass
class IssuedToken:
    account_id: str
    expires_at: float


@dataclass
class RecordedRequest:
    """One request as received, plus how it was classified and answered."""

    seq: int
    time: float
    method: str
    path: str
    query: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes
    route: str = "unknown"
    endpoint: str | None = None
    account_id: str | None = None
    status: int | None = None
    problems: list[str] = field(default_factory=list)
    script: str | None = None

    def header(self, name: str) -> str | None:
        """Return the last value of a header (case-insensitive), or None."""
        name = name.lower()
        value = None
        for k, v in self.headers:
            if k == name:
                value = v
        return value

    @property
    def json(self) -> Any:
        """Return the body parsed as JSON, or None."""
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def form(self) -> dict[str, str]:
        """Return the body parsed as a urlencoded form."""
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode("utf-8", "replace")))

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-able description (body as text and parsed JSON)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": [list(h) for h in self.headers],
            "body": self.body.decode("utf-8", "replace"),
            "json": self.json,
            "route": self.route,
            "endpoint": self.endpoint,
            "account_id": self.account_id,
            "status": self.status,
            "problems": self.problems,
            "script": self.script,
        }


@dataclass
class DeviceSession:
    """A pending IdC device authorization (spec §8.10)."""

    device_code: str
    user_code: str
    client_id: str
    client_secret: str
    start_url: str
    approved: bool = False
    account_id: str | None = None


@dataclass
class Queued:
    script: Script
    remaining: int | None  # None: sticky, answers every call


@dataclass
class ServeConfig:
    """Delivery and strictness knobs, changeable at runtime."""

    validate: bool = True
    slicing: Slicing = field(default_factory=Slicing)
    pace: float = 0.0
    transfer: Transfer = "chunked"
    reset_grace: float = 0.02
    context_limit_bytes: int | None = None
    device_expires_in: int = 600  # StartDeviceAuthorization's expiresIn (spec §8.4)
    device_interval: int = 1  # and its polling interval


class FakeState:
    """All mutable state of one fake upstream, guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.config = ServeConfig()
        self._clear()

    def _clear(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.rotated_tokens: dict[str, str] = {}
        self.access_tokens: dict[str, IssuedToken] = {}
        self.api_keys: dict[str, str] = {}
        self.queues: dict[tuple[str, str | None], deque[Queued]] = {}
        self.log: list[RecordedRequest] = []
        self.route_calls: Counter[str] = Counter()
        self.refresh_by_token: Counter[str] = Counter()
        self.refresh_by_account: Counter[str] = Counter()
        self.chat_by_account: Counter[str] = Counter()
        self.oidc_clients: dict[str, str] = {}
        self.devices: dict[str, DeviceSession] = {}
        self.used_login_codes: set[str] = set()
        self.device_defaults: dict[str, Any] = {}
        self._seq = 0

    # --- control --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget accounts, tokens, scripts, the request log and counters; restore defaults."""
        with self._lock:
            self._clear()
            self.config = ServeConfig()

    def configure(self, **changes: Any) -> ServeConfig:
        """Change delivery/strictness settings (validate, slicing, pace, transfer, ...)."""
        with self._lock:
            for key, value in changes.items():
                if key not in {f.name for f in fields(ServeConfig)}:
                    raise ValueError(f"unknown setting {key!r}")
                if key == "slicing" and isinstance(value, dict):
                    value = Slicing(**value)
                setattr(self.config, key, value)
            return copy.copy(self.config)

    def add_account(self, account_id: str | None = None, **values: Any) -> Account:
        """Register an account; missing secrets are generated. Return a snapshot."""
        with self._lock:
            aid = account_id or values.pop("id", None) or f"acct-{len(self.accounts) + 1}"
            values.pop("id", None)
            account = Account(id=aid, **values)
            if account.auth not in AUTH_KINDS:
                raise ValueError(f"auth must be one of {AUTH_KINDS}")
            if account.auth == "api_key":
                account.api_key = account.api_key or new_api_key()
                account.refresh_token = ""
            else:
                account.refresh_token = account.refresh_token or new_refresh_token()
                if account.auth in ("idc", "external_idp") and not account.client_id:
                    account.client_id = (
                        str(uuid.uuid4())
                        if account.auth == "external_idp"
                        else ("kiro-" + _random(22))
                    )
                if account.auth == "idc" and not account.client_secret:
                    account.client_secret = "eyJraWQiOiJrZXktMTU2" + _random(200)
                account.access_token = account.access_token or new_access_token()
            if account.profile_arn is None and account.auth == "social":
                account.profile_arn = SOCIAL_PROFILE_ARN
            if not account.profiles:
                account.profiles = [account.profile_arn or new_profile_arn()]
            account.email = account.email or f"{aid}@example.com"
            account.user_id = account.user_id or "d-" + _random(10, "0123456789abcdef")
            account.next_reset = account.next_reset or next_month_reset()
            self.accounts[aid] = account
            if account.refresh_token:
                self.refresh_tokens[account.refresh_token] = aid
            if account.api_key:
                self.api_keys[account.api_key] = aid
            if account.access_token:
                self.access_tokens[account.access_token] = IssuedToken(
                    aid, time.time() + account.access_expires_in
                )
            return copy.deepcopy(account)

    def account(self, account_id: str) -> Account:
        """Return a snapshot of one account."""
        with self._lock:
            return copy.deepcopy(self.accounts[account_id])

    def update_account(self, account_id: str, **values: Any) -> Account:
        """Change plain fields of an account (usage, subscription, flags). Return a snapshot."""
        with self._lock:
            account = self.accounts[account_id]
            for key, value in values.items():
                if key in ("id", "refresh_token", "access_token", "api_key"):
                    raise ValueError(f"{key} cannot be changed; add another account")
                setattr(account, key, value)
            return copy.deepcopy(account)

    def script(
        self,
        *scripts: Script,
        route: str = "chat",
        account: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Queue answers (FIFO) for a route, for one account or for anyone.

        `times=None` makes each script sticky: it answers every later call.
        """
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        with self._lock:
            queue = self.queues.setdefault((route, account), deque())
            for s in scripts:
                queue.append(Queued(s, times))

    def take_script(self, route: str, account_id: str | None) -> Script | None:
        """Pop the next scripted answer: the account's queue first, then the global one."""
        with self._lock:
            keys = [(route, account_id), (route, None)] if account_id else [(route, None)]
            for key in keys:
                queue = self.queues.get(key)
                if not queue:
                    continue
                head = queue[0]
                if head.remaining is not None:
                    head.remaining -= 1
                    if head.remaining <= 0:
                        queue.popleft()
                return head.script
            return None

    def pending_scripts(self) -> int:
        """Count queued (non-sticky) answers not yet served."""
        with self._lock:
            return sum((q.remaining or 0) for queue in self.queues.values() for q in queue)

    def expire_access_tokens(self, account_id: str | None = None) -> int:
        """Make issued access tokens (of one account, or all) expired. Return how many."""
        with self._lock:
            n = 0
            for token in self.access_tokens.values():
                if account_id is None or token.account_id == account_id:
                    token.expires_at = time.time() - 1
                    n += 1
            return n

    # --- log and counters -----------------------------------------------------------------

    def record(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> RecordedRequest:
        """Append a received request to the log and return it."""
        with self._lock:
            self._seq += 1
            entry = RecordedRequest(self._seq, time.time(), method, path, query, headers, body)
            self.log.append(entry)
            return entry

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        """Return recorded requests (optionally of one route), oldest first."""
        with self._lock:
            return [r for r in self.log if route is None or r.route == route]

    def counters(self) -> dict[str, dict[str, int]]:
        """Return the call counters as plain dicts."""
        with self._lock:
            return {
                "routes": dict(self.route_calls),
                "refresh_by_token": dict(self.refresh_by_token),
                "refresh_by_account": dict(self.refresh_by_account),
                "chat_by_account": dict(self.chat_by_account),
            }

    def refresh_count(self, *, token: str | None = None, account: str | None = None) -> int:
        """Return how many refresh calls presented `token`, or were made for `account`."""
        with self._lock:
            if token is not None:
                return self.refresh_by_token[token]
            if account is not None:
                return self.refresh_by_account[account]
            return sum(self.refresh_by_account.values())

    # --- auth (used by the handlers) ------------------------------------------------------

    def account_for_bearer(self, token: str, token_type: str | None) -> Account | None:
        """Resolve a data-plane bearer to its account, honouring `tokentype` (spec §1.2)."""
        with self._lock:
            if token_type == "API_KEY":
                aid = self.api_keys.get(token)
                return self.accounts.get(aid) if aid else None
            issued = self.access_tokens.get(token)
            if issued is None or issued.expires_at <= time.time():
                return None
            account = self.accounts.get(issued.account_id)
            if account is None:
                return None
            wanted = "EXTERNAL_IDP" if account.auth == "external_idp" else None
            return account if token_type == wanted else None

    def refresh(
        self,
        kind: AuthKind,
        token: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> tuple[Account, str, str] | str:
        """Run one refresh grant; return (account, access, refresh) or an error code."""
        with self._lock:
            aid = self.refresh_tokens.get(token)
            if aid is None:
                return "invalid_grant"
            account = self.accounts[aid]
            if account.auth != kind:
                return "invalid_grant"
            if kind == "idc" and (
                client_id != account.client_id or client_secret != account.client_secret
            ):
                return "invalid_client"
            if kind == "external_idp" and client_id != account.client_id:
                return "invalid_client"
            access = new_access_token()
            self.access_tokens[access] = IssuedToken(aid, time.time() + account.expires_in)
            account.access_token = access
            refresh = token
            if account.rotate_refresh_token:
                refresh = new_refresh_token()
                del self.refresh_tokens[token]
                self.rotated_tokens[token] = aid
                self.refresh_tokens[refresh] = aid
                account.refresh_token = refresh
            return copy.deepcopy(account), access, refresh

    def count_refresh(self, token: str) -> str | None:
        """Count one refresh call for `token`; return the account id it belongs to, if any."""
        with self._lock:
            self.refresh_by_token[token] += 1
            aid = self.refresh_tokens.get(token) or self.rotated_tokens.get(token)
            if aid:
                self.refresh_by_account[aid] += 1
            return aid

    def count_route(self, route: str) -> None:
        """Count one call of a route."""
        with self._lock:
            self.route_calls[route] += 1

    def count_chat(self, account_id: str) -> None:
        """Count one served chat call of an account."""
        with self._lock:
            self.chat_by_account[account_id] += 1

    def add_usage(self, account_id: str, credits: float) -> None:
        """Add the credits of a completed stream to the account's usage (§9.3)."""
        with self._lock:
            account = self.accounts.get(account_id)
            if account is not None:
                account.current_usage += credits

    # --- login flows (spec §8.10) ---------------------------------------------------------

    def register_client(self) -> tuple[str, str]:
        """Register a public OIDC client; return (clientId, clientSecret)."""
        with self._lock:
            client_id, secret = "kiro-" + _random(22), "eyJraWQiOiJrZXktMTU2" + _random(200)
            self.oidc_clients[client_id] = secret
            return client_id, secret

    def start_device(
        self, client_id: str, client_secret: str, start_url: str
    ) -> DeviceSession | None:
        """Open a device authorization for a registered client, or None if unknown."""
        with self._lock:
            if self.oidc_clients.get(client_id) != client_secret:
                return None
            letters = string.ascii_uppercase
            session = DeviceSession(
                device_code=_random(43),
                user_code=f"{_random(4, letters)}-{_random(4, letters)}",
                client_id=client_id,
                client_secret=client_secret,
                start_url=start_url,
            )
            self.devices[session.device_code] = session
            return copy.copy(session)

    def approve_device(self, user_code: str | None = None, **account_values: Any) -> int:
        """Approve pending device logins (one user code, or all). Return how many."""
        with self._lock:
            n = 0
            for session in self.devices.values():
                if session.approved or (user_code is not None and session.user_code != user_code):
                    continue
                session.approved = True
                n += 1
            self.device_defaults = account_values
            return n

    def poll_device(self, device_code: str, client_id: str, client_secret: str) -> Account | str:
        """Answer one device-code token poll: an account once approved, else an error code."""
        with self._lock:
            session = self.devices.get(device_code)
            if (
                session is None
                or session.client_id != client_id
                or session.client_secret != client_secret
            ):
                return "invalid_grant"
            if not session.approved:
                return "authorization_pending"
            if session.account_id is None:
                values = dict(self.device_defaults)
                account = self.add_account(
                    values.pop("id", None) or f"device-{len(self.accounts) + 1}",
                    auth="idc",
                    client_id=client_id,
                    client_secret=client_secret,
                    **values,
                )
                session.account_id = account.id
            return copy.deepcopy(self.accounts[session.account_id])

    def exchange_login_code(self, code: str) -> Account | None:
        """Turn a social PKCE code into a new social account, once per code."""
        with self._lock:
            if not code or code in self.used_login_codes:
                return None
            self.used_login_codes.add(code)
            return self.add_account(f"social-login-{len(self.used_login_codes)}", auth="social")
