"""The bulk seed: a year of runs cloned from real template runs, loaded with COPY.

Rows are generated in Python as COPY text, streamed in time order into five COPY commands at
once (runs, steps, events, review requests, review decisions), one connection each, so the
server parses and indexes while Python generates. The sessions set session_replication_role to
replica, which skips the foreign-key triggers (ten million RI checks would dominate the load);
the generator assigns every id itself, so the references are right by construction. The
append-only triggers refuse UPDATE and DELETE only, so they are not in the way.
"""

import base64
import datetime
import random
import time
from contextlib import ExitStack

from django.db import connection as django_connection

from bench import database, scenario, templates
from bench.schema import EVENT, REVIEW_DECISION, REVIEW_REQUEST, RUN, STEP
from bench.templates import Template, esc, esc_json
from procedures.run_listing import listing_of
from rapidfolio.ids import CROCKFORD
from runs.integrity import GENESIS_HASH

YEAR_US = 365 * 24 * 3600 * 1_000_000
FLUSH_BYTES = 1 << 20
TABLE_SIZE = 10_000
PROCEDURE_WEIGHTS = (0.5, 0.3, 0.2)  # the three example procedures, in load order
LIVE_SHARE = 0.6
BIG_RUN_STEPS = 1000
BIG_RUN_EVENTS = 200

# Outcome shares by age: old runs are all finished; reviews wait days; pending and running runs
# are minutes old (the last half hour).
SHARES = {
    "old": {
        "completed": 88.0,
        "failed": 4.5,
        "transient": 2.5,
        "rejected": 1.0,
        "cancelled": 3.5,
        "awaiting_review": 0.05,
    },
    "days": {
        "completed": 84.0,
        "failed": 4.5,
        "transient": 2.5,
        "rejected": 1.0,
        "cancelled": 3.0,
        "awaiting_review": 5.0,
    },
    "minutes": {
        "completed": 55.0,
        "failed": 3.0,
        "transient": 2.0,
        "cancelled": 2.0,
        "awaiting_review": 8.0,
        "running": 20.0,
        "pending": 10.0,
    },
}

# The five loaded tables, by the names the generator and the results use for them.
NAMES = {
    "run": RUN,
    "step": STEP,
    "event": EVENT,
    "request": REVIEW_REQUEST,
    "decision": REVIEW_DECISION,
}
TABLES = {name: names.table for name, names in NAMES.items()}
# Each COPY lists its columns in the order _generate writes a row's values.
RUN_COPY_FIELDS = (
    "id",
    "public_id",
    "procedure",
    "version",
    "environment",
    "type",
    "status",
    "started_by_user",
    "started_by_api_key",
    "started_by_trigger",
    "trigger_event",
    "inputs",
    "reference_values",
    "search_text",
    "amount_minor",
    "amount_currency",
    "output",
    "failure_reason",
    "failure_kind",
    "outcome",
    "failed_step",
    "retry_of",
    "created_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
)


def _copy(names, *field_names: str) -> str:
    return f"COPY {names.table} ({names.columns(*field_names)}) FROM STDIN"


COPY_SQL = {
    "run": _copy(RUN, *RUN_COPY_FIELDS),
    "step": _copy(
        STEP, "id", "run", "sequence", "started_at", "finished_at", *templates.STEP_FIELDS
    ),
    "event": _copy(
        EVENT, "id", "run", "sequence", "created_at", "prev_hash", "hash", *templates.EVENT_FIELDS
    ),
    "request": _copy(
        REVIEW_REQUEST, "id", "public_id", "run", "created_at", *templates.REVIEW_REQUEST_FIELDS
    ),
    "decision": _copy(
        REVIEW_DECISION, "id", "request", "run", "decided_at", *templates.REVIEW_DECISION_FIELDS
    ),
}


