from runs.errors import RunError


class ReviewError(RunError):
    code = "review_error"


class ReviewAlreadyDecided(ReviewError):
    code = "review_already_decided"


class ReviewNotAllowed(ReviewError):
    code = "review_not_allowed"
    status_code = 403


class InvalidOverrides(ReviewError):
    code = "invalid_overrides"
    status_code = 422
