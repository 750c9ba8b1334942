#!/usr/bin/env python3
"""The SSB queries through the Python ADBC Flight SQL driver over TLS, and two clients that
must be refused: one speaking plaintext to the TLS port, one that does not trust the CA.

Usage: tls_adbc.py HOST:PORT CA.pem OUTDIR

Writes into OUTDIR, for every query `Qx.y` of ../ssb_queries.sql, `Qx.y.arrow` (the result
over `grpc+tls://` with `adbc.flight.sql.client_option.tls_root_certs` = the CA) or
`Qx.y.error.txt`; then `plaintext.txt` and `untrusted.txt`, each starting with `refused` or
`accepted` followed by what the driver said; finally `done.txt`. The Rust test
(tests/tests/all/tls.rs) compares the results with its oracle.

Exit codes: 0 when everything was attempted, 3 when the ADBC driver or pyarrow is missing,
2 on bad usage.
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
except ImportError as e:
    print(f"missing Python module ({e}): pip install adbc-driver-flightsql pyarrow", file=sys.stderr)
    sys.exit(3)

CREDENTIALS = {"username": "ADMIN", "password": "KYLIN"}
TLS_ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"


def write_table(path, table):
    with pa.OSFile(path, "wb") as sink:
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def query(conn, sql):
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetch_arrow_table()
    finally:
        cursor.close()


def attempt(uri, kwargs):
    """'accepted ...' when a connection at `uri` answers `select 1`, else 'refused: <error>'."""
    try:
        conn = flightsql.connect(uri, db_kwargs=kwargs)
        try:
            table = query(conn, "select 1 as one")
            return f"accepted {table.to_pydict()}"
        finally:
            conn.close()
    except Exception as e:  # the refusal is the expected outcome
        return f"refused: {type(e).__name__}: {e}"


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    addr, ca_path, outdir = sys.argv[1:]
    os.makedirs(outdir, exist_ok=True)
    with open(ca_path, encoding="ascii") as f:
        ca_pem = f.read()
    conn = flightsql.connect(f"grpc+tls://{addr}", db_kwargs={**CREDENTIALS, TLS_ROOT_CERTS: ca_pem})
    queries = load_queries(QUERIES)
    try:
        for name, sql in queries:
            try:
                write_table(os.path.join(outdir, f"{name}.arrow"), query(conn, sql))
            except Exception:  # report every query, not only the first failure
                with open(os.path.join(outdir, f"{name}.error.txt"), "w", encoding="utf-8") as f:
                    f.write(f"{sql}\n{traceback.format_exc()}\n")
    finally:
        conn.close()
    outcomes = {
        "plaintext": attempt(f"grpc://{addr}", CREDENTIALS),
        # No root certificates: the system's, which do not include the test CA.
        "untrusted": attempt(f"grpc+tls://{addr}", CREDENTIALS),
    }
    for name, outcome in outcomes.items():
        with open(os.path.join(outdir, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write(outcome + "\n")
    with open(os.path.join(outdir, "done.txt"), "w", encoding="utf-8") as f:
        f.write(f"{len(queries)}\n")


if __name__ == "__main__":
    main()
