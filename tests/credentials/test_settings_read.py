"""Every Gateway setting does something: each field is read by behaviour code, apart from those
kept only so that the kiro-rs config.json can be written back (shown read-only in the admin)."""

from __future__ import annotations

import re
from pathlib import Path

from credentials.models import ROUND_TRIP_SETTINGS, GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
# Not settings: identity, bookkeeping, and what the export alone needs.
NOT_KNOBS = {"id", "updated_at", "current_credential_id", "kiro_extra", "api_key"}
# Where a field is declared, edited, imported or exported rather than acted on.
PLUMBING = (
    "credentials/models.py",
    "credentials/forms.py",
    "credentials/kiro_config.py",
    "credentials/kiro_files.py",
    "credentials/services/kiro_rs.py",
    "credentials/admin/",
)


def behaviour_sources() -> str:
    texts = []
    for package in ("gateway", "credentials", "usage"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if "migrations" in path.parts or "fakekiro" in path.parts or name.startswith(PLUMBING):
                continue
            texts.append(path.read_text())
    return "\n".join(texts)


def test_every_setting_but_the_round_trip_ones_is_read_by_behaviour_code():
    code = behaviour_sources()
    fields = [
        f.name
        for f in GatewaySettings._meta.concrete_fields
        if f.name not in NOT_KNOBS and f.name not in ROUND_TRIP_SETTINGS
    ]
    # `x=row.x` copies a column into GatewayConfig (credentials.selectors): that is not a
    # read; something must then read `config.x`.
    code = re.sub(r"\b(\w+)=row\.\1\b", "", code)
    unread = [name for name in fields if not re.search(rf"\.{name}\b", code)]

    assert fields and unread == []


def test_the_round_trip_settings_are_read_only_in_the_admin(admin_client):
    GatewaySettings.load()
    page = admin_client.get(
        f"/admin/credentials/gatewaysettings/{GatewaySettings.singleton_id}/change/"
    )

    html = page.content.decode()
    assert page.status_code == 200
    assert "Kept only for the kiro-rs round trip" in html
    for name in ROUND_TRIP_SETTINGS:
        assert f'name="{name}"' not in html
