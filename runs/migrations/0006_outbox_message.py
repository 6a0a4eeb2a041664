import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """The outbox (runs.outbox_models.OutboxMessage): messages to the workers that the broker
    may not hold yet, sent again by the scheduler (runs.outbox). Not part of the run record:
    no append-only trigger, no ledger queue; the runtime role may delete its rows
    (`grant_runtime_role` grants DELETE on every table outside the history)."""

    dependencies = [
        ("runs", "0005_view_live_run_permission"),
    ]

    operations = [
        migrations.CreateModel(
            name="OutboxMessage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "actor",
                    models.CharField(
                        choices=[
                            ("execute_run", "Execute Run"),
                            ("resume_run", "Resume Run"),
                            ("deliver_webhook", "Deliver Webhook"),
                        ],
                        max_length=30,
                    ),
                ),
                ("args", models.JSONField(default=list)),
                ("after_event", models.PositiveIntegerField(blank=True, null=True)),
                ("created_at", models.DateTimeField()),
                ("next_attempt_at", models.DateTimeField()),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("last_error", models.TextField(blank=True)),
                (
                    "run",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="runs.run",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["next_attempt_at"], name="outbox_due_idx")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("actor__in", ["execute_run", "resume_run", "deliver_webhook"])
                        ),
                        name="outbox_actor_valid",
                    )
                ],
            },
        ),
    ]
