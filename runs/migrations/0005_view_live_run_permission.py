from django.db import migrations


class Migration(migrations.Migration):
    """The live environment's own permission (runs.view_live_run).

    Django creates the permission row after migrate; rapidfolio.roles.ensure_roles then grants
    it to the "Live environment" group. Nobody gets it implicitly: an admin adds the people who
    may see live runs to that group.
    """

    dependencies = [
        ("runs", "0004_ledger"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="run",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [
                    ("start_run", "Can start runs from the dashboard"),
                    ("cancel_run", "Can cancel runs"),
                    ("retry_run", "Can retry runs that failed transiently"),
                    ("view_live_run", "Can see live runs and act on them"),
                ],
            },
        ),
    ]
