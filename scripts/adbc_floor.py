#!/usr/bin/env python3
"""The Python ADBC driver's own cost per statement against a running server: `SELECT 1`
(no table, no cube) timed the way `qilin-bench` runs the SSB queries (a new cursor per
statement: CreatePreparedStatement, GetFlightInfo, DoGet, ClosePreparedStatement) and with
one cursor kept (GetFlightInfo, DoGet). What a query costs above these medians is the server's.

    python3 scripts/adbc_floor.py grpc://127.0.0.1:7070 [--runs 60] [--rounds 3]
"""
import argparse
import statistics
import time
import warnings

import adbc_driver_flightsql.dbapi as flightsql


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("uri")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--user", default="ADMIN")
    ap.add_argument("--password", default="KYLIN")
    args = ap.parse_args()
    # The driver warns that autocommit cannot be turned off (read-only server).
    warnings.filterwarnings("ignore", message="Cannot disable autocommit")
    conn = flightsql.connect(
        args.uri, db_kwargs={"username": args.user, "password": args.password}
    )
    kept = conn.cursor()

    def new_cursor():
        cur = conn.cursor()
        try:
            cur.execute("SELECT 1")
            cur.fetch_arrow_table()
        finally:
            cur.close()

    def kept_cursor():
        kept.execute("SELECT 1")
        kept.fetch_arrow_table()

    try:
        for r in range(args.rounds):
            for name, f in (("new cursor per statement", new_cursor), ("cursor kept", kept_cursor)):
                for _ in range(5):
                    f()
                ms = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    f()
                    ms.append((time.perf_counter() - t0) * 1000.0)
                print(f"round {r + 1}: SELECT 1, {name}: median {statistics.median(ms):.2f} ms, min {min(ms):.2f} ms")
    finally:
        kept.close()
        conn.close()


if __name__ == "__main__":
    main()
