"""Routes of the usage app."""

from __future__ import annotations

from django.urls import path

from usage import views

urlpatterns = [path("metrics", views.metrics, name="metrics")]
