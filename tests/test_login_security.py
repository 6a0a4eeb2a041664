"""Signing in: the lockout (django-axes), two-factor with an authenticator (django-otp TOTP), and
live approvals that need a verified session when an admin asks for it.

Codes are real: computed from the device's key with django_otp.oath, as an authenticator app
computes them. Where a test needs time to pass (a lockout's end, a code's next time step, the
pause after a wrong code), it moves the recorded time back instead of sleeping.
"""

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP, totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from rapidfolio.roles import LIVE_ENVIRONMENT, REVIEWERS
from rapidfolio.test_client import Client
from reviews.models import LiveApprovalPolicy, ReviewDecision, ReviewRequest
from runs.api_keys import create_api_key
from tests.conftest import make_user, make_version
from tests.test_dashboard_reviews import decide
from tests.test_dashboard_runs import PAYMENT_WITH_REVIEW, start

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-42"  # conftest.make_user's
LOGIN = "/login/"
ADMIN_LOGIN = "/admin/login/"
INPUTS = {"invoice_id": "INV-1001", "customer_id": "cus_acme", "amount": 700000, "currency": "usd"}


def post_password(client, username, password, url=LOGIN, **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def fail(client, username, times, url=LOGIN, **extra):
    return [
        post_password(client, username, "wrong", url, **extra).status_code for _ in range(times)
    ]


def signed_in_as(client):
    return client.session.get("_auth_user_id")


def code_at(device: TOTPDevice, t: int) -> str:
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    generator.time = device.t0 + t * device.step
    return f"{generator.token():0{device.digits}d}"


def current_code(device: TOTPDevice) -> str:
    """What the authenticator app shows now."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits):0{device.digits}d}"


def fresh_code(device: TOTPDevice) -> str:
    """A code the device has not accepted yet. A device takes each time step once and allows
    one step of drift; past that, the test moves its last accepted step back, as if the next
    half minute had come."""
    device.refresh_from_db()
    now_t = int((time.time() - device.t0) // device.step)
    t = max(now_t, device.last_t + 1)
    if t > now_t + device.tolerance:
        TOTPDevice.objects.filter(pk=device.pk).update(last_t=now_t - 1)
        t = now_t
    return code_at(device, t)


def after_the_pause_for_wrong_codes(device: TOTPDevice) -> None:
    past = timezone.now() - timedelta(hours=1)
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=past)


def authenticator(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def sign_in_with_code(client, user, device, url=LOGIN, next_url=""):
    data = {"username": user.username, "password": PASSWORD}
    if next_url:
        data["next"] = next_url
    response = client.post(url, data)
    assert response.status_code == 302 and response.url == reverse("login_code")
    return client.post(reverse("login_code"), {"code": fresh_code(device)})


# --- the lockout ----------------------------------------------------------------------------
@pytest.mark.parametrize("url", [LOGIN, ADMIN_LOGIN])
def test_sixty_wrong_passwords_then_the_right_one_does_not_sign_in(client, admin_user, url):
    statuses = fail(client, admin_user.username, 60, url)
    assert statuses[:4] == [200] * 4
    assert statuses[4:] == [429] * 56
    response = post_password(client, admin_user.username, PASSWORD, url)
    assert response.status_code == 429
    assert signed_in_as(client) is None
    assert client.get("/admin/").status_code == 302


def test_the_limits_come_from_the_environment(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rapidfolio.settings",
        "RAPIDFOLIO_VAR_DIR": str(tmp_path),
        "LOGIN_FAILURE_LIMIT": "3",
        "LOGIN_ADDRESS_FAILURE_LIMIT": "50",
        "LOGIN_LOCKOUT_MINUTES": "30",
    }
    probe = (
        "from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, s.LOGIN_ADDRESS_FAILURE_LIMIT, s.AXES_COOLOFF_TIME)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["3", "50", "0:30:00"]


def test_the_fifth_wrong_password_shows_when_to_try_again(client, reviewer):
    before = fail(client, "rita", 4)
    response = post_password(client, "rita", "wrong")
    assert before == [200] * 4
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-in attempts" in page
    assert "You can try again after" in page
    assert 14 * 60 < int(response["Retry-After"]) <= 15 * 60


def page_without_tokens(response, username) -> str:
    """The page as any visitor sees it: without this render's CSRF token, the lockout's clock
    time, or the username they typed."""
    page = response.content.decode().replace(username, "USERNAME")
    page = re.sub(r'(csrfmiddlewaretoken" value="|X-CSRFToken": ")[^"]+', r"\1", page)
    page = re.sub(r'<time datetime="[^"]*">[^<]*</time>', "<time>", page)
    return re.sub(r"in about \d+ minutes?", "", page)


def test_known_and_unknown_usernames_get_the_same_answers(client, reviewer):
    known = [post_password(client, "rita", "wrong") for _ in range(6)]
    unknown = [post_password(client, "nobody", "wrong") for _ in range(6)]
    assert [r.status_code for r in known] == [r.status_code for r in unknown]
    for mine, theirs in zip(known, unknown, strict=True):
        assert page_without_tokens(mine, "rita") == page_without_tokens(theirs, "nobody")


def test_attempts_during_a_lockout_are_not_checked_and_do_not_extend_it(client, reviewer):
    fail(client, "rita", 5)
    first = AccessAttempt.objects.get(username="rita")
    assert post_password(client, "rita", PASSWORD).status_code == 429
    fail(client, "rita", 3)
    assert AccessAttempt.objects.get(pk=first.pk).attempt_time == first.attempt_time
    assert AccessAttempt.objects.get(pk=first.pk).failures_since_start == 5


def test_the_lockout_ends_after_the_cool_off(client, reviewer):
    fail(client, "rita", 5)
    assert post_password(client, "rita", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = post_password(client, "rita", PASSWORD)
    assert response.status_code == 302
    assert signed_in_as(client) == str(reviewer.pk)


def test_an_admin_unlocks_a_user_in_django_admin(client, reviewer, admin_user):
    fail(client, "rita", 5)
    admin = Client(REMOTE_ADDR="10.9.9.9")
    admin.force_login(admin_user)
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "rita" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="rita")
    response = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert post_password(client, "rita", PASSWORD).status_code == 302
    assert signed_in_as(client) == str(reviewer.pk)


def test_axes_reset_username_unlocks_a_user(client, reviewer):
    fail(client, "rita", 5)
    call_command("axes_reset_username", "rita")
    assert post_password(client, "rita", PASSWORD).status_code == 302


def test_the_same_user_from_another_address_is_not_locked_out(reviewer):
    attacker, rita = Client(REMOTE_ADDR="203.0.113.7"), Client(REMOTE_ADDR="198.51.100.20")
    fail(attacker, "rita", 10)
    assert post_password(attacker, "rita", PASSWORD).status_code == 429
    assert post_password(rita, "rita", PASSWORD).status_code == 302


def test_another_user_from_the_same_address_is_not_locked_out(client, reviewer, second_reviewer):
    fail(client, "rita", 5)
    assert post_password(client, "ravi", PASSWORD).status_code == 302
    assert signed_in_as(client) == str(second_reviewer.pk)


def test_one_address_trying_many_usernames_is_locked_out(second_reviewer, settings):
    sprayer, elsewhere = Client(REMOTE_ADDR="203.0.113.8"), Client(REMOTE_ADDR="198.51.100.21")
    statuses = [post_password(sprayer, f"user{n}", "Winter2026!").status_code for n in range(20)]
    assert statuses == [200] * 19 + [429]
    assert post_password(sprayer, "ravi", PASSWORD).status_code == 429
    assert post_password(elsewhere, "ravi", PASSWORD).status_code == 302


def test_a_right_password_clears_the_failures_before_it(client, reviewer):
    fail(client, "rita", 4)
    assert post_password(client, "rita", PASSWORD).status_code == 302
    client.logout()
    assert fail(client, "rita", 4) == [200] * 4


def test_failures_are_recorded_with_address_and_user_agent(reviewer):
    browser = Client(REMOTE_ADDR="192.0.2.44", HTTP_USER_AGENT="Mozilla/5.0 (test)")
    fail(browser, "rita", 2)
    failures = AccessFailureLog.objects.filter(username="rita")
    assert failures.count() == 2
    seen = {(failure.ip_address, failure.user_agent) for failure in failures}
    assert seen == {("192.0.2.44", "Mozilla/5.0 (test)")}
    attempt = AccessAttempt.objects.get(username="rita")
    assert "wrong" not in attempt.post_data  # the password is never stored
    post_password(browser, "rita", PASSWORD)
    assert AccessLog.objects.filter(username="rita", ip_address="192.0.2.44").exists()


@pytest.mark.parametrize("url", [LOGIN, ADMIN_LOGIN])
def test_a_username_longer_than_any_column_is_refused_not_a_server_error(db, client, url):
    # Django's login form does not enforce the username's length on the server; axes stores
    # it in 255-character columns, which PostgreSQL refused with a 500.
    long_name = "<b>" + "x" * 2000
    assert fail(client, long_name, 2, url=url) == [200, 200]
    assert AccessAttempt.objects.get().username == long_name[:255]


def test_behind_a_trusted_proxy_the_forwarded_address_counts(reviewer, settings):
    settings.LOGIN_TRUSTED_PROXIES = 1
    proxy = "10.0.0.1"
    first = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="forged, 203.0.113.9")
    second = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.30")
    fail(first, "rita", 5)
    assert AccessAttempt.objects.get().ip_address == "203.0.113.9"
    assert post_password(second, "rita", PASSWORD).status_code == 302


def test_the_api_and_webhooks_are_never_locked_out(client, reviewer):
    _, key = create_api_key(name="Billing backend", environment="sandbox")
    for n in range(20):
        post_password(client, f"user{n}", "wrong")
    assert post_password(client, "rita", PASSWORD).status_code == 429
    api = client.get("/v1/runs", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.status_code == 200
    refused = client.get("/v1/runs", HTTP_AUTHORIZATION="Bearer rf_wrong")
    assert refused.status_code == 401 and refused.json()["error"]["code"]
    hook = client.post("/hooks/stripe/trg_unknown", b"{}", content_type="application/json")
    assert hook.status_code == 404


def test_the_test_clients_login_and_force_login_still_work(client, reviewer):
    assert client.login(username="rita", password=PASSWORD)
    client.logout()
    client.force_login(reviewer)
    assert client.get(reverse("reviews:queue")).status_code == 200


# --- setting up an authenticator ------------------------------------------------------------
def test_a_reviewer_sets_up_an_authenticator_with_a_real_code(client, reviewer):
    client.force_login(reviewer)
    page = client.get(reverse("account_security")).content.decode()
    assert "Set up an authenticator app" in page
    assert client.post(reverse("account_security_start")).status_code == 302
    device = TOTPDevice.objects.get(user=reviewer, confirmed=False)
    page = client.get(reverse("account_security")).content.decode()
    assert "<svg" in page and 'id="qr-path"' in page
    assert "otpauth://totp/Rapidfolio%20Runs%3Arita?secret=" in page
    response = client.post(reverse("account_security_confirm"), {"code": current_code(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert client.session["otp_device_id"] == device.persistent_id  # this session is verified
    page = client.get(reverse("account_security")).content.decode()
    assert "Remove authenticator" in page and "<svg" not in page


def test_the_qr_code_is_drawn_inline_with_nothing_the_csp_refuses(client, reviewer):
    client.force_login(reviewer)
    client.post(reverse("account_security_start"))
    response = client.get(reverse("account_security"))
    page = response.content.decode()
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert "style=" not in svg and "<script" not in svg and "href" not in svg
    assert "cdn" not in page.lower()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["Cache-Control"].startswith("max-age=0")  # the secret is never cached


def test_a_wrong_first_code_leaves_the_authenticator_off(client, reviewer):
    client.force_login(reviewer)
    client.post(reverse("account_security_start"))
    response = client.post(reverse("account_security_confirm"), {"code": "000000"})
    assert response.status_code == 422
    assert "That code is not right." in response.content.decode()
    assert not TOTPDevice.objects.get(user=reviewer).confirmed


def test_starting_again_replaces_an_unconfirmed_secret(client, reviewer):
    client.force_login(reviewer)
    client.post(reverse("account_security_start"))
    first = TOTPDevice.objects.get(user=reviewer).key
    client.post(reverse("account_security_start"))
    assert list(TOTPDevice.objects.filter(user=reviewer).values_list("key", flat=True)) != [first]
    assert TOTPDevice.objects.filter(user=reviewer).count() == 1


def test_the_security_page_is_offered_to_reviewers_and_admins_only(client, operator, admin_user):
    client.force_login(operator)
    assert client.get(reverse("account_security")).status_code == 403
    assert client.post(reverse("account_security_start")).status_code == 403
    assert not TOTPDevice.objects.exists()
    client.force_login(admin_user)
    assert client.get(reverse("account_security")).status_code == 200


def test_removing_the_authenticator_needs_a_fresh_code(client, reviewer):
    device = authenticator(reviewer)
    sign_in_with_code(client, reviewer, device)
    device.refresh_from_db()
    used = code_at(device, device.last_t)
    remove = reverse("account_security_remove")
    assert client.post(remove, {"code": used}).status_code == 422
    after_the_pause_for_wrong_codes(device)
    assert client.post(remove, {"code": ""}).status_code == 422
    after_the_pause_for_wrong_codes(device)
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert client.post(remove, {"code": fresh_code(device)}).status_code == 302
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()


# --- signing in with an authenticator -------------------------------------------------------
def test_with_an_authenticator_the_password_alone_does_not_sign_in(client, reviewer):
    authenticator(reviewer)
    response = post_password(client, "rita", PASSWORD)
    assert response.status_code == 302 and response.url == reverse("login_code")
    assert signed_in_as(client) is None
    assert client.get(reverse("reviews:queue")).status_code == 302  # to the login page
    page = client.get(reverse("login_code")).content.decode()
    assert "Your password was right." in page and "Code from your authenticator app" in page


def test_the_right_code_signs_in_and_verifies_the_session(client, reviewer):
    device = authenticator(reviewer)
    client.post(LOGIN, {"username": "rita", "password": PASSWORD, "next": "/reviews/"})
    response = client.post(reverse("login_code"), {"code": fresh_code(device)})
    assert response.status_code == 302 and response.url == "/reviews/"
    assert signed_in_as(client) == str(reviewer.pk)
    assert client.session["otp_device_id"] == device.persistent_id
    assert client.get(reverse("reviews:queue")).status_code == 200


def test_a_wrong_code_is_refused_and_the_next_one_waits(client, reviewer, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60  # a minute after one wrong code: never a race here
    device = authenticator(reviewer)
    post_password(client, "rita", PASSWORD)
    wrong = client.post(reverse("login_code"), {"code": "123456"})
    assert wrong.status_code == 200 and "That code is not right." in wrong.content.decode()
    assert signed_in_as(client) is None
    hurried = client.post(reverse("login_code"), {"code": fresh_code(device)})
    assert "Too many wrong codes in a row: wait" in hurried.content.decode()
    assert signed_in_as(client) is None
    after_the_pause_for_wrong_codes(device)
    assert client.post(reverse("login_code"), {"code": fresh_code(device)}).status_code == 302
    assert signed_in_as(client) == str(reviewer.pk)


def test_wrong_codes_count_towards_the_lockout(client, reviewer):
    device = authenticator(reviewer)
    post_password(client, "rita", PASSWORD)
    statuses = []
    for _ in range(5):
        after_the_pause_for_wrong_codes(device)
        statuses.append(client.post(reverse("login_code"), {"code": "000001"}).status_code)
    assert statuses == [200] * 4 + [429]
    assert post_password(client, "rita", PASSWORD).status_code == 429
    assert AccessFailureLog.objects.filter(username="rita").count() == 5


def test_the_code_step_expires(client, reviewer, settings):
    device = authenticator(reviewer)
    settings.LOGIN_CODE_TIMEOUT_SECONDS = -1
    post_password(client, "rita", PASSWORD)
    response = client.post(reverse("login_code"), {"code": fresh_code(device)})
    assert response.status_code == 302 and response.url == reverse("login")
    assert signed_in_as(client) is None


def test_the_code_step_without_a_password_step_goes_back_to_sign_in(client, reviewer):
    authenticator(reviewer)
    response = client.post(reverse("login_code"), {"code": "123456"})
    assert response.status_code == 302 and response.url == reverse("login")


def test_a_password_change_between_the_steps_voids_the_first(client, reviewer):
    device = authenticator(reviewer)
    post_password(client, "rita", PASSWORD)
    reviewer.set_password("another-horse-43")
    reviewer.save()
    response = client.post(reverse("login_code"), {"code": fresh_code(device)})
    assert response.url == reverse("login") and signed_in_as(client) is None


def test_without_an_authenticator_the_password_signs_in_as_before(client, reviewer):
    response = post_password(client, "rita", PASSWORD)
    assert response.status_code == 302 and response.url == reverse("home")
    assert signed_in_as(client) == str(reviewer.pk)


# --- Django admin ---------------------------------------------------------------------------
def test_admin_sign_in_with_an_authenticator_asks_for_the_code(client, admin_user):
    device = authenticator(admin_user)
    response = post_password(client, "ada", PASSWORD, ADMIN_LOGIN + "?next=/admin/")
    assert response.status_code == 302 and response.url == reverse("login_code")
    assert client.get("/admin/").status_code == 302
    response = client.post(reverse("login_code"), {"code": fresh_code(device)})
    assert response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_staff_with_an_authenticator_need_a_verified_session_for_the_admin(client, admin_user):
    device = authenticator(admin_user)
    client.force_login(admin_user)  # a session that never entered a code
    response = client.get("/admin/")
    assert response.status_code == 302 and response.url.startswith(ADMIN_LOGIN)
    to_code = client.get(response.url)
    assert to_code.status_code == 302 and to_code.url == reverse("login_code") + "?next=%2Fadmin%2F"
    verified = client.post(reverse("login_code"), {"code": fresh_code(device), "next": "/admin/"})
    assert verified.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_staff_without_an_authenticator_use_the_admin_with_their_password(client, admin_user):
    response = post_password(client, "ada", PASSWORD, ADMIN_LOGIN + "?next=/admin/")
    assert response.status_code == 302 and response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_admins_never_see_an_authenticator_secret(client, admin_user, reviewer):
    device = authenticator(reviewer)
    client.force_login(admin_user)
    page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert device.key not in page
    assert "qrcode" not in client.get("/admin/otp_totp/totpdevice/").content.decode()


# --- live approvals -------------------------------------------------------------------------
@pytest.fixture
def live_reviewer(db):
    return make_user("lars", REVIEWERS, LIVE_ENVIRONMENT)


@pytest.fixture
def live_review(db, live_operator):
    version = make_version(PAYMENT_WITH_REVIEW, name="Pay invoice")
    run = start(version, live_operator, INPUTS, environment="live")
    return ReviewRequest.objects.get(run=run)


@pytest.fixture
def two_factor_for_live_approvals(db):
    LiveApprovalPolicy.objects.update_or_create(pk=1, defaults={"require_otp": True})


def run_page(client, review):
    return client.get(reverse("runs:detail", args=[review.run.public_id])).content.decode()


@pytest.mark.usefixtures("two_factor_for_live_approvals")
@pytest.mark.parametrize("action", ["reviews:approve", "reviews:reject"])
def test_a_live_decision_from_an_unverified_session_is_refused(
    client, live_reviewer, live_review, action
):
    authenticator(live_reviewer)
    client.force_login(live_reviewer)
    assert "Decisions on live runs need a session verified" in run_page(client, live_review)
    response = client.post(
        reverse(action, args=[live_review.public_id]), {"override_amount": "700000"}
    )
    assert response.status_code == 403
    form_error = re.search(r'class="form-error" role="alert">([^<]*)<', response.content.decode())
    assert "Decisions on live runs need a session verified" in form_error.group(1)
    assert not ReviewDecision.objects.filter(request=live_review).exists()


@pytest.mark.usefixtures("two_factor_for_live_approvals")
def test_a_reviewer_without_an_authenticator_is_told_to_set_one_up(
    client, live_reviewer, live_review
):
    client.force_login(live_reviewer)
    assert "set up an authenticator app on your Security page" in run_page(client, live_review)


@pytest.mark.usefixtures("two_factor_for_live_approvals")
def test_a_live_decision_from_a_verified_session_is_recorded(client, live_reviewer, live_review):
    device = authenticator(live_reviewer)
    sign_in_with_code(client, live_reviewer, device)
    assert "need a session verified" not in run_page(client, live_review)
    # A rejection needs a reason and a confirmation (issue 13): `decide` clicks through both.
    response = decide(client, live_review, "reject", {"reject-reason": "Wrong payee"})
    assert response.status_code == 302
    assert ReviewDecision.objects.get(request=live_review).decision == "rejected"


@pytest.mark.usefixtures("two_factor_for_live_approvals")
def test_sandbox_decisions_never_need_a_code(client, reviewer, operator):
    run = start(make_version(PAYMENT_WITH_REVIEW, name="Pay invoice"), operator, INPUTS)
    review = ReviewRequest.objects.get(run=run)
    client.force_login(reviewer)
    response = decide(client, review, "reject", {"reject-reason": "No"})
    assert response.status_code == 302
    assert ReviewDecision.objects.filter(request=review).exists()


def test_without_the_policy_live_decisions_need_no_code(client, live_reviewer, live_review):
    client.force_login(live_reviewer)
    assert "need a session verified" not in run_page(client, live_review)
    response = decide(client, live_review, "reject", {"reject-reason": "Wrong payee"})
    assert response.status_code == 302


def test_the_deployment_setting_forces_the_policy_on(client, live_reviewer, live_review, settings):
    settings.REQUIRE_OTP_FOR_LIVE_APPROVALS = True
    client.force_login(live_reviewer)
    response = client.post(reverse("reviews:reject", args=[live_review.public_id]))
    assert response.status_code == 403
    assert not ReviewDecision.objects.filter(request=live_review).exists()


def test_an_admin_switches_the_policy_on_in_django_admin(client, admin_user):
    client.force_login(admin_user)
    LiveApprovalPolicy.objects.get_or_create(pk=1)  # migrate's row (a flush may have taken it)
    url = "/admin/reviews/liveapprovalpolicy/1/change/"
    assert client.get(url).status_code == 200
    assert client.post(url, {"require_otp": "on"}).status_code == 302
    assert LiveApprovalPolicy.current().require_otp
    assert client.get("/admin/reviews/liveapprovalpolicy/1/delete/").status_code == 403
