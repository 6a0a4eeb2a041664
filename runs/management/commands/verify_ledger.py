from pathlib import Path

from django.core.management.base import BaseCommand

from rapidfolio_verify import merkle, note
from runs import ledger
from runs.models import Checkpoint


class Command(BaseCommand):
    help = (
        "Check every checkpoint written outside the database (LEDGER_CHECKPOINT_DIR, or "
        "--from-dir) against the database's tree: each signature, each root, and that each "
        "checkpoint extends the one before it. Exits 1 on any fork or rewrite."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from-dir", type=Path, help="a directory of checkpoint files")

    def handle(self, *args, from_dir=None, **options):
        paths = ledger.published_paths(from_dir)
        if not paths:
            self.stdout.write("No checkpoint has been published yet.")
            return
        store = ledger.NodeStore()
        size = ledger.tree_size()
        problems, previous = [], None
        for path in paths:
            problem = self._check(store, size, path, previous)
            if problem:
                problems.append(problem)
                self.stdout.write(self.style.ERROR(problem))
                continue
            previous = ledger.read_published(path)
            self.stdout.write(f"{path.name}: consistent ({previous.size} leaves)")
        unpublished = Checkpoint.objects.filter(tree_size__gt=previous.size if previous else 0)
        for checkpoint in unpublished.order_by("tree_size"):
            self.stdout.write(f"checkpoint {checkpoint.tree_size}: in the database, no file yet")
        summary = f"{len(paths)} checkpoint file(s) checked, {len(problems)} problem(s)."
        if problems:
            self.stderr.write(self.style.ERROR(summary))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(summary))

    def _check(self, store, size, path, previous) -> str | None:
        try:
            published = ledger.read_published(path)
        except (OSError, note.NoteError) as exc:
            return f"{path.name}: not a valid checkpoint of this ledger: {exc}"
        try:
            return self._check_tree(store, size, path, published, previous)
        except ledger.MissingNode as exc:
            return f"{path.name}: the database's tree was rewritten: {exc}"

    def _check_tree(self, store, size, path, published, previous) -> str | None:
        if published.size > size:
            return f"{path.name}: signs {published.size} leaves; the database has only {size}"
        if store.batched(lambda subtree: subtree(0, published.size)) != published.root:
            return f"{path.name}: the database's tree of {published.size} leaves was rewritten"
        if previous is not None:
            proof = store.batched(
                lambda subtree: merkle.consistency_proof(previous.size, published.size, subtree)
            )
            if not merkle.verify_consistency(
                previous.size, published.size, previous.root, published.root, proof
            ):
                return f"{path.name}: does not extend {previous.path.name} (a fork)"
        return None
