"""The Approve / Reject form: the overridable fields, typed from their schemas, and a comment."""

from django import forms

from procedures.forms import schema_field
from reviews.models import ReviewRequest

OVERRIDE_PREFIX = "override_"


class DecisionForm(forms.Form):
    comment = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with your decision and shown in the run's history.",
    )

    def __init__(self, review: ReviewRequest, *args, with_overrides: bool = True, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        self.review = review
        self.override_names = []
        if not with_overrides:
            return
        shown = review.shown_values if isinstance(review.shown_values, dict) else {}
        fields = {}
        for item in review.overridable_fields:
            name = item["name"]
            fields[OVERRIDE_PREFIX + name] = schema_field(
                item.get("schema") or {}, required=True, label=name, initial=shown.get(name)
            )
            self.override_names.append(name)
        # The override fields come before the comment.
        self.fields = {**fields, "comment": self.fields["comment"]}

    def override_fields(self):
        return [self[OVERRIDE_PREFIX + name] for name in self.override_names]

    def overrides(self) -> dict:
        return {name: self.cleaned_data[OVERRIDE_PREFIX + name] for name in self.override_names}

    def add_override_errors(self, details) -> None:
        """Put the service's [{field, message}] beside the matching override fields."""
        for problem in details or []:
            key = OVERRIDE_PREFIX + str(problem.get("field"))
            if key in self.fields:
                self.add_error(key, problem["message"])
            else:
                self.add_error(None, f"{problem.get('field')}: {problem['message']}")
