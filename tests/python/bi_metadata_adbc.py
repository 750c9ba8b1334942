#!/usr/bin/env python3
"""What BI tools read through the Python ADBC Flight SQL driver: result schemas with Flight SQL
column metadata (the driver refuses a stream whose schema differs from the FlightInfo's,
"endpoint 0 returned inconsistent schema", so every query here also checks that), a table
schema from GetTables, and GetTables filtered by table type. Prints `key=value` lines that
tests/tests/all/bi_metadata.rs asserts on.

Usage: bi_metadata_adbc.py grpc://HOST:PORT
Exit codes: 0 ok, 3 driver or pyarrow missing, 1 any other failure (with a traceback).
"""

import sys

try:
    import adbc_driver_flightsql.dbapi as flightsql
except ImportError as e:
    print(f"missing Python module ({e}): pip install adbc-driver-flightsql pyarrow", file=sys.stderr)
    sys.exit(3)

# name -> SQL; each result's columns are printed with their metadata.
QUERIES = {
    "literals": "select 1 as i, cast(2.50 as decimal(10,2)) as d, 'x' as s, date '1995-01-01' as dt",
    "cube": "select d_year, sum(lo_revenue) as revenue, count(distinct lo_suppkey) as suppliers "
            "from lineorder, dates where lo_orderdate = d_datekey group by d_year",
    "version": "select version() as v",
    "info_schema": "select table_name from information_schema.tables "
                   "where table_schema = 'ssb' order by table_name",
}

KEYS = ["TYPE_NAME", "PRECISION", "SCALE", "IS_NULLABLE"]


def describe(schema):
    cols = []
    for f in schema:
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        vals = [meta.get("ARROW:FLIGHT:SQL:" + k, "-") for k in KEYS]
        cols.append(f.name + ":" + ":".join(vals))
    return ",".join(cols)


def main(uri):
    conn = flightsql.connect(uri, db_kwargs={"username": "ADMIN", "password": "KYLIN"})
    try:
        with conn.cursor() as cur:
            for name, sql in QUERIES.items():
                cur.execute(sql)
                table = cur.fetch_arrow_table()
                print(f"{name}_schema=" + describe(table.schema))
                print(f"{name}_rows=" + ";".join(
                    "|".join(str(v) for v in row.values()) for row in table.to_pylist()))
        schema = conn.adbc_get_table_schema("lineorder", db_schema_filter="ssb")
        print("lineorder_table_schema=" + describe(schema))
        for types in (["BASE TABLE"], ["TABLE"], ["VIEW"]):
            objects = conn.adbc_get_objects(depth="tables", table_types_filter=types)
            tables = []
            for catalog in objects.read_all().to_pylist():
                for s in catalog["catalog_db_schemas"] or []:
                    tables += [t["table_name"] for t in s["db_schema_tables"] or []]
            print(f"tables_{types[0].replace(' ', '_')}=" + ",".join(sorted(tables)))
    finally:
        conn.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
