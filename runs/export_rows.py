"""What an export of the Runs list reads, batch by batch, and each run's exported values
(runs/export.py says which runs, and writes these values as CSV or JSON Lines).

The runs are read in batches by the list's own keyset, newest first on (created_at, id), each
batch one short statement of only the exported columns, with the names of procedures, users,
keys and triggers joined in the same statement. Each batch is written out and dropped before the
next is read, so memory stays flat however many runs match.

Why batches and not one cursor over one query (QuerySet.iterator()): a server-side cursor needs
a transaction open for the whole download, minutes at a million runs, which pins one snapshot
and holds back VACUUM on the busiest table the whole time; a client that reads slowly would keep
it open longer still. A batch is a statement of its own (autocommit): no lock is held between
them, and each batch starts its index scan where the last one ended, so the millionth row costs
what the first did. The key (created_at, id) of a run never changes, so no run is skipped or
repeated. The export is "as of" the moment it started: runs created later are left out (their
created_at is above the bound); a run that changes status meanwhile is written as it is when its
batch is read.
"""

import datetime
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import CharField, F, FloatField, Func, Q, QuerySet, Value
from django.db.models.fields.json import KeyTextTransform
from django.urls import reverse

from procedures.money import MoneyError, to_decimal
from runs.models import Run
from runs.selectors import NEWEST_FIRST

# What each exported row is read from, in one statement: the run's own columns and the names
# of what it points at (LEFT JOINs for the optional starters and the original of a retry).
SOURCE_FIELDS = (
    "pk",
    "public_id",
    "procedure__public_id",
    "procedure__name",
    "version__number",
    "environment",
    "type",
    "status",
    "failure_kind",
    "failure_reason",
    # The listing (procedures.run_listing): the amount. The declared references follow the
    # last of these, one text column each (RunExport.rows).
    "amount_minor",
    "amount_currency",
    f"started_by_user__{get_user_model().USERNAME_FIELD}",
    "started_by_api_key__prefix",
    "started_by_api_key__name",
    "started_by_trigger__public_id",
    "started_by_trigger__name",
    "trigger_event__external_id",
    "created_at",
    "started_at",
    "finished_at",
    "retry_of__public_id",
)
CREATED_AT = SOURCE_FIELDS.index("created_at")
TIMESTAMP_FIELDS = ("created_at", "started_at", "finished_at")
REFERENCE_ALIAS = "reference_{}"
# The exported columns, in order: the CSV header and each JSON object's keys. The declared
# references come after AMOUNT_COLUMNS, one column each ("reference.invoice_id"), for the
# reference fields of the versions the export can include (RunExport.reference_names).
LEADING_COLUMNS = (
    "run_id",
    "procedure_id",
    "procedure",
    "version",
    "environment",
    "type",
    "status",
    "failure_kind",
    "failure_reason",
)
AMOUNT_COLUMNS = (
    "amount",  # in major units, the currency's decimal places: "24000.00" (JPY "24000")
    "currency",  # ISO 4217
    "amount_minor",  # in minor units, as stored: 2400000
)
REFERENCE_PREFIX = "reference."
TRAILING_COLUMNS = (
    "started_by_kind",  # user, api_key, trigger or system
    "started_by",  # the username, the key's prefix or the trigger's id
    "started_by_name",  # the key's or the trigger's name
    "trigger_event",  # the outside event's id
    "created_at",  # ISO 8601, UTC, with its offset
    "started_at",
    "finished_at",
    "duration_seconds",
    "retry_of",  # the run this one retried
    "url",  # the run's page in the dashboard
)


