"""What a log line says besides its message, and how lines are written (docs/deploy.md, "Logs").

Every line carries the unit of work it belongs to: the request (its id, who made it) or the
Dramatiq message (actor, message id), and the run and procedure when the work concerns a run.
Code opens a scope with `bind()` (or joins the open one with `scope()`) and adds to it with
`add()`; ContextFilter copies the scope's fields onto every record, so a line logged deep in
the engine, or by a library (httpx, Dramatiq), carries them without being passed anything.

Lines are JSON, one object per line (python-json-logger), where logs are collected, or plain
text with the fields appended on `make run`: `log_format` is the rule, shared by the settings
and gunicorn's configuration (rapidfolio/gunicorn_conf.py), whose master process has no
Django settings.

It imports no app, and nothing of Django's beyond its exceptions: gunicorn's master imports it.
"""

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import dramatiq
from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FORMATS = ("json", "plain")
# The same words settings.env_flag reads as on.
_ON = frozenset({"1", "true", "yes", "on"})

_fields: ContextVar[dict[str, Any] | None] = ContextVar("rapidfolio_log_fields", default=None)


# --- the scope ----------------------------------------------------------------------------
@contextmanager
def bind(**fields) -> Iterator[None]:
    """A scope for the with block: the enclosing scope's fields, these, and whatever add()
    adds inside it; all gone when the block ends."""
    token = _fields.set({**(_fields.get() or {}), **_present(fields)})
    try:
        yield
    finally:
        _fields.reset(token)


@contextmanager
def scope() -> Iterator[None]:
    """The open scope (a request's, a Dramatiq message's), so that what add() adds stays on its
    lines until it ends: the worker's own line about a message that failed among them. When
    none is open, a new one for the with block."""
    if _fields.get() is not None:
        yield
        return
    with bind():
        yield


def add(**fields) -> None:
    """Add fields to the innermost open scope; outside any scope, nothing."""
    current = _fields.get()
    if current is not None:
        current.update(_present(fields))


def current() -> dict[str, Any]:
    return dict(_fields.get() or {})


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None and value != ""}


class MessageContext(dramatiq.Middleware):
    """Each message's lines carry its actor and id, and what the actor adds (the run and the
    procedure). The scope opens before the actor runs and closes only after the worker has
    logged how the message ended, so a failure's traceback line carries them too: this is first
    in DRAMATIQ_MIDDLEWARE, and Dramatiq calls the after-hooks in reverse order. A worker
    thread handles one message at a time, so the scope is simply that thread's."""

    def before_process_message(self, broker, message):
        _fields.set({"actor": message.actor_name, "message_id": message.message_id})

    def after_process_message(self, broker, message, *, result=None, exception=None):
        _fields.set(None)

    def after_skip_message(self, broker, message):
        _fields.set(None)


# --- what Django logs about a request while it is answered ------------------------------------
@dataclass
class DjangoReport:
    detail: str = ""
    exc_info: Any = None


_report: ContextVar[DjangoReport | None] = ContextVar("rapidfolio_django_report", default=None)


@contextmanager
def collect_django_reports() -> Iterator[DjangoReport]:
    """While the block runs, Django's own lines about the request (django.request's "Not
    Found: /x" or a 500's traceback, django.security's CSRF and bad-Host refusals) are not
    written: OneLinePerRequest keeps their text and the 5xx traceback here, for the request's
    one line (rapidfolio.request_log)."""
    report = DjangoReport()
    token = _report.set(report)
    try:
        yield report
    finally:
        _report.reset(token)


# django.core.servers.basehttp.WSGIRequestHandler.log_request's format: `make run`'s server
# logs each request it served; rapidfolio.request_log has logged it already.
DEV_SERVER_ACCESS_LINE = '"%s" %s %s'


class OneLinePerRequest(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "django.server":
            return record.msg != DEV_SERVER_ACCESS_LINE
        if record.name == "django.request" or record.name.startswith("django.security."):
            report = _report.get()
            if report is not None:
                report.detail = record.getMessage()
                if getattr(record, "status_code", 0) >= 500 and record.exc_info:
                    report.exc_info = record.exc_info
                return False
        return True


class ContextFilter(logging.Filter):
    """Put the scope's fields on the record (a record's own attributes win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields.get()
        if fields:
            for key, value in fields.items():
                record.__dict__.setdefault(key, value)
            record._context_fields = dict(fields)  # for PlainFormatter; JSON skips "_" names
        return True


# --- how lines are written --------------------------------------------------------------------
class PlainFormatter(logging.Formatter):
    """`2026-12-01 15:11:05,294 INFO rapidfolio.request: GET /runs/ 200 12ms request_id=…`"""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, "_context_fields", None)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={value}" for key, value in fields.items())


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the scope's
    fields and the record's extra ones, and the traceback as `exc_info`."""

    def __init__(self):
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            # Django puts the request (or the dev server's socket) on its records: not data.
            reserved_attrs=[*RESERVED_ATTRS, "request", "server_time"],
        )


def log_format(environ: Mapping[str, str]) -> str:
    """LOG_FORMAT when set. Otherwise json, except on the embedded default (no REDIS_URL: one
    process serving, working and scheduling, which is `make run`) and with DEBUG on: plain."""
    chosen = environ.get("LOG_FORMAT", "").strip().lower()
    if chosen:
        if chosen not in FORMATS:
            raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {chosen!r}.")
        return chosen
    debug = environ.get("DEBUG", "").strip().lower() in _ON
    return "plain" if debug or not environ.get("REDIS_URL") else "json"


def logging_config(*, log_format: str, level: str) -> dict:
    """The dictConfig of every process: one handler (stderr), so each line is written once,
    in one format, whoever logs it."""
    quiet_own_handlers = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "one_line_per_request": {"()": "rapidfolio.log_context.OneLinePerRequest"},
            "context": {"()": "rapidfolio.log_context.ContextFilter"},
        },
        "formatters": {
            "plain": {"()": "rapidfolio.log_context.PlainFormatter"},
            "json": {"()": "rapidfolio.log_context.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["one_line_per_request", "context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's defaults give these handlers of their own (its console handler when
            # DEBUG is on, mail_admins, the dev server's): theirs would write a second line.
            "django": {**quiet_own_handlers, "level": "INFO"},
            "django.server": {**quiet_own_handlers, "level": "INFO"},
            "django.db.backends": {"level": "INFO"},
            # gunicorn's own lines (master and workers) through the same handler.
            "gunicorn.error": {**quiet_own_handlers, "level": "INFO"},
        },
    }
