"""Subprocesses the benchmark starts (gunicorn, Dramatiq workers) and the CPU they use.

CPU time is read from /proc, for a process and all its descendants, so a figure can say where
a run's CPU goes: the web server, the workers, PostgreSQL, or the benchmark's own clients.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], *, log_path: Path, env: dict | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, *, timeout: float = 20) -> None:
    """SIGTERM the process (each was started in its own session), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def python() -> str:
    return sys.executable


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found.extend(int(child) for child in text)
    except OSError:
        pass
    return found


def descendants(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(_children(current))
    return pids


def cpu_seconds(pids) -> dict[int, float]:
    """User + system CPU seconds of each live process."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def system_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (all but idle and iowait):
    less what the measured groups used, it is what else ran beside the benchmark."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def postgres_backends(database: str) -> list[int]:
    """Server processes attached to `database` (their title names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres: ") and f" {database} " in title:
            pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU used between start() and stop() by named groups of processes."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning pids
        self.before: dict[str, dict[int, float]] = {}

    def start(self) -> None:
        self.started = time.perf_counter()
        self.before = {name: cpu_seconds(pids()) for name, pids in self.groups.items()}

    def stop(self) -> dict:
        elapsed = time.perf_counter() - self.started
        used = {}
        for name, pids in self.groups.items():
            after = cpu_seconds(pids())
            before = self.before.get(name, {})
            used[name] = round(sum(after[p] - before.get(p, 0.0) for p in after), 2)
        return {"wall_seconds": round(elapsed, 2), "cpu_seconds": used}
