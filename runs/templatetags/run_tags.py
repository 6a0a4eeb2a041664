"""Formatting for the run pages: durations, audited JSON, event values, statuses, step links,
business outcomes and a node's attempts grouped (runs.picture)."""

import datetime
import json
import re
from functools import lru_cache

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse

from runs import picture
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


# A run page's URL is the same for every run but for the id, so a page of rows builds each from
# the route reversed once (per URLconf and script prefix) instead of calling reverse() per row:
# it was a sixth of a Runs list row's rendering (bench.page_profile, cProfile).
_RUN_ID_MARK = "run_00000000000000000000000000"
_PLAIN_ID = re.compile(r"[A-Za-z0-9_]+")


@lru_cache(maxsize=16)
def _run_page_url_parts(urlconf, script_prefix: str) -> tuple[str, str]:
    before, after = reverse("runs:detail", args=[_RUN_ID_MARK]).split(_RUN_ID_MARK)
    return before, after


@register.filter
def run_page_url(public_id) -> str:
    """{% url 'runs:detail' public_id %}, for the rows of a list."""
    public_id = str(public_id)
    if not _PLAIN_ID.fullmatch(public_id):  # an id reverse() would quote: let it
        return reverse("runs:detail", args=[public_id])
    before, after = _run_page_url_parts(get_urlconf(), get_script_prefix())
    return f"{before}{public_id}{after}"


@register.filter
def step_anchor(sequence) -> str:
    """The query and fragment that open the step-log page showing step `sequence`."""
    start = page_start(int(sequence), STEP_PAGE_SIZE)
    return f"{'' if start == 1 else f'?start={start}'}#step-{sequence}"


@register.filter
def outcome_label(slug) -> str:
    """A business outcome as people read it: "not_eligible" is "Not eligible"."""
    return picture.outcome_label(slug) if isinstance(slug, str) else ""


@register.filter
def attempt_groups(steps) -> list:
    """A page of the step log with each node's retried attempts as one group."""
    return picture.attempt_groups(list(steps or []))


@register.simple_tag
def attempt_group_label(group, run) -> str:
    """What a node's attempts came to: "Succeeded on attempt 3"."""
    return picture.group_label(group, run)


# A run's row on the Runs list polls while the run is under way: every few seconds while it is
# pending or running, less often while it waits for a person's review; a settled row not at all.
ROW_POLL_SECONDS = {RunStatus.PENDING: 3, RunStatus.RUNNING: 3, RunStatus.AWAITING_REVIEW: 15}


@register.filter
def row_poll_seconds(run) -> int | None:
    return ROW_POLL_SECONDS.get(run.status)


@register.filter
def row_token(run) -> str:
    """Changes whenever the run's row would: its status, start or finish (the row shows no
    other column that changes), so an unchanged row's poll is answered with 204."""
    started = run.started_at.isoformat() if run.started_at else ""
    finished = run.finished_at.isoformat() if run.finished_at else ""
    return f"{run.status}.{started}.{finished}"
