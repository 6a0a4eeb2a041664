"""The Runs list filters, shared by the dashboard and the API (`GET /v1/runs`)."""

import datetime

import django_filters
from django import forms
from django.utils import timezone

from procedures.models import Environment, Procedure
from runs.models import Run, RunStatus, RunType


class RunFilter(django_filters.FilterSet):
    # Not DISTINCT (django-filter's default for multiple choices, against joins that repeat
    # rows): status is the run's own column, and DISTINCT makes PostgreSQL sort every
    # matching run before it can take a page, instead of reading one from an index.
    status = django_filters.MultipleChoiceFilter(
        choices=RunStatus.choices,
        widget=forms.CheckboxSelectMultiple,
        label="Status",
        distinct=False,
    )
    procedure = django_filters.ModelChoiceFilter(
        queryset=Procedure.objects.order_by("name"),
        to_field_name="public_id",
        empty_label="All procedures",
        label="Procedure",
    )
    environment = django_filters.ChoiceFilter(
        choices=Environment.choices, empty_label="All environments", label="Environment"
    )
    type = django_filters.ChoiceFilter(
        choices=RunType.choices, empty_label="All types", label="Type"
    )
    created_from = django_filters.DateFilter(
        method="filter_created_from",
        label="Created from",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    created_to = django_filters.DateFilter(
        method="filter_created_to",
        label="Created to",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    class Meta:
        model = Run
        fields = ["status", "procedure", "environment", "type"]

    # Dates are whole days in the site's time zone; "to" includes the whole day.
    def filter_created_from(self, queryset, name, value):
        return queryset.filter(created_at__gte=_start_of_day(value))

    def filter_created_to(self, queryset, name, value):
        return queryset.filter(created_at__lt=_start_of_day(value + datetime.timedelta(days=1)))

    def clean_dates(self):
        data = self.form.cleaned_data
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.form.add_error("created_to", "The end date is before the start date.")


def _start_of_day(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
