from django.db import migrations


def install(apps, schema_editor):
    from runs.append_only import install_triggers

    install_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0001_initial"),
        ("reviews", "0001_initial"),
        ("procedures", "0001_initial"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
