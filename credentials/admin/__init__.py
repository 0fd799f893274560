"""The credentials admin (split into modules next)."""

from credentials.admin import credential  # noqa: F401 (registers the model admins)
