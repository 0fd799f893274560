"""Drive a fake running in another process through its control API (stdlib HTTP only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from gateway.fakekiro.script import Script


class FakeKiroClient:
    """The `Controls` methods over `/__fake__/...`; answers are plain JSON values."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/__fake__/{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"control call {method} {path}: {exc.code} {exc.read()!r}") from exc

    def health(self) -> bool:
        """Return True when the fake answers."""
        return bool(self._call("GET", "health").get("ok"))

    def add_account(self, account_id: str | None = None, **values: Any) -> dict[str, Any]:
        """Register an account; return it with generated secrets."""
        if account_id is not None:
            values["id"] = account_id
        return self._call("POST", "accounts", values)

    def account(self, account_id: str) -> dict[str, Any]:
        """Return one account."""
        return self._call("GET", f"accounts/{account_id}")

    def update_account(self, account_id: str, **values: Any) -> dict[str, Any]:
        """Change plain fields of an account."""
        return self._call("POST", f"accounts/{account_id}", values)

    def script(
        self,
        *scripts: Script,
        route: str = "chat",
        account: str | None = None,
        times: int | None = 1,
    ) -> int:
        """Queue scripted answers; return how many were queued."""
        body = {
            "scripts": [s.to_json() for s in scripts],
            "route": route,
            "account": account,
            "times": times,
        }
        return int(self._call("POST", "script", body)["queued"])

    def requests(self, route: str | None = None) -> list[dict[str, Any]]:
        """Return recorded requests (optionally of one route)."""
        return self._call("GET", "requests" + (f"?route={route}" if route else ""))

    def counters(self) -> dict[str, dict[str, int]]:
        """Return the call counters."""
        return self._call("GET", "counters")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change delivery settings."""
        return self._call("POST", "config", changes)

    def expire_access_tokens(self, account_id: str | None = None) -> int:
        """Expire issued access tokens."""
        return int(self._call("POST", "expire", {"account": account_id})["expired"])

    def approve_device(self, user_code: str | None = None, **account_values: Any) -> int:
        """Approve pending device logins."""
        return int(
            self._call("POST", "device/approve", {"user_code": user_code, **account_values})[
                "approved"
            ]
        )

    def reset(self) -> None:
        """Forget everything."""
        self._call("POST", "reset", {})
