from django.core.management.base import BaseCommand

from rapidfolio import scheduler


class Command(BaseCommand):
    help = (
        "Seal the ledger (every LEDGER_SEAL_INTERVAL_SECONDS), reap stuck runs and fire due "
        "cron triggers (every --interval seconds), until stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=scheduler.TICK_SECONDS)
        parser.add_argument("--once", action="store_true", help="run one tick and exit")

    def handle(self, *args, interval, once, **options):
        if once:
            scheduler.seal_ledger()
            scheduler.tick()
            return
        self.stdout.write(f"Scheduler running every {interval:g}s (Ctrl+C to stop).")
        scheduler.run_forever(interval=interval)
