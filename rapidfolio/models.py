"""What each user chose for how the dashboard shows things to them (only the time zone, so far).

It lives in rapidfolio, below every app, because the middleware that applies it
(rapidfolio/time_zones.py) and the account page that sets it are shared helpers.
"""

import zoneinfo
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


@cache
def known_time_zones() -> frozenset[str]:
    """The IANA names this machine's tz database knows ('Europe/Paris', 'UTC', …)."""
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(name: str) -> None:
    if name not in known_time_zones():
        raise ValidationError(
            "“%(name)s” is not a time zone we know: pick one from the list, such as Europe/Paris.",
            code="unknown_time_zone",
            params={"name": name},
        )


class UserPreferences(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences"
    )
    # An IANA name; the pages show times in it, the API always in UTC.
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"{self.user}: {self.time_zone}"
