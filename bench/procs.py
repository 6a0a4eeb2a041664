"""Subprocesses the benchmark starts (gunicorn, Dramatiq workers) and the CPU they use.

CPU time is read from /proc, for a process and all its descendants, so a figure can say where
a run's CPU goes: the web server, the workers, PostgreSQL, or the benchmark's own clients.
Redis's is read from the server itself (INFO cpu): exact to the microsecond, and right whether
or not Redis runs in this machine's process namespace. Every process started here counts the
SQL statements it sends (bench/statements.py).
"""

import http.client
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
    from bench import statements

    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **statements.hook_env(), **(env or {})},
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


def postgres_server_processes(database_url: str) -> list[int]:
    """The PostgreSQL processes that serve every database of the server, not one client: the
    postmaster, the checkpointer, background writer, WAL writer, autovacuum launcher and the
    like, and the autovacuum and parallel workers busy in the bench database (pg_stat_activity
    names each process's type). Their work is the server's, so other databases' writes on the
    same server count in it too."""
    from bench import database

    name = database.database_name(database_url)
    with database.connect(database_url, dbname="postgres") as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend' "
                "AND (datname IS NULL OR datname = %s)",
                [name],
            )
        ]
    postmaster = _parent(pids[0]) if pids else None
    return pids + ([postmaster] if postmaster else [])


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class RedisCpu:
    """User + system CPU seconds the Redis server has used since it started (INFO cpu, the
    server's own getrusage: its main thread, I/O threads and any fork for a save). It is the
    server's, so other clients of the same Redis count in it too."""

    def __init__(self, redis_url: str):
        import redis

        self.client = redis.Redis.from_url(redis_url)

    def __call__(self) -> float:
        info = self.client.info("cpu")
        return sum(
            float(info.get(key, 0.0))
            for key in (
                "used_cpu_user",
                "used_cpu_sys",
                "used_cpu_user_children",
                "used_cpu_sys_children",
            )
        )

    def commands(self) -> int:
        return int(self.client.info("stats")["total_commands_processed"])


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


class CpuMeter:
    """CPU used between start() and stop() by named groups of processes.

    A group is a callable returning the pids of its processes, or the CPU seconds the group
    has used so far (a float: a server that reports its own, as RedisCpu)."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning pids, or CPU seconds so far
        self.before: dict[str, dict[int, float] | float] = {}

    @staticmethod
    def _read(group) -> dict[int, float] | float:
        found = group()
        return found if isinstance(found, float) else cpu_seconds(found)

    def start(self) -> None:
        self.started = time.perf_counter()
        self.busy = system_busy_seconds()
        self.before = {name: self._read(group) for name, group in self.groups.items()}

    def stop(self) -> dict:
        elapsed = time.perf_counter() - self.started
        used = {}
        for name, group in self.groups.items():
            after, before = self._read(group), self.before.get(name, {})
            if isinstance(after, float):
                used[name] = round(after - before, 3)
            else:
                used[name] = round(sum(after[p] - before.get(p, 0.0) for p in after), 2)
        others = system_busy_seconds() - self.busy - sum(used.values())
        return {
            "wall_seconds": round(elapsed, 2),
            "cpu_seconds": used,
            # How many CPUs the machine's other processes kept busy meanwhile (a shared
            # machine's noise): /proc/stat's busy time less the groups'.
            "other_cpus": round(max(others, 0.0) / elapsed, 2) if elapsed else 0.0,
        }


def wait_until_serving(port: int, process, *, path: str, timeout: float, log_dir) -> None:
    """Until the server `process` answers GET `path` on the loopback `port`; a RuntimeError
    if it exits or does not answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log_dir}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {timeout:g} s")
