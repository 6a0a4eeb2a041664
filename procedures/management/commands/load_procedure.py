"""Load a procedure definition from a YAML or JSON file as the procedure's next version.

The file holds either `name`, `description` and `definition`, or just a definition (then give
--name). The definition is validated first: on any problem, every problem is printed and nothing
is created. A definition equal to the current version's creates nothing either.
"""

import json
from pathlib import Path

import yaml
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Max

from procedures.definition import DefinitionError, check_definition
from procedures.models import Procedure, ProcedureVersion


class Command(BaseCommand):
    help = "Create the next version of a procedure from a YAML or JSON definition file."

    def add_arguments(self, parser):
        parser.add_argument("path", help="YAML (.yaml/.yml) or JSON file")
        parser.add_argument("--name", help="Procedure name (overrides the file's 'name')")
        parser.add_argument("--description", help="Procedure description (overrides the file's)")
        parser.add_argument("--user", help="Username recorded as the version's author")
        parser.add_argument("--notes", default="", help="Notes stored on the new version")

    def handle(self, *args, path, name, description, user, notes, **options):
        document = _read(Path(path))
        if isinstance(document, dict) and "definition" in document:
            definition = document["definition"]
            name = name or document.get("name")
            description = document.get("description") if description is None else description
        else:
            definition = document
        if not name:
            raise CommandError("the procedure has no name: put 'name' in the file or give --name")
        author = _user(user)
        try:
            # Round-trip so YAML-only values (dates...) are refused and the stored JSON is plain.
            definition = json.loads(json.dumps(definition))
        except (TypeError, ValueError) as exc:
            raise CommandError(f"the definition is not plain JSON data: {exc}") from exc
        try:
            check_definition(definition)
        except DefinitionError as exc:
            for problem in exc.problems:
                self.stderr.write(f"- {problem}")
            raise CommandError(
                f"{path}: {len(exc.problems)} problem(s) in the definition; nothing was created"
            ) from exc

        with transaction.atomic():
            procedure, created = Procedure.objects.get_or_create(
                name=name, defaults={"description": description or ""}
            )
            procedure = Procedure.objects.select_for_update().get(pk=procedure.pk)
            if not created and description is not None and description != procedure.description:
                procedure.description = description
                procedure.save(update_fields=["description"])
            current = procedure.versions.order_by("-number").first()
            if current is not None and current.definition == definition:
                self.stdout.write(
                    f"{procedure.public_id} ({procedure.name}) version {current.number} already "
                    "has this definition; nothing created"
                )
                return
            number = (procedure.versions.aggregate(top=Max("number"))["top"] or 0) + 1
            ProcedureVersion.objects.create(
                procedure=procedure,
                number=number,
                definition=definition,
                created_by=author,
                notes=notes,
            )
        self.stdout.write(
            self.style.SUCCESS(f"{procedure.public_id} ({procedure.name}) version {number} created")
        )


def _read(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)  # YAML is a superset of JSON
    except (ValueError, yaml.YAMLError) as exc:
        raise CommandError(f"{path} is not valid YAML/JSON: {exc}") from exc


def _user(username):
    if not username:
        return None
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist as exc:
        raise CommandError(f"no user named {username!r}") from exc
