"""The people, keys, procedures and triggers the benchmark's runs belong to.

The three procedures are demo procedures from procedures/demo, the files `manage.py seed_demo`
loads (a card payment with an approval above 5,000.00, a credit check, a supplier wire with a
treasury approval). The throughput procedure is the engine's measuring stick: five working
nodes and an output.
"""

from django.contrib.auth.models import Group, User
from django.core.management import call_command

from procedures.demo import DEMO_DIR
from procedures.models import Procedure, ProcedureVersion, Trigger, TriggerKind
from procedures.tools.support import number_from
from rapidfolio.roles import LIVE_ENVIRONMENT, OPERATORS, REVIEWERS, ensure_roles
from runs.api_keys import create_api_key
from runs.models import ApiKey

PROCEDURE_FILES = ("pay_invoice.yaml", "credit_check.yaml", "wire_transfer.yaml")
OPERATOR = "bench-operator"
REVIEWER = "bench-reviewer"
PASSWORD = "bench-password-not-secret"
BENCH_PREFIX = "Bench: "
THROUGHPUT_PROCEDURE = BENCH_PREFIX + "checked card payment"
# Runs of the throughput procedure pass the credit condition only for these scores, so the
# benchmark picks customers that take the whole path (every run has the same six steps).
THROUGHPUT_MIN_SCORE = 580

THROUGHPUT_DEFINITION = {
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "required": ["customer_id", "email", "amount", "currency"],
        "properties": {
            "customer_id": {"type": "string", "minLength": 1, "maxLength": 100},
            "email": {"type": "string", "minLength": 3, "maxLength": 254},
            "amount": {"type": "integer", "minimum": 1, "maximum": 99_999_999},
            "currency": {"type": "string", "enum": ["usd", "eur", "gbp"]},
        },
    },
    "start": "validate",
    "nodes": {
        "validate": {
            "type": "condition",
            "expression": "inputs.amount >= 100 and inputs.amount <= 5000000",
            "then": "credit",
            "else": "invalid_amount",
        },
        "credit": {
            "type": "tool",
            "tool": "credit.check",
            "input": {
                "customer_id": "inputs.customer_id",
                "requested_amount": "inputs.amount",
                "currency": "upper(inputs.currency)",
            },
            "next": "creditworthy",
        },
        "creditworthy": {
            "type": "condition",
            "expression": f"steps.credit.output.score >= {THROUGHPUT_MIN_SCORE}",
            "then": "charge",
            "else": "declined",
        },
        "charge": {
            "type": "tool",
            "tool": "stripe.create_payment_intent",
            "input": {
                "amount": "inputs.amount",
                "currency": "inputs.currency",
                "customer": "inputs.customer_id",
                "description": "'Bench order for ' + inputs.customer_id",
            },
            "next": "receipt",
        },
        "receipt": {
            "type": "tool",
            "tool": "notify.email",
            "input": {
                "to": "inputs.email",
                "subject": "'Your payment'",
                "body": "'We charged ' + str(inputs.amount) + ' ' + inputs.currency + '.'",
            },
            "next": "done",
        },
        "done": {
            "type": "output",
            "value": {
                "payment_intent": "steps.charge.output.id",
                "score": "steps.credit.output.score",
                "receipt": "steps.receipt.output.id",
            },
        },
        "invalid_amount": {"type": "fail", "reason": "The amount is out of range."},
        "declined": {"type": "fail", "reason": "The customer's credit score is too low."},
    },
}


# The integrity check's worst case is an intact run of the most steps the engine allows: a
# sweep that checks a customer's credit again and again until the engine stops it at its
# 1,000-step limit (a failed run: 1,000 steps and 1,003 events, every one hashed and linked).
# The seeded runs cannot serve: COPY gives their events random hashes, so a check of any of them
# stops at its first event.
LONG_RUN_PROCEDURE = BENCH_PREFIX + "ledger sweep to the step limit"
LONG_RUN_DEFINITION = {
    "input_schema": {
        "type": "object",
        "required": ["customer_id"],
        "properties": {"customer_id": {"type": "string", "minLength": 1}},
    },
    "start": "check",
    "nodes": {
        "check": {
            "type": "tool",
            "tool": "credit.check",
            "input": {"customer_id": "inputs.customer_id", "requested_amount": 250000},
            "next": "again",
        },
        "again": {
            "type": "condition",
            "expression": "steps.check.output.score >= 0",
            "then": "check",
            "else": "done",
        },
        "done": {"type": "output", "value": {"score": "steps.check.output.score"}},
    },
}


