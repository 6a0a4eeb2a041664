import json
import sys

from django.core.management.base import BaseCommand, CommandError

from runs import evidence
from runs.models import Run


class Command(BaseCommand):
    help = (
        "Write a run's evidence bundle (record, leaves, inclusion proofs, signed checkpoint) "
        "as JSON, for `python -m rapidfolio_verify BUNDLE --public-key KEY` (docs/evidence.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_id", metavar="RUN_ID")
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")

    def handle(self, *args, run_id, output=None, **options):
        run = Run.objects.select_related("procedure", "version", "failed_step").filter(
            public_id=run_id
        )
        if not run:
            raise CommandError(f"No such run: {run_id}")
        try:
            document = evidence.bundle(run[0])
        except evidence.NotSealed as exc:
            raise CommandError(f"{exc}. Run the scheduler (or wait for it) and try again.") from exc
        text = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True)
        if output:
            with open(output, "w", encoding="utf-8") as file:
                file.write(text + "\n")
            self.stderr.write(f"Wrote the evidence bundle of {run_id} to {output}.")
        else:
            sys.stdout.write(text + "\n")
