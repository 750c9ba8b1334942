#!/usr/bin/env python3
"""Runs what tests/tests/all/access_flight.rs asks of a qilin-server as several users, through
the Python ADBC Flight SQL driver and pyarrow.flight, and writes what each user got.

Usage: access_adbc.py grpc://HOST:PORT PLAN.json OUTDIR

PLAN.json:
  {"passwords": {USER: PASSWORD},
   "runs":    [[LABEL, USER, SQL], ...],          queries, in this order
   "objects": [USER, ...],                         adbc_get_objects (depth "all") per user
   "actions": [[LABEL, USER, TYPE, BODY], ...]}    pyarrow.flight DoAction (USER may be
                                                   "key:<API key>": the key as bearer token)
OUTDIR receives LABEL.arrow for each query that answered (Arrow IPC file) and results.json:
  {"runs": {LABEL: {"rows": N} | {"error": TEXT, "status": ADBC_STATUS}},
   "objects": {USER: {"schemas": [...], "tables": {"schema.table": [columns]}}
                     | {"error": TEXT}},
   "actions": {LABEL: {"result": [JSON...]} | {"error": TEXT, "kind": EXCEPTION_CLASS}}}

Exit codes: 0 when everything was attempted (failures are in results.json), 3 when the
ADBC driver or pyarrow is not installed, 2 on bad usage.
"""

import json
import os
import sys

try:
    import adbc_driver_flightsql.dbapi as flightsql
    import pyarrow as pa
    import pyarrow.flight as flight
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


def error_of(e):
    """The message and ADBC status code of a driver error (the server's gRPC code is in
    the message)."""
    status = getattr(e, "status_code", None)
    return {"error": f"{type(e).__name__}: {e}", "status": str(status) if status else ""}


def connect(uri, user, password):
    return flightsql.connect(uri, db_kwargs={"username": user, "password": password})


def objects(conn):
    """Schemas, and tables with their columns, as adbc_get_objects sees them."""
    out = {"schemas": [], "tables": {}}
    for catalog in conn.adbc_get_objects(depth="all").read_all().to_pylist():
        for schema in catalog["catalog_db_schemas"] or []:
            out["schemas"].append(schema["db_schema_name"])
            for table in schema["db_schema_tables"] or []:
                cols = [c["column_name"] for c in table["table_columns"] or []]
                out["tables"][f'{schema["db_schema_name"]}.{table["table_name"]}'] = cols
    return out


def action(uri, passwords, user, kind, body):
    client = flight.FlightClient(uri)
    try:
        if user.startswith("key:"):
            headers = [(b"authorization", f"Bearer {user[4:]}".encode())]
        else:
            headers = [client.authenticate_basic_token(user, passwords[user])]
        options = flight.FlightCallOptions(headers=headers)
        results = client.do_action(flight.Action(kind, json.dumps(body).encode()), options)
        return {"result": [json.loads(r.body.to_pybytes() or b"null") for r in results]}
    except Exception as e:  # every outcome is data for the Rust side
        return {"error": f"{type(e).__name__}: {e}", "kind": type(e).__name__}
    finally:
        client.close()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    uri, plan_path, outdir = sys.argv[1:]
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    os.makedirs(outdir, exist_ok=True)
    passwords = plan["passwords"]
    results = {"runs": {}, "objects": {}, "actions": {}}
    conns = {}
    try:
        for label, user, sql in plan.get("runs", []):
            try:
                if user not in conns:
                    conns[user] = connect(uri, user, passwords[user])
                cursor = conns[user].cursor()
                try:
                    cursor.execute(sql)
                    table = cursor.fetch_arrow_table()
                finally:
                    cursor.close()
                write_table(os.path.join(outdir, f"{label}.arrow"), table)
                results["runs"][label] = {"rows": table.num_rows}
            except Exception as e:
                results["runs"][label] = error_of(e)
        for user in plan.get("objects", []):
            try:
                if user not in conns:
                    conns[user] = connect(uri, user, passwords[user])
                results["objects"][user] = objects(conns[user])
            except Exception as e:
                results["objects"][user] = error_of(e)
    finally:
        for c in conns.values():
            c.close()
    for label, user, kind, body in plan.get("actions", []):
        results["actions"][label] = action(uri, passwords, user, kind, body)
    with open(os.path.join(outdir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
