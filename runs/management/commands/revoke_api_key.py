"""Revoke an API key by its prefix (shown in admin and by create_api_key). Runs it started keep
pointing at it; it can no longer authenticate."""

from django.core.management.base import BaseCommand, CommandError

from runs.api_keys import revoke
from runs.models import ApiKey


class Command(BaseCommand):
    help = "Revoke the API key with the given prefix."

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="The key's prefix, e.g. rf_test_AbCd1234")

    def handle(self, *args, prefix, **options):
        try:
            api_key = ApiKey.objects.get(prefix=prefix)
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key with prefix {prefix!r}.") from None
        if api_key.revoked_at is not None:
            self.stdout.write(f"API key {api_key.prefix} was already revoked.")
            return
        revoke(api_key)
        self.stdout.write(f"Revoked API key {api_key.prefix} ({api_key.name}).")
