"""runs.sql, statement by statement, against the ORM's own save and read of the same objects
(on SQLite and on PostgreSQL, whichever the run uses). The statements are built from the
models' _meta, so a column added to a model is in them: these tests check that it is stored
and read back exactly as the ORM would."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from procedures.models import Connection
from runs import sql
from runs.api_keys import create_api_key, hash_key, revoke
from runs.models import ApiKey, Run, RunEvent, Step, WebhookEndpoint
from runs.services import start_run
from runs.writer import RunWriter, append_event
from tests.conftest import make_version

# One moment for every row, so twins made a microsecond apart compare equal.
MOMENT = timezone.now().replace(microsecond=123456)

# JSON that a careless re-serialisation would change: key order, unicode, big and float numbers.
AWKWARD_JSON = {"z": 1, "a": [1.5, 10**18, None, True], "ünïcode": "€ 24 000,00", "n": {"b": {}}}


def values(obj, *, without=("id",)) -> dict:
    return {
        field.attname: getattr(obj, field.attname)
        for field in type(obj)._meta.concrete_fields
        if field.attname not in without
    }


def reloaded(obj):
    return type(obj).objects.get(pk=obj.pk)


@pytest.fixture
def version(db):
    return make_version({**SIMPLE, "input_schema": {"type": "object"}}, name="Pay invoice")


SIMPLE = {
    "start": "out",
    "nodes": {"out": {"type": "output", "value": {"paid": "inputs.amount"}}},
}


def a_run(version, operator, **overrides) -> Run:
    now = MOMENT
    fields = dict(
        procedure=version.procedure,
        version=version,
        environment="live",
        type="manual",
        status="pending",
        inputs=AWKWARD_JSON,
        started_by_user=operator,
        created_at=now,
        lease_expires_at=now + timedelta(minutes=5),
    )
    return Run(**{**fields, **overrides})


def a_step(run, sequence) -> Step:
    now = MOMENT
    return Step(
        run=run,
        sequence=sequence,
        node_id="charge",
        node_type="tool",
        tool="stripe.create_payment_intent",
        status="failed",
        attempt=2,
        input=AWKWARD_JSON,
        output=None,
        request='{"amount": 2400000,  "currency":"usd"}',
        response='{"error": {"type": "card_error"}}',
        idempotency_key=f"{run.public_id}-charge-s{sequence}-a2",
        error="The card was declined.",
        error_kind="permanent",
        started_at=now,
        finished_at=now + timedelta(milliseconds=250),
    )


def an_event(run, sequence) -> RunEvent:
    return RunEvent(
        run=run,
        sequence=sequence,
        type="step.recorded",
        actor="system:engine",
        data=AWKWARD_JSON,
        created_at=MOMENT,
        prev_hash="0" * 64,
        hash="f" * 64,
    )


# --- INSERT -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [Run, Step, RunEvent, ApiKey])
def test_insert_names_every_concrete_column_but_the_key(model):
    statement, _ = sql.insert_sql(model, 1, True)
    named = re.search(r"\((.*?)\) VALUES", statement).group(1)
    columns = [name.strip().strip('"`') for name in named.split(",")]
    assert columns == [f.column for f in model._meta.concrete_fields if not f.primary_key]


def test_insert_stores_a_run_exactly_as_save_does(version, operator):
    by_orm = a_run(version, operator)
    by_orm.save()
    by_sql = a_run(version, operator)
    sql.insert([by_sql], returning_pk=True)
    assert by_sql.pk is not None and by_sql._state.adding is False
    assert values(reloaded(by_sql), without=("id", "public_id")) == values(
        reloaded(by_orm), without=("id", "public_id")
    )


def test_insert_stores_steps_and_events_exactly_as_save_does(version, operator):
    run = a_run(version, operator)
    run.save()
    orm_step, orm_event = a_step(run, 1), an_event(run, 1)
    orm_step.save()
    orm_event.save()
    sql_steps, sql_events = [a_step(run, 2), a_step(run, 3)], [an_event(run, 2), an_event(run, 3)]
    sql.insert(sql_steps, returning_pk=True)
    sql.insert(sql_events, returning_pk=True)
    differs = ("id", "sequence", "idempotency_key")
    for orm, rows in ((orm_step, sql_steps), (orm_event, sql_events)):
        assert len({row.pk for row in rows}) == 2
        for row in rows:
            assert values(reloaded(row), without=differs) == values(reloaded(orm), without=differs)


# --- UPDATE -----------------------------------------------------------------------------------
def test_update_writes_the_named_fields_as_save_update_fields_does(version, operator):
    by_orm, by_sql = a_run(version, operator), a_run(version, operator)
    by_orm.save()
    by_sql.save()
    later = timezone.now() + timedelta(hours=1)
    for run in (by_orm, by_sql):
        run.status, run.started_at, run.lease_expires_at = "running", later, None
        run.inputs = {"changed": "in memory only"}  # not named: must not be written
    names = ["status", "started_at", "lease_expires_at"]
    by_orm.save(update_fields=names)
    sql.update(by_sql, names)
    assert reloaded(by_sql).inputs == AWKWARD_JSON
    assert values(reloaded(by_sql), without=("id", "public_id")) == values(
        reloaded(by_orm), without=("id", "public_id")
    )


# --- one flush: sql.write ----------------------------------------------------------------------
def test_write_stores_steps_the_run_s_columns_and_events_as_save_does(version, operator):
    """One statement on PostgreSQL, one per table elsewhere: the same rows either way, the
    pks set, and the run pointed at a failed step inserted in the same flush."""
    orm_run, sql_run = a_run(version, operator), a_run(version, operator)
    orm_run.save()
    sql_run.save()
    orm_steps, sql_steps = (
        [a_step(orm_run, 1), a_step(orm_run, 2)],
        [
            a_step(sql_run, 1),
            a_step(sql_run, 2),
        ],
    )
    orm_events, sql_events = (
        [an_event(orm_run, n) for n in (1, 2, 3)],
        [an_event(sql_run, n) for n in (1, 2, 3)],
    )
    for step in orm_steps:
        step.save()
    for event in orm_events:
        event.save()
    later = MOMENT + timedelta(seconds=3)
    for run, steps in ((orm_run, orm_steps), (sql_run, sql_steps)):
        run.status, run.finished_at, run.failure_kind = "failed", later, "permanent"
        run.failed_step = steps[1]
    names = ("failed_step", "failure_kind", "finished_at", "status")
    orm_run.save(update_fields=names)
    sql.write(steps=sql_steps, run=sql_run, run_fields=names, events=sql_events, rows=[[]])
    assert all(step.pk and not step._state.adding for step in sql_steps + sql_events)
    assert reloaded(sql_run).failed_step_id == sql_steps[1].pk
    differs = ("id", "run_id", "idempotency_key")
    for orm_rows, sql_rows in ((orm_steps, sql_steps), (orm_events, sql_events)):
        for orm, row in zip(orm_rows, sql_rows, strict=True):
            assert values(reloaded(row), without=differs) == values(reloaded(orm), without=differs)
    assert values(reloaded(sql_run), without=("id", "public_id", "failed_step_id")) == values(
        reloaded(orm_run), without=("id", "public_id", "failed_step_id")
    )


def test_write_keeps_a_failed_step_recorded_earlier_and_writes_events_alone(version, operator):
    run = a_run(version, operator)
    run.save()
    earlier = a_step(run, 1)
    earlier.save()
    run.status, run.failure_kind, run.finished_at = "failed", "permanent", MOMENT
    run.failed_step = earlier
    names = ("failed_step", "failure_kind", "finished_at", "status")
    only_events = [an_event(run, 1)]
    sql.write(steps=[], run=run, run_fields=names, events=only_events, rows=[])
    assert reloaded(run).failed_step_id == earlier.pk and reloaded(run).status == "failed"
    more = [an_event(run, 2), an_event(run, 3)]
    sql.write(steps=[], run=run, run_fields=(), events=more, rows=[])
    assert [e.sequence for e in RunEvent.objects.filter(run=run).order_by("pk")] == [1, 2, 3]
    assert [e.pk for e in only_events + more] == sorted(e.pk for e in only_events + more)


def test_write_is_one_statement_on_postgresql(version, operator):
    run = a_run(version, operator)
    run.save()
    run.status = "running"
    with CaptureQueriesContext(connection) as captured:
        sql.write(
            steps=[a_step(run, 1)],
            run=run,
            run_fields=("status",),
            events=[an_event(run, 1), an_event(run, 2)],
            rows=[],
        )
    assert len(captured) == (1 if connection.vendor == "postgresql" else 3)
    assert Step.objects.filter(run=run).count() == 1
    assert RunEvent.objects.filter(run=run).count() == 2


# --- reading rows -----------------------------------------------------------------------------
def test_lock_run_reads_the_run_its_version_and_its_chain_head(version, operator):
    run = start_run(version=version, environment="sandbox", inputs=AWKWARD_JSON, type="api")
    last = append_event(run, "note", actor="system:test", data={"n": 1})
    locked = sql.lock_run(run.pk)
    assert values(locked.run) == values(Run.objects.get(pk=run.pk))
    assert (locked.run.version.number, locked.run.version.definition) == (
        version.number,
        version.definition,
    )
    assert locked.head == (last.sequence, last.hash) == (2, reloaded(last).hash)
    assert locked.has_connections is False
    Connection.objects.create(integration="stripe", environment="sandbox", name="Stripe test")
    assert sql.lock_run(run.pk).has_connections is True


def test_lock_status_reads_the_status_and_the_chain_head(version, operator):
    run = start_run(version=version, environment="sandbox", inputs={}, type="api")
    created = RunEvent.objects.get(run=run)
    assert sql.lock_status(run.pk) == ("pending", (1, created.hash))


def test_a_run_with_no_events_has_the_empty_chain_head(version, operator):
    run = a_run(version, operator)
    run.save()
    assert sql.lock_run(run.pk).head == sql.NO_EVENTS
    assert RunWriter.lock(run).next_sequence == 1


def test_locking_an_unknown_run_finds_nothing(db):
    assert sql.lock_run(987654) is None
    assert sql.lock_status(987654) is None


def test_the_lock_is_a_row_lock_where_the_database_has_them(db):
    statement = sql._lock_run_sql()
    assert statement.endswith("FOR UPDATE") == connection.features.has_select_for_update


def test_active_api_key_reads_the_key_as_the_orm_does_and_never_a_revoked_one(db):
    api_key, raw = create_api_key(name="Billing", environment="sandbox")
    assert values(sql.active_api_key(hash_key(raw))) == values(ApiKey.objects.get(pk=api_key.pk))
    revoke(api_key)
    assert sql.active_api_key(hash_key(raw)) is None


def test_current_version_is_the_newest_with_its_procedure(version):
    newer = make_version(version.definition, name="Pay invoice")
    found = sql.current_version(version.procedure.public_id)
    assert values(found) == values(newer)
    assert (found.procedure.pk, found.procedure.public_id, found.procedure.name) == (
        newer.procedure.pk,
        newer.procedure.public_id,
        "Pay invoice",
    )
    assert sql.current_version("proc_unknown") is None


def test_any_enabled_webhook_endpoint_looks_at_the_environment_and_the_switch(db):
    assert sql.any_enabled_webhook_endpoint("sandbox") is False
    endpoint = WebhookEndpoint(url="https://example.com/hook", environment="sandbox", events=[])
    endpoint.set_secret("whsec_test")
    endpoint.enabled = False
    endpoint.save()
    assert sql.any_enabled_webhook_endpoint("sandbox") is False
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=True)
    assert sql.any_enabled_webhook_endpoint("sandbox") is True
    assert sql.any_enabled_webhook_endpoint("live") is False
