#!/usr/bin/env python3
"""Runs the BI corpus (../bi_corpus.sql) against a qilin-server through the Python ADBC Flight
SQL driver, the way BI tools' Arrow clients do.

Usage: bi_corpus.py grpc://HOST:PORT OUTDIR

For every statement NAME of the corpus it writes into OUTDIR:
  NAME.arrow          the result (Arrow IPC file format)
  NAME.explain.arrow  the result of `EXPLAIN <statement>`
  NAME.error.txt      what the driver raised instead (for the statement, its EXPLAIN, or both)
and finally `done.txt` with the number of statements run. The driver itself checks that the
schema a FlightInfo announces equals the schema of the stream it then reads, nullability
included ("endpoint 0 returned inconsistent schema"), so such a mismatch lands in NAME.error.txt.
The Rust test (tests/tests/all/bi_corpus.rs) compares the results with its oracle and the
EXPLAIN realizations with the corpus' `expect` tags.

Exit codes: 0 when every statement was attempted, 3 when a module is missing, 2 on bad usage.
"""

import os
import re
import sys
import traceback

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bi_corpus.sql")

KEY_LINE = re.compile(r"^-- ([a-z]+):(.*)$")
KEYS = {"name", "tool", "expect", "source", "approx", "compare"}


def load_corpus(path=CORPUS):
    """[{name, tool, expect, source, sql, ...}] in file order (the format is described at the top
    of bi_corpus.sql; tests/src/bi_corpus.rs parses the same file the same way)."""
    statements, keys, sql = [], {}, []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            stripped = line.strip()
            if not sql:
                m = KEY_LINE.match(stripped)
                if m and m.group(1) in KEYS:
                    keys[m.group(1)] = m.group(2).strip()
                    continue
                if not stripped:  # a blank line ends a block of keys no statement followed
                    keys = {}
                if not stripped or stripped.startswith("--"):
                    continue
            sql.append(line.rstrip())
            if stripped.endswith(";"):
                if "name" not in keys:
                    raise SystemExit(f"{path}:{number}: statement without a '-- name:' line")
                text = "\n".join(sql).strip().rstrip(";").strip()
                statements.append(dict(keys, sql=text))
                keys, sql = {}, []
    if sql:
        raise SystemExit(f"{path}: the last statement does not end with ';'")
    return statements


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        import adbc_driver_flightsql.dbapi as flightsql
        import pyarrow as pa
        import pyarrow.ipc as ipc
    except ImportError as e:  # the Rust side turns exit code 3 into an explicit failure
        print(f"missing Python module ({e}): pip install -r tests/requirements.txt", file=sys.stderr)
        sys.exit(3)

    def write_table(path, table):
        with pa.OSFile(path, "wb") as sink:
            with ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)

    uri, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    statements = load_corpus()
    conn = flightsql.connect(uri, db_kwargs={"username": "ADMIN", "password": "KYLIN"})
    try:
        for st in statements:
            name, sql = st["name"], st["sql"]
            for suffix, text in (("arrow", sql), ("explain.arrow", "EXPLAIN " + sql)):
                cursor = conn.cursor()
                try:
                    cursor.execute(text)
                    write_table(os.path.join(outdir, f"{name}.{suffix}"), cursor.fetch_arrow_table())
                except Exception:  # report every statement, not only the first failure
                    with open(os.path.join(outdir, f"{name}.error.txt"), "a", encoding="utf-8") as f:
                        f.write(f"{text}\n{traceback.format_exc()}\n")
                finally:
                    cursor.close()
    finally:
        conn.close()
    with open(os.path.join(outdir, "done.txt"), "w", encoding="utf-8") as f:
        f.write(f"{len(statements)}\n")


if __name__ == "__main__":
    main()
