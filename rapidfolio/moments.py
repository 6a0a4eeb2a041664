"""How the dashboard writes a moment: always with its time zone, relative where people scan.

Three forms, one function each, shared by the template tag (rapidfolio/templatetags/time_tags.py)
and mirrored by static/js/app.js, which keeps the relative ones true on a page left open:

- absolute: "Dec 1, 2026 16:45:06 CET", in the viewer's zone (the one the middleware activated);
- relative: "3 min ago" / "in 2 h", a function of the distance alone, so the script and the
  server agree on every word;
- waited: "2 h 5 min", how long something has been waiting.

The exact moment is always in the hover title: "2026-12-01 16:45:06 Europe/Paris (UTC+01:00)".
Change a rule here and in app.js together (tests/test_time_zones.py holds them to the same words).
"""

import datetime

from django.utils import dateformat, timezone

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MONTH = 30.44 * DAY  # an average month: "3 mo ago" needs no calendar
YEAR = 365.25 * DAY


def local(moment: datetime.datetime) -> datetime.datetime:
    """`moment` in the current (the viewer's) time zone."""
    return timezone.localtime(moment)


def utc_offset(moment: datetime.datetime) -> str:
    """'UTC+01:00' for a local moment."""
    offset = moment.strftime("%z") or "+0000"
    return f"UTC{offset[:3]}:{offset[3:]}"


def zone_abbreviation(moment: datetime.datetime) -> str:
    """'CET', 'EDT', 'UTC'; zones without a letter abbreviation ('+03') get 'UTC+03:00'."""
    name = moment.tzname() or ""
    return utc_offset(moment) if not name or name[0] in "+-" else name


def iso_utc(moment: datetime.datetime) -> str:
    """The machine form for <time datetime>: '2026-12-01T15:45:06.120Z'."""
    utc = moment.astimezone(datetime.UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def absolute(moment: datetime.datetime) -> str:
    """'Dec 1, 2026 16:45:06 CET'."""
    moment = local(moment)
    return f"{dateformat.format(moment, 'M j, Y H:i:s')} {zone_abbreviation(moment)}"


def exact(moment: datetime.datetime) -> str:
    """The hover title: '2026-12-01 16:45:06 Europe/Paris (UTC+01:00)'."""
    moment = local(moment)
    zone = getattr(moment.tzinfo, "key", None) or moment.tzname()
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone} ({utc_offset(moment)})"


def relative(moment: datetime.datetime, now: datetime.datetime) -> str:
    """'just now', '3 min ago', '5 h ago', '12 d ago', '3 mo ago', '2 y ago', or 'in …'."""
    seconds = (now - moment).total_seconds()
    distance = abs(seconds)
    if distance < 45:
        return "just now"
    if distance < HOUR:
        amount = f"{max(1, int(distance // MINUTE))} min"
    elif distance < DAY:
        amount = f"{int(distance // HOUR)} h"
    elif distance < 60 * DAY:
        amount = f"{int(distance // DAY)} d"
    elif distance < YEAR:
        amount = f"{int(distance // MONTH)} mo"
    else:
        amount = f"{int(distance // YEAR)} y"
    return f"{amount} ago" if seconds > 0 else f"in {amount}"


def waited(since: datetime.datetime, now: datetime.datetime) -> str:
    """How long since `since`: 'under 1 min', '42 min', '2 h 5 min', '3 d 4 h'."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < MINUTE:
        return "under 1 min"
    minutes = seconds // MINUTE
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
