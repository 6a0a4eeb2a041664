"""Cron triggers: exactly one firing per scheduled time, even with two schedulers at once."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from procedures.models import Trigger, TriggerEvent
from rapidfolio import scheduler
from runs.models import Run, RunType
from runs.triggers.cron import fire_due_cron_triggers
from tests.conftest import needs_postgres

CREATED = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)


def make_cron(version, expression="0 * * * *", *, created_at=CREATED, **fields) -> Trigger:
    trigger = Trigger.objects.create(
        procedure=version.procedure,
        environment="sandbox",
        kind="cron",
        name="Hourly sweep",
        cron_expression=expression,
        cron_inputs=fields.pop("cron_inputs", {"amount": 100, "currency": "usd"}),
        **fields,
    )
    Trigger.objects.filter(pk=trigger.pk).update(created_at=created_at)
    trigger.refresh_from_db()
    return trigger


def at(hour, minute=0, day=1):
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC)


def test_cron_trigger_fires_a_run_for_its_scheduled_time(simple_version):
    trigger = make_cron(simple_version)
    [receipt] = fire_due_cron_triggers(now=at(9) + timedelta(seconds=30))
    run = receipt.run
    assert run.type == RunType.TRIGGER
    assert run.started_by_trigger == trigger
    assert run.inputs == {"amount": 100, "currency": "usd"}
    assert run.trigger_event.external_id == "2026-06-01T09:00:00+00:00"


def test_cron_trigger_fires_once_per_scheduled_time(simple_version):
    make_cron(simple_version)
    fire_due_cron_triggers(now=at(9, 1))
    fire_due_cron_triggers(now=at(9, 2))
    fire_due_cron_triggers(now=at(9, 59))
    assert Run.objects.count() == 1


def test_cron_trigger_fires_again_at_the_next_scheduled_time(simple_version):
    make_cron(simple_version)
    fire_due_cron_triggers(now=at(9, 1))
    fire_due_cron_triggers(now=at(10, 0))
    assert sorted(TriggerEvent.objects.values_list("external_id", flat=True)) == [
        "2026-06-01T09:00:00+00:00",
        "2026-06-01T10:00:00+00:00",
    ]


def test_cron_before_its_first_scheduled_time_fires_nothing(simple_version):
    make_cron(simple_version)
    assert fire_due_cron_triggers(now=at(8, 45)) == []


def test_cron_after_downtime_fires_only_the_latest_missed_time(simple_version):
    make_cron(simple_version)
    fire_due_cron_triggers(now=at(14, 20))
    assert list(TriggerEvent.objects.values_list("external_id", flat=True)) == [
        "2026-06-01T14:00:00+00:00"
    ]


def test_cron_never_fires_a_time_before_the_trigger_existed(simple_version):
    make_cron(simple_version, "0 0 * * *", created_at=at(8, 30))
    assert fire_due_cron_triggers(now=at(9, 0)) == []
    assert TriggerEvent.objects.count() == 0


def test_cron_reads_its_schedule_in_the_trigger_time_zone(simple_version):
    make_cron(simple_version, "0 9 * * *", timezone="Europe/Paris", created_at=at(6))
    fire_due_cron_triggers(now=at(7, 5))  # 09:05 in Paris (CEST, UTC+2)
    assert TriggerEvent.objects.get().external_id == "2026-06-01T07:00:00+00:00"


def test_disabled_cron_trigger_does_not_fire(simple_version):
    make_cron(simple_version, enabled=False)
    assert fire_due_cron_triggers(now=at(9, 1)) == []


def test_cron_inputs_can_map_the_scheduled_time(db):
    from tests.conftest import make_version

    version = make_version(
        {
            "input_schema": {
                "type": "object",
                "properties": {"region": {"type": "string"}, "as_of": {"type": "string"}},
                "required": ["region", "as_of"],
            },
            "start": "done",
            "nodes": {"done": {"type": "output", "value": {"as_of": "inputs.as_of"}}},
        },
        name="Daily report",
    )
    make_cron(
        version,
        cron_inputs={"region": "eu"},
        input_mapping={"as_of": "event.scheduled_at"},
    )
    [receipt] = fire_due_cron_triggers(now=at(9, 1))
    assert receipt.run.inputs == {"region": "eu", "as_of": "2026-06-01T09:00:00+00:00"}


def test_cron_with_invalid_inputs_records_the_firing_once_without_a_run(simple_version):
    make_cron(simple_version, cron_inputs={"amount": "lots"})
    fire_due_cron_triggers(now=at(9, 1))
    fire_due_cron_triggers(now=at(9, 2))
    event = TriggerEvent.objects.get()
    assert event.outcome == "invalid_inputs"
    assert "amount" in event.detail
    assert Run.objects.count() == 0


def test_two_schedulers_one_after_the_other_fire_once(simple_version):
    make_cron(simple_version)
    first = fire_due_cron_triggers(now=at(9) + timedelta(seconds=10))
    second = fire_due_cron_triggers(now=at(9) + timedelta(seconds=10))
    assert len(first) == 1
    assert second == []
    assert Run.objects.count() == 1


def test_scheduler_tick_fires_due_cron_triggers(simple_version):
    make_cron(simple_version, "* * * * *", created_at=datetime(2020, 1, 1, tzinfo=UTC))
    scheduler.tick()
    assert Run.objects.filter(type=RunType.TRIGGER).count() == 1


def _fire_concurrently(count: int, now: datetime) -> list:
    barrier = threading.Barrier(count)
    results = []

    def schedule():
        try:
            barrier.wait()
            results.append(fire_due_cron_triggers(now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=schedule) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@needs_postgres
@pytest.mark.postgres
def test_two_schedulers_at_once_fire_once(transactional_db, simple_version):
    triggers = [make_cron(simple_version) for _ in range(3)]
    results = _fire_concurrently(2, at(9) + timedelta(seconds=5))
    assert Run.objects.count() == len(triggers)
    assert sum(len(fired) for fired in results) == len(triggers)
    for trigger in triggers:
        assert trigger.events.count() == 1


def test_many_ticks_at_once_never_fire_twice(transactional_db, simple_version):
    make_cron(simple_version)
    results = _fire_concurrently(3, at(9) + timedelta(seconds=6))
    assert Run.objects.count() == 1
    assert sum(len(fired) for fired in results) == 1
