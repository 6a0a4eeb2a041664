"""Whether deciding a run needs a session verified by an authenticator code.

Off by default. An admin turns it on in Django admin (Reviews › Live approval policy: no deploy,
and the admin's history shows who did), or a deployment forces it on with
REQUIRE_OTP_FOR_LIVE_APPROVALS=1. It concerns live runs only: sandbox decisions move no money.

"Verified" is django-otp's: this request's session entered a code from the reviewer's
authenticator when signing in (or later, on the code page). The decision path calls
`require_verified_for` under the run's lock (reviews.services._decide); the review panel shows
`verification_refusal` before anyone submits.
"""

from django.conf import settings

from procedures.models import Environment
from rapidfolio.two_factor import confirmed_device, session_is_verified
from reviews.errors import ReviewError
from reviews.models import LiveApprovalPolicy


class VerificationRequired(ReviewError):
    code = "verification_required"
    status_code = 403


def otp_required_for_live_approvals() -> bool:
    return settings.REQUIRE_OTP_FOR_LIVE_APPROVALS or LiveApprovalPolicy.current().require_otp


def verification_refusal(run, user) -> str | None:
    """Why `user`, in this request's session, may not decide `run` yet; None when they may."""
    if run.environment != Environment.LIVE or session_is_verified(user):
        return None
    if not otp_required_for_live_approvals():
        return None
    if confirmed_device(user) is None:
        return (
            "Decisions on live runs need two-factor sign-in: set up an authenticator app on "
            "your Security page, then decide."
        )
    return (
        "Decisions on live runs need a session verified with your authenticator: enter a "
        "code (Security page), then decide."
    )


def require_verified_for(run, user) -> None:
    """Raise VerificationRequired unless `user` may decide `run` in this session.

    `user` is the request's user: django-otp's middleware marks on it whether the session
    entered a code, so any other user object counts as unverified (refused, never let through).
    """
    reason = verification_refusal(run, user)
    if reason:
        raise VerificationRequired(reason)
