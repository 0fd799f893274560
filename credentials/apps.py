from __future__ import annotations

from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "Credentials and keys"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from credentials import selectors
        from credentials.models import GatewaySettings

        def forget(**_: object) -> None:
            selectors.forget_gateway_config_on_commit()

        # The serving path keeps a short-lived copy of the settings row (selectors).
        post_save.connect(forget, sender=GatewaySettings, weak=False)
        post_delete.connect(forget, sender=GatewaySettings, weak=False)
