"""Create the staff roles "Gateway viewers" and "Gateway operators" with their permissions."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen copy of the roles as they were at this migration (credentials/roles.py moves on).
_OUR_MODELS = {
    "credentials": ["credential", "credentialgroup", "clientkey", "gatewaysettings"],
    "usage": ["usagerecord", "upstreamattempt"],
}
ROLE_PERMISSIONS = {
    "Gateway viewers": [(a, f"view_{m}") for a, ms in _OUR_MODELS.items() for m in ms],
    "Gateway operators": [
        *[(a, f"view_{m}") for a, ms in _OUR_MODELS.items() for m in ms],
        *[
            ("credentials", f"{action}_{m}")
            for m in ("credential", "credentialgroup", "clientkey")
            for action in ("add", "change", "delete")
        ],
        ("credentials", "change_gatewaysettings"),
        ("credentials", "import_kiro"),
        ("credentials", "export_kiro"),
    ],
}


def create_roles(apps, schema_editor):
    # Permissions are normally made after all migrations (post_migrate); make them now.
    for label in ("credentials", "usage"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, wanted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = [
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in wanted
        ]
        group.permissions.set(perms)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLE_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("credentials", "0001_initial"),
        ("usage", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
