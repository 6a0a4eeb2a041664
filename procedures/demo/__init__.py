"""The demo procedures: the YAML files beside this module, loaded by `manage.py seed_demo` and
read by the tests, so the demo and the tests check the same definitions."""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
