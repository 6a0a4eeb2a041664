"""Two-factor sign-in in Chromium: a reviewer sets up an authenticator from the QR code's page,
signs out, and signs back in with the password and then a code; a locked-out browser sees when
to try again. The codes are computed from the device's key, as the authenticator app would."""

import re

from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD
from tests.test_login_security import current_code, fresh_code


def test_a_reviewer_sets_up_two_factor_and_signs_in_with_a_code(
    browser, live_server, open_session, screenshot, reviewer
):
    page = open_session(reviewer)
    refused = []  # anything the CSP blocks is a console error
    page.on("console", lambda m: m.type == "error" and refused.append(m.text))
    page.get_by_role("link", name="Security").click()
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.get_by_label("QR code of your authenticator secret")).to_be_visible()
    expect(page.get_by_text("otpauth://totp/")).to_be_visible()
    screenshot(page, "qr-code")
    device = TOTPDevice.objects.get(user=reviewer)
    page.get_by_label("Code from your authenticator app").fill(current_code(device))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_text("Two-factor sign-in is on")).to_be_visible()
    assert refused == []

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/login/code/$"))
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("That code is not right.")).to_be_visible()
    screenshot(page, "wrong-code")
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    page.get_by_label("Code from your authenticator app").fill(fresh_code(device))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("link", name="Security")).to_be_visible()
    expect(page).to_have_url(f"{live_server.url}/")


def test_a_locked_out_browser_is_told_when_to_try_again(browser, live_server, screenshot, reviewer):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.goto("/login/")
    for _ in range(5):
        page.get_by_label("Username").fill("rita")
        page.get_by_label("Password").fill("not-her-password")
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()
    expect(page.get_by_text("You can try again after")).to_be_visible()
    screenshot(page, "locked-out")
    context.close()
