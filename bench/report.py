"""Figures: percentiles, the printed table and bench-results/latest.json."""

import datetime
import json
import os
import platform
import statistics
from pathlib import Path

from bench import database


def summary(samples_ms: list[float]) -> dict:
    """Median and p95 (nearest rank) of timings in milliseconds."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"n": 0, "median_ms": None, "p95_ms": None, "max_ms": None}
    rank = max(0, -(-95 * len(ordered) // 100) - 1)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[rank], 2),
        "max_ms": round(ordered[-1], 2),
    }


def machine(database_url: str) -> dict:
    with database.connect(database_url) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers', 'synchronous_commit', 'fsync', 'work_mem')"
            ).fetchall()
        )
    memory_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "postgresql": server,
        "postgresql_settings": settings,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _row(name: str, figure: dict, target: float | None, size: str) -> str:
    median, p95 = figure.get("median_ms"), figure.get("p95_ms")
    verdict = ""
    if target is not None and p95 is not None:
        verdict = "PASS" if p95 <= target else "MISS"
    return f"  {name:<44} {_ms(median):>9} {_ms(p95):>9} {_ms(target):>8}  {verdict:<5} {size}"


def _ms(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def print_report(results: dict) -> None:
    runs = results["runs"]
    seed = results["seed"]
    print()
    print(f"Rapidfolio bench on {results['database']} — {runs:,} runs")
    m = results["machine"]
    print(
        f"  machine: {m['nproc']} CPUs, {m['memory_gb']} GB, PostgreSQL {m['postgresql']}, "
        f"Python {m['python']}"
    )
    rows = seed.get("rows", {})
    print(
        f"  seed: {seed['seconds']['total']:,.1f} s "
        f"(COPY {seed['seconds']['copy']:,.1f} s, VACUUM ANALYZE "
        f"{seed['seconds']['vacuum_analyze']:,.1f} s) for "
        + ", ".join(f"{count:,} {table}" for table, count in rows.items())
        + (" — reused" if seed.get("reused") else "")
    )
    print()
    print(f"  {'measurement':<44} {'median':>9} {'p95':>9} {'target':>8}  {'':<5} data")
    print(f"  {'-' * 44} {'-' * 9} {'-' * 9} {'-' * 8}")
    listing = results.get("list") or {"queries": {}}
    for name, figure in listing["queries"].items():
        print(
            _row(f"list {listing['via']}: {name}", figure, listing["target_ms"], f"{runs:,} runs")
        )
    detail = results.get("detail") or {"pages": {}}
    for name, figure in detail["pages"].items():
        size = detail.get("sizes", {}).get(name, detail["size"])
        print(_row(f"detail {detail['via']}: {name}", figure, detail["target_ms"], size))
    api = results.get("api") or {"figures": {}}
    for name, figure in api["figures"].items():
        print(_row(f"API {name}", figure, figure.get("target_ms"), figure.get("size", "")))
    ledger = results.get("ledger")
    if ledger is not None:
        _bundle_rows(ledger["bundle"])
    t = results.get("throughput")
    if t is not None:
        _print_throughput(t)
    if ledger is not None:
        _print_ledger(ledger)
    plans = listing.get("plans")
    if plans:
        print()
        print("  every Runs list query served by an index (no Seq Scan on runs_run):")
        for name, plan in plans.items():
            print(f"    {'PASS' if plan['ok'] else 'FAIL'}  {name}: {plan['verdict']}")
    print()


def _print_throughput(t: dict) -> None:
    print()
    print(
        f"  engine throughput: {t['runs_per_second']:,.1f} runs/s "
        f"({t['runs']:,} runs of {t['steps_per_run']} steps, {t['workers']}, "
        f"{t['seconds']:,.1f} s first POST to last completion) — "
        f"target ≥ {t['target_runs_per_second']}"
        f" {'PASS' if t['runs_per_second'] >= t['target_runs_per_second'] else 'MISS'}"
    )
    print(
        f"  commits per run: {t['write_commits_per_run']:.2f} writing transactions, "
        f"{t['transactions_per_run']:.2f} transactions in all — target ≤ "
        f"{t['target_commits_per_run']} "
        f"{'PASS' if t['write_commits_per_run'] <= t['target_commits_per_run'] else 'MISS'}"
    )
    floor = t["commit_floor"]
    print(
        f"  commit floor: {floor['commits_per_second']:,.0f} commits/s ({floor['method']}) "
        f"/ {t['write_commits_per_run']:.2f} = {t['commit_limit_runs_per_second']:,.0f} runs/s; "
        f"the engine reaches {t['share_of_limit'] * 100:.1f}% of it"
    )
    cpu = t.get("cpu_ms_per_run") or {}
    if cpu:
        print(
            f"  CPU per run: {sum(cpu.values()):.1f} ms — "
            + ", ".join(f"{group} {ms:.1f} ms" for group, ms in cpu.items())
        )


def _bundle_rows(bundle: dict) -> None:
    if "error" in bundle:
        print(f"  {'evidence bundle: does not verify':<44} {bundle['error']}  FAIL")
        return
    size = f"{bundle['size']}, {bundle['bytes']:,} bytes"
    print(_row("evidence bundle: export (1,000-step run)", bundle["export"], None, size))
    tree = f"{bundle['events_in_bundle']:,} proofs in a tree of {bundle['tree_size']:,}"
    print(_row("evidence bundle: verify offline", bundle["verify"], bundle["target_ms"], tree))


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _print_ledger(ledger: dict) -> None:
    targets, verdicts = ledger["targets"], ledger["verdicts"]
    print()
    print(f"  ledger off vs on, phases {', '.join(m.upper() for m in ledger['order'])} (on/off):")
    for number, pair in enumerate(ledger["pairs"], 1):
        runs, p95, cpu = pair["runs_per_second"], pair["api_p95_ms"], pair["cpu_ms_per_run"]
        print(
            f"    pair {number}: engine {runs['on']:,.1f} / {runs['off']:,.1f} runs/s "
            f"= {_x(runs['ratio'])}; API p95 {p95['on']:,.1f} / {p95['off']:,.1f} ms "
            f"= {_x(p95['ratio'])}; CPU per run {cpu['on']:.1f} / {cpu['off']:.1f} ms "
            f"= {_x(cpu['ratio'])} (sealer {cpu['sealer']:.1f} ms); other processes "
            f"kept {pair['other_cpus']['on']:.2f} / {pair['other_cpus']['off']:.2f} CPUs busy"
        )
    median = ledger["median_ratio"]
    print(
        f"    median on/off: runs/s {median['runs_per_second']:.3f} "
        f"(target ≥ {targets['min_runs_ratio']:.2f}) {_verdict(verdicts['runs_per_second'])}; "
        f"API p95 {median['api_p95_ms']:.3f} "
        f"(target ≤ {targets['max_api_p95_ratio']:.2f}) {_verdict(verdicts['api_p95'])}"
    )
    lag = ledger["seal_lag"]["all"]
    print(
        f"  seal lag (event created → first signed checkpoint covering it), {lag['events']:,} "
        f"events of the ON engine phases: p50 {_s(lag['p50_s'])}, p95 {_s(lag['p95_s'])}, "
        f"max {_s(lag['max_s'])}; {lag['within_share'] * 100:.1f}% within "
        f"{lag['target_seconds']:g} s (target ≥ {lag['target_share'] * 100:.0f}%) "
        f"{_verdict(verdicts['seal_lag'])}"
        + (f"; {lag['unsealed']:,} not sealed" if lag["unsealed"] else "")
    )
    queue = ledger["prefilled_queue"]
    if queue["queued"]:
        print(
            f"  queue before measuring: {queue['queued']:,} events queued by earlier writes; "
            f"{queue['sealed']:,} sealed, {queue['deleted']:,} taken out of the queue unsealed"
        )
    print(
        f"  ledger queue trigger installed after the bench: "
        f"{'yes PASS' if ledger['trigger_installed'] else 'NO FAIL'}"
    )


def _x(ratio) -> str:
    return "—" if ratio is None else f"{ratio:.3f}"


def _s(seconds) -> str:
    return "unsealed" if seconds is None else f"{seconds:,.2f} s"


def plans_ok(results: dict) -> bool:
    """No list query without an index, and (with the ledger part) every ledger verdict."""
    plans = (results.get("list") or {}).get("plans") or {}
    ledger = (results.get("ledger") or {}).get("verdicts") or {}
    return all(plan["ok"] for plan in plans.values()) and all(ledger.values())


def write_json(results: dict, path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"figures written to {target}")
