"""Cron triggers: fire each enabled schedule exactly once per scheduled time.

`fire_due_cron_triggers()` is called by every scheduler tick (rapidfolio/scheduler.py). Several
schedulers may run at once: a firing is a TriggerEvent whose external_id is the scheduled time
in ISO 8601 UTC, and TriggerEvent is unique per (trigger, external_id), so the database lets
exactly one scheduler insert it; the others get an IntegrityError and move on. The run is started
in the same transaction as that insert, so there is never a firing without its run, or a run
without its firing.

Missed times (the schedulers were down): on each tick only the most recent scheduled time at
or before now is considered. After downtime a schedule therefore fires once, late, for the
latest time it missed; older missed times are skipped rather than replayed as a backlog (a
daily payout must not run seven times after a week offline). Times before the trigger was
created are never fired.

Schedules are read in the trigger's time zone (croniter), so "0 9 * * *" in Europe/Paris fires
at 09:00 Paris time on both sides of a daylight-saving change.
"""

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from django.utils import timezone

from procedures.models import Trigger, TriggerEvent, TriggerKind
from runs.triggers.services import Receipt, accept_event

logger = logging.getLogger(__name__)


def latest_scheduled_time(trigger: Trigger, now: datetime) -> datetime | None:
    """The most recent scheduled time at or before `now`, in UTC; None if it is not due."""
    try:
        zone = ZoneInfo(trigger.timezone or "UTC")
        # croniter's get_prev is strictly before its start: a microsecond later includes `now`.
        start = (now + timedelta(microseconds=1)).astimezone(zone)
        scheduled = croniter(trigger.cron_expression, start).get_prev(datetime)
    except (ZoneInfoNotFoundError, ValueError, KeyError, CroniterError):
        logger.warning("cron trigger %s has an invalid schedule; skipped", trigger.public_id)
        return None
    scheduled = scheduled.astimezone(UTC)
    if trigger.created_at and scheduled < trigger.created_at:
        return None
    return scheduled


def fire_due_cron_triggers(now: datetime | None = None) -> list[Receipt]:
    """Fire every enabled cron trigger whose latest scheduled time has not fired yet.

    Returns the receipts of the firings this call made (none for times already fired).
    """
    now = now or timezone.now()
    fired = []
    triggers = Trigger.objects.filter(kind=TriggerKind.CRON, enabled=True).select_related(
        "procedure"
    )
    for trigger in triggers:
        scheduled = latest_scheduled_time(trigger, now)
        if scheduled is None:
            continue
        external_id = scheduled.isoformat()
        if TriggerEvent.objects.filter(trigger=trigger, external_id=external_id).exists():
            continue
        event = {
            "scheduled_at": external_id,
            "fired_at": now.astimezone(UTC).isoformat(),
            "trigger": trigger.public_id,
        }
        receipt = accept_event(
            trigger=trigger,
            external_id=external_id,
            event_type="cron",
            payload=event,
            wanted=True,
            signed_body=None,  # we scheduled it ourselves: nothing signed, nothing to replay
        )
        if not receipt.duplicate:
            fired.append(receipt)
    return fired
