"""The Runs list filters, shared by the dashboard and the API (`GET /v1/runs`)."""

import datetime
import re

import django_filters
from django import forms
from django.db.models import Q
from django.db.models.functions import Lower
from django.db.models.lookups import Contains
from django.utils import timezone

from procedures.models import Environment, Procedure
from procedures.run_listing import normalise
from runs.models import Run, RunStatus, RunType

MIN_SEARCH_CHARS = 3
MAX_SEARCH_CHARS = 100
RUN_ID_PREFIX = "run_"
# A ULID's characters (rapidfolio.ids: Crockford's base32, lower case), in any case.
RUN_ID_CHARS = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{0,26}")
# A bare id is read as one from this many characters: "01jd8x2k" is a run id, "acme" is not.
RUN_ID_PREFIX_CHARS = 8
# A code's kind: a short word, then - or _, then at least MIN_SEARCH_CHARS more characters.
CODE_PREFIX = re.compile(r"[^\W_]{1,5}[-_]+(?=.{3})")


class RunFilter(django_filters.FilterSet):
    # First: the search box leads the list's filter bar.
    q = django_filters.CharFilter(
        method="filter_search",
        label="Search",
        min_length=MIN_SEARCH_CHARS,
        max_length=MAX_SEARCH_CHARS,
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": "Run id, invoice, customer, payee…",
                "autocomplete": "off",
                "spellcheck": "false",
            }
        ),
        help_text="A run id or its start, or part of a reference the procedure declares.",
    )
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

    def filter_search(self, queryset, name, value):
        return queryset.filter(search_condition(value))

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


def search_condition(query: str) -> Q:
    """The runs a search finds: those whose public id starts with the query (`run_01jd…`, in
    any case; a bare id without `run_` of at least RUN_ID_PREFIX_CHARS characters too), and
    those with a reference value containing it (procedures.run_listing.normalise on both sides).

    Served by indexes on PostgreSQL (runs/migrations/0008_run_search.py): the id prefix by the
    public id's unique index, read as a range (`public_id >= prefix AND < prefix + U+FFFF`,
    which any collation's index can serve; the LIKE beside it keeps the answer exact), and
    the references by the search text's trigram index, which needs the query's three
    characters (MIN_SEARCH_CHARS) to have a trigram to look up.
    """
    text = normalise(query)
    condition = _references_containing(text)
    prefix = _run_id_prefix(query.strip())
    if prefix:
        condition |= Q(
            public_id__gte=prefix, public_id__lt=prefix + "\uffff", public_id__startswith=prefix
        )
    return condition


def _references_containing(text: str) -> Q:
    """search_text LIKE '%text%'; for a code with a kind prefix ("cus_0c2220f5e7",
    "INV-10399914"), the trigram index is asked for what follows the prefix only: the prefix
    that every such reference shares makes trigrams held by most runs, whose posting lists
    cost the index scan nearly all its time (13 ms of 13.4 for an invoice number at a million
    runs, 1 ms without its "inv-"). The whole query is then checked on the few rows found,
    through lower(), which the index does not serve (the text is case-folded already, so
    lower() changes nothing). Words of a name ("quartz ceramics") are kept together: one of
    them alone would match far more runs than the name does."""
    prefix = CODE_PREFIX.match(text)
    if prefix is None:
        return Q(search_text__contains=text)
    rest = text[prefix.end() :]
    return Q(search_text__contains=rest) & Q(Contains(Lower("search_text"), text))


def _run_id_prefix(query: str) -> str:
    if query[:4].lower() == RUN_ID_PREFIX and RUN_ID_CHARS.fullmatch(query[4:]):
        return RUN_ID_PREFIX + query[4:].lower()
    if len(query) >= RUN_ID_PREFIX_CHARS and RUN_ID_CHARS.fullmatch(query):
        return RUN_ID_PREFIX + query.lower()
    return ""


def _start_of_day(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
