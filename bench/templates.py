"""Template runs: a few real runs of each example procedure, executed by the real engine.

The bulk seed clones these (new ids, times, environments, starters), so every seeded step and
event has the exact shape, size and content the product writes: tool requests and responses from
the simulators, review requests and decisions, status events. Variants that are hard to reach
quickly (a transient failure after its retries, a run cancelled or still running partway) are
derived from real ones by relabelling or cutting them short.
"""

import json
import random
from dataclasses import dataclass, field, replace

from django.db import transaction

from procedures.models import ProcedureVersion
from procedures.tools.support import number_from
from reviews import services as reviews
from reviews.models import ReviewDecision, ReviewRequest
from runs import engine, services
from runs.models import Run, RunEvent, RunType, Step

VARIANTS = 12  # template runs per procedure and outcome


def esc(value: str) -> str:
    """A value in COPY text format."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def esc_json(value) -> str:
    return r"\N" if value is None else esc(json.dumps(value, ensure_ascii=False))


def esc_text(value: str | None) -> str:
    return r"\N" if value is None else esc(value)


@dataclass
class StepTemplate:
    kind: str  # "tool", "pure" or "review"
    fixed: str  # the COPY columns that do not change from clone to clone


@dataclass
class EventTemplate:
    kind: str  # created, running, step, review_requested, review_decided, awaiting, final
    fixed: str


@dataclass
class Template:
    public_id: str
    procedure_id: int
    version_id: int
    status: str
    inputs: str
    output: str = r"\N"
    input_values: dict = field(default_factory=dict)  # the inputs themselves (seed.References)
    failure_reason: str = ""
    failure_kind: str = ""
    outcome: str = ""  # a business outcome (runs.models.Run.outcome), with its failure kind
    failed_step_index: int | None = None
    steps: list[StepTemplate] = field(default_factory=list)
    events: list[EventTemplate] = field(default_factory=list)
    review_public_id: str = ""  # the template's ReviewRequest, as its events name it
    review_request: str | None = None  # fixed columns of the ReviewRequest, if any
    review_decision: str | None = None  # fixed columns of its ReviewDecision, if any
    finished: bool = True


# The fields of each `fixed` text below, in its order (the seed's COPY names their columns).
STEP_FIELDS = (
    "node_id",
    "node_type",
    "tool",
    "status",
    "attempt",
    "input",
    "output",
    "request",
    "response",
    "idempotency_key",
    "error",
    "error_kind",
)
EVENT_FIELDS = ("type", "actor", "data")
REVIEW_REQUEST_FIELDS = (
    "node_id",
    "step_sequence",
    "title",
    "instructions",
    "shown_values",
    "overridable_fields",
    "reviewer_group",
)
REVIEW_DECISION_FIELDS = ("reviewer", "decision", "comment", "shown_values", "overrides")


def _inputs(procedure_name: str, outcome: str, index: int) -> dict:
    rng = random.Random(f"{procedure_name}-{outcome}-{index}")
    customer = f"cus_{rng.randrange(16**10):010x}"
    if outcome == "blocked":
        customer = f"cus_blocked_{index}"
    if procedure_name == "Pay invoice":
        big = outcome in ("approve", "reject", "await")
        return {
            "invoice_id": f"INV-{rng.randrange(10**6, 10**7)}",
            "customer_id": customer,
            "amount": rng.randrange(500_001, 5_000_000) if big else rng.randrange(500, 500_000),
            "currency": rng.choice(["usd", "eur", "gbp"]),
        }
    if procedure_name == "Credit line check":
        if outcome == "complete" and index % 4:
            # Most credit checks pass: pick a customer the simulated bureau scores well.
            while number_from("credit-score", customer, low=300, high=850) < 700:
                customer = f"cus_{rng.randrange(16**10):010x}"
        return {
            "customer_id": customer,
            "email": f"{customer}@example.com",
            "requested_amount": rng.randrange(10_000, 300_000),
            "currency": rng.choice(["USD", "EUR", "GBP"]),
        }
    reference = f"SUP-{rng.randrange(10**5, 10**6)}" + ("-blocked" if outcome == "blocked" else "")
    return {
        "amount": rng.randrange(10_000, 50_000_000),
        "currency": rng.choice(["EUR", "GBP", "USD", "CHF"]),
        "beneficiary_name": rng.choice(["Acme Metals GmbH", "Nordic Parts AB", "Blue Logistics"]),
        "beneficiary_iban": f"DE{rng.randrange(10, 99)}{rng.randrange(10**17, 10**18)}",
        "beneficiary_bic": rng.choice(["DEUTDEFFXXX", "COBADEFF", "NDEASESS"]),
        "reference": reference,
        "remittance_email": "accounts@supplier.example",
    }


def _outcomes(version: ProcedureVersion) -> list[str]:
    has_review = any(n["type"] == "human_review" for n in version.definition["nodes"].values())
    outcomes = ["complete", "blocked"]
    if has_review:
        outcomes += ["approve", "reject", "await"]
    return outcomes


def execute_template_runs(versions, *, api_key, reviewer) -> list[int]:
    """Run each procedure's variants through the real engine; returns the run ids."""
    run_ids = []
    for version in versions:
        name = version.procedure.name
        for outcome in _outcomes(version):
            for index in range(VARIANTS):
                with transaction.atomic():
                    run = services.start_run(
                        version=version,
                        environment="sandbox",
                        inputs=_inputs(name, outcome, index),
                        type=RunType.API,
                        api_key=api_key,
                    )
                engine.drive(run.pk)
                request = ReviewRequest.objects.filter(run=run).first()
                if request is not None and outcome != "await":
                    if outcome == "reject":
                        reviews.reject(request=request, reviewer=reviewer, comment="Not agreed.")
                    else:
                        reviews.approve(request=request, reviewer=reviewer, comment="Checked.")
                    engine.drive(run.pk)
                run_ids.append(run.pk)
    return run_ids


