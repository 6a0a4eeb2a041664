"""`human_review`: pause the run for a reviewer; plugged into the engine's node registry by
ReviewsConfig.ready.

The request row is the reviews app's own; everything else (its event, the transition to
awaiting_review) goes through the run's writer, in the engine's transaction.
"""

from django.utils import timezone

from procedures.expressions import ExpressionError, resolve
from procedures.node_types import NodeType
from reviews.integrity import REVIEW_REQUESTED, review_request_digest
from reviews.models import ReviewRequest
from runs.engine import ENGINE_ACTOR
from runs.models import RunStatus


class HumanReviewNode:
    node_type = NodeType.HUMAN_REVIEW

    def successor(self, node: dict, step) -> str:
        return node["next"]

    def execute(self, ctx) -> bool:
        node, run = ctx.node, ctx.run
        try:
            shown = resolve(node.get("show", {}), ctx.expression_context)
        except ExpressionError as exc:
            ctx.fail_expression(self.node_type, exc)
            return False
        request = ReviewRequest.objects.create(
            run=run,
            node_id=ctx.node_id,
            # The step the decision records, once made (reviews.services).
            step_sequence=ctx.state.next_sequence,
            title=node.get("title", "") or f"Review {run.procedure.name}",
            instructions=node.get("instructions", ""),
            shown_values=shown,
            overridable_fields=[
                {"name": name, "schema": schema}
                for name, schema in (node.get("overridable") or {}).items()
            ],
            reviewer_group=node.get("reviewer_group", ""),
            created_at=timezone.now(),
        )
        ctx.writer.append_event(
            REVIEW_REQUESTED,
            actor=ENGINE_ACTOR,
            data={
                "review": request.public_id,
                "node": ctx.node_id,
                "sha256": review_request_digest(request),
            },
        )
        ctx.transition(RunStatus.AWAITING_REVIEW)
        return False
