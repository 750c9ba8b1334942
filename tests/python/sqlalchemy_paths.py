#!/usr/bin/env python3
"""The SQLAlchemy paths into a qilin-server: what Superset and pandas users do.

Usage: sqlalchemy_paths.py (flightsql-dbapi | adbc) HOST:PORT OUTDIR NAME...

  flightsql-dbapi  SQLAlchemy 1.4 with flightsql-dbapi's dialect, URL
                   datafusion://ADMIN:KYLIN@HOST:PORT?insecure=true&feature-sqlalchemy-primary-keys=on
                   (the dialect Superset's DataFusion engine spec names; Superset pins
                   SQLAlchemy < 2, and so does flightsql-dbapi). Needs tests/requirements-superset.txt.
  adbc             SQLAlchemy 2 with sqlalchemy-adbc's generic ADBC dialect over the ADBC Flight
                   SQL driver, URL adbc+flightsql://HOST:PORT?tls=false&username=ADMIN&password=KYLIN
                   (the only SQLAlchemy dialect for ADBC Flight SQL on PyPI; it needs SQLAlchemy 2,
                   hence the two environments), plus pandas' native ADBC support
                   (pandas.read_sql with the ADBC DBAPI connection). Needs tests/requirements.txt.

It writes OUTDIR/report.json with what the inspector says (schema names, table names, columns
with a type kind, primary and foreign keys) and, for every corpus statement NAME given,
OUTDIR/<path>.NAME.arrow with the DataFrame pandas.read_sql returned (as Arrow). Errors are
recorded in the report instead of stopping the run. The Rust test
(tests/tests/all/sqlalchemy_paths.rs) checks the report against the SSB model and the results
against its oracle.

Exit codes: 0 when everything was attempted, 3 when a module is missing, 2 on bad usage.
"""

import json
import os
import sys
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bi_corpus import load_corpus  # noqa: E402

TABLES = ["customer", "dates", "lineorder", "part", "supplier"]
SCHEMA = "ssb"


def type_kind(sa, t):
    """The SQLAlchemy type as one word both test sides agree on."""
    if isinstance(t, sa.types.NullType):
        return "null"
    if isinstance(t, sa.types.BigInteger):
        return "bigint"
    if isinstance(t, sa.types.Integer):
        return "integer"
    if isinstance(t, sa.types.String):
        return "string"
    if isinstance(t, sa.types.Float):
        return "float"
    return type(t).__name__.lower()


def attempt(report, what, fn):
    try:
        return fn()
    except Exception:
        lines = [l for l in traceback.format_exc().splitlines() if l.strip()]
        report["errors"][what] = " / ".join(lines[-3:])
        return None


def inspect(sa, engine, report, foreign_keys):
    insp = sa.inspect(engine)
    report["schemas"] = attempt(report, "get_schema_names", insp.get_schema_names)
    report["tables"] = attempt(report, "get_table_names", lambda: insp.get_table_names(schema=SCHEMA))
    report["columns"], report["pk"], report["fk"] = {}, {}, {}
    for t in TABLES:
        cols = attempt(report, f"get_columns({t})", lambda: insp.get_columns(t, schema=SCHEMA))
        if cols is not None:
            report["columns"][t] = [[c["name"], type_kind(sa, c["type"])] for c in cols]
        pk = attempt(report, f"get_pk_constraint({t})", lambda: insp.get_pk_constraint(t, schema=SCHEMA))
        if pk is not None:
            # flightsql-dbapi answers [] instead of a dict when its primary-key feature is off.
            report["pk"][t] = list(pk.get("constrained_columns", [])) if isinstance(pk, dict) else pk
        fks = attempt(report, f"foreign keys({t})", lambda: foreign_keys(insp, t))
        if fks is not None:
            report["fk"][t] = fks


