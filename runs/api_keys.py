"""API keys: generated once, shown once, stored as a SHA-256 hash."""

import hashlib
import secrets

from django.utils import timezone

from runs import sql
from runs.models import ApiKey

KEY_PREFIX = {"sandbox": "rf_test_", "live": "rf_live_"}


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def create_api_key(*, name: str, environment: str, created_by=None) -> tuple[ApiKey, str]:
    """Create a key; returns it with the raw secret, which is never stored or shown again."""
    raw_key = KEY_PREFIX[environment] + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        name=name,
        environment=environment,
        prefix=raw_key[: len(KEY_PREFIX[environment]) + 8],
        key_hash=hash_key(raw_key),
        created_by=created_by,
    )
    return api_key, raw_key


def authenticate(raw_key: str) -> ApiKey | None:
    """The active key for `raw_key`, with its last-used time recorded, or None."""
    if not raw_key:
        return None
    # Plain SQL (runs.sql): every API request authenticates, and compiling the ORM query cost
    # more than running it.
    api_key = sql.active_api_key(hash_key(raw_key))
    if api_key is not None:
        now = timezone.now()
        # Only write when it moved noticeably: every request must not be an UPDATE.
        if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
    return api_key


def revoke(api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
