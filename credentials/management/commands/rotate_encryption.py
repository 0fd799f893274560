"""Re-encrypt every stored secret with the newest key of KIRO_ENCRYPTION_KEYS."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from credentials import crypto
from credentials.models import Credential, GatewaySettings


class Command(BaseCommand):
    help = (
        "Rotate the encryption of secrets at rest. Put the new key first in "
        "KIRO_ENCRYPTION_KEYS (old keys after it), run this, then remove the old keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--new-key", action="store_true", help="print a fresh key and exit")
        parser.add_argument(
            "--derived-key",
            action="store_true",
            help="print the key derived from SECRET_KEY (used while KIRO_ENCRYPTION_KEYS is "
            "unset) and exit",
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["new_key"]:
            self.stdout.write(crypto.new_key())
            return
        if options["derived_key"]:
            self.stdout.write(crypto.derive_key(settings.SECRET_KEY).decode())
            return
        count = 0
        with transaction.atomic():
            for model in (Credential, GatewaySettings):
                fields = [f for f in model._meta.fields if isinstance(f, crypto.EncryptedTextField)]
                for obj in model.objects.select_for_update().only("pk", *[f.name for f in fields]):
                    # Reading decrypts with any configured key; saving encrypts with the first.
                    obj.save(update_fields=[f.name for f in fields])
                    count += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {count} rows."))
