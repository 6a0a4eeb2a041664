"""The review panel's two forms: Approve (the overridable fields, typed from their schemas, and
a comment) and Reject (a reason). Both carry what the page showed (`seen`: the digest of
reviews.shown's view, and `seen_at`), so the decision is bound to it, and what the reviewer
confirmed on the confirmation step (`confirmed`)."""

from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from procedures.forms import schema_field
from procedures.money_forms import MoneyField
from rapidfolio.forms import FocusFirstError
from reviews.amounts import money_of, show_value
from reviews.shown import shown_view, view_digest
from reviews.state import ReviewState

OVERRIDE_PREFIX = "override_"
# The bounds a JSON Schema sets on an amount, which the money field checks in minor units.
MONEY_BOUNDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf")


class _BoundToPage(FocusFirstError, forms.Form):
    seen = forms.CharField(widget=forms.HiddenInput, max_length=64)
    # ISO 8601 with microseconds (a DateTimeField's widget would round it to the second).
    seen_at = forms.CharField(widget=forms.HiddenInput, max_length=40)
    confirmed = forms.CharField(widget=forms.HiddenInput, required=False, max_length=200)

    def __init__(self, state: ReviewState, *args, view: dict | None = None, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        self.state = state
        self.review = state.request
        if not self.is_bound:
            view = view if view is not None else shown_view(state)
            self.initial.update(seen=view_digest(view), seen_at=timezone.now().isoformat())

    def clean(self):
        cleaned = super().clean()
        if {"seen", "seen_at"} & set(self.errors):
            # Hidden fields have no place on the page to show an error: say it above the form.
            self.add_error(
                None, "This page did not say what it showed you: reload it, then decide."
            )
        return cleaned

    def clean_seen_at(self):
        moment = parse_datetime(self.cleaned_data["seen_at"])
        if moment is None or moment.tzinfo is None:
            raise forms.ValidationError("Reload the page: it did not say when it was shown.")
        return moment

    def confirmed_items(self) -> tuple[str, ...]:
        return tuple(self.cleaned_data.get("confirmed", "").split())

    def add_decision_errors(self, details) -> None:
        """Put the service's [{field, message}] beside the matching fields."""
        for problem in details or []:
            key = self.field_name_for(str(problem.get("field")))
            if key in self.fields:
                self.add_error(key, problem["message"])
            else:
                self.add_error(None, f"{problem.get('field')}: {problem['message']}")

    def field_name_for(self, field: str) -> str:
        return field


class DecisionForm(_BoundToPage):
    """Approve: the overridable fields (amounts typed as money, in the shown currency), then a
    comment, required with any change."""

    comment = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with your decision; required when you change a value.",
    )

    def __init__(self, state: ReviewState, *args, with_overrides: bool = True, **kwargs):
        super().__init__(state, *args, **kwargs)
        self.override_names = []
        if not with_overrides or not state.may_override:
            return
        values, money = state.values, money_of(state)
        fields = {}
        for item in self.review.overridable_fields:
            name = item["name"]
            fields[OVERRIDE_PREFIX + name] = _override_field(state, item, values, money)
            self.override_names.append(name)
        # The override fields come first, then the comment and the hidden ones.
        self.fields = {**fields, **self.fields}

    def override_fields(self):
        return [self[OVERRIDE_PREFIX + name] for name in self.override_names]

    def overrides(self) -> dict:
        """The values given; a field left blank keeps the value under review."""
        values = {
            name: self.cleaned_data.get(OVERRIDE_PREFIX + name) for name in self.override_names
        }
        return {name: value for name, value in values.items() if value not in (None, "")}

    def field_name_for(self, field: str) -> str:
        return field if field == "comment" else OVERRIDE_PREFIX + field


class RejectForm(_BoundToPage):
    reason = forms.CharField(
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Reason for rejecting",
        help_text="Recorded as the run's failure. A rejected run cannot be retried.",
        error_messages={"required": "Give the reason for rejecting."},
    )

    def __init__(self, state: ReviewState, *args, **kwargs):
        super().__init__(state, *args, prefix="reject", **kwargs)
        # The visible field first, then the hidden ones.
        self.fields = {"reason": self.fields.pop("reason"), **self.fields}


def _override_field(state: ReviewState, item: dict, values: dict, money: dict) -> forms.Field:
    name, schema = item["name"], item.get("schema") or {}
    amount = money.get(name)
    if amount is not None and schema.get("type") == "integer":
        title = schema.get("title") or name.replace("_", " ").capitalize()
        field = MoneyField(
            currency=amount.currency,
            required=False,
            label=f"{title} ({amount.currency})",
            bounds={key: schema[key] for key in MONEY_BOUNDS if key in schema},
            initial=values.get(name),
        )
    else:
        field = schema_field(schema, required=False, label=name, initial=values.get(name))
    field.help_text = " ".join(filter(None, [field.help_text, policy_hint(state, item)]))
    return field


def policy_hint(state: ReviewState, item: dict) -> str:
    """The field's policy in words: "You may only lower it; at most 50 % from USD 24,000.00."."""
    name = item["name"]
    original = (state.request.shown_values or {}).get(name)
    parts = {
        "decrease": "You may only lower it.",
        "increase": "You may only raise it.",
    }.get(item.get("direction", "any"), "")
    bound = item.get("max_change_percent")
    if bound is not None:
        parts += f" At most {bound:g} % from {show_value(state, name, original)}."
    return parts.strip()
