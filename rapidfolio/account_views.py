"""Signing in (password, then an authenticator code when the user has one) and the Security
page where reviewers and admins set up or remove two-factor sign-in.

The password step is Django's LoginView behind axes (rapidfolio/login_lockout.py). For a user
with a confirmed authenticator it does not log in: it remembers, in the still-anonymous session
and for LOGIN_CODE_TIMEOUT_SECONDS, who gave the right password, and asks for the code. Only a
right code logs the session in, verified. A wrong code counts as a failed sign-in.

The Time zone page sets the zone every page shows times in (rapidfolio/time_zones.py).
"""

import time
from base64 import b32encode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render, resolve_url
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timezone import now
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from rapidfolio import login_lockout, two_factor
from rapidfolio.forms import FocusFirstError
from rapidfolio.time_zones import default_time_zone, set_time_zone, time_zone_choices, time_zone_of
from rapidfolio.views import forbidden

PENDING_SIGN_IN = "rapidfolio_pending_sign_in"


class CodeForm(FocusFirstError, forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=12,
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "autofocus": True}
        ),
    )


# --- signing in -----------------------------------------------------------------------------
class SignInView(LoginView):
    """The password step, for the dashboard's page and (with its form and template) the admin's."""

    def form_valid(self, form):
        user = form.get_user()
        if two_factor.confirmed_device(user) is None:
            return super().form_valid(form)
        self.request.session[PENDING_SIGN_IN] = {
            "user": user.pk,
            "backend": user.backend,
            # A password change between the two steps voids the first.
            "auth_hash": user.get_session_auth_hash(),
            "next": self.get_success_url(),
            "expires": time.time() + settings.LOGIN_CODE_TIMEOUT_SECONDS,
        }
        self.request.session.cycle_key()  # a right password: never under a key set before it
        return redirect("login_code")


def _pending_sign_in(request):
    """(user, next URL) of a password step awaiting its code, or (None, "") if none is valid."""
    pending = request.session.get(PENDING_SIGN_IN) or {}
    if not pending or pending.get("expires", 0) < time.time():
        return None, ""
    user = get_user_model().objects.filter(pk=pending["user"], is_active=True).first()
    if user is None or not constant_time_compare(
        user.get_session_auth_hash(), pending["auth_hash"]
    ):
        return None, ""
    user.backend = pending["backend"]
    return user, pending["next"]


def _next_url(request) -> str:
    url = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(url, {request.get_host()}, request.is_secure()):
        return url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _code_step_user(request):
    """(user, next URL, pending) for the code: a password step waiting for it, or a logged-in
    user whose session has not entered one (it began before they set up their authenticator)."""
    if request.session.get(PENDING_SIGN_IN):
        return (*_pending_sign_in(request), True)
    if request.user.is_authenticated and not two_factor.session_is_verified(request.user):
        return request.user, _next_url(request), False
    return None, "", False


@sensitive_post_parameters("code")
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in_code(request):
    user, next_url, pending = _code_step_user(request)
    device = two_factor.confirmed_device(user) if user is not None else None
    if device is None:
        request.session.pop(PENDING_SIGN_IN, None)
        if request.user.is_authenticated:
            return redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))
        messages.info(request, "Sign in with your username and password.")
        return redirect("login")
    form = CodeForm(request.POST) if request.method == "POST" else CodeForm()
    if form.is_valid():
        username = user.get_username()
        if not login_lockout.sign_in_allowed(request, username):
            request.session.pop(PENDING_SIGN_IN, None)
            return login_lockout.lockout_response(request, None, {"username": username})
        try:
            two_factor.check_code(device, form.cleaned_data["code"])
        except two_factor.CodeThrottled as exc:
            form.add_error("code", str(exc))  # not checked, so not counted as a failure
        except two_factor.CodeRefused as exc:
            if login_lockout.record_failed_code(request, username):
                request.session.pop(PENDING_SIGN_IN, None)  # the middleware shows the lockout
            form.add_error("code", str(exc))
        else:
            return _finish_sign_in(request, user, device, next_url, pending=pending)
    context = {"form": form, "next": next_url, "pending": pending}
    return render(request, "registration/login_code.html", context)


