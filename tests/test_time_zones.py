"""Times on our pages: every one with its zone, relative where people scan, each user's zone.

rapidfolio/moments.py words them, {% moment %} (rapidfolio/templatetags/time_tags.py) renders
them, rapidfolio/time_zones.py activates the user's zone, the account page sets it.
"""

import datetime
import re
import zoneinfo

import pytest
from django.core.exceptions import ValidationError
from django.template import Context, Template
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from rapidfolio import moments
from rapidfolio.models import UserPreferences
from rapidfolio.time_zones import UserTimeZoneMiddleware, set_time_zone
from reviews.selectors import review_queue
from tests.conftest import make_version
from tests.test_dashboard_runs import CREDIT_CHECK, PAYMENT_WITH_REVIEW, body, start

UTC = datetime.UTC
PARIS = "Europe/Paris"
WINTER = datetime.datetime(2026, 12, 1, 15, 45, 6, tzinfo=UTC)
SUMMER = datetime.datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
INVOICE = {"invoice_id": "INV-1001", "customer_id": "cus_acme", "amount": 700000, "currency": "usd"}


def render_moment(value, form="absolute", zone="UTC", **context) -> str:
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        template = Template("{% load time_tags %}{% moment value form %}")
        return template.render(Context({"value": value, "form": form, **context}))


# --- the tag --------------------------------------------------------------------------------
def test_a_moment_in_utc_names_its_zone_and_offset():
    assert render_moment(WINTER) == (
        '<time datetime="2026-12-01T15:45:06.000Z" title="2026-12-01 15:45:06 UTC (UTC+00:00)">'
        "Dec 1, 2026 15:45:06 UTC</time>"
    )


def test_the_same_moment_for_a_user_in_paris_is_shown_in_cet_with_the_same_instant():
    assert render_moment(WINTER, zone=PARIS) == (
        '<time datetime="2026-12-01T15:45:06.000Z" '
        'title="2026-12-01 16:45:06 Europe/Paris (UTC+01:00)">Dec 1, 2026 16:45:06 CET</time>'
    )


def test_summer_time_in_paris_is_cest_at_utc_plus_two():
    page = render_moment(SUMMER, zone=PARIS)
    assert 'title="2026-07-01 14:00:00 Europe/Paris (UTC+02:00)"' in page
    assert ">Jul 1, 2026 14:00:00 CEST</time>" in page


def test_the_spring_forward_skips_the_hour_from_two_to_three_in_paris():
    last_winter_second = datetime.datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)
    first_summer_second = last_winter_second + datetime.timedelta(seconds=1)
    assert ">Mar 29, 2026 01:59:59 CET<" in render_moment(last_winter_second, zone=PARIS)
    assert ">Mar 29, 2026 03:00:00 CEST<" in render_moment(first_summer_second, zone=PARIS)


def test_a_zone_without_a_letter_abbreviation_shows_its_offset():
    assert ">Dec 1, 2026 19:45:06 UTC+04:00<" in render_moment(WINTER, zone="Asia/Dubai")


def test_the_relative_form_carries_the_absolute_moment_in_its_title():
    now = WINTER + datetime.timedelta(minutes=3, seconds=20)
    page = render_moment(WINTER, "ago", zone=PARIS, now=now)
    assert page == (
        '<time datetime="2026-12-01T15:45:06.000Z" '
        'title="2026-12-01 16:45:06 Europe/Paris (UTC+01:00)" data-relative="ago">3 min ago</time>'
    )


def test_the_waited_form_says_how_long():
    now = WINTER + datetime.timedelta(hours=2, minutes=5, seconds=59)
    assert 'data-relative="waited">2 h 5 min</time>' in render_moment(WINTER, "waited", now=now)


def test_a_missing_moment_is_a_dash_and_recorded_text_is_shown_as_it_is():
    assert render_moment(None) == '<span class="muted">—</span>'
    assert render_moment("next tuesday") == '<span class="mono">next tuesday</span>'


def test_an_iso_string_from_an_event_is_read_as_the_moment_it_names():
    assert ">Dec 1, 2026 16:45:06 CET<" in render_moment("2026-12-01T15:45:06+00:00", zone=PARIS)


