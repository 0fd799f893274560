"""Leases of the background jobs (credentials.jobs): one runner per job and interval."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from credentials.models import (
    JobLock,
)


def job_claim(*, name: str, holder: str, ttl_seconds: float) -> bool:
    """Claim a job's lease with a conditional UPDATE; True for exactly one claimer."""
    JobLock.objects.get_or_create(name=name)
    now = timezone.now()
    return bool(
        JobLock.objects.filter(name=name)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=now + timedelta(seconds=ttl_seconds))
    )


def job_finish(*, name: str, holder: str, result: str) -> None:
    """Record a job's run; the lease stays until it expires, which spaces the runs."""
    JobLock.objects.filter(name=name, holder=holder).update(
        last_run_at=timezone.now(), last_result=result[:2000]
    )


# --- batch import (spec kiro-ops §10 #118–#123, §6.3) --------------------------------------------