def _finish_sign_in(request, user, device, next_url: str, *, pending: bool):
    request.session.pop(PENDING_SIGN_IN, None)
    if pending:
        auth_login(request, user, backend=user.backend)
    two_factor.verify_session(request, device)
    return redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))


# --- the Security page ----------------------------------------------------------------------
NOT_OFFERED = "Two-factor sign-in is offered to reviewers and admins."


def _security_page(request, *, form=None, status=200):
    user = request.user
    device = two_factor.confirmed_device(user)
    pending = None if device else two_factor.pending_device(user)
    context = {
        "nav": "security",
        "device": device,
        "pending": pending,
        "verified": two_factor.session_is_verified(user),
        "form": form or CodeForm(),
    }
    if pending is not None:
        secret = b32encode(pending.bin_key).decode()
        context.update(
            qr_svg=two_factor.qr_code_svg(pending.config_url),
            otpauth_url=pending.config_url,
            secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        )
    return render(request, "account/security.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET"])
def security(request):
    if not two_factor.may_enrol(request.user):
        return forbidden(request, NOT_OFFERED)
    return _security_page(request)


@login_required
@require_POST
def security_start(request):
    if not two_factor.may_enrol(request.user):
        return forbidden(request, NOT_OFFERED)
    try:
        two_factor.start_enrolment(request.user)
    except two_factor.CodeRefused as exc:
        messages.error(request, str(exc))
    return redirect("account_security")


@sensitive_post_parameters("code")
@never_cache
@login_required
@require_POST
def security_confirm(request):
    pending = two_factor.pending_device(request.user)
    if pending is None or not two_factor.may_enrol(request.user):
        messages.error(request, "Start the set-up again: there is no authenticator to confirm.")
        return redirect("account_security")
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            two_factor.confirm_enrolment(request, pending, form.cleaned_data["code"])
        except two_factor.CodeRefused as exc:
            form.add_error("code", str(exc))
        else:
            messages.success(
                request,
                "Two-factor sign-in is on: you will be asked for a code after your password.",
            )
            return redirect("account_security")
    return _security_page(request, form=form, status=422)


@login_required
@require_POST
def security_cancel(request):
    two_factor.cancel_enrolment(request.user)
    return redirect("account_security")


@sensitive_post_parameters("code")
@login_required
@require_POST
def security_remove(request):
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            two_factor.remove_device(request.user, form.cleaned_data["code"])
        except two_factor.CodeRefused as exc:
            form.add_error("code", str(exc))
        else:
            messages.success(
                request, "Two-factor sign-in is off: your password alone signs you in."
            )
            return redirect("account_security")
    return _security_page(request, form=form, status=422)


# --- the Time zone page ---------------------------------------------------------------------
class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        help_text="Times on every page are shown in this zone; the API always uses UTC.",
        error_messages={
            "invalid_choice": "“%(value)s” is not a time zone we know: pick one from the list, "
            "such as Europe/Paris.",
        },
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(name, name) for name in time_zone_choices()]


@login_required
@require_http_methods(["GET", "POST"])
def time_zone(request):
    if request.method == "POST":
        form = TimeZoneForm(request.POST)
    else:
        form = TimeZoneForm(initial={"time_zone": time_zone_of(request.user)})
    if form.is_valid():
        chosen = form.cleaned_data["time_zone"]
        set_time_zone(user=request.user, time_zone=chosen)
        messages.success(request, f"Times are now shown in {chosen}.")
        return redirect("account_time_zone")
    context = {
        "nav": "time_zone",
        "form": form,
        "default": default_time_zone(),
        "now_moment": now(),
    }
    return render(request, "account/time_zone.html", context, status=422 if form.is_bound else 200)