# Each seeded run gets reference values of its own (a template's are shared by every clone):
# an invoice and a payment reference unique to the run, a customer of CUSTOMERS and a supplier
# of SUPPLIER_NAMES, so that search finds what it would in a year of real runs.
CUSTOMERS = 200_000
SUPPLIER_WORDS = (
    "Acme",
    "Nordic",
    "Blue",
    "Alpine",
    "Harbour",
    "Granite",
    "Cedar",
    "Summit",
    "Delta",
    "Orion",
    "Falcon",
    "Meridian",
    "Pioneer",
    "Atlas",
    "Beacon",
    "Cobalt",
    "Crescent",
    "Evergreen",
    "Horizon",
    "Ironwood",
    "Juniper",
    "Keystone",
    "Lumen",
    "Maple",
    "Northwind",
    "Oakridge",
    "Polar",
    "Quartz",
    "Riverside",
    "Sterling",
    "Tidewater",
    "Union",
    "Vantage",
    "Westbrook",
)
SUPPLIER_KINDS = (
    "Metals",
    "Parts",
    "Logistics",
    "Foods",
    "Textiles",
    "Chemicals",
    "Energy",
    "Plastics",
    "Timber",
    "Glass",
    "Paper",
    "Tools",
    "Freight",
    "Cables",
    "Pumps",
    "Valves",
    "Optics",
    "Motors",
    "Ceramics",
    "Fasteners",
)
SUPPLIER_FORMS = ("GmbH", "AB", "Ltd", "SA", "BV", "Oy", "SpA")
SUPPLIER_NAMES = [
    f"{word} {kind} {form}"
    for word in SUPPLIER_WORDS
    for kind in SUPPLIER_KINDS
    for form in SUPPLIER_FORMS
]


class References:
    """A seeded run's own reference values, and the listing columns they give it as COPY text.

    The values replace the template's wherever its COPY text has them (inputs, steps, review
    request), as the run's public id replaces the template's."""

    def __init__(self, versions, rng):
        self.definitions = {version.pk: version.definition for version in versions}
        self.randrange = rng.randrange

    def values(self, template: Template, index: int) -> dict[str, str]:
        inputs = template.input_values
        new = {}
        invoice = inputs.get("invoice_id")
        if isinstance(invoice, str):
            new["invoice_id"] = f"INV-{10_000_000 + index}"
        customer = inputs.get("customer_id")
        if isinstance(customer, str) and "blocked" not in customer:
            number = (self.randrange(CUSTOMERS) * 2_654_435_761) % 16**10
            new["customer_id"] = f"cus_{number:010x}"
        reference = inputs.get("reference")
        if isinstance(reference, str):
            new["reference"] = f"SUP-{index:07d}" + ("-blocked" if "blocked" in reference else "")
        if isinstance(inputs.get("beneficiary_name"), str):
            new["beneficiary_name"] = SUPPLIER_NAMES[self.randrange(len(SUPPLIER_NAMES))]
        return new

    def listing_text(self, template: Template, values: dict[str, str]) -> str:
        """The listing's four COPY columns (reference_values .. amount_currency)."""
        listing = listing_of(
            self.definitions.get(template.version_id), {**template.input_values, **values}
        )
        amount = r"\N" if listing.amount_minor is None else str(listing.amount_minor)
        return (
            f"{esc_json(listing.references)}\t{esc(listing.search_text)}\t{amount}\t"
            f"{listing.amount_currency}"
        )

    @staticmethod
    def swap(text: str, template: Template, values: dict[str, str]) -> str:
        for name, value in values.items():
            text = text.replace(template.input_values[name], value)
        return text


def _pool(template: Template) -> str:
    if template.status == "failed":
        return {"transient": "transient", "rejected": "rejected"}.get(
            template.failure_kind, "failed"
        )
    return template.status


