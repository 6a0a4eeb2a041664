"""Definition validation, and loading definitions from files with manage.py load_procedure."""

import copy
import json

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from procedures.definition import (
    DefinitionError,
    DefinitionProblem,
    check_definition,
    clean_version_definition,
    validate_definition,
)
from procedures.demo import DEMO_DIR
from procedures.models import Procedure, ProcedureVersion

# The demo procedures themselves (what manage.py seed_demo loads), not copies of them.
FIXTURES = DEMO_DIR

# The example from the product brief.
EXAMPLE = {
    "input_schema": {
        "type": "object",
        "required": ["customer_id", "amount"],
        "properties": {
            "customer_id": {"type": "string"},
            "amount": {"type": "integer", "minimum": 1},
        },
    },
    "start": "credit",
    "nodes": {
        "credit": {
            "type": "tool",
            "tool": "credit.check",
            "input": {"customer_id": "inputs.customer_id"},
            "next": "decide",
            "retry": {"max_attempts": 3, "backoff_seconds": 1, "max_backoff_seconds": 60},
        },
        "decide": {
            "type": "condition",
            "expression": "steps.credit.output.score >= 650",
            "then": "review",
            "else": "decline",
        },
        "review": {
            "type": "human_review",
            "title": "Approve payment",
            "instructions": "Check the invoice first.",
            "show": {"amount": "inputs.amount", "customer": "inputs.customer_id"},
            "overridable": {"amount": {"type": "number", "exclusiveMinimum": 0}},
            "reviewer_group": "Payment approvers",
            "next": "pay",
        },
        "pay": {
            "type": "tool",
            "tool": "stripe.create_payment_intent",
            "input": {
                "amount": "steps.review.output.amount",
                "currency": "'usd'",
                "customer": "inputs.customer_id",
            },
            "next": "done",
        },
        "done": {"type": "output", "value": {"payment_intent": "steps.pay.output.id"}},
        "decline": {"type": "fail", "reason": "Credit score below 650"},
    },
}


def example(**changes):
    """A deep copy of EXAMPLE; `changes` maps node id (or "top") to a function editing it."""
    definition = copy.deepcopy(EXAMPLE)
    for node_id, change in changes.items():
        change(definition if node_id == "top" else definition["nodes"][node_id])
    return definition


def problems_for(definition, node):
    return [problem.message for problem in validate_definition(definition) if problem.node == node]


def only_problem(definition):
    problems = validate_definition(definition)
    assert len(problems) == 1, problems
    return problems[0]


# --- valid definitions -------------------------------------------------------------------------
def test_example_definition_is_valid():
    assert validate_definition(EXAMPLE) == []


@pytest.mark.parametrize("name", ["pay_invoice.yaml", "credit_check.yaml", "wire_transfer.yaml"])
def test_fixture_definition_is_valid(name):
    document = yaml.safe_load((FIXTURES / name).read_text())
    assert validate_definition(document["definition"]) == []


def test_missing_input_schema_means_any_object():
    definition = example(top=lambda d: d.pop("input_schema"))
    assert validate_definition(definition) == []


def test_loop_with_a_way_out_is_accepted():
    definition = example(
        top=lambda d: d["nodes"].update(
            poll={
                "type": "tool",
                "tool": "http.request",
                "input": {"method": "'GET'", "url": "'https://bank.example/status'"},
                "next": "settled",
            },
            settled={
                "type": "condition",
                "expression": "steps.poll.output.body.settled",
                "then": "done",
                "else": "poll",
            },
        ),
        pay=lambda node: node.update(next="poll"),
    )
    assert validate_definition(definition) == []


# --- the definition as a whole -----------------------------------------------------------------
def test_definition_that_is_not_an_object_is_reported():
    problem = only_problem(["not", "a", "definition"])
    assert problem.node is None
    assert "must be a JSON object" in problem.message


def test_missing_start_and_nodes_are_reported():
    messages = [str(p) for p in validate_definition({"input_schema": {"type": "object"}})]
    assert "the definition has no 'nodes'" in messages
    assert "the definition has no 'start' node" in messages


