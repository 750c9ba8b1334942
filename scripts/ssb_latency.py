#!/usr/bin/env python3
"""Latency of the 13 SSB queries as a client sees it, through the Python ADBC Flight SQL driver.

Usage: scripts/ssb_latency.py [grpc://127.0.0.1:7070] [--runs N] [--duckdb SOURCE_DIR]

With --duckdb, the same queries also run in the same way on the raw Parquet files
(SOURCE_DIR/ssb/*.parquet, e.g. data/source) with DuckDB, in process, as a baseline.

Each query runs once to warm up, then N times (default 20); the table shows the median and
the 95th percentile in milliseconds, measured around cursor.execute + fetch_arrow_table (the
driver prepares every statement: CreatePreparedStatement, GetFlightInfo, DoGet).
"""

import statistics
import sys
import time
import warnings
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql

QUERIES = Path(__file__).resolve().parent.parent / "tests" / "ssb_queries.sql"


def load_queries():
    out, name = [], None
    for line in QUERIES.read_text().splitlines():
        line = line.strip()
        if line.startswith("-- Q"):
            name = line[4:].strip()
        elif line and not line.startswith("--"):
            out.append((name, line.rstrip(";")))
    return out


def timed(run, runs):
    rows = run()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return rows, statistics.median(times), p95


def main():
    warnings.filterwarnings("ignore", message="Cannot disable autocommit")
    args = sys.argv[1:]
    runs, duck = 20, None
    if "--runs" in args:
        i = args.index("--runs")
        runs = int(args[i + 1])
        del args[i : i + 2]
    if "--duckdb" in args:
        i = args.index("--duckdb")
        import duckdb

        duck = duckdb.connect()
        for t in ["lineorder", "dates", "customer", "supplier", "part"]:
            path = Path(args[i + 1]) / "ssb" / f"{t}.parquet"
            duck.execute(f"create view {t} as select * from read_parquet('{path}')")
        del args[i : i + 2]
    uri = args[0] if args else "grpc://127.0.0.1:7070"
    conn = flightsql.connect(uri, db_kwargs={"username": "ADMIN", "password": "KYLIN"})
    totals = [0.0, 0.0]
    header = f"{'query':6} {'rows':>5} {'median ms':>10} {'p95 ms':>8}"
    print(header + (f" {'duckdb median ms':>17} {'ratio':>7}" if duck else ""))
    with conn.cursor() as cur:

        def qilin(sql):
            cur.execute(sql)
            return cur.fetch_arrow_table().num_rows

        for name, sql in load_queries():
            rows, med, p95 = timed(lambda: qilin(sql), runs)
            totals[0] += med
            line = f"Q{name:5} {rows:5d} {med:10.2f} {p95:8.2f}"
            if duck:
                _, dmed, _ = timed(lambda: len(duck.execute(sql).fetchall()), runs)
                totals[1] += dmed
                line += f" {dmed:17.2f} {dmed / med:6.1f}x"
            print(line)
    line = f"{'total':6} {'':5} {totals[0]:10.2f} {'':8}"
    if duck:
        line += f" {totals[1]:17.2f} {totals[1] / totals[0]:6.1f}x"
    print(line)
    conn.close()


if __name__ == "__main__":
    main()
