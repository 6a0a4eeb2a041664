"""The runtime role runs the app but cannot delete, empty or unprotect the record (PostgreSQL);
the deploy check says when the app connects as a role that could."""

import io

import psycopg
import pytest
from django.conf import settings
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg import errors

from runs.append_only import HISTORY_TABLES
from runs.checks import connection_role_warnings, role_warnings
from runs.services import start_run
from tests.conftest import needs_postgres

needs_sqlite = pytest.mark.skipif(settings.DATABASE_IS_POSTGRES, reason="the SQLite case")
ROLE_CHECKS = {"rapidfolio.W001", "rapidfolio.W002", "rapidfolio.W003"}


def _connect(role: str, password: str | None = None) -> psycopg.Connection:
    database = connection.settings_dict
    return psycopg.connect(
        dbname=database["NAME"],
        user=role,
        password=password,
        host=database["HOST"] or None,
        port=database["PORT"] or None,
        autocommit=True,
    )


@pytest.fixture
def as_runtime(runtime_role):
    with _connect(runtime_role) as runtime:
        yield runtime


@pytest.fixture
def committed_run(transactional_db, simple_version):
    """A pending run the runtime role's own connection can see (the test flush removes it)."""
    return start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )


# --- what the runtime role may do ----------------------------------------------------------
@needs_postgres
def test_runtime_role_reads_and_advances_an_unfinished_run(as_runtime, committed_run):
    updated = as_runtime.execute(
        "UPDATE runs_run SET lease_expires_at = NULL WHERE id = %s", [committed_run.pk]
    )
    assert updated.rowcount == 1
    row = as_runtime.execute("SELECT status FROM runs_run WHERE id = %s", [committed_run.pk])
    assert row.fetchone() == ("pending",)


@needs_postgres
def test_runtime_role_inserts_runs(as_runtime, committed_run):
    inserted = as_runtime.execute(
        "INSERT INTO runs_run (public_id, procedure_id, version_id, environment, type, status, "
        "inputs, failure_reason, failure_kind, created_at) "
        "SELECT 'run_by_runtime_role', procedure_id, version_id, environment, type, 'pending', "
        "inputs, '', '', now() FROM runs_run WHERE id = %s RETURNING id",
        [committed_run.pk],
    )
    assert inserted.fetchone()[0] != committed_run.pk


@needs_postgres
def test_runtime_role_cannot_change_what_a_run_executes(as_runtime, committed_run):
    with pytest.raises(errors.RestrictViolation, match="append-only"):
        as_runtime.execute(
            "UPDATE runs_run SET inputs = '{\"amount\": 999999}' WHERE id = %s",
            [committed_run.pk],
        )


@needs_postgres
def test_runtime_role_deletes_what_is_not_history(as_runtime):
    as_runtime.execute("DELETE FROM django_session WHERE false")
    as_runtime.execute("DELETE FROM runs_ledgerqueue WHERE false")


# --- what it may not ------------------------------------------------------------------------
@needs_postgres
@pytest.mark.parametrize("table", HISTORY_TABLES)
def test_runtime_role_cannot_delete_history(as_runtime, table):
    with pytest.raises(errors.InsufficientPrivilege):
        as_runtime.execute(f"DELETE FROM {table}")


@needs_postgres
@pytest.mark.parametrize("table", HISTORY_TABLES)
def test_runtime_role_cannot_truncate_history_even_with_the_purge_setting(as_runtime, table):
    with as_runtime.transaction():
        as_runtime.execute("SET LOCAL rapidfolio.allow_purge = 'on'")
        with pytest.raises(errors.InsufficientPrivilege):
            as_runtime.execute(f"TRUNCATE {table} CASCADE")


@needs_postgres
def test_purge_setting_is_refused_to_a_role_granted_truncate_by_mistake(runtime_role, as_runtime):
    # The trigger's own check, behind the missing privilege: owner or superuser only.
    database = connection.settings_dict
    with _connect(database["USER"], database["PASSWORD"] or None) as owner:
        owner.execute(f'GRANT TRUNCATE ON runs_checkpoint TO "{runtime_role}"')
        try:
            with as_runtime.transaction():
                as_runtime.execute("SET LOCAL rapidfolio.allow_purge = 'on'")
                with pytest.raises(errors.RestrictViolation, match="append-only"):
                    as_runtime.execute("TRUNCATE runs_checkpoint")
        finally:
            owner.execute(f'REVOKE TRUNCATE ON runs_checkpoint FROM "{runtime_role}"')


@needs_postgres
@pytest.mark.parametrize("table", ["runs_runevent", "runs_run"])
def test_runtime_role_cannot_disable_the_triggers(as_runtime, table):
    with pytest.raises(errors.InsufficientPrivilege, match="must be owner"):
        as_runtime.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")


@needs_postgres
def test_runtime_role_cannot_turn_triggers_off_for_its_session(as_runtime):
    # What the forgery tests do as a superuser (tests/test_forgery.py, triggers_bypassed).
    with pytest.raises(errors.InsufficientPrivilege):
        as_runtime.execute("SET session_replication_role = replica")


@needs_postgres
def test_runtime_role_is_not_granted_to_a_superuser(db):
    with pytest.raises(CommandError, match="superuser"):
        call_command("grant_runtime_role", connection.settings_dict["USER"])


def _grant(role: str) -> str:
    output = io.StringIO()
    call_command("grant_runtime_role", role, stdout=output)
    return output.getvalue()


@needs_postgres
def test_grant_runtime_role_prints_its_grants_and_runs_again_alike(runtime_role, db):
    printed = _grant(runtime_role)
    assert _grant(runtime_role) == printed
    assert f'GRANT SELECT, INSERT, UPDATE ON TABLE "runs_runevent" TO "{runtime_role}";' in printed
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "runs_ledgerqueue"' in printed
    assert "TRUNCATE" not in printed


# --- the deploy check -----------------------------------------------------------------------
@needs_postgres
def test_deploy_check_warns_when_the_app_connects_as_a_superuser_owner(db):
    ids = {message.id for message in checks.run_checks(include_deployment_checks=True)}
    assert {"rapidfolio.W001", "rapidfolio.W002"} <= ids
    assert "rapidfolio.W001" not in {message.id for message in checks.run_checks()}


@needs_postgres
def test_deploy_check_is_silent_for_the_runtime_role(as_runtime):
    with as_runtime.cursor() as cursor:
        assert role_warnings(cursor) == []


@needs_postgres
def test_deploy_check_says_when_it_cannot_reach_the_database(db):
    default = connections[DEFAULT_DB_ALIAS]
    unreachable = type(default)({**default.settings_dict, "PORT": "1"}, "unreachable")
    try:
        assert [message.id for message in connection_role_warnings(unreachable)] == [
            "rapidfolio.W003"
        ]
    finally:
        unreachable.close()


@needs_sqlite
def test_deploy_check_is_silent_on_sqlite(db):
    assert connection_role_warnings(connections[DEFAULT_DB_ALIAS]) == []
    ids = {message.id for message in checks.run_checks(include_deployment_checks=True)}
    assert not ids & ROLE_CHECKS
