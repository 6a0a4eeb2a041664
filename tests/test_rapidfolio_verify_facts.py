"""rapidfolio_verify's digests are the product's: byte for byte, or stored runs stop verifying.

The pinned hex values were computed with the product's own functions (runs.integrity and
reviews.integrity) on the values below, so they hold even once the product imports ours. The
last tests compare with those functions directly, while the product still has them.
"""

from datetime import UTC, datetime
from types import SimpleNamespace

from rapidfolio_verify import facts
from rapidfolio_verify.canonical import canonical_json, digest

MOMENT = datetime(2025, 3, 1, 9, 0, 1, 123, tzinfo=UTC)
ISO = MOMENT.isoformat()  # "2025-03-01T09:00:01.000123+00:00", as the product writes it
DATA = {"header": {"procedure": "proc_€", "version": 3}, "amount": 12.5, "ok": True, "none": None}
STEP = {
    "sequence": 1,
    "node_id": "charge",
    "node_type": "tool",
    "tool": "stripe",
    "status": "succeeded",
    "attempt": 1,
    "input": {"a": "é"},
    "output": None,
    "request": '{"x": 1}',
    "response": "ok",
    "idempotency_key": "k",
    "error": "",
    "error_kind": "",
    "started_at": ISO,
    "finished_at": None,
}
REQUEST = {
    "review": "rev_1",
    "node_id": "approve",
    "shown_values": {"amount": "1.00"},
    "overridable_fields": ["amount"],
    "reviewer_group": "finance",
}
DECISION = {
    "review": "rev_1",
    "reviewer_id": 12,
    "decision": "approved",
    "comment": "ok ✓",
    "shown_values": {"amount": "1.00"},
    "overrides": [{"field": "amount", "before": "1.00", "after": "0.90"}],
    "decided_at": ISO,
}


def first_event_hash() -> str:
    return facts.event_hash(
        prev_hash=facts.GENESIS_HASH,
        run_public_id="run_1",
        sequence=1,
        type="run.created",
        actor="user:7",
        data=DATA,
        created_at=ISO,
    )


def test_canonical_json_is_sorted_compact_and_unescaped():
    assert canonical_json({"b": [1, 2.0, "ü"], "a": None}) == '{"a":null,"b":[1,2.0,"ü"]}'
    assert canonical_json({"when": MOMENT}) == '{"when":"2025-03-01 09:00:01.000123+00:00"}'
    assert digest({"b": [1, 2.0, "ü"], "a": None}) == (
        "7d9223f06da61476ede3c1cf076781b2ef9de4532b03e0eb872561624c3dd134"
    )


def test_event_hashes_are_the_products():
    assert first_event_hash() == "edcd0c0d42c20611a62e166e8c12c716eab024076f82b8a604a900e206a502b0"
    second = facts.event_hash(
        prev_hash="a" * 64,
        run_public_id="run_1",
        sequence=2,
        type="x",
        actor="",
        data={},
        created_at=None,
    )
    assert second == "0cfea815a113c9fdded47097d9071f736c64b034dada456dc46a1a2571ffd653"


def test_row_digests_are_the_products():
    assert facts.step_digest(STEP) == (
        "2eca841fd256d8dbf79c454a38bbcee17706ecbc4eb0d327dc3979620a699624"
    )
    assert facts.review_request_digest({**REQUEST, "title": "not pinned"}) == (
        "41238e4efd0eece82bb87dbe40b53fbf847290085c4324587e106b82b177e872"
    )
    assert facts.decision_digest({**DECISION, "reviewer": "not pinned"}) == (
        "f4bc691bdfb79374740b5fd74306f08061b6137431cbdc132e906f05cb18fbd0"
    )


def test_leaf_bytes_are_the_event_with_its_links_and_nothing_else():
    event = {
        "run": "run_1",
        "sequence": 1,
        "type": "run.created",
        "actor": "user:7",
        "data": DATA,
        "created_at": ISO,
        "prev_hash": facts.GENESIS_HASH,
        "hash": first_event_hash(),
    }
    expected = canonical_json(event).encode()
    assert facts.leaf_bytes(event) == expected
    assert facts.leaf_bytes({**event, "index": 4, "inclusion_proof": []}) == expected


def test_the_products_own_functions_agree():
    from reviews import integrity as reviews_integrity
    from runs import integrity as runs_integrity

    product_event_hash = runs_integrity.event_hash(
        prev_hash=facts.GENESIS_HASH,
        run_public_id="run_1",
        sequence=1,
        type="run.created",
        actor="user:7",
        data=DATA,
        created_at=MOMENT,
    )
    assert product_event_hash == first_event_hash()
    step = SimpleNamespace(**{**STEP, "started_at": MOMENT})
    assert runs_integrity.step_digest(step) == facts.step_digest(STEP)
    request_fields = {k: v for k, v in REQUEST.items() if k != "review"}
    # A request and a decision recorded before review policies: the columns' defaults.
    request = SimpleNamespace(public_id="rev_1", policy={}, deadline=None, **request_fields)
    assert reviews_integrity.review_request_digest(request) == facts.review_request_digest(REQUEST)
    fields = {k: v for k, v in DECISION.items() if k != "review"}
    before_policies = dict(sequence=1, decided_by="person", shown_context={}, shown_sha256="")
    before_policies.update(confirmed=[], final=True, deadline=None)
    decision = SimpleNamespace(
        request=request, **{**fields, **before_policies, "decided_at": MOMENT}
    )
    assert reviews_integrity.decision_digest(decision) == facts.decision_digest(DECISION)
