"""Domain errors raised by services and the lifecycle, turned into messages or 4xx at the edge."""


class RunError(Exception):
    """A refused action on a run. `code` is stable for the API; the message is for people."""

    code = "run_error"
    status_code = 409

    def __init__(self, message: str, *, details=None):
        super().__init__(message)
        self.message = message
        self.details = details


class IllegalTransition(RunError):
    code = "illegal_transition"


class InputValidationError(RunError):
    """Inputs that fail the version's JSON Schema; `details` lists every failing field."""

    code = "invalid_inputs"
    status_code = 422


class RetryNotAllowed(RunError):
    code = "retry_not_allowed"


class CancelNotAllowed(RunError):
    code = "cancel_not_allowed"


class PermissionDenied(RunError):
    code = "permission_denied"
    status_code = 403
