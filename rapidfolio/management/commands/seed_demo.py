"""Seed a realistic demo: procedures with versions, and runs in every status, produced by the
engine itself (tool calls, retries, reviews, overrides, rejections, cancellations, a retry).
Around them, what keeps the demo alive once served (rapidfolio/management/demo.py): a cron
trigger, a webhook endpoint and its receiver, a sandbox connection and an API key. The pending
and running runs it leaves are picked up as soon as `manage.py serve` starts.

Idempotent: a second call changes nothing and says so (but for the webhook endpoint, which
follows --host and --port).
"""

import copy
import json
import time

import yaml
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from procedures.demo import DEMO_DIR
from procedures.models import Procedure, ProcedureVersion
from rapidfolio import public_url
from rapidfolio.management import demo
from rapidfolio.management.demo import DEMO_PASSWORD
from rapidfolio.roles import LIVE_ENVIRONMENT, OPERATORS, REVIEWERS, ensure_roles
from reviews.models import ReviewRequest
from reviews.services import approve, reject
from runs import engine
from runs.models import Run, RunStatus, Step, StepStatus
from runs.services import cancel_run, retry_run, start_run

# How long the seed waits for a retry backoff before leaving the run visibly `running`.
MAX_SEED_WAIT_SECONDS = 3

IBAN = "DE89370400440532013000"
BIC = "COBADEFFXXX"