def outcome_tables(all_templates: list[Template], procedure_ids: list[int], rng) -> dict:
    """For each procedure and age band, TABLE_SIZE template slots in the right proportions."""
    tables = {}
    for procedure_id in procedure_ids:
        pools: dict[str, list[Template]] = {}
        for template in all_templates:
            if template.procedure_id == procedure_id:
                pools.setdefault(_pool(template), []).append(template)
        for band, shares in SHARES.items():
            available = {pool: share for pool, share in shares.items() if pools.get(pool)}
            total = sum(available.values())
            slots = []
            for pool, share in available.items():
                count = round(TABLE_SIZE * share / total)
                slots += [rng.choice(pools[pool]) for _ in range(count)]
            tables[(procedure_id, band)] = slots
    return tables


class Timestamps:
    """Microseconds since the epoch as PostgreSQL timestamptz text, fast (a run's times share
    their second and minute with the previous call's most of the time)."""

    def __init__(self):
        self._minutes: dict[int, str] = {}
        self._second = -1
        self._prefix = ""

    def __call__(self, us: int) -> str:
        seconds, fraction = divmod(us, 1_000_000)
        if seconds != self._second:
            minute, second = divmod(seconds, 60)
            prefix = self._minutes.get(minute)
            if prefix is None:
                moment = datetime.datetime.fromtimestamp(minute * 60, datetime.UTC)
                prefix = self._minutes[minute] = moment.strftime("%Y-%m-%d %H:%M:")
            self._second = seconds
            self._prefix = f"{prefix}{second:02d}."
        return f"{self._prefix}{fraction:06d}+00"


_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CROCKFORD)


def ulid(millis: int, rng) -> str:
    """A ULID (as rapidfolio.ids makes them) for the given time, via base64's C base32."""
    value = (millis << 80) | rng.getrandbits(80)
    # 20 bytes are 32 base32 characters; the last 26 are the 130 low bits: the ULID.
    return base64.b32encode(value.to_bytes(20, "big")).decode()[-26:].translate(_TO_CROCKFORD)


class Streams:
    """Five COPY commands in flight, fed with buffered text."""

    def __init__(self, database_url: str, stack: ExitStack):
        self.copies = {}
        self.buffers = {name: [] for name in COPY_SQL}
        self.sizes = dict.fromkeys(COPY_SQL, 0)
        self.rows = dict.fromkeys(COPY_SQL, 0)
        for name, statement in COPY_SQL.items():
            conn = stack.enter_context(database.connect(database_url, autocommit=False))
            conn.execute("SET session_replication_role = replica")
            conn.execute("SET synchronous_commit = off")
            self.copies[name] = stack.enter_context(conn.cursor().copy(statement))

    def add(self, name: str, text: str, rows: int = 1) -> None:
        self.buffers[name].append(text)
        self.rows[name] += rows
        self.sizes[name] += len(text)
        if self.sizes[name] > FLUSH_BYTES:
            self.flush(name)

    def flush(self, name: str) -> None:
        if self.buffers[name]:
            self.copies[name].write("".join(self.buffers[name]))
        self.buffers[name] = []
        self.sizes[name] = 0


def _next_ids(conn) -> dict[str, int]:
    return {
        name: conn.execute(f"SELECT coalesce(max({t.id}), 0) + 1 FROM {t.table}").fetchone()[0]
        for name, t in NAMES.items()
    }