def test_unknown_top_level_key_is_reported():
    problem = only_problem(example(top=lambda d: d.update(input_shema={})))
    assert problem == DefinitionProblem(
        None, "unknown top-level key 'input_shema'; expected input_schema, start, nodes"
    )


def test_start_naming_no_node_is_reported():
    definition = example(top=lambda d: d.update(start="begin"))
    messages = problems_for(definition, None)
    assert any(message.startswith("start names no node: 'begin'") for message in messages)


def test_invalid_input_schema_is_reported():
    definition = example(top=lambda d: d["input_schema"].update(required="customer_id"))
    problem = only_problem(definition)
    assert problem.node is None
    assert problem.message.startswith("input_schema is not a valid JSON Schema")


def test_input_schema_that_is_not_an_object_is_reported():
    definition = example(top=lambda d: d.update(input_schema={"type": "string"}))
    assert only_problem(definition).message.startswith("input_schema must describe an object")


# --- nodes -------------------------------------------------------------------------------------
def test_node_that_is_not_an_object_is_reported_by_node():
    definition = example(top=lambda d: d["nodes"].update(decline="fail"))
    assert problems_for(definition, "decline") == ["a node must be an object with a 'type'"]


def test_unknown_node_type_is_reported_by_node():
    definition = example(decline=lambda node: node.update(type="abort"))
    assert problems_for(definition, "decline") == [
        "unknown type 'abort'; a node type is one of: tool, condition, human_review, output, fail"
    ]


def test_node_missing_required_keys_is_reported_by_node():
    definition = example(
        decide=lambda node: node.pop("expression"), decline=lambda node: node.clear()
    )
    assert problems_for(definition, "decide") == ["a condition node needs 'expression'"]
    assert problems_for(definition, "decline") == [
        "no 'type'; a node type is one of: tool, condition, human_review, output, fail"
    ]


def test_unknown_node_key_is_reported_by_node():
    definition = example(done=lambda node: node.update(next="decline"))
    assert problems_for(definition, "done") == [
        "unknown key 'next' for a output node; it takes: outcome, value"
    ]


def test_node_id_that_expressions_cannot_read_is_reported():
    definition = example(
        top=lambda d: d["nodes"].update({"send-mail": d["nodes"].pop("decline")}),
        decide=lambda node: node.update({"else": "send-mail"}),
    )
    assert problems_for(definition, "send-mail")[0].startswith("a node id must start with a letter")


@pytest.mark.parametrize(
    ("node", "key"), [("credit", "next"), ("decide", "then"), ("decide", "else")]
)
def test_reference_naming_no_node_is_reported_by_node(node, key):
    definition = example(**{node: lambda n: n.update({key: "nowhere"})})
    assert any(
        message.startswith(f"'{key}' names no node: 'nowhere'")
        for message in problems_for(definition, node)
    )


def test_unreachable_node_is_reported_by_node():
    definition = example(
        top=lambda d: d["nodes"].update(orphan={"type": "fail", "reason": "Never reached"})
    )
    assert only_problem(definition) == DefinitionProblem(
        "orphan", "unreachable: no path leads here from start 'credit'"
    )


def test_loop_with_no_way_out_is_reported():
    definition = example(
        top=lambda d: d["nodes"].update(
            wait={
                "type": "tool",
                "tool": "notify.email",
                "next": "recheck",
                "input": {"to": "'ops@example.com'", "subject": "'Waiting'", "body": "'...'"},
            },
            recheck={"type": "condition", "expression": "true", "then": "wait", "else": "wait"},
        ),
        pay=lambda node: node.update(next="wait"),
    )
    assert problems_for(definition, "wait") == [
        "nodes 'wait' → 'recheck' → 'wait' form a loop with no way out to an output or fail node"
    ]


def test_node_that_loops_to_itself_with_no_way_out_is_reported():
    definition = example(pay=lambda node: node.update(next="pay"))
    messages = problems_for(definition, "pay")
    assert "nodes 'pay' → 'pay' form a loop with no way out to an output or fail node" in messages


