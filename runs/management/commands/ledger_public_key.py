from django.conf import settings
from django.core.management.base import BaseCommand

from rapidfolio import keys
from rapidfolio_verify import note


class Command(BaseCommand):
    help = (
        "Print the ledger's public key as a C2SP note verifier key (name+id+key): what an "
        "auditor pins to verify checkpoints and evidence bundles offline."
    )

    def handle(self, *args, **options):
        self.stdout.write(note.vkey(settings.LEDGER_ORIGIN, keys.public_key_bytes()))
