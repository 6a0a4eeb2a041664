"""Figures: percentiles, the printed table and bench-results/latest.json."""

import datetime
import json
import os
import platform
import statistics
from pathlib import Path

from bench import database, procs


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


def with_load(measure, *args, **kwargs) -> dict:
    """A part's figures, with the machine's load average at the part's start and end beside
    them: a latency measured on a machine busy with other work is that work's as much as ours."""
    start = procs.load_average()
    figures = measure(*args, **kwargs)
    figures["load"] = {"start": start, "end": procs.load_average(), "cpus": os.cpu_count()}
    return figures


def _load(part: dict | None) -> str:
    """The 1-minute load average at a part's start and end, as printed beside its figures."""
    load = (part or {}).get("load") or {}
    if not load.get("start") or not load.get("end"):
        return ""
    return f"{load['start'][0]:.2f}→{load['end'][0]:.2f}"


def _row(name: str, figure: dict, target: float | None, size: str, load: str = "") -> str:
    median, p95 = figure.get("median_ms"), figure.get("p95_ms")
    verdict = ""
    if target is not None and p95 is not None:
        verdict = "PASS" if p95 <= target else "MISS"
    return (
        f"  {name:<44} {_ms(median):>9} {_ms(p95):>9} {_ms(target):>8}  {verdict:<5}"
        f" {load:<11} {size}"
    )


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
    print(
        f"  load: the machine's 1-minute load average at the start and end of each part, "
        f"on {m['nproc']} CPUs (above {m['nproc']}, processes waited for a CPU)"
    )
    print(f"  {'measurement':<44} {'p50':>9} {'p95':>9} {'target':>8}  {'':<5} {'load':<11} data")
    print(f"  {'-' * 44} {'-' * 9} {'-' * 9} {'-' * 8}  {'-' * 5} {'-' * 11}")
    listing = results.get("list") or {"queries": {}}
    for name, figure in listing["queries"].items():
        print(
            _row(
                f"list {listing['via']}: {name}",
                figure,
                listing["target_ms"],
                f"{runs:,} runs",
                _load(listing),
            )
        )
    search = results.get("search") or {"queries": {}}
    for name, figure in search["queries"].items():
        print(_row(f"search: {name}", figure, search["target_ms"], f"{runs:,} runs", _load(search)))
    detail = results.get("detail") or {"pages": {}}
    for name, figure in detail["pages"].items():
        size = detail.get("sizes", {}).get(name, detail["size"])
        label = f"detail {detail['via']}: {name}"
        print(_row(label, figure, detail["target_ms"], size, _load(detail)))
    api = results.get("api") or {"figures": {}}
    for name, figure in api["figures"].items():
        print(
            _row(f"API {name}", figure, figure.get("target_ms"), figure.get("size", ""), _load(api))
        )
    ledger = results.get("ledger")
    if ledger is not None:
        _bundle_rows(ledger["bundle"], _load(ledger))
    t = results.get("throughput")
    if t is not None:
        _print_throughput(t)
    if ledger is not None:
        _print_ledger(ledger)
    if results.get("export") is not None:
        from bench.export import report_lines

        print()
        print("\n".join(report_lines(results["export"], _load(results["export"]))))
    plans = {**listing.get("plans", {}), **search.get("plans", {})}
    if plans:
        print()
        print("  every Runs list query served by an index (no Seq Scan on runs_run):")
        for name, plan in plans.items():
            print(f"    {'PASS' if plan['ok'] else 'FAIL'}  {name}: {plan['verdict']}")
    print()


def _load_line(load: dict | None) -> str:
    if not load or not load.get("start") or not load.get("end"):
        return "load average unknown"
    start, end = load["start"], load["end"]
    return (
        f"load average {start[0]:.2f}→{end[0]:.2f} (1 min), {start[1]:.2f}→{end[1]:.2f} "
        f"(5 min) on {load['cpus']} CPUs"
    )


