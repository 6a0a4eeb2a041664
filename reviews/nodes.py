"""`human_review`: pause the run for a reviewer; plugged into the engine's node registry by
ReviewsConfig.ready.

The request row is the reviews app's own; everything else (its event, the transition to
awaiting_review) goes through the run's writer, in the engine's transaction.
"""

from datetime import timedelta

from django.utils import timezone

from procedures.expressions import ExpressionError, resolve
from procedures.node_types import NodeType
from reviews.duplicates import values_digest
from reviews.integrity import REVIEW_REQUESTED, review_request_digest
from reviews.models import ReviewGroup, ReviewRequest
from reviews.policy import PolicyError, ReviewPolicy, overridable_fields, policy_of_node
from reviews.state import lineage_starters
from runs.engine import ENGINE_ACTOR
from runs.integrity import iso
from runs.models import RunStatus


class HumanReviewNode:
    node_type = NodeType.HUMAN_REVIEW

    def successor(self, node: dict, step) -> str:
        return node["next"]

    def execute(self, ctx) -> bool:
        node, run = ctx.node, ctx.run
        try:
            shown = resolve(node.get("show", {}), ctx.expression_context)
            excluded = set(lineage_starters(run))
            policy = policy_of_node(node, ctx.expression_context, excluded)
        except ExpressionError as exc:
            ctx.fail_expression(self.node_type, exc)
            return False
        except PolicyError as exc:
            ctx.fail_at_node(
                self.node_type,
                input={"approvals": node.get("approvals")},
                reason=(f"Review node '{ctx.node_id}' cannot be applied: {exc}"),
            )
            return False
        request = _create_request(ctx, shown, policy)
        ctx.writer.append_event(
            REVIEW_REQUESTED,
            actor=ENGINE_ACTOR,
            data={
                "review": request.public_id,
                "node": ctx.node_id,
                "approvals": policy.approvals,
                "deadline": iso(request.deadline),
                "sha256": review_request_digest(request),
            },
        )
        ctx.transition(RunStatus.AWAITING_REVIEW)
        return False


def _create_request(ctx, shown, policy: ReviewPolicy) -> ReviewRequest:
    """The request (this app's rows: the request, its groups and excluded reviewers)."""
    node, run = ctx.node, ctx.run
    now = timezone.now()
    deadline = now + timedelta(seconds=policy.timeout_seconds) if policy.timeout_seconds else None
    request = ReviewRequest.objects.create(
        run=run,
        node_id=ctx.node_id,
        # The step the decision records, once made (reviews.services).
        step_sequence=ctx.state.next_sequence,
        title=node.get("title", "") or f"Review {run.procedure.name}",
        instructions=node.get("instructions", ""),
        shown_values=shown,
        overridable_fields=overridable_fields(node),
        reviewer_group=policy.groups[0] if len(policy.groups) == 1 else "",
        created_at=now,
        policy=policy.as_json(),
        deadline=deadline,
        values_sha256=values_digest(shown),
    )
    groups = [ReviewGroup(request=request, name=name) for name in policy.groups]
    if policy.escalates:
        groups.append(ReviewGroup(request=request, name=policy.escalate_to, escalation=True))
    ReviewGroup.objects.bulk_create(groups)
    through = ReviewRequest.lineage_starters.through
    through.objects.bulk_create(
        [
            through(reviewrequest=request, user_id=user_id)
            for user_id in policy.excluded_reviewer_ids
        ]
    )
    return request
