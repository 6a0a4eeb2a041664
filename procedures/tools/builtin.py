"""Imports every integration module so their tools register."""

from procedures.tools import http, simulated, stripe  # noqa: F401
