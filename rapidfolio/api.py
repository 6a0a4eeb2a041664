"""The HTTP API under /v1/ (django-ninja), with its OpenAPI document at /v1/openapi.json."""

from ninja import NinjaAPI

api = NinjaAPI(title="Rapidfolio Runs API", version="1", urls_namespace="api")