RELATIVE = [
    (0, "just now"),
    (44, "just now"),
    (45, "1 min ago"),
    (179, "2 min ago"),
    (3599, "59 min ago"),
    (3600, "1 h ago"),
    (86399, "23 h ago"),
    (86400, "1 d ago"),
    (59 * 86400, "59 d ago"),
    (60 * 86400, "1 mo ago"),
    (400 * 86400, "1 y ago"),
    (-7200, "in 2 h"),
    (-30, "just now"),
]


@pytest.mark.parametrize(("seconds", "words"), RELATIVE)
def test_relative_words(seconds, words):
    moment = WINTER - datetime.timedelta(seconds=seconds)
    assert moments.relative(moment, WINTER) == words


WAITED = [
    (0, "under 1 min"),
    (59, "under 1 min"),
    (60, "1 min"),
    (2 * 3600 + 5 * 60, "2 h 5 min"),
    (47 * 3600 + 59 * 60, "47 h 59 min"),
    (3 * 86400 + 4 * 3600, "3 d 4 h"),
    (-10, "under 1 min"),  # a clock a little ahead never waits a negative time
]


@pytest.mark.parametrize(("seconds", "words"), WAITED)
def test_waited_words(seconds, words):
    assert moments.waited(WINTER - datetime.timedelta(seconds=seconds), WINTER) == words


# --- the pages, in the user's zone ----------------------------------------------------------
@pytest.fixture
def credit_version(db):
    return make_version(CREDIT_CHECK, name="Credit check")


def started_cell(page: str) -> str:
    return re.search(r'<td data-label="Started">(.*?)</td>', page, re.S).group(1)


def test_the_runs_list_shows_started_relative_with_the_users_zone_on_hover(
    client, operator, credit_version
):
    run = start(credit_version, operator, {"customer_id": "cust_anna"})
    set_time_zone(user=operator, time_zone=PARIS)
    client.force_login(operator)
    cell = started_cell(body(client.get(reverse("runs:list"))))
    local = timezone.localtime(run.created_at, zoneinfo.ZoneInfo(PARIS))
    assert 'data-relative="ago">just now</time>' in cell
    assert f'title="{local:%Y-%m-%d %H:%M:%S} Europe/Paris (UTC+0' in cell
    assert f'datetime="{moments.iso_utc(run.created_at)}"' in cell


def test_a_user_without_a_choice_sees_the_default_zone(client, operator, credit_version, settings):
    start(credit_version, operator, {"customer_id": "cust_anna"})
    client.force_login(operator)
    assert " UTC (UTC+00:00)" in started_cell(body(client.get(reverse("runs:list"))))
    settings.RAPIDFOLIO_DEFAULT_TIME_ZONE = "America/New_York"
    assert " America/New_York (UTC-0" in started_cell(body(client.get(reverse("runs:list"))))


def test_the_run_header_is_relative_and_the_step_log_absolute_in_the_users_zone(
    client, operator, credit_version
):
    run = start(credit_version, operator, {"customer_id": "cust_anna"})
    set_time_zone(user=operator, time_zone=PARIS)
    client.force_login(operator)
    header = body(client.get(reverse("runs:detail", args=[run.public_id])))
    assert re.search(
        r"<dt>Created</dt><dd><time [^>]*data-relative=\"ago\">just now</time>", header
    )
    steps = body(client.get(reverse("runs:tab", args=[run.public_id, "step-log"])))
    started = re.search(r"Started (<time [^>]*>[^<]*</time>)", steps).group(1)
    assert "data-relative" not in started and re.search(r" CE(S)?T</time>$", started)


# --- the middleware -------------------------------------------------------------------------
def zone_seen_by_the_view(path: str, user) -> str:
    """The zone a view under UserTimeZoneMiddleware runs in, for `user` asking for `path`."""
    seen = []

    def view(request):
        seen.append(timezone.get_current_timezone_name())

    request = RequestFactory().get(path)
    request.user = user
    UserTimeZoneMiddleware(view)(request)
    return seen[0]


