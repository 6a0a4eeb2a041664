"""The scheduler's heartbeat: when a scheduler last went round its loop (rapidfolio.scheduler),
so that /readyz can tell a dead scheduler from a quiet one (runs.health).

Not part of the run record: one row per scheduler name, updated in place every tick, never
hashed. Imported by runs.models, so Django sees the model as the runs app's.
"""

from django.db import models


class SchedulerHeartbeat(models.Model):
    # One row for all the schedulers of an installation: readiness asks whether one of them is
    # alive (several may run; each beat overwrites the row and says who beat).
    name = models.CharField(max_length=50, primary_key=True)
    beat_at = models.DateTimeField()
    # The beating scheduler's tick: a slower tick than the default allows an older beat.
    interval_seconds = models.FloatField()
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} beat at {self.beat_at:%Y-%m-%d %H:%M:%S} ({self.host} {self.pid})"