def _drop_secondary_indexes(conn) -> list[str]:
    """Drop the loaded tables' indexes that back no constraint; returns how to build them again.

    Building an index once after the load is several times faster than maintaining it row by
    row during COPY. Primary keys and unique constraints stay (COPY needs them to check).
    """
    rows = conn.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        ORDER BY i.tablename, i.indexname
        """,
        [list(TABLES.values())],
    ).fetchall()
    for name, _ in rows:
        conn.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in rows]


def seed(database_url: str, *, runs: int, progress=print) -> dict:
    """Seed `runs` runs; returns what was seeded and how long each part took."""
    started = time.perf_counter()
    versions, starters, template_ids, all_templates = _template_runs()
    templates_seconds = time.perf_counter() - started
    progress(
        f"  {len(template_ids)} template runs executed by the engine "
        f"({len(all_templates)} templates with variants) in {templates_seconds:.1f} s"
    )
    django_connection.close()

    copy_started = time.perf_counter()
    rows, big_run, indexes = _copy_runs(
        database_url,
        runs=runs,
        versions=versions,
        all_templates=all_templates,
        starters=starters,
        progress=progress,
    )
    copy_seconds = time.perf_counter() - copy_started
    progress(f"  COPY of {sum(rows.values()):,} rows in {copy_seconds:.1f} s")
    index_started = time.perf_counter()
    _build_indexes(database_url, indexes)
    index_seconds = time.perf_counter() - index_started
    progress(f"  {len(indexes)} indexes built in {index_seconds:.1f} s")

    vacuum_started = time.perf_counter()
    _reset_sequences_and_vacuum(database_url)
    vacuum_seconds = time.perf_counter() - vacuum_started
    progress(f"  VACUUM ANALYZE in {vacuum_seconds:.1f} s")
    return {
        "runs": runs,
        "rows": {TABLES[name]: count for name, count in rows.items()},
        "big_run": big_run,
        "seconds": {
            "templates": round(templates_seconds, 1),
            "copy": round(copy_seconds, 1),
            "indexes": round(index_seconds, 1),
            "vacuum_analyze": round(vacuum_seconds, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "seeded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _template_runs() -> tuple:
    """The people, procedures, keys and triggers the seeded runs name, and the template runs
    executed by the engine: (versions, starters, template run ids, templates)."""
    operator, reviewer = scenario.ensure_people()
    versions = scenario.ensure_procedures()
    scenario.ensure_throughput_version()
    keys = scenario.ensure_seed_keys()
    triggers = scenario.ensure_triggers(versions)
    template_ids = templates.execute_template_runs(
        versions, api_key=keys["sandbox"], reviewer=reviewer
    )
    _flush_broker()
    starters = {
        "user": operator.pk,
        "keys": {env: key.pk for env, key in keys.items()},
        "triggers": {k: t.pk for k, t in triggers.items()},
    }
    return versions, starters, template_ids, templates.load_templates(template_ids)


def _copy_runs(database_url, *, runs, versions, all_templates, starters, progress) -> tuple:
    """Generate the runs and COPY them in, with the secondary indexes dropped; returns the rows
    per table, the big run's public id and the dropped indexes' definitions."""
    rng = random.Random(20250101)
    # Its own generator: the other columns stay what the same seed gave them before.
    references = References(versions, random.Random(20250102))
    with database.connect(database_url) as conn:
        ids = _next_ids(conn)
        indexes = _drop_secondary_indexes(conn)
    with ExitStack() as stack:
        streams = Streams(database_url, stack)
        big_run = _generate(
            streams,
            rng,
            references=references,
            runs=runs,
            ids=ids,
            versions=versions,
            all_templates=all_templates,
            starters=starters,
            progress=progress,
        )
        for name in COPY_SQL:
            streams.flush(name)
        rows = dict(streams.rows)
    return rows, big_run, indexes


def _build_indexes(database_url: str, indexes: list[str]) -> None:
    with database.connect(database_url) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for statement in indexes:
            conn.execute(statement)


def _reset_sequences_and_vacuum(database_url: str) -> None:
    with database.connect(database_url) as conn:
        for names in NAMES.values():
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{names.table}', '{names.id}'), "
                f"(SELECT coalesce(max({names.id}), 1) FROM {names.table}))"
            )
        # What autovacuum would do after a load, done now so it cannot run during measurements.
        for names in NAMES.values():
            conn.execute(f"VACUUM (ANALYZE) {names.table}")


def _flush_broker() -> None:
    # Template runs were driven here; their queued messages must not reach the bench workers.
    import dramatiq

    dramatiq.get_broker().flush_all()


def _generate(
    streams, rng, *, references, runs, ids, versions, all_templates, starters, progress
) -> str:
    ts = Timestamps()
    procedure_ids = [v.procedure_id for v in versions]
    tables = outcome_tables(all_templates, procedure_ids, rng)
    now_us = int(time.time() * 1_000_000)
    start_us = now_us - YEAR_US
    spacing = YEAR_US // runs
    random_ = rng.random
    randrange = rng.randrange
    getrandbits = rng.getrandbits
    add = streams.add
    run_id, step_id, event_id = ids["run"], ids["step"], ids["event"]
    request_id, decision_id = ids["request"], ids["decision"]
    user_id = starters["user"]
    key_ids = starters["keys"]
    trigger_ids = starters["triggers"]
    cumulative = [sum(PROCEDURE_WEIGHTS[: i + 1]) for i in range(len(procedure_ids))]
    report_every = max(runs // 10, 1)

    for index in range(runs):
        created = start_us + index * spacing + randrange(spacing)
        age = now_us - created
        band = "minutes" if age < 1_800_000_000 else "days" if age < 3 * 86_400_000_000 else "old"
        pick = random_()
        procedure_index = next(i for i, edge in enumerate(cumulative) if pick < edge or i == 2)
        procedure_id = procedure_ids[procedure_index]
        template = tables[(procedure_id, band)][randrange(TABLE_SIZE)]
        environment = "live" if random_() < LIVE_SHARE else "sandbox"
        pick = random_()
        user, key, trigger = r"\N", r"\N", r"\N"
        if pick < 0.6:
            run_type, key = "api", key_ids[environment]
        elif pick < 0.85:
            run_type, trigger = "trigger", trigger_ids[(procedure_id, environment)]
        else:
            run_type, user = "manual", user_id
        public_id = "run_" + ulid(created // 1000, rng)
        values = references.values(template, index)

        clock = created
        started = finished = None
        review_created = decided = None
        failed_step = r"\N"
        step_lines = []
        event_lines = []
        prev_hash = GENESIS_HASH
        step_index = 0
        for sequence, event in enumerate(template.events, 1):
            kind = event.kind
            if kind == "running":
                clock += randrange(5_000, 1_500_000)
                started = clock
            elif kind == "step":
                step = template.steps[step_index]
                if step.kind == "tool":
                    step_start = clock
                    clock += randrange(40_000, 900_000)
                elif step.kind == "review":
                    step_start = review_created or clock
                else:
                    step_start = clock
                    clock += randrange(200, 3_000)
                if template.failed_step_index == step_index:
                    failed_step = step_id
                step_index += 1
                step_lines.append(
                    f"{step_id}\t{run_id}\t{step_index}\t{ts(step_start)}\t{ts(clock)}\t"
                    f"{step.fixed}\n"
                )
                step_id += 1
            elif kind == "review_requested":
                clock += randrange(200, 2_000)
                review_created = clock
            elif kind == "review_decided":
                wait = randrange(60_000_000, 20 * 3_600_000_000)
                clock += min(wait, max(age // 2, 1_000_000))
                decided = clock
            elif kind != "created":
                clock += randrange(200, 2_000)
                if kind == "final":
                    finished = clock
            new_hash = f"{getrandbits(256):064x}"
            event_lines.append(
                f"{event_id}\t{run_id}\t{sequence}\t{ts(clock)}\t{prev_hash}\t{new_hash}\t"
                f"{event.fixed}\n"
            )
            prev_hash = new_hash
            event_id += 1

        events_text = "".join(event_lines)
        if template.review_request is not None and review_created is not None:
            review_public_id = "rev_" + ulid(review_created // 1000, rng)
            events_text = events_text.replace(template.review_public_id, review_public_id)
            add(
                "request",
                f"{request_id}\t{review_public_id}\t{run_id}\t{ts(review_created)}\t"
                f"{references.swap(template.review_request, template, values)}\n",
            )
            if template.review_decision is not None and decided is not None:
                add(
                    "decision",
                    f"{decision_id}\t{request_id}\t{run_id}\t{ts(decided)}\t"
                    f"{template.review_decision}\n",
                )
                decision_id += 1
            request_id += 1
        if step_lines:
            steps_text = "".join(step_lines).replace(template.public_id, public_id)
            add("step", references.swap(steps_text, template, values), len(step_lines))
        add("event", events_text, len(event_lines))
        lease = (
            ts(clock + 300_000_000)
            if not template.finished and template.status != ("awaiting_review")
            else r"\N"
        )
        add(
            "run",
            f"{run_id}\t{public_id}\t{procedure_id}\t{template.version_id}\t{environment}\t"
            f"{run_type}\t{template.status}\t{user}\t{key}\t{trigger}\t\\N\t"
            f"{references.swap(template.inputs, template, values)}\t"
            f"{references.listing_text(template, values)}\t{template.output}\t"
            f"{template.failure_reason}\t{template.failure_kind}\t{esc(template.outcome)}\t"
            f"{failed_step}\t\\N\t{ts(created)}\t{ts(started) if started else r'\N'}\t"
            f"{ts(finished) if finished else r'\N'}\t{lease}\n",
        )
        run_id += 1
        if (index + 1) % report_every == 0:
            progress(f"  … {index + 1:,} runs generated")

    return _big_run(
        streams, rng, ts, run_id, step_id, event_id, all_templates, key_ids, now_us, references
    )


def _big_run(
    streams, rng, ts, run_id, step_id, event_id, all_templates, key_ids, now_us, references
) -> str:
    """One completed run with 1,000 steps and 200 events, for the run page's worst case."""
    source = next(
        t
        for t in all_templates
        if t.status == "completed" and t.review_request is None and len(t.steps) >= 3
    )
    tool_steps = [s for s in source.steps if s.kind == "tool"] or source.steps
    created = now_us - 3_600_000_000
    public_id = "run_" + ulid(created // 1000, rng)
    clock = created + 100_000
    started = clock
    lines = []
    for sequence in range(1, BIG_RUN_STEPS + 1):
        step = tool_steps[sequence % len(tool_steps)]
        step_start = clock
        clock += rng.randrange(40_000, 400_000)
        lines.append(
            f"{step_id}\t{run_id}\t{sequence}\t{ts(step_start)}\t{ts(clock)}\t{step.fixed}\n"
        )
        step_id += 1
    streams.add("step", "".join(lines).replace(source.public_id, public_id), len(lines))
    finished = clock + 1_000
    lines = []
    prev_hash = GENESIS_HASH
    step_event = next(e for e in source.events if e.kind == "step")
    for sequence in range(1, BIG_RUN_EVENTS + 1):
        if sequence == 1:
            fixed, moment = source.events[0].fixed, created
        elif sequence == BIG_RUN_EVENTS:
            fixed, moment = source.events[-1].fixed, finished
        else:
            fixed = step_event.fixed
            moment = started + (finished - started) * sequence // BIG_RUN_EVENTS
        new_hash = f"{rng.getrandbits(256):064x}"
        lines.append(
            f"{event_id}\t{run_id}\t{sequence}\t{ts(moment)}\t{prev_hash}\t{new_hash}\t{fixed}\n"
        )
        prev_hash = new_hash
        event_id += 1
    streams.add("event", "".join(lines), len(lines))
    streams.add(
        "run",
        f"{run_id}\t{public_id}\t{source.procedure_id}\t{source.version_id}\tsandbox\tapi\t"
        f"completed\t\\N\t{key_ids['sandbox']}\t\\N\t\\N\t{source.inputs}\t"
        f"{references.listing_text(source, {})}\t{source.output}\t\t\t{esc(source.outcome)}\t"
        f"\\N\t\\N\t{ts(created)}\t{ts(started)}\t{ts(finished)}\t\\N\n",
    )
    return public_id
