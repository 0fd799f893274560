"""The `/__fake__/...` control API: the state's methods over HTTP, for a gateway in another process.

Routes (method, path: body or query -> answer):

* GET /__fake__/health -> {"ok": true}
* POST /__fake__/accounts: Account fields (`id`, `auth`, ...) -> 201 account
* GET /__fake__/accounts -> [account, ...]; GET /__fake__/accounts/{id} -> account
* POST /__fake__/accounts/{id}: fields to change -> account
* POST /__fake__/script: {"scripts": [Script.to_json(), ...], "route", "account", "times"}
  -> {"queued": n}
* GET /__fake__/requests?route=chat -> [request, ...]
* GET /__fake__/counters -> counters
* POST /__fake__/reset -> {"ok": true}
* GET|POST /__fake__/config: {"validate", "slicing", "pace", "transfer", ...} -> config
* POST /__fake__/expire: {"account": id or null} -> {"expired": n}
* POST /__fake__/device/approve: {"user_code": code or null, account fields} -> {"approved": n}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.fakekiro.script import Script
from gateway.fakekiro.state import FakeState


def handle_control(
    state: FakeState, method: str, path: str, query: dict[str, str], body: Any
) -> tuple[int, Any]:
    """Run one control call; return (status, JSON payload)."""
    data = body if isinstance(body, dict) else {}
    parts = [p for p in path.removeprefix("/__fake__/").split("/") if p]
    try:
        return _dispatch(state, method, parts, query, data)
    except (KeyError, TypeError, ValueError) as exc:
        return 400, {"error": f"{type(exc).__name__}: {exc}"}


def _dispatch(
    state: FakeState, method: str, parts: list[str], query: dict[str, str], data: dict[str, Any]
) -> tuple[int, Any]:
    match method, parts:
        case "GET", ["health"]:
            return 200, {"ok": True}
        case "POST", ["accounts"]:
            return 201, state.add_account(**data).to_json()
        case "GET", ["accounts"]:
            return 200, [state.account(aid).to_json() for aid in list(state.accounts)]
        case "GET", ["accounts", account_id]:
            return 200, state.account(account_id).to_json()
        case "POST", ["accounts", account_id]:
            return 200, state.update_account(account_id, **data).to_json()
        case "POST", ["script"]:
            raw = data.get("scripts") or ([data["script"]] if "script" in data else [])
            scripts = [Script.from_json(s) for s in raw]
            state.script(
                *scripts,
                route=data.get("route", "chat"),
                account=data.get("account"),
                times=data.get("times", 1),
            )
            return 200, {"queued": len(scripts)}
        case "GET", ["requests"]:
            return 200, [r.to_json() for r in state.requests(query.get("route"))]
        case "GET", ["counters"]:
            return 200, state.counters()
        case "POST", ["reset"]:
            state.reset()
            return 200, {"ok": True}
        case "POST", ["config"]:
            return 200, dataclasses.asdict(state.configure(**data))
        case "GET", ["config"]:
            return 200, dataclasses.asdict(state.config)
        case "POST", ["expire"]:
            return 200, {"expired": state.expire_access_tokens(data.get("account"))}
        case "POST", ["device", "approve"]:
            user_code = data.pop("user_code", None)
            return 200, {"approved": state.approve_device(user_code, **data)}
    return 404, {"error": f"no control route {method} /__fake__/{'/'.join(parts)}"}