# --- tools -------------------------------------------------------------------------------------
def test_unknown_tool_is_reported_with_the_known_tools():
    definition = example(pay=lambda node: node.update(tool="stripe.charge"))
    message = only_problem(definition).message
    assert message.startswith("tool 'stripe.charge' does not exist; known tools: ")
    assert "stripe.create_payment_intent" in message


def test_tool_input_missing_a_required_key_is_reported():
    definition = example(pay=lambda node: node["input"].pop("currency"))
    assert problems_for(definition, "pay") == [
        "tool 'stripe.create_payment_intent' needs input 'currency', which is not mapped"
    ]


def test_tool_input_with_an_unknown_key_is_reported():
    definition = example(pay=lambda node: node["input"].update(amount_cents="inputs.amount"))
    message = only_problem(definition).message
    assert message.startswith("tool 'stripe.create_payment_intent' has no input 'amount_cents'")


def test_tool_input_literal_of_the_wrong_type_is_reported():
    definition = example(pay=lambda node: node["input"].update(amount=12.5))
    assert problems_for(definition, "pay") == [
        "input 'amount' of tool 'stripe.create_payment_intent' has the fixed value 12.5, which "
        "the tool does not accept: 12.5 is not of type 'integer'"
    ]


def test_tool_input_quoted_text_is_checked_against_the_tool_schema():
    definition = example(pay=lambda node: node["input"].update(currency="'dollars'"))
    assert "'dollars' does not match" in only_problem(definition).message


def test_tool_input_expressions_are_not_type_checked_before_the_run():
    definition = example(pay=lambda node: node["input"].update(currency="inputs.currency"))
    assert validate_definition(definition) == []


def test_tool_input_that_is_not_an_object_is_reported():
    definition = example(credit=lambda node: node.update(input="inputs"))
    assert "'input' must be an object" in problems_for(definition, "credit")[0]


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        ({"max_attempts": 0}, "retry max_attempts must be a whole number from 1 to 10, not 0"),
        ({"max_attempts": 11}, "retry max_attempts must be a whole number from 1 to 10, not 11"),
        ({"max_attempts": 2.5}, "retry max_attempts must be a whole number from 1 to 10, not 2.5"),
        ({"backoff_seconds": 0}, "retry backoff_seconds must be a positive number, not 0"),
        (
            {"max_backoff_seconds": -5},
            "retry max_backoff_seconds must be a positive number, not -5",
        ),
        (
            {"backoff_seconds": 30, "max_backoff_seconds": 10},
            "retry max_backoff_seconds (10) is below backoff_seconds (30)",
        ),
        (
            {"attempts": 3},
            "unknown retry setting 'attempts'; use: backoff_seconds, "
            "max_attempts, max_backoff_seconds",
        ),
        (3, "'retry' must be an object with max_attempts and backoff_seconds"),
    ],
)
def test_retry_settings_that_are_not_sensible_are_reported(retry, expected):
    definition = example(credit=lambda node: node.update(retry=retry))
    assert problems_for(definition, "credit") == [expected]


# --- expressions -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("node", "edit", "where"),
    [
        ("decide", lambda n: n.update(expression="steps.credit.output.score >="), "expression"),
        ("pay", lambda n: n["input"].update(customer="inputs.(customer_id"), "input"),
        ("review", lambda n: n["show"].update(customer="inputs.customer_id)"), "show"),
        ("done", lambda n: n["value"].update(payment_intent="steps.pay.output.id +"), "value"),
    ],
)
def test_expression_that_does_not_parse_is_reported_by_node(node, edit, where):
    messages = problems_for(example(**{node: edit}), node)
    assert len(messages) == 1
    assert f"in {where} does not parse" in messages[0]


def test_expression_reading_a_step_that_does_not_exist_is_reported():
    definition = example(done=lambda n: n["value"].update(payment_intent="steps.payment.output.id"))
    assert problems_for(definition, "done") == [
        "expression `steps.payment.output.id` in value reads steps.payment, but there is no node "
        "'payment'"
    ]


