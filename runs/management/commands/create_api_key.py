"""Create an API key for one environment and print it. The key is shown this once only: the
database keeps a hash of it."""

from django.core.management.base import BaseCommand

from procedures.models import Environment
from runs.api_keys import create_api_key


class Command(BaseCommand):
    help = "Create an API key scoped to one environment and print it once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who or what uses the key")
        parser.add_argument("--environment", required=True, choices=Environment.values)

    def handle(self, *args, name, environment, **options):
        api_key, raw_key = create_api_key(name=name.strip(), environment=environment)
        self.stderr.write(
            f"Created API key {api_key.name!r} ({api_key.environment}, prefix {api_key.prefix}). "
            "Copy it now: it is stored hashed and cannot be shown again."
        )
        self.stdout.write(raw_key)
