"""Conditions and input mappings: what an expression can read, and what it is refused."""

import threading

import pytest

from procedures.expressions import ExpressionError, evaluate, resolve

CONTEXT = {
    "inputs": {"amount": 2500, "currency": "eur", "customer": {"id": "cus_1"}, "lines": [3, 4]},
    "steps": {"credit": {"output": {"score": 712, "approved": True}}},
}


@pytest.mark.parametrize(
    "expression, value",
    [
        ("inputs.amount >= 100 and inputs.amount <= 5000000", True),
        ("steps.credit.output.score", 712),
        ("inputs['customer']['id']", "cus_1"),
        ("upper(inputs.currency)", "EUR"),
        ("sum(inputs.lines)", 7),
        ("[line * 2 for line in inputs.lines]", [6, 8]),
        (
            "{'id': inputs.customer.id, 'ok': steps.credit.output.approved}",
            {"id": "cus_1", "ok": True},
        ),
        ("get(inputs.customer, 'email', 'none')", "none"),
    ],
)
def test_expression_reads_inputs_and_step_outputs(expression, value):
    assert evaluate(expression, CONTEXT) == value


@pytest.mark.parametrize(
    "expression, message",
    [
        ("inputs.missing", "no value named 'missing'"),
        ("inputs.currency.upper", "'upper' cannot be read from a str"),
        ("inputs.lines.append", "'append' cannot be read from a list"),
        ("inputs.__class__", "no value named '__class__'"),
        ("().__class__", "cannot be read from a tuple"),
        ("type(inputs)", "Function 'type' not defined"),
        ("__import__('os')", "Function '__import__' not defined"),
        ("open('/etc/passwd')", "Function 'open' not defined"),
    ],
)
def test_expression_cannot_reach_beyond_the_json_it_is_given(expression, message):
    with pytest.raises(ExpressionError) as raised:
        evaluate(expression, CONTEXT)
    assert message in raised.value.message


def test_each_evaluation_reads_only_its_own_context():
    assert evaluate("inputs.amount", {"inputs": {"amount": 1}}) == 1
    with pytest.raises(ExpressionError, match="no value named 'amount'"):
        evaluate("inputs.amount", {"inputs": {}})


def test_a_mapping_resolves_expressions_and_keeps_literals():
    mapping = {
        "amount": "inputs.amount",
        "currency": "'usd'",
        "count": 2,
        "tags": ["inputs.currency"],
    }
    assert resolve(mapping, CONTEXT) == {
        "amount": 2500,
        "currency": "usd",
        "count": 2,
        "tags": ["eur"],
    }


def test_threads_evaluating_at_once_see_their_own_runs():
    # Workers evaluate in several threads; each thread's evaluator reads its own context.
    errors, results = [], {}

    def evaluate_many(number: int):
        try:
            context = {"inputs": {"n": number}}
            results[number] = {evaluate("inputs.n * 10", context) for _ in range(2000)}
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {n: {n * 10} for n in range(8)}