class Command(BaseCommand):
    help = "Create demo users, procedures and runs (every status), executed by the engine."

    def add_arguments(self, parser):
        # Where `manage.py serve` will listen: the demo's webhook endpoint delivers there.
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port", type=int, help="without it: PUBLIC_BASE_URL, else http://127.0.0.1:8000"
        )

    def handle(self, *args, host="127.0.0.1", port=None, verbosity=1, **options):
        self.verbosity = verbosity
        ensure_roles()
        people = self._users()
        served_at = public_url.local_base_url(host, port) if port else public_url.base_url()
        if Run.objects.exists():
            self.stdout.write("Demo data already present; nothing to do.")
            self._live_parts(people, served_at)
            self._print_logins()
            return
        versions = self._procedures(people["admin"])
        # Before the runs: a schedule fires from the first minute after its trigger exists, so
        # one is usually due by the time `serve` starts.
        demo.ensure_cron_trigger(versions["credit_check"].procedure)
        self._runs(versions, people)
        # After them: the seed's own transitions deliver no webhooks (their messages would die
        # with this process, the embedded broker's).
        self._live_parts(people, served_at)
        counts = {s: Run.objects.filter(status=s).count() for s in RunStatus.values}
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {Run.objects.count()} runs: "
                + ", ".join(f"{n} {s}" for s, n in counts.items())
            )
        )
        self._print_logins()

    # --- people -----------------------------------------------------------------------------
    def _users(self) -> dict[str, User]:
        approvers = [
            Group.objects.get_or_create(name=name)[0] for name in ("Payment approvers", "Treasury")
        ]
        # The demo's people work in both environments (live runs need the live group too).
        spec = {
            "operator": ([OPERATORS, LIVE_ENVIRONMENT], False, "Olivia", "Operator"),
            "reviewer": ([REVIEWERS, LIVE_ENVIRONMENT], False, "Rita", "Reviewer"),
            "controller": ([REVIEWERS, LIVE_ENVIRONMENT], False, "Carl", "Controller"),
            "admin": ([OPERATORS, REVIEWERS, LIVE_ENVIRONMENT], True, "Ada", "Admin"),
        }
        people = {}
        hashed = None  # one hash for them all: the password is public, a hash costs a second
        for username, (groups, is_admin, first, last) in spec.items():
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@rapidfolio.example",
                },
            )
            if created:
                hashed = hashed or make_password(DEMO_PASSWORD)
                user.password = hashed
                user.is_staff = user.is_superuser = is_admin
                user.save()
            user.groups.add(*Group.objects.filter(name__in=groups))
            if username in ("reviewer", "controller", "admin"):
                user.groups.add(*approvers)
            if username in ("controller", "admin"):
                # Supplier wires nobody in Treasury decides in time escalate to them.
                user.groups.add(Group.objects.get_or_create(name="Finance managers")[0])
            people[username] = User.objects.get(pk=user.pk)  # fresh permission cache
        return people

    def _live_parts(self, people, served_at: str) -> None:
        demo.ensure_webhook_endpoint(served_at)
        demo.ensure_sandbox_connection()
        demo.ensure_api_key(people["admin"])

    def _print_logins(self):
        if self.verbosity < 1:
            return  # `make run`: the server's banner lists them
        users = User.objects.filter(username__in=demo.DEMO_LOGINS)
        for line in demo.login_lines(users.values_list("username", flat=True)):
            self.stdout.write(line)

    # --- procedures -------------------------------------------------------------------------
    def _procedures(self, admin) -> dict[str, ProcedureVersion]:
        versions = {}
        for name in ("pay_invoice", "credit_check", "wire_transfer", "close_account"):
            document = yaml.safe_load((DEMO_DIR / f"{name}.yaml").read_text())
            procedure, _ = Procedure.objects.get_or_create(
                name=document["name"], defaults={"description": document["description"]}
            )
            definition = json.loads(json.dumps(document["definition"]))
            if name == "pay_invoice":
                # Version 1 had a higher approval threshold; version 2 lowered it.
                first = copy.deepcopy(definition)
                first["nodes"]["needs_approval"]["expression"] = "inputs.amount > 1000000"
                self._version(procedure, first, admin, "Approval above 10,000.00")
                versions[name + "_v1"] = procedure.versions.get(number=1)
                versions[name] = self._version(
                    procedure, definition, admin, "Lower approval threshold to 5,000.00"
                )
            else:
                versions[name] = self._version(procedure, definition, admin, "First version")
        return versions

    def _version(self, procedure, definition, admin, notes) -> ProcedureVersion:
        existing = procedure.versions.order_by("-number").first()
        if existing is not None and existing.definition == definition:
            return existing
        return ProcedureVersion.objects.create(
            procedure=procedure,
            number=(existing.number + 1 if existing else 1),
            definition=definition,
            created_by=admin,
            notes=notes,
        )

    # --- runs -------------------------------------------------------------------------------
    def _start(self, version, inputs, *, user=None, environment="sandbox", drive=True):
        run = start_run(
            version=version,
            environment=environment,
            inputs=inputs,
            type="manual" if user else "api",
            user=user,
        )
        if drive:
            self._drive(run)
        run.refresh_from_db()
        return run

    def _drive(self, run):
        """Execute the run here and now, waiting out short retry backoffs."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            engine.drive(run.pk)
            run.refresh_from_db()
            if run.status != RunStatus.RUNNING:
                return
            last = Step.objects.filter(run=run).order_by("-sequence").first()
            if last is None or last.status != StepStatus.FAILED:
                return
            node = run.version.definition["nodes"][last.node_id]
            wait = engine.backoff_seconds(engine.retry_policy(node), last.attempt)
            if wait > MAX_SEED_WAIT_SECONDS:
                return  # leave it visibly running; the scheduler resumes it later
            time.sleep(wait)

    def _review(self, run):
        return ReviewRequest.objects.filter(run=run).order_by("-step_sequence").first()

    def _runs(self, versions, people):
        """Every demo run, in the order the history shows them (oldest first)."""
        self._invoice_runs(versions["pay_invoice"], versions["pay_invoice_v1"], people)
        self._credit_check_runs(versions["credit_check"], people)
        self._supplier_wire_runs(versions["wire_transfer"], people)
        self._account_closure_runs(versions["close_account"], people)

    def _invoice_runs(self, pay, pay_v1, people):
        """Payments: straight through, retried, declined, approved with an override, rejected,
        waiting for a reviewer (one of them started twice), waiting for a second approver and
        cancelled."""
        operator = people["operator"]
        reviewer, controller = people["reviewer"], people["controller"]
        with transaction.atomic():
            # Old version, still visible in history.
            self._start(pay_v1, invoice(10001, "cust_acme", 750000), user=operator)
        # Completed payments, straight through.
        self._start(pay, invoice(10002, "cust_acme", 120000), user=operator)
        self._start(pay, invoice(10003, "cust_globex", 89900, "eur"))
        # A flaky card network: two rate-limited attempts, then paid.
        self._start(pay, invoice(10004, "cust_flaky_stark", 45000), user=operator)
        # Declined card: permanent failure at the charge step.
        self._start(pay, invoice(10005, "cust_wayne", 400002), user=operator)
        # Large invoices wait for a payment approver.
        approved = self._start(pay, invoice(10006, "cust_initech", 1250000), user=operator)
        approve(
            request=self._review(approved),
            reviewer=reviewer,
            overrides={"amount": 1000000},
            comment="Partial payment agreed with the customer; rest next month.",
        )
        self._drive(approved)
        rejected = self._start(pay, invoice(10007, "cust_hooli", 780000), user=operator)
        reject(
            request=self._review(rejected),
            reviewer=controller,
            comment="Invoice disputed by the customer; do not charge.",
        )
        self._start(pay, invoice(10008, "cust_umbrella", 2400000), user=operator)
        self._start(pay, invoice(10009, "cust_tyrell", 990000, "gbp"))
        cancelled = self._start(pay, invoice(10010, "cust_oscorp", 610000), user=operator)
        cancel_run(run=cancelled, user=operator, reason="Customer paid by bank transfer instead")
        # Above 50,000.00 two approvers must agree: Rita has approved, a second is awaited.
        large = self._start(pay, invoice(10011, "cust_massive_dynamic", 7500000), user=operator)
        approve(
            request=self._review(large),
            reviewer=reviewer,
            comment="Matches the signed purchase order.",
        )
        # The billing system sent invoice 10008 a second time: the queue flags both runs.
        self._start(pay, invoice(10008, "cust_umbrella", 2400000))

    def _credit_check_runs(self, credit, people):
        """Credit checks: approved, declined, and two the bureau's test system failed while it
        was down: one already retried (its retry waits for a worker: pending), and one whose
        Retry is left to the operator (it succeeds: the simulator answers again)."""
        operator = people["operator"]
        self._start(
            credit,
            {
                "customer_id": "cust_cyberdyne",
                "email": "cfo@cyberdyne.example",
                "requested_amount": 500000,
                "currency": "USD",
            },
            user=operator,
        )
        self._start(
            credit,
            {
                "customer_id": "cust_wayne",
                "email": "finance@wayne.example",
                "requested_amount": 300000,
                "currency": "USD",
            },
        )
        self._start(
            credit,
            {
                "customer_id": "cust_globex",
                "email": "ap@globex.example",
                "requested_amount": 2500000,
                "currency": "USD",
            },
            user=operator,
        )
        with demo.unreachable_credit_bureau():
            unreachable = [
                self._start(credit, inputs, user=operator)
                for inputs in (
                    {
                        "customer_id": "cust_vandelay",
                        "email": "ap@vandelay.example",
                        "requested_amount": 250000,
                    },
                    {
                        "customer_id": "cust_aperture",
                        "email": "finance@aperture.example",
                        "requested_amount": 200000,
                    },
                )
            ]
        # A transient failure, retried into a new run that waits for a worker (pending).
        if unreachable[0].status == RunStatus.FAILED:
            retry_run(run=unreachable[0], user=operator)
        # Live environment without a configured bureau connection: fails permanently.
        self._start(
            credit,
            {"customer_id": "cust_acme", "email": "ap@acme.example", "requested_amount": 100000},
            environment="live",
        )

    def _supplier_wire_runs(self, wire, people):
        """Supplier wires: one paid, one waiting for treasury, one retrying at the bank."""
        operator = people["operator"]
        reviewer, controller = people["reviewer"], people["controller"]
        paid_wire = self._start(wire, supplier_wire("PO-2291", 1845000), user=operator)
        approve(request=self._review(paid_wire), reviewer=reviewer)
        self._drive(paid_wire)
        self._start(wire, supplier_wire("PO-2292", 560000, "Contoso Ltd"), user=operator)
        # The bank's gateway fails it twice (attempt 1 here); `serve` goes on from there.
        retrying = self._start(wire, supplier_wire("PO-2293-FLAKY", 98000), user=operator)
        approve(request=self._review(retrying), reviewer=controller)
        self._drive(retrying)

    def _account_closure_runs(self, close, people):
        """Account closures: with a balance transfer, for fraud, and an overdrawn account."""
        operator = people["operator"]
        self._start(
            close,
            {
                "account_id": "acc_58213",
                "reason": "customer_request",
                "customer_email": "jane.doe@example.com",
                "transfer_balance_to": "GB33BUKB20201555555555",
            },
            user=operator,
        )
        self._start(
            close,
            {"account_id": "acc_77120", "reason": "fraud", "customer_email": "sam.roe@example.com"},
            user=operator,
        )
        self._start(
            close,
            {
                "account_id": "acc_overdrawn_3391",
                "reason": "dormant",
                "customer_email": "lee.poe@example.com",
            },
        )


def invoice(number, customer, amount, currency="usd") -> dict:
    """Inputs of a Pay invoice run."""
    return {
        "invoice_id": f"INV-{number}",
        "customer_id": customer,
        "amount": amount,
        "currency": currency,
    }


def supplier_wire(reference, amount, name="Northwind Traders GmbH") -> dict:
    """Inputs of a Supplier wire run to the demo beneficiary's account."""
    return {
        "amount": amount,
        "currency": "EUR",
        "beneficiary_name": name,
        "beneficiary_iban": IBAN,
        "beneficiary_bic": BIC,
        "reference": reference,
        "remittance_email": "ap@northwind.example",
    }
