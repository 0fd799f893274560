"""Realistic canned bodies: models, usage, profiles, web search (spec §1.6, §9.3, §11.3)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from gateway.fakekiro.state import Account

# modelId -> (modelName, description, maxInputTokens, maxOutputTokens)
MODELS: dict[str, tuple[str, str, int, int]] = {
    "auto": (
        "Auto",
        "Models chosen by task for optimal usage and consistent quality",
        200_000,
        64_000,
    ),
    "claude-sonnet-4.6": (
        "Claude Sonnet 4.6",
        "Latest Sonnet with a 1M context window",
        1_000_000,
        64_000,
    ),
    "claude-sonnet-4.5": ("Claude Sonnet 4.5", "The latest Claude Sonnet model", 200_000, 64_000),
    "claude-sonnet-4": (
        "Claude Sonnet 4",
        "Hybrid reasoning and coding for regular use",
        200_000,
        64_000,
    ),
    "claude-opus-4.6": ("Claude Opus 4.6", "The most capable Claude model", 1_000_000, 32_000),
    "claude-opus-4.5": (
        "Claude Opus 4.5",
        "Frontier intelligence for complex tasks",
        200_000,
        32_000,
    ),
    "claude-haiku-4.5": ("Claude Haiku 4.5", "Fast, cost-efficient Claude model", 200_000, 64_000),
}


def models_body(account: Account) -> dict[str, Any]:
    """Build a ListAvailableModels answer for the account's models (spec §1.6)."""
    models = []
    for model_id in account.models:
        name, description, max_in, max_out = MODELS.get(
            model_id, (model_id, f"{model_id} model", 200_000, 64_000)
        )
        models.append(
            {
                "modelId": model_id,
                "modelName": name,
                "description": description,
                "supportedInputTypes": ["TEXT", "IMAGE"],
                "tokenLimits": {"maxInputTokens": max_in, "maxOutputTokens": max_out},
                "rateMultiplier": 1.0 if "opus" not in model_id else 2.2,
                "rateUnit": "credit",
            }
        )
    default = account.models[0] if account.models else None
    body: dict[str, Any] = {"models": models}
    if default is not None:
        body["defaultModel"] = {"modelId": default}
    return body


def profiles_body(account: Account) -> dict[str, Any]:
    """Build a ListAvailableProfiles answer (spec §1.6)."""
    return {
        "profiles": [
            {
                "arn": arn,
                "profileName": f"KiroProfile-{arn.split(':')[3] or 'us-east-1'}",
                "description": "Kiro Developer profile",
                "status": "ACTIVE",
            }
            for arn in account.profiles
        ]
    }


def usage_body(account: Account, *, include_email: bool) -> dict[str, Any]:
    """Build a getUsageLimits answer from the account (spec §9.3)."""
    breakdown: dict[str, Any] = {
        "resourceType": "AGENTIC_REQUEST",
        "unit": "INVOCATIONS",
        "currency": "USD",
        "currentUsage": int(account.current_usage),
        "currentUsageWithPrecision": round(account.current_usage, 4),
        "usageLimit": int(account.usage_limit),
        "usageLimitWithPrecision": float(account.usage_limit),
        "currentOverages": 0,
        "overageRate": 0.04,
        "nextDateReset": account.next_reset,
        "bonuses": [dict(b) for b in account.bonuses],
    }
    if account.free_trial is not None:
        breakdown["freeTrialInfo"] = dict(account.free_trial)
    body: dict[str, Any] = {
        "daysUntilReset": 0,
        "nextDateReset": account.next_reset,
        "subscriptionInfo": {
            "subscriptionTitle": account.subscription_title,
            "type": "Q_DEVELOPER_STANDALONE_"
            + account.subscription_title.split()[-1].upper().strip("+"),
            "overageCapability": account.overage_capability,
            "upgradeCapability": "UPGRADE_CAPABLE",
            "subscriptionManagementTarget": "PURCHASE",
        },
        "overageConfiguration": {"overageStatus": account.overage_status},
        "usageBreakdownList": [breakdown],
    }
    if include_email:
        body["userInfo"] = {"email": account.email, "userId": account.user_id}
    return body


_DOMAINS = (
    ("en.wikipedia.org", "https://en.wikipedia.org/wiki/{slug}", "{title} - Wikipedia"),
    (
        "docs.python.org",
        "https://docs.python.org/3/search.html?q={slug}",
        "{title} — Python documentation",
    ),
    ("github.com", "https://github.com/topics/{slug}", "{slug} · GitHub Topics"),
    (
        "stackoverflow.com",
        "https://stackoverflow.com/questions/tagged/{slug}",
        "Newest '{slug}' Questions - Stack Overflow",
    ),
    ("news.ycombinator.com", "https://news.ycombinator.com/item?id={num}", "{title} | Hacker News"),
    (
        "developer.mozilla.org",
        "https://developer.mozilla.org/en-US/search?q={slug}",
        "{title} | MDN Web Docs",
    ),
)


def search_results(query: str, *, count: int = 5) -> dict[str, Any]:
    """Return deterministic, realistic web_search results for a query (spec §11.3 inner JSON)."""
    digest = hashlib.sha256(query.encode()).digest()
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-") or "search"
    title = query.strip().title() or "Search"
    results = []
    for i in range(min(count, len(_DOMAINS))):
        domain, url, title_fmt = _DOMAINS[(digest[0] + i) % len(_DOMAINS)]
        num = int.from_bytes(digest[i : i + 4], "big") % 40_000_000
        published = (
            1_704_067_200_000 + (int.from_bytes(digest[i + 4 : i + 8], "big") % 63_072_000) * 1000
        )
        results.append(
            {
                "title": title_fmt.format(title=title, slug=slug),
                "url": url.format(slug=slug, num=num),
                "snippet": f"{title}: an overview of {query.strip()} with examples, "
                f"common pitfalls and references. Result {i + 1} from {domain}.",
                "publishedDate": published,
                "id": f"r{i + 1}",
                "domain": domain,
                "maxVerbatimWordLimit": 30,
                "publicDomain": False,
            }
        )
    return {"results": results, "totalResults": len(results), "query": query}


def mcp_result(request_id: Any, inner: dict[str, Any]) -> dict[str, Any]:
    """Wrap inner search JSON into the JSON-RPC answer of spec §11.3."""
    return {
        "id": request_id,
        "jsonrpc": "2.0",
        "result": {
            "content": [{"type": "text", "text": json.dumps(inner, ensure_ascii=False)}],
            "isError": False,
        },
    }


def mcp_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    """Build a JSON-RPC error answer (spec §11.3)."""
    return {"id": request_id, "jsonrpc": "2.0", "error": {"code": code, "message": message}}
