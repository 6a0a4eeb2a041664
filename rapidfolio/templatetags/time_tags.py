"""{% moment value %}: every timestamp on our pages, with its time zone (rapidfolio/moments.py).

    {% moment run.created_at %}            Dec 1, 2026 16:45:06 CET
    {% moment run.created_at "ago" %}      3 min ago            (where people scan: lists, headers)
    {% moment review.created_at "waited" %} 2 h 5 min           (how long it has waited)

Each is a <time> with the UTC instant in `datetime` and the exact local moment, zone and offset
in `title` (shown on hover). The relative forms carry `data-relative`, so static/js/app.js keeps
their words true on a page left open. A missing value is a muted dash; an ISO string (a deadline
recorded in an event's data) is read as the moment it names.
"""

import datetime

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from rapidfolio import moments

register = template.Library()

FORMS = ("absolute", "ago", "waited")


def _as_moment(value) -> datetime.datetime | None:
    if isinstance(value, str):
        try:
            value = parse_datetime(value)
        except ValueError:
            return None
    if not isinstance(value, datetime.datetime):
        return None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    return value


@register.simple_tag(takes_context=True)
def moment(context, value, form: str = "absolute"):
    if form not in FORMS:
        raise template.TemplateSyntaxError(f"moment: form must be one of {FORMS}, not {form!r}")
    instant = _as_moment(value)
    if instant is None:
        if value:  # recorded text that is not a moment: shown as it is
            return format_html('<span class="mono">{}</span>', value)
        return mark_safe('<span class="muted">—</span>')
    # A page that compares against its own `now` (the queue's deadlines) words its times from
    # the same instant.
    now = context.get("now")
    now = now if isinstance(now, datetime.datetime) else timezone.now()
    if form == "absolute":
        text, relative = moments.absolute(instant), ""
    elif form == "ago":
        text, relative = moments.relative(instant, now), "ago"
    else:
        text, relative = moments.waited(instant, now), "waited"
    if not relative:
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            moments.iso_utc(instant),
            moments.exact(instant),
            text,
        )
    return format_html(
        '<time datetime="{}" title="{}" data-relative="{}">{}</time>',
        moments.iso_utc(instant),
        moments.exact(instant),
        relative,
        text,
    )