def load_templates(run_ids: list[int]) -> list[Template]:
    """Read the template runs back, with derived variants (transient, cancelled, running...)."""
    templates = []
    for run in Run.objects.filter(pk__in=run_ids).order_by("pk"):
        template = _template(run)
        templates.append(template)
        templates.extend(_derived(template))
    return templates


def _template(run: Run) -> Template:
    steps = list(Step.objects.filter(run=run).order_by("sequence"))
    events = list(RunEvent.objects.filter(run=run).order_by("sequence"))
    template = Template(
        public_id=run.public_id,
        procedure_id=run.procedure_id,
        version_id=run.version_id,
        status=run.status,
        inputs=esc_json(run.inputs),
        output=esc_json(run.output),
        input_values=run.inputs,
        failure_reason=esc(run.failure_reason),
        failure_kind=run.failure_kind,
        outcome=run.outcome,
        finished=run.is_terminal,
    )
    for index, step in enumerate(steps):
        kind = {"tool": "tool", "human_review": "review"}.get(step.node_type, "pure")
        fixed = "\t".join(
            [
                esc(step.node_id),
                esc(step.node_type),
                esc(step.tool),
                step.status,
                str(step.attempt),
                esc_json(step.input),
                esc_json(step.output),
                esc(step.request),
                esc(step.response),
                esc(step.idempotency_key),
                esc(step.error),
                step.error_kind,
            ]
        )
        template.steps.append(StepTemplate(kind, fixed))
        if run.failed_step_id == step.pk:
            template.failed_step_index = index
    seen_running = False
    for event in events:
        kind = _event_kind(event, seen_running)
        seen_running = seen_running or kind == "running"
        template.events.append(
            EventTemplate(
                kind, "\t".join([esc(event.type), esc(event.actor), esc_json(event.data)])
            )
        )
    request = ReviewRequest.objects.filter(run=run).first()
    if request is not None:
        template.review_public_id = request.public_id
        template.review_request = "\t".join(
            [
                esc(request.node_id),
                str(request.step_sequence),
                esc(request.title),
                esc(request.instructions),
                esc_json(request.shown_values),
                esc_json(request.overridable_fields),
                esc(request.reviewer_group),
            ]
        )
        decision = ReviewDecision.objects.filter(request=request).first()
        if decision is not None:
            template.review_decision = "\t".join(
                [
                    str(decision.reviewer_id),
                    decision.decision,
                    esc(decision.comment),
                    esc_json(decision.shown_values),
                    esc_json(decision.overrides),
                ]
            )
    return template


def _event_kind(event: RunEvent, seen_running: bool) -> str:
    if event.type == "run.created":
        return "created"
    if event.type == "step.recorded":
        return "step"
    if event.type == "review.requested":
        return "review_requested"
    if event.type == "review.decided":
        return "review_decided"
    if event.type == "run.status_changed":
        to = event.data.get("to")
        if to == "running":
            return "resumed" if seen_running else "running"
        if to == "awaiting_review":
            return "awaiting"
        return "final"
    return "other"


def _derived(template: Template) -> list[Template]:
    derived = []
    failed = template.failed_step_index
    if (
        template.status == "failed"
        and failed is not None
        and template.steps[failed].kind == "tool"
        and template.failure_kind == "permanent"
    ):
        # The same run, had the integration been down for all its attempts.
        transient = replace(template, failure_kind="transient", steps=list(template.steps))
        step = template.steps[failed]
        transient.steps[failed] = StepTemplate(
            step.kind, step.fixed[: -len("permanent")] + "transient"
        )
        transient.events = [
            EventTemplate(e.kind, e.fixed.replace('"kind": "permanent"', '"kind": "transient"'))
            if e.kind == "final"
            else e
            for e in template.events
        ]
        derived.append(transient)
    if template.status == "completed" and template.review_request is None:
        derived.append(_cut(template, 0, "pending"))
        for kept in range(1, len(template.steps)):
            derived.append(_cut(template, kept, "running"))
        for kept in range(0, len(template.steps)):
            derived.append(_cut(template, kept, "cancelled"))
    return derived


def _cut(template: Template, kept_steps: int, status: str) -> Template:
    """The template's first `kept_steps` steps, then still going (or cancelled)."""
    events = []
    steps_seen = 0
    for event in template.events:
        if event.kind == "final" or (event.kind == "step" and steps_seen == kept_steps):
            break
        if event.kind == "running" and status == "pending":
            break
        steps_seen += event.kind == "step"
        events.append(event)
    if status == "cancelled":
        came_from = "running" if any(e.kind == "running" for e in events) else "pending"
        data = {"from": came_from, "to": "cancelled", "reason": "Cancelled by operator"}
        events.append(
            EventTemplate("final", f"run.status_changed\tuser:bench-operator\t{esc_json(data)}")
        )
    return replace(
        template,
        status=status,
        output=r"\N",
        failure_reason="",
        failure_kind="",
        outcome="",
        failed_step_index=None,
        steps=template.steps[:kept_steps],
        events=events,
        finished=status == "cancelled",
    )
