"""Each user's time zone: read it, set it, and show every page in it.

The pages show times in the zone the user picked on their account page, else in
RAPIDFOLIO_DEFAULT_TIME_ZONE. The API and the machine endpoints (webhooks, health, metrics) always
speak UTC and skip the lookup, so they pay nothing for it.
"""

import zoneinfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from rapidfolio.models import UserPreferences, known_time_zones, validate_time_zone

# Paths that never render a time for a person: the API (UTC by contract), inbound webhooks,
# health and metrics, and static files.
SKIPPED_PREFIXES = ("/v1/", "/hooks/", "/healthz", "/readyz", "/metrics", "/static/")


def default_time_zone() -> str:
    return settings.RAPIDFOLIO_DEFAULT_TIME_ZONE


def time_zone_choices() -> list[str]:
    """Every known zone, 'UTC' first, then by name (the account page's select)."""
    return ["UTC", *sorted(name for name in known_time_zones() if name != "UTC")]


def time_zone_of(user) -> str:
    """The zone `user` picked, or the default: one indexed lookup."""
    if not getattr(user, "is_authenticated", False):
        return default_time_zone()
    chosen = (
        UserPreferences.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
    )
    return chosen if chosen in known_time_zones() else default_time_zone()


def set_time_zone(*, user, time_zone: str) -> UserPreferences:
    """Record `user`'s zone; an unknown name is a ValidationError (the form says it first)."""
    validate_time_zone(time_zone)
    with transaction.atomic():
        preferences, _ = UserPreferences.objects.update_or_create(
            user=user, defaults={"time_zone": time_zone}
        )
    return preferences


class UserTimeZoneMiddleware:
    """Activates the signed-in user's zone for the request (after AuthenticationMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response
        # A misspelt setting fails at start, not on the first page.
        zoneinfo.ZoneInfo(default_time_zone())

    def __call__(self, request):
        if request.path.startswith(SKIPPED_PREFIXES):
            return self.get_response(request)
        timezone.activate(zoneinfo.ZoneInfo(time_zone_of(request.user)))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
