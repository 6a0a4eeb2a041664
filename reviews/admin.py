from django.contrib import admin

from rapidfolio.admin_mixins import ReadOnlyRecordAdmin
from reviews.models import ReviewDecision, ReviewRequest


@admin.register(ReviewRequest)
class ReviewRequestAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
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
        "created_at",
    ]


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = ["request", "run", "reviewer", "decision", "decided_at"]
    list_filter = ["decision"]
    search_fields = ["run__public_id", "request__public_id", "reviewer__username"]
    list_select_related = ["request", "run", "reviewer"]
    readonly_fields = [
        "request",
        "run",
        "reviewer",
        "decision",
        "comment",
        "shown_values",
        "overrides",
        "decided_at",
    ]
