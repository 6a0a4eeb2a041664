from django.core.management.base import BaseCommand, CommandError

from runs.integrity import verify_run
from runs.models import Run


class Command(BaseCommand):
    help = (
        "Recompute each run's hash chain (covering inputs, steps, review decisions and output) "
        "and report it intact or name the first broken link. Exits 1 if any run is broken."
    )

    def add_arguments(self, parser):
        parser.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="public run ids")

    def handle(self, *args, run_ids=(), **options):
        runs = Run.objects.select_related("procedure", "version", "retry_of").order_by("id")
        if run_ids:
            runs = runs.filter(public_id__in=run_ids)
            missing = set(run_ids) - set(runs.values_list("public_id", flat=True))
            if missing:
                raise CommandError(f"No such run: {', '.join(sorted(missing))}")
        checked = broken = 0
        for run in runs.iterator(chunk_size=500):
            result = verify_run(run)
            checked += 1
            if result.intact:
                self.stdout.write(str(result))
            else:
                broken += 1
                self.stdout.write(self.style.ERROR(str(result)))
        summary = f"{checked} run(s) checked, {broken} broken."
        if broken:
            self.stderr.write(self.style.ERROR(summary))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(summary))
