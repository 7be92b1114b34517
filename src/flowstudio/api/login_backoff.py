"""The login backoff as the API uses it: the policy from settings and its 429 answer.

Shared by `api/auth_routes.login` and `api/account.change_password` (a wrong current password counts
like a failed login). The counting itself is `store/login_attempts.py`.
"""

from __future__ import annotations

from flowstudio.api import errors
from flowstudio.api.errors import Problem
from flowstudio.settings import Settings
from flowstudio.store.login_attempts import BackoffPolicy


def backoff_policy(settings: Settings) -> BackoffPolicy:
    return BackoffPolicy(
        pair_free=settings.login_free_failures,
        ip_free=settings.login_ip_free_failures,
        email_free=settings.login_email_free_failures,
        base_s=settings.login_backoff_base_seconds,
        max_s=settings.login_backoff_max_seconds,
        window_s=settings.login_window_seconds,
    )


def too_many(wait: int) -> Problem:
    return errors.too_many(f"too many failed logins; retry in {wait} seconds", wait)
