"""Override policy: each overridable field moves only in its direction and within its bound
from the value under review; any change needs a comment; a refused override records nothing."""

import pytest

from reviews.errors import InvalidDecision, InvalidOverrides
from reviews.models import ReviewDecision
from reviews.services import CONFIRM_AMOUNT, CONFIRM_OVERRIDES, approve, check_approval
from runs import engine
from runs.models import Run
from tests.conftest import make_version
from tests.test_reviews import paused, quorum_definition

DECREASE_ONLY = {"schema": {"type": "integer", "minimum": 1}, "direction": "decrease"}


def reviewed(operator, amount=2_400_000, **spec):
    definition = quorum_definition(approvals=1, overridable={"amount": spec or DECREASE_ONLY})
    return paused(make_version(definition, name="Policy payment"), operator, amount)


def test_raising_a_decrease_only_amount_is_refused_beside_the_field(db, operator, reviewer):
    review = reviewed(operator)
    with pytest.raises(InvalidOverrides) as refused:
        approve(
            request=review,
            reviewer=reviewer,
            overrides={"amount": 99_999_999},
            comment="The customer wants to pay more",
        )
    assert refused.value.details == [
        {"field": "amount", "message": "You may only lower amount from 2400000, not raise it."}
    ]
    assert not ReviewDecision.objects.exists()
    assert Run.objects.get(pk=review.run_id).status == "awaiting_review"


def test_lowering_a_decrease_only_amount_is_recorded_and_paid(db, operator, reviewer):
    review = reviewed(operator)
    decision = approve(
        request=review, reviewer=reviewer, overrides={"amount": 2_000_000}, comment="Partial"
    )
    assert decision.overrides == [{"field": "amount", "before": 2_400_000, "after": 2_000_000}]
    engine.drive(review.run_id)
    assert Run.objects.get(pk=review.run_id).output == {"charged": 2_000_000}


def test_an_increase_only_field_cannot_be_lowered(db, operator, reviewer):
    review = reviewed(operator, schema={"type": "integer"}, direction="increase")
    with pytest.raises(InvalidOverrides, match="You may only raise amount"):
        approve(request=review, reviewer=reviewer, overrides={"amount": 1}, comment="Less")


@pytest.mark.parametrize(
    ("after", "allowed"),
    [(1_800_000, True), (1_799_999, False), (3_000_000, True), (3_000_001, False)],
)
def test_a_change_beyond_max_change_percent_of_the_original_is_refused(
    db, operator, reviewer, after, allowed
):
    review = reviewed(operator, schema={"type": "integer"}, max_change_percent=25)
    change = {"request": review, "reviewer": reviewer, "overrides": {"amount": after}}
    if allowed:
        assert approve(**change, comment="Within policy").overrides[0]["after"] == after
        return
    with pytest.raises(InvalidOverrides) as refused:
        approve(**change, comment="Beyond policy")
    message = refused.value.details[0]["message"]
    assert message.startswith("amount may move at most 25 % from 2400000; ")
    assert not ReviewDecision.objects.exists()


def test_every_override_needs_a_comment(db, operator, reviewer):
    review = reviewed(operator)
    with pytest.raises(InvalidDecision) as refused:
        approve(request=review, reviewer=reviewer, overrides={"amount": 2_000_000})
    assert refused.value.details == [
        {"field": "comment", "message": "Say why you changed amount: an override needs a comment."}
    ]
    assert not ReviewDecision.objects.exists()


def test_a_bare_schema_override_may_move_either_way(db, operator, reviewer):
    # REVIEW_DEFINITION's override is the short form: a bare JSON Schema.
    review = paused(make_version(quorum_definition(approvals=1), name="Short form"), operator)
    decision = approve(
        request=review, reviewer=reviewer, overrides={"amount": 1_000_000}, comment="More"
    )
    assert decision.overrides[0]["after"] == 1_000_000


def test_the_check_before_confirmation_says_what_to_confirm_and_records_nothing(
    db, operator, reviewer
):
    definition = quorum_definition(
        approvals=1,
        overridable={"amount": DECREASE_ONLY},
        payment={"amount": "amount", "payee": "customer"},
        confirm_above=1_000_000,
    )
    review = paused(make_version(definition, name="Confirmed payment"), operator, 2_400_000)
    proposal = check_approval(
        request=review, reviewer=reviewer, overrides={"amount": 2_000_000}, comment="Partial"
    )
    assert proposal.changes == [{"field": "amount", "before": 2_400_000, "after": 2_000_000}]
    assert proposal.confirm == (CONFIRM_OVERRIDES, CONFIRM_AMOUNT)
    below = check_approval(
        request=review, reviewer=reviewer, overrides={"amount": 900_000}, comment="Less"
    )
    assert below.confirm == (CONFIRM_OVERRIDES,)
    assert not ReviewDecision.objects.exists()
