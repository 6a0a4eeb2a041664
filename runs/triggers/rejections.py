"""Recording refused webhook deliveries without letting their senders fill the database.

A refused delivery (bad signature, stale timestamp, not an event) is unauthenticated: anyone
who knows a trigger's URL can send as many as they like. What is kept of them is bounded:

- a row keeps an excerpt of EXCERPT_CHARS characters, the SHA-256 and the byte length of the
  whole body: enough to tell bodies apart and to recognise one an admin has in hand;
- repeats aggregate: a delivery with the same trigger, reason, remote address and body digest
  as a row first seen within AGGREGATE_WINDOW_SECONDS adds one to that row's `count` and moves
  its `last_seen`, instead of inserting;
- rate limit per trigger: at most settings.REJECTED_DELIVERY_ROWS_PER_MINUTE new rows per
  trigger in any RATE_WINDOW_SECONDS; beyond it the deliveries are counted on one `throttled`
  row per trigger and window (its reason says so), and the sender is told to retry later.

So a trigger gains at most limit + 1 rows a minute however hard it is flooded, and the counts
add up to every refused delivery: admins see that an attack happened and how big it was.

Only refused deliveries are limited: a correctly signed delivery is verified and accepted
whatever a flood of bad ones is doing, so a flood cannot lock out the real sender.

On PostgreSQL the trigger's row is locked (FOR NO KEY UPDATE, which does not block the
inserts of good deliveries that reference it) while a rejection is counted, so concurrent
floods cannot overshoot the limit; SQLite serialises writers anyway.
"""

import hashlib
import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min
from django.utils import timezone

from procedures.models import RejectedDelivery, Trigger

EXCERPT_CHARS = 200
AGGREGATE_WINDOW_SECONDS = 3600
RATE_WINDOW_SECONDS = 60
DEFAULT_ROWS_PER_MINUTE = 20
THROTTLED_REASON = (
    "Rate limit of refused deliveries reached for this trigger: further refused deliveries "
    "are counted on this row, not itemised."
)


def rows_per_minute() -> int:
    return int(getattr(settings, "REJECTED_DELIVERY_ROWS_PER_MINUTE", DEFAULT_ROWS_PER_MINUTE))


def excerpt(body: bytes) -> str:
    # PostgreSQL text refuses NUL; anyone can send one, so it must not turn into a 500.
    return body[:EXCERPT_CHARS].decode("utf-8", "replace").replace("\x00", "\ufffd")


def record_rejection(
    *, trigger: Trigger | None, reason: str, remote_addr: str, body: bytes
) -> int | None:
    """Count one refused delivery: on a matching recent row, a new row, or the throttled row.

    Returns None, or when the trigger is throttled the seconds until it itemises rows again.
    """
    now = timezone.now()
    fields = {
        "trigger": trigger,
        "reason": reason[:300],
        "remote_addr": (remote_addr or "")[:64],
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    with transaction.atomic():
        if trigger is not None:
            Trigger.objects.select_for_update(no_key=True).filter(pk=trigger.pk).first()
        rows = RejectedDelivery.objects.filter(trigger=trigger)
        repeats = rows.filter(
            throttled=False,
            received_at__gte=now - timedelta(seconds=AGGREGATE_WINDOW_SECONDS),
            **fields,
        )
        if _counted_on(repeats, now):
            return None
        window_start = now - timedelta(seconds=RATE_WINDOW_SECONDS)
        recent = rows.filter(throttled=False, received_at__gte=window_start)
        if recent.count() < rows_per_minute():
            RejectedDelivery.objects.create(
                **fields,
                received_at=now,
                last_seen=now,
                body_excerpt=excerpt(body),
                body_bytes=len(body),
            )
            return None
        if not _counted_on(rows.filter(throttled=True, received_at__gte=window_start), now):
            RejectedDelivery.objects.create(
                trigger=trigger,
                reason=THROTTLED_REASON,
                remote_addr=fields["remote_addr"],
                throttled=True,
                received_at=now,
                last_seen=now,
            )
        oldest = recent.aggregate(oldest=Min("received_at"))["oldest"] or now
    return _seconds_until_free(oldest, now)


def _counted_on(rows, now) -> bool:
    """Add one to the count of the newest of `rows`; False when there is no such row."""
    pk = rows.order_by("-received_at").values_list("pk", flat=True).first()
    if pk is None:
        return False
    RejectedDelivery.objects.filter(pk=pk).update(count=F("count") + 1, last_seen=now)
    return True


def _seconds_until_free(oldest, now) -> int:
    """When the oldest row of the window leaves it, a new row may be itemised again."""
    remaining = (oldest + timedelta(seconds=RATE_WINDOW_SECONDS) - now).total_seconds()
    return max(1, math.ceil(remaining))
