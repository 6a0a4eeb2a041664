"""Django's test client, routed as the WSGI application routes requests (rapidfolio/handlers.py):
the API's paths through the API's lean middleware stack, the rest through the dashboard's.

The tests (tests/conftest.py's `client` fixture) and the in-process benchmarks use it, so that
what they check and measure is the stack production serves each path with.
"""

from django.test import Client as DjangoClient
from django.test.client import ClientHandler

from rapidfolio.handlers import ApiMiddlewareMixin, serves_api


class ApiClientHandler(ApiMiddlewareMixin, ClientHandler):
    pass


class RoutedClientHandler:
    def __init__(self, *args, **kwargs):
        self.dashboard = ClientHandler(*args, **kwargs)
        self.api = ApiClientHandler(*args, **kwargs)

    def __call__(self, environ):
        handler = self.api if serves_api(environ.get("PATH_INFO", "")) else self.dashboard
        return handler(environ)


class Client(DjangoClient):
    def __init__(self, enforce_csrf_checks=False, *args, **kwargs):
        super().__init__(enforce_csrf_checks, *args, **kwargs)
        self.handler = RoutedClientHandler(enforce_csrf_checks)
