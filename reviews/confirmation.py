"""The confirmation step of a decision: what the review panel shows between the reviewer's
Approve (or Reject) and its record, and the notice after it.

An approval is confirmed when it changes values (each field before -> after, and the
difference), when the run is live, or when the amount is above the node's confirm_above (both
name the amount and the payee); a rejection always is. The confirmation posts the same form
again, with `confirmed` naming what it showed.
"""

from dataclasses import dataclass, field

from reviews.amounts import difference, money_of, payment_text, show_value
from reviews.services import CONFIRM_AMOUNT, CONFIRM_LIVE, CONFIRM_REJECTION, Proposal
from reviews.state import ReviewState


@dataclass(frozen=True)
class Change:
    field: str
    before: object
    after: object
    difference: str


@dataclass
class Confirmation:
    kind: str  # "approve" or "reject"
    hidden: list[tuple[str, object]]  # the form's fields, posted again with `confirmed`
    confirmed: str
    changes: list[Change] = field(default_factory=list)
    live: bool = False
    amount: str = ""
    payee: str = ""
    threshold: str = ""  # confirm_above as read, when the amount is above it
    text: str = ""  # the comment, or the rejection's reason


def _hidden(form) -> list[tuple[str, object]]:
    return [(bound.html_name, bound.value()) for bound in form if bound.name != "confirmed"]


def approval_confirmation(proposal: Proposal, form) -> Confirmation:
    state, changes = proposal.state, proposal.changes
    values = {**state.values, **{c["field"]: c["after"] for c in changes}}
    money = money_of(state, values)
    amount, payee = payment_text(state, changes)
    threshold = state.policy.confirm_above
    return Confirmation(
        kind="approve",
        hidden=_hidden(form),
        confirmed=" ".join(proposal.confirm),
        changes=[
            Change(
                field=c["field"],
                before=show_value(state, c["field"], c["before"], money),
                after=show_value(state, c["field"], c["after"], money),
                difference=difference(state, c["field"], c["before"], c["after"], money),
            )
            for c in changes
        ],
        live=CONFIRM_LIVE in proposal.confirm,
        amount=amount,
        payee=payee,
        threshold=(
            str(show_value(state, state.policy.payment["amount"], threshold, money))
            if CONFIRM_AMOUNT in proposal.confirm
            else ""
        ),
        text=form.cleaned_data.get("comment", ""),
    )


def rejection_confirmation(state: ReviewState, form) -> Confirmation:
    amount, payee = payment_text(state)
    return Confirmation(
        kind="reject",
        hidden=_hidden(form),
        confirmed=CONFIRM_REJECTION,
        live=state.run.environment == "live",
        amount=amount,
        payee=payee,
        text=form.cleaned_data["reason"],
    )


def approval_notice(decision, state: ReviewState) -> str:
    """What the page says once an approval is recorded."""
    if decision.final:
        return "Approved; the run continues."
    needed = state.approvals_needed - 1
    return (
        f"Approved ({len(state.approvals) + 1} of {state.policy.approvals}); "
        f"{needed} more approval{'s' if needed != 1 else ''} from other reviewers before the run "
        "continues."
    )
