"""The admin site: signed in through the same two steps as the dashboard, and closed to a
staff member who has an authenticator until their session has entered a code.

A staff member without an authenticator keeps the admin with their password, as before (the
Security page offers them one); django-otp's own OTPAdminSite would shut them out instead.
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _

from rapidfolio import two_factor
from rapidfolio.account_views import SignInView


class AdminSite(admin.AdminSite):
    def has_permission(self, request):
        return super().has_permission(request) and not needs_code(request.user)

    def login(self, request, extra_context=None):
        """Django's AdminSite.login, with the two-step SignInView instead of LoginView."""
        redirect_url = SignInView().get_redirect_url(request) or reverse(
            "admin:index", current_app=self.name
        )
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(redirect_url)
        if request.method == "GET" and request.user.is_active and request.user.is_staff:
            # Signed in with a password in a session that began before their authenticator:
            # the code, not the password again.
            query = urlencode({REDIRECT_FIELD_NAME: redirect_url})
            return HttpResponseRedirect(f"{reverse('login_code')}?{query}")
        context = {
            **self.each_context(request),
            "title": _("Log in"),
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
            REDIRECT_FIELD_NAME: redirect_url,
            **(extra_context or {}),
        }
        request.current_app = self.name
        return SignInView.as_view(
            extra_context=context,
            authentication_form=self.login_form or AdminAuthenticationForm,
            template_name=self.login_template or "admin/login.html",
        )(request)


def needs_code(user) -> bool:
    """A signed-in user with an authenticator whose session has not entered a code."""
    if two_factor.session_is_verified(user):
        return False
    return two_factor.confirmed_device(user) is not None
