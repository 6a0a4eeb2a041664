from runs.errors import RunError


class ReviewError(RunError):
    code = "review_error"


class ReviewAlreadyDecided(ReviewError):
    code = "review_already_decided"


class ReviewNotAllowed(ReviewError):
    code = "review_not_allowed"
    status_code = 403


class InvalidDecision(ReviewError):
    """A decision the reviewer must complete or correct: `details` is [{field, message}] for
    the fields of the form (an override, the comment, the reason)."""

    code = "invalid_decision"
    status_code = 422


class StaleReview(ReviewError):
    """The review changed after the page the decision was taken on was shown."""

    code = "review_changed"


class ReviewExpired(ReviewError):
    """The deadline passed: the system decides, by the node's on_timeout."""

    code = "review_expired"


class InvalidOverrides(InvalidDecision):
    """Overrides outside the field's schema or policy, or of a field that is not overridable."""

    code = "invalid_overrides"
