"""Factories for the models, and the named staff personas used by permission tests."""

from __future__ import annotations

import secrets

import factory
from django.contrib.auth.models import Group, User

from credentials import roles
from credentials.models import AuthMethod, ClientKey, Credential, CredentialGroup, sha256_hex


def long_token(prefix: str = "aor") -> str:
    """Return a realistic refresh token: long enough not to look truncated."""
    return prefix + "A" * 8 + secrets.token_urlsafe(120)


class CredentialGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CredentialGroup
        django_get_or_create = ["name"]

    name = factory.Sequence(lambda n: f"team-{n}")


class CredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Credential

    class Params:
        idc = factory.Trait(
            auth_method=AuthMethod.IDC,
            provider="BuilderId",
            client_id=factory.Sequence(lambda n: f"oidc-client-{n}"),
            client_secret=factory.LazyFunction(lambda: "secret-" + secrets.token_urlsafe(40)),
        )
        api_key = factory.Trait(
            auth_method=AuthMethod.API_KEY,
            refresh_token="",
            refresh_token_hash="",
            kiro_api_key=factory.LazyFunction(lambda: "ksk_" + secrets.token_hex(24)),
            kiro_api_key_hash=factory.LazyAttribute(lambda o: sha256_hex(o.kiro_api_key)),
        )

    auth_method = AuthMethod.SOCIAL
    provider = "Github"
    email = factory.Sequence(lambda n: f"dev{n}@example.com")
    refresh_token = factory.LazyFunction(long_token)
    refresh_token_hash = factory.LazyAttribute(
        lambda o: sha256_hex(o.refresh_token) if o.refresh_token else ""
    )
    access_token = factory.LazyFunction(lambda: "aoa" + secrets.token_urlsafe(60))
    priority = factory.Sequence(lambda n: n)


class ClientKeyFactory(factory.django.DjangoModelFactory):
    """A client key; the plaintext is available as `key.plaintext` on the built object."""

    class Meta:
        model = ClientKey

    name = factory.Sequence(lambda n: f"key {n}")
    plaintext = factory.LazyFunction(lambda: "sk-" + secrets.token_urlsafe(24))
    prefix = factory.LazyAttribute(lambda o: o.plaintext[:8])
    key_hash = factory.LazyAttribute(lambda o: sha256_hex(o.plaintext))

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> ClientKey:
        plaintext = kwargs.pop("plaintext")
        key = super()._create(model_class, *args, **kwargs)
        key.plaintext = plaintext  # type: ignore[attr-defined]
        return key


PASSWORD = "correct horse battery staple 42"


def make_superuser(username: str = "alice") -> User:
    """Alice administers the site, users included."""
    return User.objects.create_superuser(username=username, email="", password=PASSWORD)


def make_operator(username: str = "oscar") -> User:
    """Oscar runs the pool: credentials, keys and settings; he cannot manage users."""
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=roles.OPERATORS))
    return user


def make_viewer(username: str = "vera") -> User:
    """Vera reads everything of the gateway and changes nothing."""
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=roles.VIEWERS))
    return user


def make_outsider(username: str = "olga") -> User:
    """Olga has an account but no staff role."""
    return User.objects.create_user(username=username, password=PASSWORD)
