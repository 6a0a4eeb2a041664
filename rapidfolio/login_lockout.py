"""Sign-in lockout: django-axes, configured for a product whose logins approve payments.

The policy (settings.AXES_*, README "Sign-in security"):
- failures count per username *and* address: five wrong passwords for `rita` from one address
  lock that pair for 15 minutes. Someone guessing at `rita` from elsewhere cannot lock her out
  of her own desk, and she is told the same thing whether or not `rita` exists;
- a wider limit counts every username tried from one address (LOGIN_ADDRESS_FAILURE_LIMIT), so
  one address cannot spray a few passwords at each of many users;
- wrong authenticator codes count as failed sign-ins too (record_failed_code);
- admins unlock in Django admin (Axes › Access attempts: delete the row) or with
  `manage.py axes_reset_username NAME`; every failure stays in Access failures with its
  address and user agent.

Only the dashboard's and the admin's sign-in pages authenticate with a password; the API and
the webhooks authenticate by key or signature and never reach axes.
"""

from datetime import datetime

from axes.attempts import get_cool_off_threshold
from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.db.models import Max, Sum
from django.shortcuts import render
from django.utils import timezone


class LockoutBackend(AxesStandaloneBackend):
    """Axes' check before any password is compared, for sign-ins that come over HTTP.

    Every sign-in page passes its request to `authenticate`. A call without one is our own code
    or Django's test client (`client.login`): there is no client address to count failures
    against, so there is nothing to throttle, and the next backend decides as usual.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LoginLockoutHandler(AxesDatabaseHandler):
    """Axes' database handler plus a second limit: failures from one address, any username."""

    def is_locked(self, request, credentials=None) -> bool:
        return super().is_locked(request, credentials) or address_is_locked(request)

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or request.axes_locked_out or not address_is_locked(request):
            return
        # This failure reached the address's limit: answer it with the locked-out page already.
        request.axes_locked_out = True
        request.axes_credentials = credentials
        user_locked_out.send(
            "axes",
            request=request,
            username=get_client_username(request, credentials),
            ip_address=request.axes_ip_address,
        )


def _failures(request, **scope) -> int:
    """Failures within the cool-off time, of the attempts matching `scope`."""
    threshold = get_cool_off_threshold(request)
    attempts = AccessAttempt.objects.filter(attempt_time__gte=threshold, **scope)
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


def address_is_locked(request) -> bool:
    failures = _failures(request, ip_address=request.axes_ip_address)
    return failures >= settings.LOGIN_ADDRESS_FAILURE_LIMIT


def unlocks_at(request, username: str | None) -> datetime:
    """When the lockout that refused this request ends (at the latest).

    An attempt counts for the cool-off time after the last failure it recorded, so the pair's
    (or, when the whole address is locked, the address's) latest failure plus the cool-off is a
    time by which the lock has certainly lifted.
    """
    pair = {"ip_address": request.axes_ip_address, "username": username}
    if _failures(request, **pair) < settings.AXES_FAILURE_LIMIT:
        pair.pop("username")  # the address's own limit refused it
    threshold = get_cool_off_threshold(request)
    latest = AccessAttempt.objects.filter(attempt_time__gte=threshold, **pair).aggregate(
        latest=Max("attempt_time")
    )["latest"]
    return (latest or timezone.now()) + get_cool_off(request)


def lockout_response(request, original_response=None, credentials=None):
    """The locked-out page (HTTP 429): the same for every username, existing or not."""
    username = get_client_username(request, credentials)
    retry_at = unlocks_at(request, username)
    seconds = max(1, int((retry_at - timezone.now()).total_seconds()))
    context = {"retry_at": retry_at, "retry_minutes": -(-seconds // 60)}
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


def sign_in_allowed(request, username: str) -> bool:
    """False while this username and address (or the address) is locked out."""
    return AxesProxyHandler.is_allowed(request, {"username": username})


def record_failed_code(request, username: str) -> bool:
    """Count a wrong authenticator code as a failed sign-in; True if it locked the pair out.

    Through Django's own signal, so axes records it exactly as a wrong password: in Access
    attempts and Access failures, with the address and user agent.
    """
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
    return bool(getattr(request, "axes_locked_out", False))


def client_ip(request) -> str | None:
    """The client's address: the connection's, or behind LOGIN_TRUSTED_PROXIES proxies the
    one the outermost of them saw (X-Forwarded-For entries left of it are the client's to
    forge)."""
    proxies = settings.LOGIN_TRUSTED_PROXIES
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


# Axes keeps the username in 255-character columns; a longer one (anyone may type it) would be
# a database error on PostgreSQL. No account has one (User.username is at most 150), so the
# first 255 characters name the same nobody and still count towards the address's limit.
AXES_USERNAME_CHARS = 255


def client_username(request, credentials=None) -> str:
    """The username a sign-in attempt named, as axes records and locks it."""
    username = credentials.get("username") if credentials else request.POST.get("username")
    return str(username or "")[:AXES_USERNAME_CHARS]