# --- human review ------------------------------------------------------------------------------
def test_overridable_field_not_shown_is_reported():
    definition = example(
        review=lambda n: n["overridable"].update(currency={"type": "string", "enum": ["usd"]})
    )
    assert problems_for(definition, "review") == [
        "overridable field 'currency' is not in 'show'; reviewers can only change values they "
        "are shown"
    ]


def test_invalid_overridable_schema_is_reported():
    definition = example(review=lambda n: n["overridable"].update(amount={"type": "money"}))
    message = only_problem(definition).message
    assert message.startswith("overridable field 'amount' has an invalid JSON Schema")


def test_empty_review_title_is_reported():
    definition = example(review=lambda n: n.update(title="  "))
    assert problems_for(definition, "review") == ["the review 'title' must be non-empty text"]


# --- review policies: overrides, quorum, groups, deadlines, confirmation ------------------------
def with_review(**keys):
    return example(review=lambda node: node.update(keys))


def test_a_full_review_policy_is_valid():
    definition = with_review(
        overridable={
            "amount": {
                "schema": {"type": "number", "exclusiveMinimum": 0},
                "direction": "decrease",
                "max_change_percent": 25,
            }
        },
        payment={"amount": "amount", "payee": "customer"},
        approvals="2 if inputs.amount > 5000000 else 1",
        timeout="24h",
        on_timeout="escalate",
        escalate_to="Finance managers",
        escalation_timeout="1d 12h",
        confirm_above=1000000,
    )
    assert validate_definition(definition) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"schema": {"type": "integer"}, "direction": "down"},
            "overridable field 'amount' has direction 'down'; use one of: decrease, increase, any",
        ),
        (
            {"schema": {"type": "integer"}, "max_change_percent": 0},
            "overridable field 'amount': max_change_percent must be a positive number, not 0",
        ),
        (
            {"schema": {"type": "string"}, "direction": "decrease"},
            "overridable field 'amount': a direction or max_change_percent needs a number (its "
            "schema's type must be integer or number)",
        ),
        (
            {"schema": {"type": "integer"}, "limit": 5},
            "unknown key 'limit' for overridable field 'amount'; it takes: direction, "
            "max_change_percent, schema",
        ),
    ],
)
def test_an_override_policy_outside_the_rules_is_reported(spec, expected):
    definition = with_review(overridable={"amount": spec})
    assert problems_for(definition, "review") == [expected]


@pytest.mark.parametrize(
    ("approvals", "expected"),
    [
        (0, "'approvals' must be a whole number from 1 to 10 (or an expression giving one), not 0"),
        (
            11,
            "'approvals' must be a whole number from 1 to 10 (or an expression giving one), not 11",
        ),
        (
            True,
            "'approvals' must be a whole number from 1 to 10 (or an expression giving one), "
            "not True",
        ),
        ("2 if inputs.amount >", "expression `2 if inputs.amount >` in approvals does not parse"),
    ],
)
def test_approvals_that_cannot_be_a_quorum_are_reported(approvals, expected):
    problems = problems_for(with_review(approvals=approvals), "review")
    assert len(problems) == 1 and problems[0].startswith(expected)


def test_groups_and_reviewer_group_together_are_reported():
    definition = with_review(groups=["Treasury"])
    assert problems_for(definition, "review") == [
        "give either 'reviewer_group' or 'groups', not both"
    ]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"timeout": "soon"},
            "'timeout' must be a duration such as 24h, 90m, 2d or 1d 12h, not 'soon'",
        ),
        ({"timeout": "30s"}, "'timeout' must be from 1 minute to 90 days, not '30s'"),
        (
            {"on_timeout": "approve", "timeout": "1h"},
            "'on_timeout' must be reject or escalate, not 'approve'",
        ),
        ({"on_timeout": "reject"}, "'on_timeout' needs a 'timeout'"),
        (
            {"on_timeout": "escalate", "timeout": "1h"},
            "'on_timeout: escalate' needs 'escalate_to', the group that decides after it",
        ),
        (
            {"on_timeout": "escalate", "timeout": "1h", "escalate_to": "Payment approvers"},
            "'escalate_to' must be another group than the reviewers' (Payment approvers)",
        ),
        (
            {"escalate_to": "Finance", "timeout": "1h"},
            "'escalate_to' is only used with 'on_timeout: escalate'",
        ),
    ],
)
def test_deadlines_that_cannot_work_are_reported(keys, expected):
    assert problems_for(with_review(**keys), "review") == [expected]


