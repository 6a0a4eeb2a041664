"""Two middleware stacks in one application: the dashboard's, and a lean one for the HTTP API.

A start-run POST authenticates with an API key. It has no session, no CSRF token, no signed-in
user, no second factor, no flash messages, no HTMX and no sign-in to lock out, yet the
dashboard's stack would still run all of those middlewares on it: about a seventh of the
API's CPU per request (docs/benchmarks.md, seventh round). Django reads one MIDDLEWARE list
per handler, and a middleware cannot skip the ones below it without losing their view hooks
(CSRF is checked in `process_view`), so the API gets a handler of its own, built from
settings.API_MIDDLEWARE, and the WSGI application routes each request to one of the two by its
path. The API's docs page and OpenAPI document are pages for a browser: they keep the
dashboard's stack (and its Content Security Policy).

Tests go through the same routing (tests/conftest.py's `client`), so what they check is what
production runs.
"""

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

API_PREFIX = "/v1/"
PAGES_UNDER_API = ("/v1/docs", "/v1/openapi.json")


def serves_api(path: str) -> bool:
    """Whether the request at `path` (PATH_INFO, below any script prefix) is the HTTP API's."""
    return path.startswith(API_PREFIX) and not path.startswith(PAGES_UNDER_API)


class ApiMiddlewareMixin:
    """A handler whose middleware chain is settings.API_MIDDLEWARE instead of MIDDLEWARE."""

    def load_middleware(self, is_async=False):
        # BaseHandler.load_middleware reads settings.MIDDLEWARE; it runs once, when the
        # handler is built at start-up (or on a test client's first request), before any
        # request is served, so swapping the setting around it is seen by nothing else.
        dashboard_stack = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = dashboard_stack


class ApiWSGIHandler(ApiMiddlewareMixin, WSGIHandler):
    pass


class RoutedWSGIApplication:
    """The WSGI application: the API's paths to the lean handler, everything else to Django's."""

    def __init__(self):
        self.dashboard = WSGIHandler()
        self.api = ApiWSGIHandler()

    def __call__(self, environ, start_response):
        handler = self.api if serves_api(environ.get("PATH_INFO", "")) else self.dashboard
        return handler(environ, start_response)


def get_application() -> RoutedWSGIApplication:
    """What django.core.wsgi.get_wsgi_application does, with the two stacks."""
    import django

    django.setup(set_prefix=False)
    return RoutedWSGIApplication()
