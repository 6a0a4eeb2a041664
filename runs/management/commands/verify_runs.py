from django.core.management.base import BaseCommand, CommandError

from runs import evidence, ledger
from runs.integrity import verify_run
from runs.models import Run


class Command(BaseCommand):
    help = (
        "Check each run: its hash chain (inputs, steps, review decisions, output, the "
        "authentication tags) and every event against the ledger and the latest checkpoint "
        "published outside the database. Names each problem; exits 1 if any run is broken."
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
        published = ledger.latest_published()
        checked = broken = 0
        for run in runs.iterator(chunk_size=500):
            checked += 1
            if not self._report(run, published):
                broken += 1
        summary = f"{checked} run(s) checked, {broken} broken."
        if broken:
            self.stderr.write(self.style.ERROR(summary))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(summary))

    def _report(self, run, published) -> bool:
        """Print the run's result; whether it is intact."""
        result = verify_run(run)
        status = evidence.ledger_status(run, published)
        if not result.intact or not status.intact:
            problems = [] if result.intact else [result.problem]
            problems += [str(p) for p in status.problems if p.problem != "not yet sealed"]
            self.stdout.write(self.style.ERROR(f"{run.public_id}: BROKEN: {'; '.join(problems)}"))
            return False
        if status.sealed:
            self.stdout.write(f"{result}, sealed in checkpoint {status.sealed_in}")
        else:
            unsealed = sum(p.problem == "not yet sealed" for p in status.problems)
            self.stdout.write(f"{result}, {unsealed} event(s) not yet sealed")
        return True
