from __future__ import annotations

from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "Credentials and keys"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_delete, post_save

        from credentials import selectors
        from credentials.models import GatewaySettings
        from gateway.kiro import client

        # The Kiro client has no Django: it asks for its base URLs on every call.
        client.use_base_urls(
            lambda: client.BaseUrls(
                api=settings.KIRO_API_BASE_URL,
                social_auth=settings.KIRO_SOCIAL_AUTH_BASE_URL,
                idc_auth=settings.KIRO_IDC_AUTH_BASE_URL,
            )
        )

        def forget(**_: object) -> None:
            selectors.forget_gateway_config_on_commit()

        # The serving path keeps a short-lived copy of the settings row (selectors).
        post_save.connect(forget, sender=GatewaySettings, weak=False)
        post_delete.connect(forget, sender=GatewaySettings, weak=False)
