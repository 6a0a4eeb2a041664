"""`make bench`: the product's figures at a million runs on PostgreSQL and Redis.

Seeds a dedicated database in bulk (COPY), then measures the Runs list, the run page and its
tabs, the start-run API under concurrent clients, and the engine's throughput beside the
database's commit floor. Figures are printed and written to bench-results/latest.json; see
docs/benchmarks.md for what each one means and the last full run.
"""
