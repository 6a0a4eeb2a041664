"""The run record's table and column names, read from the models' `_meta`.

The benchmark writes its own SQL (COPY, counts, xmin stamps) against the product's tables. It
takes their names from the models, so renaming a table or a column changes this SQL with it
instead of leaving it to fail, or to count the wrong thing, at a million rows. Import this
after django.setup().
"""

from django.core.exceptions import FieldDoesNotExist

from reviews.models import ReviewDecision, ReviewRequest
from runs.models import Checkpoint, LedgerLeaf, LedgerQueue, Run, RunEvent, Step


class Names:
    """A model's table, `names.table`, and its fields' columns: `RUN.version` is "version_id"."""

    def __init__(self, model):
        self.meta = model._meta
        self.table = model._meta.db_table

    def __getattr__(self, field_name: str) -> str:
        if field_name.startswith("_") or field_name == "meta":
            raise AttributeError(field_name)
        try:
            field = self.meta.get_field(field_name)
        except FieldDoesNotExist:
            field = None
        if field is None or not field.concrete:
            raise AttributeError(f"{self.meta.label} has no column for field {field_name!r}")
        return field.column

    def columns(self, *field_names: str) -> str:
        """The fields' columns in the order given, comma-separated (a COPY column list)."""
        return ", ".join(getattr(self, name) for name in field_names)


RUN = Names(Run)
STEP = Names(Step)
EVENT = Names(RunEvent)
REVIEW_REQUEST = Names(ReviewRequest)
REVIEW_DECISION = Names(ReviewDecision)
LEAF = Names(LedgerLeaf)
CHECKPOINT = Names(Checkpoint)
QUEUE = Names(LedgerQueue)
