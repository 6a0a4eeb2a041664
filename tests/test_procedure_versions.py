"""A version that cannot run never exists: saving one is refused with every problem by node."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from procedures.models import Procedure, ProcedureVersion

BROKEN = {
    "input_schema": {"type": "object"},
    "start": "pay",
    "nodes": {
        "pay": {"type": "tool", "tool": "stripe.charge", "input": {}, "next": "nowhere"},
        "orphan": {"type": "output", "value": "inputs.("},
    },
}


def test_saving_an_invalid_definition_is_refused_listing_every_problem(db):
    procedure = Procedure.objects.create(name="Broken")
    with pytest.raises(ValidationError) as refused:
        ProcedureVersion.objects.create(procedure=procedure, number=1, definition=BROKEN)
    text = " ".join(refused.value.messages)
    assert "node 'pay'" in text and "stripe.charge" in text
    assert "nowhere" in text
    assert "node 'orphan'" in text
    assert not ProcedureVersion.objects.exists()


def test_admin_shows_definition_problems_beside_the_field(client, admin_user):
    procedure = Procedure.objects.create(name="Broken")
    client.force_login(admin_user)
    import json

    response = client.post(
        reverse("admin:procedures_procedureversion_add"),
        {"procedure": procedure.pk, "definition": json.dumps(BROKEN), "notes": ""},
    )
    assert response.status_code == 200
    assert "stripe.charge" in response.content.decode()
    assert not ProcedureVersion.objects.exists()


def test_admin_numbers_new_versions_in_sequence(client, admin_user, simple_version):
    import json

    from tests.conftest import SIMPLE_DEFINITION

    client.force_login(admin_user)
    response = client.post(
        reverse("admin:procedures_procedureversion_add"),
        {
            "procedure": simple_version.procedure.pk,
            "definition": json.dumps(SIMPLE_DEFINITION),
            "notes": "same again",
        },
    )
    assert response.status_code == 302
    assert list(simple_version.procedure.versions.values_list("number", flat=True)) == [2, 1]
