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

QUERIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ssb_queries.sql")


def load_queries(path):
    """[(name, sql)] from the file: a `-- Qx.y` line names the statement that follows it."""
    queries, name, text = [], None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("--"):
                label = stripped[2:].strip()
                if label.startswith("Q") and " " not in label:
                    name = label
                continue
            if not stripped:
                continue
            text.append(stripped)
            if stripped.endswith(";"):
                if name is None:
                    raise SystemExit(f"statement without a '-- Qx.y' label in {path}")
                queries.append((name, " ".join(text).rstrip(";").strip()))
                name, text = None, []
    return queries


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