def test_the_middleware_activates_the_users_zone_for_pages(operator):
    set_time_zone(user=operator, time_zone=PARIS)
    assert zone_seen_by_the_view("/runs/", operator) == PARIS
    assert timezone.get_current_timezone_name() == "UTC"  # and deactivates it afterwards


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/procedures/x/sandbox", "/hooks/stripe/"])
def test_the_api_and_webhooks_skip_the_lookup_and_stay_in_utc(
    operator, path, django_assert_num_queries
):
    set_time_zone(user=operator, time_zone=PARIS)
    with django_assert_num_queries(0):
        assert zone_seen_by_the_view(path, operator) == "UTC"


def test_an_unknown_default_zone_fails_at_start(settings):
    settings.RAPIDFOLIO_DEFAULT_TIME_ZONE = "Mars/Olympus_Mons"
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        UserTimeZoneMiddleware(lambda request: None)


# --- the Time zone page ---------------------------------------------------------------------
def test_the_header_links_to_the_time_zone_page(client, operator):
    client.force_login(operator)
    assert f'href="{reverse("account_time_zone")}"' in body(client.get(reverse("home")))


def test_the_time_zone_page_offers_every_zone_with_the_current_one_selected(client, operator):
    set_time_zone(user=operator, time_zone=PARIS)
    client.force_login(operator)
    page = body(client.get(reverse("account_time_zone")))
    assert '<option value="Europe/Paris" selected>Europe/Paris</option>' in page
    assert '<option value="Asia/Tokyo">' in page and '<option value="UTC">' in page


def test_choosing_a_zone_saves_it_and_says_so_once(client, operator):
    client.force_login(operator)
    response = client.post(reverse("account_time_zone"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert UserPreferences.objects.get(user=operator).time_zone == "Asia/Tokyo"
    page = body(client.get(response.url))
    assert page.count("Times are now shown in Asia/Tokyo.") == 1
    assert "Times are now shown in" not in body(client.get(response.url))


def test_an_unknown_zone_is_a_form_error_beside_the_field(client, operator):
    set_time_zone(user=operator, time_zone=PARIS)
    client.force_login(operator)
    response = client.post(reverse("account_time_zone"), {"time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 422
    assert re.search(
        r"has-error.*“Mars/Olympus_Mons” is not a time zone we know", body(response), re.S
    )
    assert UserPreferences.objects.get(user=operator).time_zone == PARIS


def test_no_zone_at_all_is_a_form_error(client, operator):
    client.force_login(operator)
    response = client.post(reverse("account_time_zone"), {})
    assert response.status_code == 422
    assert "This field is required." in body(response)


def test_the_service_refuses_an_unknown_zone(operator):
    with pytest.raises(ValidationError):
        set_time_zone(user=operator, time_zone="Europe/Atlantis")
    assert not UserPreferences.objects.exists()


def test_choosing_again_replaces_the_choice(operator):
    set_time_zone(user=operator, time_zone=PARIS)
    set_time_zone(user=operator, time_zone="UTC")
    assert UserPreferences.objects.get(user=operator).time_zone == "UTC"


# --- the review queue -----------------------------------------------------------------------
@pytest.fixture
def review_version(db):
    return make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")


def test_the_queue_says_how_long_each_review_has_waited(client, reviewer, operator, review_version):
    run = start(review_version, operator, INVOICE)
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    row = page[page.index(run.public_id) :]
    assert re.search(
        r'<td data-label="Waiting"><time [^>]*data-relative="waited">under 1 min<', row
    )
    # Two hours and five minutes later, as the page renders against its own `now`:
    review = run.review_requests.get()
    later = review.created_at + datetime.timedelta(hours=2, minutes=5, seconds=30)
    with timezone.override(zoneinfo.ZoneInfo(PARIS)):
        context = {"items": review_queue(reviewer), "now": later, "perms": {}}
        page = render_to_string("reviews/queue.html", context)
    assert 'data-relative="waited">2 h 5 min</time>' in page
    assert "Europe/Paris (UTC+01:00)" in page or "Europe/Paris (UTC+02:00)" in page


def test_the_queue_lists_the_longest_waiting_first(client, reviewer, operator, review_version):
    first = start(review_version, operator, INVOICE)
    second = start(review_version, operator, {**INVOICE, "invoice_id": "INV-1002"})
    client.force_login(reviewer)
    page = body(client.get(reverse("reviews:queue")))
    assert page.index(first.public_id) < page.index(second.public_id)