@dataclass
class RunExport:
    """What one export will write: the validated filter, over the runs the viewer may see,
    as of `as_of` (runs.export.prepare_export makes it)."""

    runs: QuerySet[Run]
    statuses: list[str]
    filters: str  # for the log line (runs.export._filters_for_the_log)
    cleaned: dict
    as_of: datetime.datetime
    reference_names: list[str]

    @property
    def columns(self) -> tuple[str, ...]:
        references = tuple(REFERENCE_PREFIX + name for name in self.reference_names)
        return LEADING_COLUMNS + AMOUNT_COLUMNS + references + TRAILING_COLUMNS

    def rows(self, runs: QuerySet[Run]) -> QuerySet:
        """`runs` as SOURCE_FIELDS tuples, then the duration in seconds, then each reference
        as text, read by the database (->> on PostgreSQL), not parsed from the JSON column a
        million times. PostgreSQL also writes the times as ISO 8601 text and works out the
        duration: turning three timestamps a row into datetimes and back into text was a
        quarter of an export's CPU. Elsewhere the times are datetimes and the duration None,
        for RowWriter to finish."""
        fields, annotations = list(SOURCE_FIELDS), {}
        if connection.vendor == "postgresql":
            for name in TIMESTAMP_FIELDS:
                fields[SOURCE_FIELDS.index(name)] = f"{name}_text"
                annotations[f"{name}_text"] = _IsoUtc(name)
            annotations["duration_seconds"] = _Seconds("started_at", "finished_at")
        else:
            annotations["duration_seconds"] = Value(None, output_field=FloatField())
        references = {
            REFERENCE_ALIAS.format(number): KeyTextTransform(name, "reference_values")
            for number, name in enumerate(self.reference_names)
        }
        return runs.annotate(**annotations, **references).values_list(
            *fields, "duration_seconds", *references
        )

    def filename(self, format: str) -> str:
        """runs_2026-11-01-to-2026-11-30_exported-20261201T164500Z.csv: the filter's dates,
        when it has any, and when the export was made."""
        start, end = self.cleaned.get("created_from"), self.cleaned.get("created_to")
        parts = ["runs"]
        if start and end:
            parts.append(f"{start:%Y-%m-%d}-to-{end:%Y-%m-%d}")
        elif start:
            parts.append(f"from-{start:%Y-%m-%d}")
        elif end:
            parts.append(f"to-{end:%Y-%m-%d}")
        parts.append(f"exported-{self.as_of:%Y%m%dT%H%M%SZ}")
        return "_".join(parts) + f".{format}"


class _IsoUtc(Func):
    """A timestamp as ISO 8601 text in UTC with its offset, microseconds always, as Python's
    isoformat(timespec="microseconds") writes it: 2026-11-02T09:00:00.000000+00:00."""

    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    )
    output_field = CharField()


class _Seconds(Func):
    """Seconds from the first timestamp to the second, to the millisecond; NULL if either is."""

    template = "round(extract(epoch FROM (%(expressions)s))::numeric, 3)::float8"
    arg_joiner = " - "
    output_field = FloatField()

    def __init__(self, start: str, end: str):
        super().__init__(F(end), F(start))


# --- reading the runs, batch by batch -----------------------------------------------------------
def batches(export: RunExport, *, batch_size: int) -> Iterator[list[tuple]]:
    """The matching runs newest first, as lists of SOURCE_FIELDS tuples of at most
    `batch_size` (runs.export.BATCH_SIZE), each read by one statement (two for several
    statuses)."""
    after = None  # (created_at, pk) of the last run written
    several_statuses = len(export.statuses) > 1 and (
        connection.features.supports_slicing_ordering_in_compound
    )
    while True:
        runs = export.runs if after is None else _older_than(export.runs, *after)
        if several_statuses:
            rows = _newest_of_each_status(export, runs, batch_size)
        else:
            rows = list(export.rows(runs.order_by(*NEWEST_FIRST))[:batch_size])
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        last = rows[-1]
        created_at = last[CREATED_AT]
        if isinstance(created_at, str):  # PostgreSQL's text (RunExport.rows)
            created_at = datetime.datetime.fromisoformat(created_at)
        after = (created_at, last[0])


def _older_than(runs: QuerySet[Run], created_at, pk) -> QuerySet[Run]:
    # The leading created_at <= bound starts the index scan at the last run written; the OR
    # alone would only filter every newer run on the way down (as selectors._after_cursor).
    return runs.filter(
        Q(created_at__lte=created_at),
        Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk),
    )