def test_a_timeout_never_approves_so_on_timeout_cannot_be_approve():
    # Peers auto-approve on timeout; here nothing is ever approved without a person.
    problems = problems_for(with_review(timeout="1h", on_timeout="approve"), "review")
    assert problems == ["'on_timeout' must be reject or escalate, not 'approve'"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"confirm_above": 100},
            "'confirm_above' needs 'payment' to say which shown field is the amount",
        ),
        (
            {"confirm_above": 1.5, "payment": {"amount": "amount"}},
            "'confirm_above' must be a whole number of minor units (cents), not 1.5",
        ),
        (
            {"payment": {"amount": "total"}},
            "payment amount names 'total', which is not a field in 'show'",
        ),
        (
            {"payment": {"payee": "customer"}},
            "'payment' must name the shown fields of the amount (and of the payee)",
        ),
    ],
)
def test_confirmation_thresholds_and_payment_fields_are_checked(keys, expected):
    assert problems_for(with_review(**keys), "review") == [expected]


def test_the_demo_pay_invoice_review_is_decrease_only_with_two_approvers_above_50000():
    document = yaml.safe_load((FIXTURES / "pay_invoice.yaml").read_text())
    review = document["definition"]["nodes"]["approve_payment"]
    assert review["overridable"]["amount"]["direction"] == "decrease"
    assert review["approvals"] == "2 if inputs.amount > 5000000 else 1"
    assert review["timeout"] == "24h"
    assert review["groups"] == ["Payment approvers"]


# --- many problems at once ---------------------------------------------------------------------
def broken_definition():
    return example(
        top=lambda d: d["input_schema"].update(type="strng"),
        credit=lambda n: n.update(retry={"max_attempts": 50}),
        decide=lambda n: n.update(expression="score >=", then="approve"),
        review=lambda n: n["overridable"].update(fee={"type": "integer"}),
        pay=lambda n: n.update(tool="stripe.charge"),
        decline=lambda n: n.update(type="stop"),
    )


def test_every_problem_is_reported_at_once():
    problems = {
        (problem.node, problem.message.split(":")[0])
        for problem in validate_definition(broken_definition())
    }
    assert {
        (None, "input_schema is not a valid JSON Schema"),
        ("credit", "retry max_attempts must be a whole number from 1 to 10, not 50"),
        ("decide", "'then' names no node"),
        ("decide", "expression `score >=` in expression does not parse"),
        (
            "review",
            "overridable field 'fee' is not in 'show'; reviewers can only change values "
            "they are shown",
        ),
        ("pay", "tool 'stripe.charge' does not exist; known tools"),
        ("decline", "unknown type 'stop'; a node type is one of"),
        ("review", "unreachable"),
    } <= problems


def test_check_definition_raises_with_every_problem():
    with pytest.raises(DefinitionError) as caught:
        check_definition(broken_definition())
    assert caught.value.problems == validate_definition(broken_definition())
    assert str(caught.value).startswith(f"the definition has {len(caught.value.problems)} problems")


def test_check_definition_accepts_a_valid_definition():
    assert check_definition(EXAMPLE) is None


def test_clean_version_definition_raises_validation_error_with_every_message():
    with pytest.raises(ValidationError) as caught:
        clean_version_definition(broken_definition())
    expected = [str(problem) for problem in validate_definition(broken_definition())]
    assert caught.value.messages == expected
    assert "node 'pay': tool 'stripe.charge' does not exist" in " ".join(expected)


def test_clean_version_definition_accepts_a_valid_definition():
    assert clean_version_definition(EXAMPLE) is None


