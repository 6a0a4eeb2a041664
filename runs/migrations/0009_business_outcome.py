"""A run's business outcome: `outcome` names it (`declined`), and failure kind `business` says a
failed run ended at a fail node that declares one, a normal answer rather than a technical
failure (issue 16, point 5). Existing runs have none: the column's database default is empty.
"""

from django.db import migrations, models

FAILURE_KINDS = [
    ("transient", "Transient"),
    ("permanent", "Permanent"),
    ("rejected", "Rejected"),
    ("business", "Business outcome"),
]


class Migration(migrations.Migration):
    dependencies = [("runs", "0008_run_search")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="outcome",
            field=models.CharField(blank=True, db_default="", default="", max_length=50),
        ),
        migrations.AlterField(
            model_name="run",
            name="failure_kind",
            field=models.CharField(blank=True, choices=FAILURE_KINDS, max_length=10),
        ),
        migrations.AlterField(
            model_name="step",
            name="error_kind",
            field=models.CharField(blank=True, choices=FAILURE_KINDS, max_length=10),
        ),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.CheckConstraint(
                condition=~models.Q(failure_kind="business") | ~models.Q(outcome=""),
                name="run_business_failure_has_outcome",
            ),
        ),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.CheckConstraint(
                condition=models.Q(outcome="")
                | models.Q(status="completed")
                | models.Q(failure_kind="business"),
                name="run_outcome_only_when_answered",
            ),
        ),
    ]
