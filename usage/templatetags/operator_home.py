"""The operator home's template tag: the admin index asks usage.home for what it shows."""

from __future__ import annotations

from typing import Any

from django import template

from usage.home import Home, operator_home

register = template.Library()


@register.simple_tag(takes_context=True)
def load_operator_home(context: dict[str, Any]) -> Home:
    """Return the home's sections the signed-in user may view."""
    return operator_home(user=context["request"].user)
