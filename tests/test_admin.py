"""Django admin: records are visible, never changed or deleted; versions are create-only."""

import pytest
from django.urls import reverse

from runs.models import ApiKey, Run
from runs.services import start_run


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def run(simple_version):
    return start_run(
        version=simple_version,
        environment="sandbox",
        inputs={"amount": 5, "currency": "usd"},
        type="api",
    )


@pytest.mark.parametrize("model", ["run", "step", "runevent"])
def test_run_records_have_no_add_page(admin_client, model):
    assert admin_client.get(reverse(f"admin:runs_{model}_add")).status_code == 403


def test_run_change_page_is_read_only(admin_client, run):
    response = admin_client.get(reverse("admin:runs_run_change", args=[run.pk]))
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert run.public_id.encode() in response.content


def test_run_cannot_be_deleted_from_admin(admin_client, run):
    url = reverse("admin:runs_run_delete", args=[run.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Run.objects.filter(pk=run.pk).exists()


def test_bulk_delete_action_is_not_offered_for_runs(admin_client, run):
    response = admin_client.get(reverse("admin:runs_run_changelist"))
    assert b"delete_selected" not in response.content


@pytest.mark.parametrize("model", ["reviewrequest", "reviewdecision"])
def test_review_records_cannot_be_added(admin_client, model):
    assert admin_client.get(reverse(f"admin:reviews_{model}_add")).status_code == 403


def test_procedure_version_can_be_created_but_not_changed(admin_client, simple_version):
    change_url = reverse("admin:procedures_procedureversion_change", args=[simple_version.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    response = admin_client.post(change_url, {"definition": "{}", "notes": "edited"})
    assert response.status_code == 403
    simple_version.refresh_from_db()
    assert simple_version.notes == ""


def test_creating_an_api_key_in_admin_shows_the_key_once(admin_client):
    response = admin_client.post(
        reverse("admin:runs_apikey_add"),
        {"name": "billing backend", "environment": "sandbox"},
        follow=True,
    )
    api_key = ApiKey.objects.get(name="billing backend")
    body = response.content.decode()
    assert "copy it now" in body
    assert api_key.prefix in body
    assert api_key.key_hash not in body


def test_connection_secret_is_stored_encrypted_and_never_shown_back(admin_client):
    from procedures.models import Connection

    secret = "sk_live_51SuperSecretValue9876"
    response = admin_client.post(
        reverse("admin:procedures_connection_add"),
        {
            "integration": "stripe",
            "environment": "live",
            "name": "Stripe live",
            "config": "{}",
            "secret": secret,
        },
        follow=True,
    )
    assert response.status_code == 200
    connection = Connection.objects.get(name="Stripe live")
    assert secret not in connection.encrypted_secret
    assert connection.get_secret() == secret
    page = admin_client.get(reverse("admin:procedures_connection_change", args=[connection.pk]))
    assert secret not in page.content.decode()
    assert "9876" in page.content.decode()  # only the hint's last four characters


def test_connection_secret_is_kept_when_the_form_leaves_it_blank(admin_client):
    from procedures.models import Connection

    connection = Connection(integration="bank", environment="live", name="Bank", config={})
    connection.set_secret("bank-token-123456")
    connection.save()
    admin_client.post(
        reverse("admin:procedures_connection_change", args=[connection.pk]),
        {
            "integration": "bank",
            "environment": "live",
            "name": "Bank renamed",
            "config": "{}",
            "secret": "",
        },
    )
    connection.refresh_from_db()
    assert connection.name == "Bank renamed"
    assert connection.get_secret() == "bank-token-123456"