def _newest_of_each_status(export: RunExport, runs: QuerySet[Run], limit: int) -> list[tuple]:
    """The next `limit` runs of several statuses: each status's next `limit` keys by its own
    (status, created_at, id) index, merged, then those runs' columns by primary key. Walking the
    date index alone and skipping the other statuses' runs costs as many rows as it skips; a
    bitmap over `status IN (...)` would sort every older run for every batch (as in
    selectors._newest_of_each_status for a page)."""
    newest = [
        runs.filter(status=status).order_by(*NEWEST_FIRST).values_list("created_at", "pk")[:limit]
        for status in export.statuses
    ]
    keys = newest[0].union(*newest[1:], all=True).order_by(*NEWEST_FIRST)[:limit]
    pks = [pk for _, pk in keys]
    by_pk = {row[0]: row for row in export.rows(Run.objects.filter(pk__in=pks))}
    return [by_pk[pk] for pk in pks]


# --- each run's values --------------------------------------------------------------------------
class RowWriter:
    """Turns rows as RunExport.rows reads them into the exported values, in the export's
    column order."""

    def __init__(self, export: RunExport, base: str):
        self.columns = export.columns
        # One reverse() for the whole export: a million of them would cost seconds.
        prefix, _, suffix = reverse("runs:detail", args=["RUN"]).rpartition("RUN")
        self.url_prefix, self.url_suffix = base + prefix, suffix

    def values(self, row: tuple) -> list:
        """One run's values: LEADING_COLUMNS, AMOUNT_COLUMNS, the references, TRAILING_COLUMNS."""
        (
            _pk,
            public_id,
            procedure_id,
            procedure_name,
            version,
            environment,
            run_type,
            status,
            failure_kind,
            failure_reason,
            amount_minor,
            currency,
            username,
            key_prefix,
            key_name,
            trigger_id,
            trigger_name,
            trigger_event,
            created_at,
            started_at,
            finished_at,
            retry_of,
            duration,
            *references,
        ) = row
        return [
            public_id,
            procedure_id,
            procedure_name,
            version,
            environment,
            run_type,
            status,
            failure_kind or None,
            failure_reason or None,
            *_amount_values(amount_minor, currency),
            *references,
            *_started_by(username, key_prefix, key_name, trigger_id, trigger_name),
            trigger_event,
            *_time_values(created_at, started_at, finished_at, duration),
            retry_of,
            f"{self.url_prefix}{public_id}{self.url_suffix}",
        ]


def _amount_values(minor_units: int | None, currency: str) -> tuple:
    """AMOUNT_COLUMNS: the amount in major units, its currency, the amount in minor units."""
    return _amount(minor_units, currency), currency or None, minor_units


def _amount(minor_units: int | None, currency: str):
    """The amount in major units as an exact Decimal, or None without one (or without a
    currency we know the decimal places of)."""
    if minor_units is None or not currency:
        return None
    try:
        return to_decimal(minor_units, currency)
    except MoneyError:
        return None


def _started_by(username, key_prefix, key_name, trigger_id, trigger_name) -> tuple:
    """started_by_kind, started_by and started_by_name: of the one starter a run has."""
    if username is not None:
        return "user", username, None
    if key_prefix is not None:
        return "api_key", key_prefix, key_name
    if trigger_id is not None:
        return "trigger", trigger_id, trigger_name
    return "system", None, None


def _time_values(created_at, started_at, finished_at, duration: float | None) -> tuple:
    """created_at, started_at, finished_at and duration_seconds. The duration is PostgreSQL's
    (RunExport.rows), or worked out here from the datetimes other databases read."""
    if duration is None and isinstance(finished_at, datetime.datetime) and started_at:
        duration = round((finished_at - started_at).total_seconds(), 3)
    return _timestamp(created_at), _timestamp(started_at), _timestamp(finished_at), duration


def _timestamp(moment: datetime.datetime | str | None) -> str | None:
    if moment is None or isinstance(moment, str):  # PostgreSQL's text already
        return moment
    if moment.tzinfo is not datetime.UTC:  # Django reads them in UTC already
        moment = moment.astimezone(datetime.UTC)
    return moment.isoformat(timespec="microseconds")
