"""The ledger's tables: one append-only Merkle log (RFC 9162) over every run's events.

Every RunEvent is a fact: a database trigger queues it (LedgerQueue) in the transaction that
inserts it, and the sealer (runs.ledger) appends queued events as leaves in queue order, stores
the hashes of the tree's complete subtrees, and signs a checkpoint of the new tree. Leaves,
nodes and checkpoints are append-only (runs.append_only); the queue is drained by the sealer.
Imported by runs.models, so Django sees these models as the runs app's.
"""

from django.db import models


class LedgerQueue(models.Model):
    """An event committed but not yet a leaf. Inserted by a trigger, never by Python."""

    event = models.OneToOneField("runs.RunEvent", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"queued event {self.event_id}"


class LedgerLeaf(models.Model):
    """Leaf `index` (0-based) of the log: the event's leaf bytes hash to `leaf_hash`."""

    index = models.BigIntegerField(primary_key=True)
    event = models.OneToOneField(
        "runs.RunEvent", on_delete=models.PROTECT, related_name="ledger_leaf"
    )
    # Denormalised from the event: an evidence bundle reads a run's leaves by this index.
    run = models.ForeignKey("runs.Run", on_delete=models.PROTECT, related_name="+", db_index=False)
    leaf_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["index"]
        indexes = [models.Index(fields=["run", "index"], name="ledgerleaf_run_idx")]

    def __str__(self):
        return f"leaf {self.index}"


class LedgerNode(models.Model):
    """The hash of a complete subtree: leaves [position·2^level, (position+1)·2^level).
    Level 0 is the leaves themselves (LedgerLeaf); stored from level 1 up."""

    level = models.PositiveSmallIntegerField()
    position = models.BigIntegerField()
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["level", "position"], name="ledgernode_unique")
        ]

    def __str__(self):
        return f"node {self.level}/{self.position}"


class Checkpoint(models.Model):
    """A signed tree head (C2SP signed note), also written outside the database."""

    tree_size = models.BigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    note = models.TextField(help_text="The checkpoint as a C2SP signed note.")
    previous_size = models.BigIntegerField(null=True, blank=True)
    consistency_proof = models.JSONField(
        default=list, help_text="Hex hashes proving the previous checkpoint's tree is a prefix."
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-tree_size"]
        get_latest_by = "tree_size"

    def __str__(self):
        return f"checkpoint {self.tree_size}"
