import json

from django import forms
from django.contrib import admin
from django.db.models import Max, Sum
from django.utils.html import format_html

from procedures.definition import clean_version_definition
from procedures.models import (
    Connection,
    Procedure,
    ProcedureVersion,
    RejectedDelivery,
    Trigger,
    TriggerEvent,
)
from procedures.triggers import trigger_problems
from rapidfolio.admin_mixins import ReadOnlyRecordAdmin


class ProcedureVersionInline(admin.TabularInline):
    model = ProcedureVersion
    fields = ["number", "created_by", "created_at", "notes"]
    readonly_fields = fields
    extra = 0
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Procedure)
class ProcedureAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "created_at"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id", "created_at"]
    inlines = [ProcedureVersionInline]

    def has_delete_permission(self, request, obj=None):
        return False  # runs point at its versions forever


class ProcedureVersionForm(forms.ModelForm):
    class Meta:
        model = ProcedureVersion
        fields = ["procedure", "definition", "notes"]
        widgets = {"definition": forms.Textarea(attrs={"rows": 30, "cols": 100})}

    def clean_definition(self):
        definition = self.cleaned_data["definition"]
        clean_version_definition(definition)
        return definition


@admin.register(ProcedureVersion)
class ProcedureVersionAdmin(admin.ModelAdmin):
    """Create-only: a version never changes once saved; publish a new one instead."""

    form = ProcedureVersionForm
    list_display = ["procedure", "number", "created_by", "created_at"]
    list_filter = ["procedure"]
    list_select_related = ["procedure", "created_by"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ["procedure", "number", "definition_pretty", "notes", "created_by", "created_at"]
        return []

    def get_fields(self, request, obj=None):
        if obj is not None:
            return self.get_readonly_fields(request, obj)
        return ["procedure", "definition", "notes"]

    @admin.display(description="definition")
    def definition_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.definition, indent=2))

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        latest = obj.procedure.versions.aggregate(n=Max("number"))["n"] or 0
        obj.number = latest + 1
        obj.created_by = request.user
        super().save_model(request, obj, form, change)


class SecretFieldForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again; leave blank to keep the current one.",
    )


class ConnectionForm(SecretFieldForm):
    class Meta:
        model = Connection
        fields = ["integration", "environment", "name", "config"]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["name", "integration", "environment", "secret_hint", "updated_at"]
    list_filter = ["integration", "environment"]
    readonly_fields = ["secret_hint", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("secret"):
            obj.set_secret(form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)


class TriggerForm(SecretFieldForm):
    class Meta:
        model = Trigger
        fields = [
            "name",
            "procedure",
            "environment",
            "kind",
            "enabled",
            "event_types",
            "input_mapping",
            "cron_expression",
            "timezone",
            "cron_inputs",
        ]

    def clean(self):
        cleaned = super().clean()
        for field, message in trigger_problems(
            cleaned,
            has_secret=bool(cleaned.get("secret") or self.instance.encrypted_signing_secret),
        ):
            self.add_error(field, message)
        return cleaned


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    form = TriggerForm
    list_display = ["name", "kind", "procedure", "environment", "enabled", "public_id"]
    list_filter = ["kind", "environment", "enabled"]
    readonly_fields = ["public_id", "created_at", "webhook_path"]

    @admin.display(description="webhook URL path")
    def webhook_path(self, obj):
        if obj.pk and obj.kind in ("stripe", "linear"):
            return f"/hooks/{obj.kind}/{obj.public_id}"
        return "—"

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("secret"):
            obj.set_signing_secret(form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        return False  # runs keep pointing at the trigger that started them; disable instead


@admin.register(TriggerEvent)
class TriggerEventAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = ["trigger", "external_id", "event_type", "outcome", "received_at"]
    list_filter = ["outcome", "trigger__kind"]
    search_fields = ["external_id"]


@admin.register(RejectedDelivery)
class RejectedDeliveryAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
    """A row stands for `count` refused deliveries (runs/triggers/rejections.py keeps them
    bounded); the list's subtitle adds up the deliveries of the rows it lists."""

    list_display = [
        "trigger",
        "reason",
        "remote_addr",
        "count",
        "throttled",
        "received_at",
        "last_seen",
    ]
    list_filter = ["trigger", "throttled"]
    list_select_related = ["trigger"]
    date_hierarchy = "received_at"
    fields = [
        "trigger",
        "reason",
        "remote_addr",
        "count",
        "throttled",
        "received_at",
        "last_seen",
        "body_bytes",
        "body_sha256",
        "body_excerpt",
    ]

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            deliveries = changelist.queryset.aggregate(total=Sum("count"))["total"] or 0
            response.context_data["subtitle"] = (
                f"{deliveries} refused deliveries in {changelist.result_count} rows"
            )
        return response
