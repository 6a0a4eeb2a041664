"""WAL written during a phase: the server's, and the bench database's own.

pg_current_wal_lsn() before and after, and pg_stat_wal, count the whole server's WAL: on a
server shared with other databases (other benches seeding, tests) their writes land in the
same figure, and the figure measures them. The bench database's own share is read from the
WAL itself with pg_walinspect (in PostgreSQL 15's contrib; CREATE EXTENSION, no restart): every
record that changes a block of one of its relations ("rel <tablespace>/<database oid>/..."),
and the commit records of the transactions that wrote those. A temporary physical
replication slot, held for the phase by a connection of its own, keeps the server from
recycling that WAL before it is read; it goes away when that connection closes.

Where pg_walinspect or a replication slot is not available (a managed server, a non-superuser),
or the server wrote more WAL meanwhile than MAX_INSPECTED_BYTES, only the server's figures
are given, and the report says so.
"""

import os

import psycopg

from bench import database

MAX_INSPECTED_BYTES = 2 * 1024**3


class WalMeter:
    def __init__(self, database_url: str):
        self.url = database_url
        self.name = database.database_name(database_url)
        self.slot = None
        self.problem = None

    def start(self) -> None:
        self.hold = database.connect(self.url, dbname="postgres")
        try:
            with database.connect(self.url) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            slot = f"bench_wal_{os.getpid()}"
            self.hold.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", [slot])
            self.slot = slot
        except psycopg.Error as exc:
            self.problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        self.start_lsn = self._position()

    def _position(self) -> int:
        return int(
            self.hold.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0]
        )

    def stop(self) -> None:
        """The end of the phase: where the server's WAL stands now."""
        self.end_lsn = self._position()

    def figures(self) -> dict:
        """Bytes of WAL from start() to stop(): the server's, and (when it could be read) the
        bench database's own, with its records and full-page images."""
        server = self.end_lsn - self.start_lsn
        found = {"server_bytes": server, "database": None, "why_not": self.problem}
        try:
            if self.slot is not None and server > MAX_INSPECTED_BYTES:
                found["why_not"] = f"{server / 1024**3:.1f} GB of WAL meanwhile, too much to read"
            elif self.slot is not None:
                found["database"] = self._own()
        except psycopg.Error as exc:
            found["why_not"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        finally:
            self.hold.close()  # and the temporary slot with it
        return found

    def _own(self) -> dict:
        with database.connect(self.url) as conn:
            oid = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            ).fetchone()[0]
            records, length, fpi, fpi_bytes = conn.execute(
                """
                WITH wal AS (
                    SELECT xid::text::bigint AS xid, record_length, fpi_length, block_ref,
                           block_ref ~ ('rel [0-9]+/' || %(oid)s || '/') AS ours
                    FROM pg_get_wal_records_info(
                        '0/0'::pg_lsn + %(start)s::numeric,
                        least('0/0'::pg_lsn + %(end)s::numeric, pg_current_wal_flush_lsn())
                    )
                ),
                writers AS (SELECT DISTINCT xid FROM wal WHERE ours AND xid <> 0)
                SELECT count(*), coalesce(sum(record_length), 0),
                       count(*) FILTER (WHERE fpi_length > 0), coalesce(sum(fpi_length), 0)
                FROM wal
                WHERE ours
                   OR (coalesce(block_ref, '') = '' AND xid IN (SELECT xid FROM writers))
                """,
                {"oid": str(oid), "start": self.start_lsn, "end": self.end_lsn},
            ).fetchone()
        return {
            "bytes": int(length),
            "records": int(records),
            "records_with_fpi": int(fpi),
            "fpi_bytes": int(fpi_bytes),
        }