# --- manage.py load_procedure ------------------------------------------------------------------
def load(*args):
    from io import StringIO

    out, err = StringIO(), StringIO()
    call_command("load_procedure", *[str(arg) for arg in args], stdout=out, stderr=err)
    return out.getvalue()


def test_load_procedure_creates_version_1_then_version_2(db, tmp_path):
    first = load(FIXTURES / "pay_invoice.yaml")
    procedure = Procedure.objects.get(name="Pay invoice")
    assert f"{procedure.public_id} (Pay invoice) version 1 created" in first

    document = yaml.safe_load((FIXTURES / "pay_invoice.yaml").read_text())
    document["definition"]["nodes"]["needs_approval"]["expression"] = "inputs.amount > 1000000"
    changed = tmp_path / "pay_invoice_v2.yaml"
    changed.write_text(yaml.safe_dump(document))
    second = load(changed)

    assert f"{procedure.public_id} (Pay invoice) version 2 created" in second
    versions = list(procedure.versions.order_by("number"))
    assert [version.number for version in versions] == [1, 2]
    assert versions[1].definition == document["definition"]
    assert procedure.description.startswith("Charge an invoice")


def test_load_procedure_with_an_unchanged_definition_creates_nothing(db):
    load(FIXTURES / "credit_check.yaml")
    output = load(FIXTURES / "credit_check.yaml")
    assert "version 1 already has this definition; nothing created" in output
    assert ProcedureVersion.objects.filter(procedure__name="Credit line check").count() == 1


def test_load_procedure_with_a_bad_file_lists_every_problem_and_creates_nothing(db, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "Broken", "definition": broken_definition()}))
    from io import StringIO

    err = StringIO()
    with pytest.raises(CommandError, match="nothing was created"):
        call_command("load_procedure", str(bad), stdout=StringIO(), stderr=err)
    listed = err.getvalue()
    for problem in validate_definition(broken_definition()):
        assert f"- {problem}" in listed
    assert not Procedure.objects.exists()
    assert not ProcedureVersion.objects.exists()


def test_load_procedure_takes_a_bare_definition_with_a_name(db, tmp_path):
    path = tmp_path / "wire.json"
    document = yaml.safe_load((FIXTURES / "wire_transfer.yaml").read_text())
    path.write_text(json.dumps(document["definition"]))
    load(path, "--name", "Wires", "--description", "Supplier wires")
    procedure = Procedure.objects.get(name="Wires")
    assert procedure.description == "Supplier wires"
    assert procedure.current_version.definition == document["definition"]


def test_load_procedure_without_a_name_fails(db, tmp_path):
    path = tmp_path / "nameless.json"
    path.write_text(json.dumps(EXAMPLE))
    with pytest.raises(CommandError, match="no name"):
        load(path)
    assert not Procedure.objects.exists()


def test_load_procedure_records_the_user(db):
    user = User.objects.create_user("ada", "ada@example.com", "pw-not-used-42")
    load(FIXTURES / "wire_transfer.yaml", "--user", "ada")
    assert ProcedureVersion.objects.get().created_by == user


def test_load_procedure_with_an_unknown_user_creates_nothing(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        load(FIXTURES / "wire_transfer.yaml", "--user", "nobody")
    assert not Procedure.objects.exists()


def test_a_review_title_longer_than_its_column_is_refused_before_any_run():
    # It would pass here and fail mid-run at the review node, as a database error.
    definition = example(review=lambda node: node.update(title="T" * 301))
    assert problems_for(definition, "review") == [
        "the review 'title' must be at most 300 characters"
    ]
    assert validate_definition(example(review=lambda node: node.update(title="T" * 300))) == []


def test_a_reviewer_group_longer_than_its_column_is_refused():
    definition = example(review=lambda node: node.update(reviewer_group="G" * 151))
    assert problems_for(definition, "review") == ["'reviewer_group' must be at most 150 characters"]


def test_a_node_id_longer_than_its_column_is_refused():
    definition = example()
    definition["nodes"]["n" * 101] = {"type": "output", "value": {}}
    assert "a node id must be at most 100 characters" in [
        p.message for p in validate_definition(definition)
    ]
