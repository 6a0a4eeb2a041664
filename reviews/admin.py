from django.conf import settings
from django.contrib import admin

from rapidfolio.admin_mixins import ReadOnlyRecordAdmin
from reviews.models import LiveApprovalPolicy, ReviewDecision, ReviewRequest
from runs.admin import VisibleRunsAdmin


@admin.register(ReviewRequest)
class ReviewRequestAdmin(VisibleRunsAdmin, ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = ["public_id", "run", "node_id", "title", "created_at"]
    search_fields = ["public_id", "run__public_id"]
    list_select_related = ["run"]
    readonly_fields = [
        "public_id",
        "run",
        "node_id",
        "step_sequence",
        "title",
        "instructions",
        "shown_values",
        "overridable_fields",
        "reviewer_group",
        "policy",
        "deadline",
        "values_sha256",
        "created_at",
    ]


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(VisibleRunsAdmin, ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = [
        "request",
        "sequence",
        "run",
        "reviewer",
        "decided_by",
        "decision",
        "decided_at",
    ]
    list_filter = ["decision", "decided_by"]
    search_fields = ["run__public_id", "request__public_id", "reviewer__username"]
    list_select_related = ["request", "run", "reviewer"]
    readonly_fields = [
        "request",
        "sequence",
        "run",
        "decided_by",
        "reviewer",
        "decision",
        "final",
        "comment",
        "shown_values",
        "shown_context",
        "shown_sha256",
        "confirmed",
        "overrides",
        "deadline",
        "decided_at",
    ]


@admin.register(LiveApprovalPolicy)
class LiveApprovalPolicyAdmin(admin.ModelAdmin):
    """One row: switched on or off, never added twice or deleted (the history keeps who)."""

    list_display = ["__str__", "require_otp", "in_effect", "changed_at"]
    fields = ["require_otp", "in_effect", "changed_at"]
    readonly_fields = ["in_effect", "changed_at"]

    @admin.display(description="In effect")
    def in_effect(self, obj):
        if settings.REQUIRE_OTP_FOR_LIVE_APPROVALS:
            return "Required: the deployment sets REQUIRE_OTP_FOR_LIVE_APPROVALS=1"
        return "Required" if obj and obj.require_otp else "Not required"

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not LiveApprovalPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False
