"""Trigger configuration checks (the webhook and cron handling itself lives beside them)."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from procedures.expressions import expressions_in, parse_error


def trigger_problems(values: dict, *, has_secret: bool) -> list[tuple[str, str]]:
    """(field, message) for every problem in a trigger's settings."""
    problems = []
    kind = values.get("kind")
    if kind in ("stripe", "linear") and not has_secret:
        problems.append(("secret", "A webhook trigger needs its signing secret."))
    if kind == "cron":
        expression = values.get("cron_expression") or ""
        if not expression or not croniter.is_valid(expression):
            problems.append(("cron_expression", f"{expression!r} is not a valid cron expression."))
    timezone_name = values.get("timezone") or "UTC"
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(("timezone", f"Unknown time zone {timezone_name!r}."))
    event_types = values.get("event_types")
    if event_types is not None and not (
        isinstance(event_types, list) and all(isinstance(e, str) for e in event_types)
    ):
        problems.append(("event_types", "Give a JSON list of event type names."))
    mapping = values.get("input_mapping")
    if mapping is not None:
        if not isinstance(mapping, dict):
            problems.append(("input_mapping", "Give a JSON object: input name → expression."))
        else:
            for expression in expressions_in(mapping):
                problem = parse_error(expression)
                if problem:
                    problems.append(("input_mapping", f"`{expression}` {problem}."))
    return problems
