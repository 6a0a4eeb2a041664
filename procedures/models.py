from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from procedures.definition import clean_version_definition
from rapidfolio import crypto, ids


class Environment(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox"
    LIVE = "live", "Live"


class Procedure(models.Model):
    public_id = models.CharField(
        max_length=ids.PUBLIC_ID_MAX_LENGTH, unique=True, default=ids.procedure_id, editable=False
    )
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def current_version(self):
        version = self.versions.order_by("-number").first()
        if version is not None:
            version.procedure = self  # the caller has it: no second query for it
        return version


class ProcedureVersion(models.Model):
    """One immutable definition of a procedure. Runs point here, never at the procedure alone."""

    procedure = models.ForeignKey(Procedure, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    notes = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["procedure", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["procedure", "number"], name="procedureversion_unique_number"
            ),
            models.CheckConstraint(
                condition=models.Q(number__gte=1), name="procedureversion_number_positive"
            ),
        ]

    def __str__(self):
        return f"{self.procedure.name} v{self.number}"

    def save(self, *args, **kwargs):
        # The database refuses updates too (see runs migration 0002); this gives the clear error.
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Procedure versions are immutable; create a new version instead.")
        # No way around validation: a version that cannot run must never exist.
        self.clean()
        super().save(*args, **kwargs)

    def clean(self):
        clean_version_definition(self.definition)

    @property
    def input_schema(self) -> dict:
        return self.definition.get("input_schema", {"type": "object"})


class Connection(models.Model):
    """Credentials for one integration in one environment, stored encrypted."""

    integration = models.CharField(max_length=50, help_text="e.g. stripe, bank, credit, http")
    environment = models.CharField(max_length=10, choices=Environment.choices)
    name = models.CharField(max_length=200)
    config = models.JSONField(
        default=dict, blank=True, help_text="Non-secret settings such as a base URL or account id."
    )
    encrypted_secret = models.TextField(blank=True, editable=False)
    secret_hint = models.CharField(max_length=20, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "environment"], name="connection_one_per_integration_env"
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.integration}, {self.environment})"

    def set_secret(self, secret: str) -> None:
        self.encrypted_secret = crypto.encrypt(secret) if secret else ""
        self.secret_hint = crypto.mask(secret)

    def get_secret(self) -> str:
        return crypto.decrypt(self.encrypted_secret) if self.encrypted_secret else ""


class TriggerKind(models.TextChoices):
    STRIPE = "stripe", "Stripe webhook"
    LINEAR = "linear", "Linear webhook"
    CRON = "cron", "Cron schedule"


class Trigger(models.Model):
    """Starts runs of a procedure from an outside event or a schedule."""

    public_id = models.CharField(
        max_length=ids.PUBLIC_ID_MAX_LENGTH, unique=True, default=ids.trigger_id, editable=False
    )
    procedure = models.ForeignKey(Procedure, on_delete=models.PROTECT, related_name="triggers")
    environment = models.CharField(max_length=10, choices=Environment.choices)
    kind = models.CharField(max_length=10, choices=TriggerKind.choices)
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    encrypted_signing_secret = models.TextField(blank=True, editable=False)
    event_types = models.JSONField(
        default=list, blank=True, help_text="Event types that start a run (Stripe, Linear)."
    )
    input_mapping = models.JSONField(
        default=dict,
        blank=True,
        help_text="Procedure input name → expression over `event` (the webhook payload).",
    )
    cron_expression = models.CharField(max_length=100, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    cron_inputs = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="cron") | ~models.Q(cron_expression=""),
                name="trigger_cron_needs_expression",
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.get_kind_display()}, {self.environment})"

    def set_signing_secret(self, secret: str) -> None:
        self.encrypted_signing_secret = crypto.encrypt(secret) if secret else ""

    def get_signing_secret(self) -> str:
        if not self.encrypted_signing_secret:
            return ""
        return crypto.decrypt(self.encrypted_signing_secret)


class TriggerOutcome(models.TextChoices):
    """What became of an accepted event (runs/triggers/services.py explains each)."""

    STARTED = "started", "Run started"
    IGNORED = "ignored", "Ignored (event type not subscribed)"
    INVALID_INPUTS = "invalid_inputs", "Invalid inputs"
    NO_VERSION = "no_version", "No version to run"


class TriggerEvent(models.Model):
    """An accepted outside event (or a cron firing). Unique per trigger: the deduplication key."""

    trigger = models.ForeignKey(Trigger, on_delete=models.PROTECT, related_name="events")
    external_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=100, blank=True)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(
        max_length=20, choices=TriggerOutcome.choices, default=TriggerOutcome.STARTED
    )
    detail = models.TextField(blank=True)
    # SHA-256 of the webhook body as signed ("" for a cron firing): a second deduplication key
    # on what the sender signed, so a replayed body never starts a second run whatever its
    # unsigned headers say (runs/triggers/services.py).
    signed_body_sha256 = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "external_id"], name="triggerevent_unique_external_id"
            ),
            models.UniqueConstraint(
                fields=["trigger", "signed_body_sha256"],
                condition=~models.Q(signed_body_sha256=""),
                name="triggerevent_unique_signed_body",
            ),
        ]
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.trigger.name}: {self.external_id}"


class RejectedDelivery(models.Model):
    """Webhook deliveries refused before anything started (bad signature, stale timestamp).

    Anyone can send them, so they are kept bounded (runs/triggers/rejections.py): a row stands
    for `count` deliveries (repeats of one body from one address for one reason), and past the
    per-trigger rate limit a `throttled` row per minute counts the rest. The counts add up to
    every refused delivery.
    """

    trigger = models.ForeignKey(
        Trigger, null=True, blank=True, on_delete=models.PROTECT, related_name="rejections"
    )
    received_at = models.DateTimeField("first seen", default=timezone.now, editable=False)
    last_seen = models.DateTimeField(default=timezone.now, editable=False)
    count = models.PositiveIntegerField(default=1, help_text="Deliveries this row stands for.")
    throttled = models.BooleanField(
        default=False,
        help_text="Deliveries beyond the trigger's rate limit: counted here, not itemised.",
    )
    reason = models.CharField(max_length=300)
    remote_addr = models.CharField(max_length=64, blank=True)
    body_excerpt = models.TextField(blank=True)
    body_sha256 = models.CharField("body SHA-256", max_length=64, blank=True)
    # None: not one body (a throttled row), or recorded before lengths were kept.
    body_bytes = models.PositiveIntegerField("body length (bytes)", null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "rejected deliveries"
        # runs/triggers/rejections.py: a trigger's rows of the last minute (rate limit) and of
        # the aggregation window (repeats), both ranges on received_at.
        indexes = [
            models.Index(fields=["trigger", "received_at"], name="rejecteddelivery_trigger_seen")
        ]

    def __str__(self):
        return f"{self.reason} at {self.received_at:%Y-%m-%d %H:%M:%S}"