def read_sql_all(pd, pa, ipc, con, label, names, report, outdir):
    by_name = {s["name"]: s for s in load_corpus()}
    for name in names:
        def run():
            df = pd.read_sql(by_name[name]["sql"], con)
            table = pa.Table.from_pandas(df, preserve_index=False)
            with pa.OSFile(os.path.join(outdir, f"{label}.{name}.arrow"), "wb") as sink:
                with ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)

        attempt(report, f"{label} read_sql({name})", run)


def flightsql_dbapi(addr, outdir, names, report):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import sqlalchemy as sa

    host, port = addr.rsplit(":", 1)
    # `datafusion://` is the entry point flightsql-dbapi registers; insecure=true is plain gRPC;
    # the feature flag makes get_pk_constraint ask the server (GetPrimaryKeys).
    url = f"datafusion://ADMIN:KYLIN@{host}:{port}?insecure=true&feature-sqlalchemy-primary-keys=on"
    engine = sa.create_engine(url)
    report["url"] = url.replace("KYLIN", "***")
    report["versions"] = {"sqlalchemy": sa.__version__, "pandas": pd.__version__}

    def foreign_keys(_insp, table):
        # The dialect's get_foreign_keys is a stub returning []; its connection asks the server
        # (GetImportedKeys), which is where a tool built on this library gets them.
        with engine.connect() as conn:
            rows = conn.connection.flightsql_get_foreign_keys(table, schema=SCHEMA)
        keys = {}
        for r in sorted(rows, key=lambda r: (r["fk_key_name"] or "", r["key_sequence"])):
            k = keys.setdefault(r["fk_key_name"] or r["pk_table_name"], {
                "constrained_columns": [], "referred_table": r["pk_table_name"], "referred_columns": []})
            k["constrained_columns"].append(r["fk_column_name"])
            k["referred_columns"].append(r["pk_column_name"])
        return list(keys.values())

    inspect(sa, engine, report, foreign_keys)
    read_sql_all(pd, pa, ipc, engine, "flightsql-dbapi", names, report, outdir)


def adbc(addr, outdir, names, report):
    import adbc_driver_flightsql.dbapi as flightsql
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import sqlalchemy as sa

    warnings.simplefilter("ignore")  # the driver warns that autocommit cannot be turned off
    url = f"adbc+flightsql://{addr}?tls=false&username=ADMIN&password=KYLIN"
    engine = sa.create_engine(url)
    report["url"] = url.replace("KYLIN", "***")
    report["versions"] = {"sqlalchemy": sa.__version__, "pandas": pd.__version__}

    def foreign_keys(insp, table):
        return [
            {"constrained_columns": fk["constrained_columns"], "referred_table": fk["referred_table"],
             "referred_columns": fk["referred_columns"]}
            for fk in insp.get_foreign_keys(table, schema=SCHEMA)
        ]

    inspect(sa, engine, report, foreign_keys)
    # What the dialect builds its answers from: ADBC GetObjects (table names and types).
    conn = flightsql.connect(f"grpc://{addr}", db_kwargs={"username": "ADMIN", "password": "KYLIN"})
    try:
        def objects():
            tree = conn.adbc_get_objects(depth="tables", db_schema_filter=SCHEMA).read_all().to_pylist()
            return sorted(
                [t["table_name"], t["table_type"]]
                for c in tree for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []
            )
        report["get_objects_tables"] = attempt(report, "adbc_get_objects", objects)
        read_sql_all(pd, pa, ipc, engine, "adbc-sqlalchemy", names, report, outdir)
        read_sql_all(pd, pa, ipc, conn, "adbc-native", names, report, outdir)
    finally:
        conn.close()


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("flightsql-dbapi", "adbc"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    path, addr, outdir, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    os.makedirs(outdir, exist_ok=True)
    report = {"path": path, "errors": {}}
    try:
        (flightsql_dbapi if path == "flightsql-dbapi" else adbc)(addr, outdir, names, report)
    except ImportError as e:
        print(f"missing Python module ({e})", file=sys.stderr)
        sys.exit(3)
    with open(os.path.join(outdir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
