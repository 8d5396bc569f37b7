"""Test-wide settings: hypothesis never fails on timing (2-core machine, CI load)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "runlog",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CI") == "true",
)
settings.load_profile("runlog")