def ensure_people() -> tuple[User, User]:
    ensure_roles()
    operator, _ = User.objects.get_or_create(username=OPERATOR)
    operator.set_password(PASSWORD)
    operator.save()
    operator.groups.add(Group.objects.get(name=OPERATORS), Group.objects.get(name=LIVE_ENVIRONMENT))
    reviewer, _ = User.objects.get_or_create(username=REVIEWER)
    reviewer.set_password(PASSWORD)
    reviewer.save()
    reviewer.groups.add(Group.objects.get(name=REVIEWERS), Group.objects.get(name=LIVE_ENVIRONMENT))
    # The example procedures restrict their reviews to these groups.
    for name in ("Payment approvers", "Treasury"):
        reviewer.groups.add(Group.objects.get_or_create(name=name)[0])
    return operator, reviewer


def ensure_procedures() -> list[ProcedureVersion]:
    """The three example procedures' current versions, loaded once."""
    versions = []
    for filename in PROCEDURE_FILES:
        call_command("load_procedure", str(DEMO_DIR / filename), verbosity=0, stdout=_Null())
    # Not the benchmark's own procedures (named "Bench: …"), which may exist already.
    for procedure in Procedure.objects.exclude(name__startswith=BENCH_PREFIX).order_by("pk"):
        versions.append(procedure.current_version)
    return versions


def _ensure_version(name: str, description: str, definition: dict) -> ProcedureVersion:
    """The procedure's current version with this definition, created (as a new version) if
    the procedure or that definition is new."""
    procedure, _ = Procedure.objects.get_or_create(name=name, defaults={"description": description})
    version = procedure.current_version
    if version is None or version.definition != definition:
        version = ProcedureVersion.objects.create(
            procedure=procedure,
            number=(version.number + 1) if version else 1,
            definition=definition,
        )
    return version


def ensure_throughput_version() -> ProcedureVersion:
    return _ensure_version(
        THROUGHPUT_PROCEDURE,
        "Validate, check credit, charge, e-mail a receipt.",
        THROUGHPUT_DEFINITION,
    )


def ensure_long_run() -> str:
    """The public id of an intact run with the engine's maximum of steps, made once."""
    from runs import engine
    from runs.integrity import verify_run
    from runs.models import Run, RunType
    from runs.services import start_run

    version = _ensure_version(
        LONG_RUN_PROCEDURE,
        "Re-checks a customer's credit until the engine stops it.",
        LONG_RUN_DEFINITION,
    )
    run = Run.objects.filter(version=version, status="failed").order_by("-pk").first()
    # One made before the record was authenticated (or under another key) is intact no more:
    # make another (the record is append-only; the old run stays, unused).
    if run is None or not verify_run(run).intact:
        run = start_run(
            version=version,
            environment="sandbox",
            inputs={"customer_id": "cus_sweep0001"},
            type=RunType.API,
            api_key=ensure_seed_keys()["sandbox"],
        )
        engine.drive(run.pk)
        run.refresh_from_db()
    verification = verify_run(run)
    if not verification.intact or run.steps.count() != engine.MAX_STEPS_PER_RUN:
        raise RuntimeError(f"the long run is not an intact {engine.MAX_STEPS_PER_RUN}-step run")
    return run.public_id


def ensure_seed_keys() -> dict[str, ApiKey]:
    """One key per environment for the seeded API runs to name as their starter."""
    keys = {}
    for environment in ("sandbox", "live"):
        name = f"bench seeded runs ({environment})"
        key = ApiKey.objects.filter(name=name).first()
        if key is None:
            key, _ = create_api_key(name=name, environment=environment)
        keys[environment] = key
    return keys


def ensure_triggers(versions: list[ProcedureVersion]) -> dict[tuple[int, str], Trigger]:
    triggers = {}
    for version in versions:
        for environment in ("sandbox", "live"):
            trigger, _ = Trigger.objects.get_or_create(
                procedure_id=version.procedure_id,
                environment=environment,
                kind=TriggerKind.STRIPE,
                name=f"{version.procedure.name} on invoice.finalized ({environment})",
                defaults={"event_types": ["invoice.finalized"]},
            )
            triggers[(version.procedure_id, environment)] = trigger
    return triggers


def throughput_customer(index: int) -> str:
    """The index-th customer id whose simulated credit score passes the procedure's check."""
    candidate = index * 3
    while True:
        customer_id = f"cus_bench{candidate:07d}"
        score = number_from("credit-score", customer_id, low=300, high=850)
        if score >= THROUGHPUT_MIN_SCORE:
            return customer_id
        candidate += 1


def throughput_inputs(index: int) -> dict:
    return {
        "customer_id": throughput_customer(index),
        "email": f"buyer{index}@example.com",
        "amount": 1_000 + (index * 7919) % 300_000,
        "currency": ("usd", "eur", "gbp")[index % 3],
    }


class _Null:
    def write(self, *args, **kwargs):
        pass

    def flush(self):
        pass