def _print_throughput(t: dict) -> None:
    targets, verdicts = t["targets"], t["verdicts"]
    print()
    print(
        f"  engine throughput: {t['runs']:,} runs of {t['steps_per_run']} steps through the API "
        f"and {t['workers']} ({_load_line(t.get('load'))}; other processes kept "
        f"{t['cpu']['other_cpus']:.2f} CPUs busy):"
    )
    print(
        f"    runs/s: {t['runs_per_second']:,.1f} ({t['seconds']:,.1f} s first POST to last "
        f"completion, {t['busy_cores']:.2f} cores busy) — not judged: it measures the CPUs "
        "left free as much as the engine"
    )
    cpu = t["cpu_ms_per_run"]
    print(
        f"    CPU per run, all processes: {t['cpu_ms_per_run_all']:.2f} ms — target ≤ "
        f"{targets['cpu_ms_per_run_all']:g} ms {_verdict(verdicts['cpu_ms_per_run_all'])}"
    )
    print("      " + ", ".join(f"{group} {ms:.2f}" for group, ms in cpu.items()) + " ms")
    print(
        f"      ({t['cpu_ms_per_run_shared_servers']:.2f} ms of it is the shared servers' "
        "processes, postgres server and redis: other clients' work on them counts too)"
    )
    print(
        f"    runs per CPU-second (runs/s per busy core): {t['runs_per_cpu_second']:,.1f} — "
        f"target ≥ {targets['runs_per_cpu_second']:g} "
        f"{_verdict(verdicts['runs_per_cpu_second'])}"
    )
    sent = t["statements_per_run"]
    print(
        f"    statements per run: {t['statements_per_run_all']:.2f} ("
        + ", ".join(f"{group} {count:.2f}" for group, count in sent.items())
        + "; counted client-side, BEGIN/COMMIT not included)"
    )
    print(
        f"    writing transactions per run: {t['write_commits_per_run']:.2f} — target ≤ "
        f"{targets['write_commits_per_run']} {_verdict(verdicts['write_commits_per_run'])}; "
        f"{t['transactions_per_run']:.2f} transactions in all"
    )
    wal = t["wal_per_run"]
    own, stat = wal["database"], wal["server_stat_wal"]
    verdict = f"target ≤ {targets['wal_bytes_per_run']:,} {_verdict(verdicts['wal_bytes_per_run'])}"
    if own:
        print(
            f"    WAL per run, the bench database's: {own['bytes']:,} bytes — {verdict} "
            f"({own['records']:,.1f} records, {own['records_with_fpi']:.2f} with full-page "
            f"images of {own['fpi_bytes']:,} bytes; pg_walinspect)"
        )
    else:
        print(
            f"    WAL per run, the whole server's: {wal['server_lsn_bytes']:,} bytes — {verdict} "
            f"(the bench database's own not read: {wal['database_not_read']})"
        )
    print(
        f"      the whole server's, other databases' writes included: "
        f"{wal['server_lsn_bytes']:,} bytes (pg_current_wal_lsn); pg_stat_wal {stat['bytes']:,} "
        f"bytes, {stat['records']:,.1f} records, {stat['fpi']:.2f} full-page images"
    )
    written = t.get("rows_written_per_run") or {}
    if written:
        print(
            "    rows written per run: "
            + "; ".join(
                f"{table} " + " ".join(f"{kind} {n:g}" for kind, n in counts.items())
                for table, counts in written.items()
            )
        )
    floor = t["commit_floor"]
    print(
        f"    commit floor: {floor['commits_per_second']:,.0f} commits/s ({floor['method']}) "
        f"/ {t['write_commits_per_run']:.2f} = {t['commit_limit_runs_per_second']:,.0f} runs/s; "
        f"the engine reaches {t['share_of_limit'] * 100:.1f}% of it"
    )


def _bundle_rows(bundle: dict, load: str = "") -> None:
    if "error" in bundle:
        print(f"  {'evidence bundle: does not verify':<44} {bundle['error']}  FAIL")
        return
    size = f"{bundle['size']}, {bundle['bytes']:,} bytes"
    print(_row("evidence bundle: export (1,000-step run)", bundle["export"], None, size, load))
    tree = f"{bundle['events_in_bundle']:,} proofs in a tree of {bundle['tree_size']:,}"
    print(
        _row("evidence bundle: verify offline", bundle["verify"], bundle["target_ms"], tree, load)
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _print_ledger(ledger: dict) -> None:
    targets, verdicts = ledger["targets"], ledger["verdicts"]
    print()
    print(
        f"  ledger off vs on, phases {', '.join(m.upper() for m in ledger['order'])} (on/off; "
        f"{_load_line(ledger.get('load'))}):"
    )
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
    """No list query without an index, and (with the ledger part) every ledger verdict, and
    (with the export part) every run exported in bounded memory."""
    plans = {
        **((results.get("list") or {}).get("plans") or {}),
        **((results.get("search") or {}).get("plans") or {}),
    }
    ledger = (results.get("ledger") or {}).get("verdicts") or {}
    export_ok = (results.get("export") or {}).get("ok", True)
    return all(plan["ok"] for plan in plans.values()) and all(ledger.values()) and export_ok


def write_json(results: dict, path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"figures written to {target}")
