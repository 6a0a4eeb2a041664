"""Formatting for the run pages: durations, audited JSON, event values, statuses, step links."""

import datetime
import json

from django import template

from runs.models import RunStatus
from runs.selectors import STEP_PAGE_SIZE, page_start

register = template.Library()


@register.filter
def duration(value) -> str:
    """A timedelta as people read it: 850 ms, 4.2 s, 3 min 5 s, 2 h 14 min."""
    if not isinstance(value, datetime.timedelta):
        return "—"
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def recorded_json(text: str) -> str:
    """Recorded request/response text, indented without changing a key's order or a value.

    Text that is not JSON is shown exactly as recorded.
    """
    if not text:
        return ""
    try:
        value = json.loads(text, object_pairs_hook=dict)
    except (TypeError, ValueError):
        return text
    return json.dumps(value, indent=2, ensure_ascii=False)


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@register.filter
def plain(value) -> str:
    """A value in one line: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


@register.filter
def is_nested(value) -> bool:
    return isinstance(value, dict | list)


@register.filter
def items_list(value) -> list:
    """A dict's (key, value) pairs; safe where a key could be called "items"."""
    return list(value.items()) if isinstance(value, dict) else []


@register.filter
def lookup(mapping, key):
    """mapping[key] in a template, or None."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def status_label(value: str) -> str:
    try:
        return RunStatus(value).label
    except ValueError:
        return value


@register.filter
def step_anchor(sequence) -> str:
    """The query and fragment that open the step-log page showing step `sequence`."""
    start = page_start(int(sequence), STEP_PAGE_SIZE)
    return f"{'' if start == 1 else f'?start={start}'}#step-{sequence}"
