import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from rapidfolio.admin_mixins import ReadOnlyRecordAdmin
from runs import selectors
from runs.api_keys import create_api_key, revoke
from runs.models import ApiKey, IdempotencyRecord, Run, RunEvent, Step, WebhookEndpoint


def pretty(value) -> str:
    """JSON (or JSON text, as stored for requests and responses) indented, key order kept."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def pretty_field(field: str, label: str):
    """An admin column showing a JSON field pretty-printed."""

    @admin.display(description=label)
    def show(self, obj):
        return format_html("<pre>{}</pre>", pretty(getattr(obj, field)))

    return show


class VisibleRunsAdmin:
    """Run records in admin: only those of runs the staff member may see on the dashboard
    (live ones need runs.view_live_run); any other is admin's own "does not exist".

    `run_field` is the rows' foreign key to their run, empty for runs themselves.
    """

    run_field = "run"

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        if not self.run_field:
            return selectors.visible_runs(request.user, rows)
        return selectors.rows_of_visible_runs(request.user, rows, run_field=self.run_field)


class StepInline(ReadOnlyRecordAdmin, admin.TabularInline):
    model = Step
    fields = [
        "sequence",
        "node_id",
        "node_type",
        "tool",
        "status",
        "attempt",
        "error",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields
    extra = 0
    show_change_link = True


class RunEventInline(ReadOnlyRecordAdmin, admin.TabularInline):
    model = RunEvent
    fields = ["sequence", "type", "actor", "data", "created_at", "hash"]
    readonly_fields = fields
    extra = 0


@admin.register(Run)
class RunAdmin(VisibleRunsAdmin, ReadOnlyRecordAdmin, admin.ModelAdmin):
    run_field = ""
    list_display = [
        "public_id",
        "procedure",
        "version",
        "environment",
        "status",
        "type",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "environment", "type", "procedure"]
    search_fields = ["public_id"]
    date_hierarchy = "created_at"
    list_select_related = ["procedure", "version__procedure"]
    show_full_result_count = False
    readonly_fields = [
        "public_id",
        "procedure",
        "version",
        "environment",
        "type",
        "status",
        "started_by_user",
        "started_by_api_key",
        "started_by_trigger",
        "trigger_event",
        "inputs_pretty",
        "output_pretty",
        "failure_reason",
        "failure_kind",
        "failed_step",
        "retry_of",
        "created_at",
        "started_at",
        "finished_at",
        "lease_expires_at",
    ]
    exclude = ["inputs", "output"]
    inlines = [StepInline, RunEventInline]
    inputs_pretty = pretty_field("inputs", "inputs")
    output_pretty = pretty_field("output", "output")


@admin.register(Step)
class StepAdmin(VisibleRunsAdmin, ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = [
        "run",
        "sequence",
        "node_id",
        "node_type",
        "tool",
        "status",
        "attempt",
        "started_at",
    ]
    list_filter = ["status", "node_type"]
    search_fields = ["run__public_id", "node_id", "tool"]
    list_select_related = ["run"]
    show_full_result_count = False
    readonly_fields = [
        "run",
        "sequence",
        "node_id",
        "node_type",
        "tool",
        "status",
        "attempt",
        "input_pretty",
        "output_pretty",
        "request_pretty",
        "response_pretty",
        "idempotency_key",
        "error",
        "error_kind",
        "started_at",
        "finished_at",
    ]
    exclude = ["input", "output", "request", "response"]
    input_pretty = pretty_field("input", "input")
    output_pretty = pretty_field("output", "output")
    request_pretty = pretty_field("request", "request sent")
    response_pretty = pretty_field("response", "response received")


@admin.register(RunEvent)
class RunEventAdmin(VisibleRunsAdmin, ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = ["run", "sequence", "type", "actor", "created_at"]
    list_filter = ["type"]
    search_fields = ["run__public_id", "actor"]
    list_select_related = ["run"]
    show_full_result_count = False
    readonly_fields = [
        "run",
        "sequence",
        "type",
        "actor",
        "data",
        "created_at",
        "prev_hash",
        "hash",
    ]


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "environment"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "environment", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["environment"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # name and environment are fixed once the key exists
            return ["name", "environment", *self.readonly_fields]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: runs keep pointing at the key that started them

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        api_key, raw_key = create_api_key(
            name=obj.name, environment=obj.environment, created_by=request.user
        )
        obj.pk = api_key.pk
        obj.__dict__.update(api_key.__dict__)
        messages.warning(
            request,
            f"The key for {api_key.name} is {raw_key} — copy it now, it will not be shown again.",
        )

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request, queryset):
        for api_key in queryset:
            revoke(api_key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = ["key", "api_key", "method", "path", "response_status", "created_at"]
    search_fields = ["key"]


class WebhookEndpointForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signing secret; leave blank to keep the current one.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "environment", "events", "enabled", "description"]

    def clean_events(self):
        events = self.cleaned_data["events"] or []
        valid = set(WebhookEndpoint.EventType.values)
        unknown = [e for e in events if e not in valid]
        if not isinstance(events, list) or unknown:
            raise forms.ValidationError(f"Unknown events {unknown}; choose from {sorted(valid)}.")
        return events

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("secret"):
            self.add_error("secret", "A new endpoint needs a signing secret.")
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "environment", "enabled", "created_at"]
    list_filter = ["environment", "enabled"]

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("secret"):
            obj.set_secret(form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)
