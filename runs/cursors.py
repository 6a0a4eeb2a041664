"""The Runs list's page cursor: where the next page starts, signed so that it cannot be forged.

A cursor names the last run of a page by its creation time and public id, never by the internal
integer id, and is signed (django.core.signing, so SECRET_KEY and its fallbacks) under a salt
made of who pages (the dashboard or the API) and the filters it was made for. A cursor edited by
hand, signed by another installation, or carried over to other filters or from the dashboard to
the API fails its signature and is refused with InvalidCursor: the reader is told to start
again, never shown some other page.
"""

import datetime

from django.core import signing

SALT = "rapidfolio.runs.list.cursor"
INVALID = "The page cursor is not valid for this list; start again from the first page."


class InvalidCursor(ValueError):
    pass


def filter_scope(cleaned_filters: dict) -> str:
    """The filters a cursor belongs to, one canonical string: empty filters are left out,
    several statuses are sorted, a procedure is its public id."""
    parts = []
    for name in sorted(cleaned_filters):
        value = cleaned_filters[name]
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(sorted(str(item) for item in value))
        else:
            value = getattr(value, "public_id", value)
        parts.append(f"{name}={value}")
    return "&".join(parts)


def _signer(kind: str, scope: str) -> signing.Signer:
    return signing.Signer(salt=f"{SALT}:{kind}:{scope}")


def encode_cursor(run, *, kind: str = "dashboard", scope: str = "") -> str:
    """The cursor of the page after `run`, for lists of `kind` with the filters `scope`."""
    return _signer(kind, scope).sign_object([run.created_at.isoformat(), run.public_id])


def decode_cursor(
    cursor: str, *, kind: str = "dashboard", scope: str = ""
) -> tuple[datetime.datetime, str]:
    """The (created_at, public id) of the run a cursor continues after; InvalidCursor for a
    cursor that this installation did not sign for this kind of list and these filters."""
    try:
        created_at, public_id = _signer(kind, scope).unsign_object(cursor)
        moment = datetime.datetime.fromisoformat(created_at)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise InvalidCursor(INVALID) from exc
    if moment.tzinfo is None or not isinstance(public_id, str):
        raise InvalidCursor(INVALID)
    return moment, public_id
