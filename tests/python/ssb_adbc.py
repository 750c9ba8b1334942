#!/usr/bin/env python3
"""Runs the 13 SSB queries against a qilin-server through the Python ADBC Flight SQL driver.

Usage: ssb_adbc.py grpc://HOST:PORT OUTDIR

For every query `Qx.y` of ../ssb_queries.sql it writes into OUTDIR:
  Qx.y.arrow          the result (Arrow IPC file format)
  Qx.y.explain.arrow  the result of `EXPLAIN <query>`
  Qx.y.error.txt      instead of either file, when the driver raised an error
and finally `done.txt` with the number of queries run. The Rust test
(tests/tests/all/ssb_adbc.rs) compares the results with its oracle.

Exit codes: 0 when every query was attempted (failures are in the *.error.txt files),
3 when the ADBC driver or pyarrow is not installed, 2 on bad usage.
"""

import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssb_queries import QUERIES, load_queries  # noqa: E402

try:
    import adbc_driver_flightsql.dbapi as flightsql
    import pyarrow as pa
    import pyarrow.ipc as ipc
except ImportError as e:  # the Rust side turns exit code 3 into an explicit failure
    print(
        f"missing Python module ({e}): pip install adbc-driver-flightsql pyarrow",
        file=sys.stderr,
    )
    sys.exit(3)


def write_table(path, table):
    with pa.OSFile(path, "wb") as sink:
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def run(cursor, sql):
    cursor.execute(sql)
    return cursor.fetch_arrow_table()


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    uri, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    queries = load_queries(QUERIES)
    conn = flightsql.connect(uri, db_kwargs={"username": "ADMIN", "password": "KYLIN"})
    try:
        for name, sql in queries:
            for suffix, text in (("arrow", sql), ("explain.arrow", "EXPLAIN " + sql)):
                cursor = conn.cursor()
                try:
                    write_table(os.path.join(outdir, f"{name}.{suffix}"), run(cursor, text))
                except Exception:  # report every query, not only the first failure
                    with open(os.path.join(outdir, f"{name}.error.txt"), "a", encoding="utf-8") as f:
                        f.write(f"{text}\n{traceback.format_exc()}\n")
                finally:
                    cursor.close()
    finally:
        conn.close()
    with open(os.path.join(outdir, "done.txt"), "w", encoding="utf-8") as f:
        f.write(f"{len(queries)}\n")


if __name__ == "__main__":
    main()
