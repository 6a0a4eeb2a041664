"""Two-factor sign-in with an authenticator app (django-otp's TOTP devices).

A reviewer or admin enrols one authenticator: an unconfirmed device is created, its secret is
shown once as a QR code and an otpauth:// link, and the first code confirms it. From then on
the password is only the first step of signing in: the session is logged in, and verified,
only once a code is entered (rapidfolio/account_views.py). Removing the authenticator takes
a fresh code, so a borrowed session alone cannot turn two-factor off.

django-otp keeps each code single-use (a device refuses a time step at or before the last one it
accepted) and slows down guessing (each wrong code doubles the wait before the next is checked).
"""

from django.db import transaction
from django.utils import timezone
from django.utils.safestring import mark_safe
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice
from qrcode import QRCode
from qrcode.image.svg import SvgPathFillImage

DEVICE_NAME = "Authenticator app"
# Who is offered two-factor: admins, and whoever may decide reviews (reviews' permission,
# named here as a string because this package imports no app).
REVIEW_PERMISSION = "reviews.decide_review"


class CodeRefused(Exception):
    """The code did not verify; the message says why, for the form."""


class CodeThrottled(CodeRefused):
    """Too soon after wrong codes: this one was not even checked."""


def may_enrol(user) -> bool:
    return user.is_authenticated and (user.is_staff or user.has_perm(REVIEW_PERMISSION))


def confirmed_device(user) -> TOTPDevice | None:
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).first()


def pending_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.devices_for_user(user, confirmed=False).first()


def session_is_verified(user) -> bool:
    """True when this request's session entered a code (django-otp's OTPMiddleware says so on
    the request's user; any other user object counts as not verified)."""
    is_verified = getattr(user, "is_verified", None)
    return bool(is_verified and is_verified())


def start_enrolment(user) -> TOTPDevice:
    """A new, unconfirmed authenticator with a fresh secret (replacing an unconfirmed one)."""
    if confirmed_device(user) is not None:
        raise CodeRefused("You already have an authenticator; remove it first to set up another.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def cancel_enrolment(user) -> None:
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()


def check_code(device: TOTPDevice, code: str) -> None:
    """Verify `code` on `device`, or raise CodeRefused saying why.

    The device's row is locked, so one code cannot be spent twice at once; the wrong-code count
    it keeps for throttling is committed before the refusal is raised."""
    code = (code or "").strip().replace(" ", "")
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, throttle = device.verify_is_allowed()
        verified = allowed and device.verify_token(code)
    if not allowed:
        wait = (throttle or {}).get("locked_until")
        seconds = max(1, int((wait - timezone.now()).total_seconds()) + 1) if wait else 1
        raise CodeThrottled(
            f"Too many wrong codes in a row: wait {seconds} seconds, then enter the newest code."
        )
    if not verified:
        raise CodeRefused(
            "That code is not right. Enter the 6-digit code your authenticator app shows now."
        )


def confirm_enrolment(request, device: TOTPDevice, code: str) -> TOTPDevice:
    """The first code turns the authenticator on, and verifies this session with it."""
    check_code(device, code)
    device.refresh_from_db()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    verify_session(request, device)
    return device


def remove_device(user, code: str) -> None:
    device = confirmed_device(user)
    if device is None:
        raise CodeRefused("You have no authenticator to remove.")
    check_code(device, code)
    device.delete()


def verify_session(request, device: TOTPDevice) -> None:
    """Mark the logged-in session as verified by `device` (after check_code accepted it), under
    a new session key: the more a session may do, the less an old key may."""
    request.session.cycle_key()
    otp_login(request, device)


def qr_code_svg(url: str) -> str:
    """The otpauth:// URL as an inline SVG QR code: drawn here, no request leaves the page,
    and the SVG carries only presentation attributes (the CSP forbids inline styles).

    Safe to mark: qrcode writes the markup itself; the URL is only encoded into the path."""
    qr = QRCode(box_size=8, border=2, image_factory=SvgPathFillImage)
    qr.add_data(url)
    qr.make(fit=True)
    svg = qr.make_image().to_string(encoding="unicode")
    return mark_safe(svg)
