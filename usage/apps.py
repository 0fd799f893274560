from __future__ import annotations

from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        from credentials import jobs
        from usage import jobs as usage_jobs

        # The job loop lives below usage (credentials.jobs); usage plugs its retention in.
        jobs.register(jobs.Job("retention", 86400, usage_jobs.retention))
