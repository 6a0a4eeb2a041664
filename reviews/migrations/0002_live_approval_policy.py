# The admin's switch for live approvals (reviews/otp_policy.py). Written by hand: only this
# model, so that other pending changes of reviews/models.py get their own migration.

from django.db import migrations, models


def create_the_row(apps, schema_editor):
    # The one row exists from the start, so admins switch it rather than add it.
    apps.get_model("reviews", "LiveApprovalPolicy").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="LiveApprovalPolicy",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(
                        default=1, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "require_otp",
                    models.BooleanField(
                        default=False,
                        help_text="Approving or rejecting a live run needs a session verified "
                        "with an authenticator code (reviewers set one up on their Security page).",
                        verbose_name="Require two-factor for live approvals",
                    ),
                ),
                ("changed_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "live approval policy",
                "verbose_name_plural": "live approval policy",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("id", 1)), name="liveapprovalpolicy_one_row"
                    )
                ],
            },
        ),
        migrations.RunPython(create_the_row, migrations.RunPython.noop),
    ]
