# Webhook deduplication on the signed body (issue 14, point 1) and bounded records of refused
# deliveries (issue 14, point 7): runs/triggers/services.py and runs/triggers/rejections.py.

import django.utils.timezone
from django.db import migrations, models
from django.db.models import F


def last_seen_is_first_seen(apps, schema_editor):
    # Rows recorded before aggregation each stand for one delivery, seen once.
    RejectedDelivery = apps.get_model("procedures", "RejectedDelivery")
    RejectedDelivery.objects.update(last_seen=F("received_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("procedures", "0002_triggerevent_outcome_choices"),
    ]

    operations = [
        migrations.AddField(
            model_name="triggerevent",
            name="signed_body_sha256",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddConstraint(
            model_name="triggerevent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("signed_body_sha256", ""), _negated=True),
                fields=("trigger", "signed_body_sha256"),
                name="triggerevent_unique_signed_body",
            ),
        ),
        migrations.AlterField(
            model_name="rejecteddelivery",
            name="received_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now, editable=False, verbose_name="first seen"
            ),
        ),
        migrations.AddField(
            model_name="rejecteddelivery",
            name="last_seen",
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.RunPython(last_seen_is_first_seen, migrations.RunPython.noop),
        migrations.AddField(
            model_name="rejecteddelivery",
            name="count",
            field=models.PositiveIntegerField(
                default=1, help_text="Deliveries this row stands for."
            ),
        ),
        migrations.AddField(
            model_name="rejecteddelivery",
            name="throttled",
            field=models.BooleanField(
                default=False,
                help_text="Deliveries beyond the trigger's rate limit: counted here, not itemised.",
            ),
        ),
        migrations.AddField(
            model_name="rejecteddelivery",
            name="body_sha256",
            field=models.CharField(blank=True, max_length=64, verbose_name="body SHA-256"),
        ),
        migrations.AddField(
            model_name="rejecteddelivery",
            name="body_bytes",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="body length (bytes)"
            ),
        ),
        migrations.AddIndex(
            model_name="rejecteddelivery",
            index=models.Index(
                fields=["trigger", "received_at"], name="rejecteddelivery_trigger_seen"
            ),
        ),
    ]
