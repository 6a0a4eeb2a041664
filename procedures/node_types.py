"""The kinds of node a procedure definition is made of, in the definition's own words."""

from django.db import models


class NodeType(models.TextChoices):
    TOOL = "tool"
    CONDITION = "condition"
    HUMAN_REVIEW = "human_review", "Human review"
    OUTPUT = "output"
    FAIL = "fail"
