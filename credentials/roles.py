"""Staff roles as Django groups; the data migration and tests share these definitions."""

from __future__ import annotations

VIEWERS = "Gateway viewers"
OPERATORS = "Gateway operators"

_OUR_MODELS = {
    "credentials": [
        "credential",
        "credentialgroup",
        "clientkey",
        "gatewaysettings",
        "proxyentry",
        "joblock",
    ],
    "usage": ["usagerecord", "upstreamattempt"],
}

# (app_label, codename) pairs per role. Viewers read everything of ours and change nothing;
# operators run the pool but get no auth.* permission, so only superusers manage users.
ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    VIEWERS: [(app, f"view_{m}") for app, models in _OUR_MODELS.items() for m in models],
    OPERATORS: [
        *[(app, f"view_{m}") for app, models in _OUR_MODELS.items() for m in models],
        *[
            ("credentials", f"{action}_{m}")
            for m in ("credential", "credentialgroup", "clientkey", "proxyentry")
            for action in ("add", "change", "delete")
        ],
        ("credentials", "change_gatewaysettings"),
        ("credentials", "import_kiro"),
        ("credentials", "export_kiro"),
    ],
}
