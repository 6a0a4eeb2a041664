"""Server time of the Runs list's search (`?q=`) at the seeded size, through the real view.

The cases are what an operator types: the start of a run id, a whole run id, an invoice number
and a customer exactly, part of a supplier's name (many matches) and of a customer id (few),
each alone and with a status filter, one followed to its next page, and a search that finds
nothing (the worst case for an index: nothing stops the scan early). Each value is read from
the seeded runs themselves (bench/seed.py gives every run references of its own). With
--explain, each query is run under EXPLAIN (ANALYZE, BUFFERS) and checked for a Seq Scan as the
list's are (bench/pages.py).
"""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench.pages import LIST_TARGET_MS, _client, _operator, _query_string, _time, explain_list_query
from bench.report import summary
from runs import selectors
from runs.models import Run

SMALL_TABLE_RUNS = 100_000


def _a_run_with(field: str, *, offset_share: float = 0.5) -> Run:
    """A seeded run, from about `offset_share` of the way through the year, that has the
    reference `field`."""
    runs = Run.objects.filter(reference_values__has_key=field).order_by("pk")
    count = Run.objects.count()
    run = runs.filter(pk__gte=int(count * offset_share)).only("public_id", "reference_values")
    found = run.first() or runs.only("public_id", "reference_values").first()
    if found is None:
        raise RuntimeError(f"no seeded run has the reference {field}: reseed (BENCH_RESEED=1)")
    return found


def search_cases() -> dict[str, dict]:
    invoice_run = _a_run_with("invoice_id", offset_share=0.4)
    customer_run = _a_run_with("customer_id", offset_share=0.7)
    wire_run = _a_run_with("beneficiary_name", offset_share=0.2)
    id_run = _a_run_with("customer_id", offset_share=0.3)
    invoice = invoice_run.reference_values["invoice_id"]
    customer = customer_run.reference_values["customer_id"]
    supplier_word = wire_run.reference_values["beneficiary_name"].split()[0]
    cases = {
        "run id prefix (14 chars)": {"q": id_run.public_id[:14]},
        "whole run id": {"q": id_run.public_id},
        "invoice number, exact": {"q": invoice},
        "customer, exact": {"q": customer},
        "customer, partial (few matches)": {"q": customer[:9]},
        f"supplier, partial ({supplier_word!r}, many matches)": {"q": supplier_word.lower()},
        "invoice + status completed": {"q": invoice, "status": ["completed"]},
        "customer + status failed": {"q": customer, "status": ["failed"]},
        "supplier partial + status failed": {"q": supplier_word, "status": ["failed"]},
        "supplier partial + two statuses": {
            "q": supplier_word,
            "status": ["failed", "cancelled"],
        },
        "no match": {"q": "nothing-like-this-anywhere"},
    }
    viewer = _operator()
    params = {"q": supplier_word}
    cursor = selectors.list_runs(params, viewer=viewer).next_cursor
    if cursor:
        cases["supplier partial, next page"] = {**params, "cursor": cursor}
    return cases


def measure_search(config: dict, *, explain: bool) -> dict:
    client = _client()
    samples = config["samples"]
    small = Run.objects.count() < SMALL_TABLE_RUNS
    figures, plans, queries, matches = {}, {}, {}, {}
    cases = search_cases()
    for name, params in cases.items():
        url = reverse("runs:list") + "?" + _query_string(params)

        def call(url=url):
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        figures[name] = summary(_time(call, samples))
        with CaptureQueriesContext(connection) as captured:
            call()
        queries[name] = len(captured.captured_queries)
        filters = {k: v for k, v in params.items() if k != "cursor"}
        page = selectors.list_runs(filters, viewer=_operator(), cursor=params.get("cursor"))
        matches[name] = len(page.runs)
        if explain:
            plans[name] = explain_list_query(filters, params.get("cursor"), small=small)
    result = {
        "via": "view /runs/?q=",
        "target_ms": LIST_TARGET_MS,
        "cases": cases,
        "queries": figures,
        "queries_per_request": queries,
        "rows_on_first_page": matches,
    }
    if explain:
        result["plans"] = plans
    return result
