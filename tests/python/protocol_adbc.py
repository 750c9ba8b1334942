#!/usr/bin/env python3
"""Drives qilin-server with the Python ADBC Flight SQL driver: metadata calls and a query with
`?` parameters. Prints `key=value` lines that tests/tests/all/protocol.rs asserts on.

Usage: protocol_adbc.py grpc://HOST:PORT
Exit codes: 0 ok, 3 driver or pyarrow missing, 1 any other failure (with a traceback).
"""

import sys

try:
    import adbc_driver_flightsql.dbapi as flightsql
    import adbc_driver_manager
except ImportError as e:
    print(f"missing Python module ({e}): pip install adbc-driver-flightsql pyarrow", file=sys.stderr)
    sys.exit(3)


def main(uri):
    conn = flightsql.connect(uri, db_kwargs={"username": "ADMIN", "password": "KYLIN"})
    try:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        print("catalogs=" + ",".join(sorted(o["catalog_name"] for o in objects)))
        tables, lineorder_columns = [], []
        for catalog in objects:
            for schema in catalog["catalog_db_schemas"] or []:
                for table in schema["db_schema_tables"] or []:
                    tables.append(f'{schema["db_schema_name"]}.{table["table_name"]}')
                    if table["table_name"] == "lineorder":
                        lineorder_columns = [c["column_name"] for c in table["table_columns"] or []]
        print("tables=" + ",".join(sorted(tables)))
        print("lineorder_columns=" + ",".join(lineorder_columns))
        print("table_types=" + ",".join(conn.adbc_get_table_types()))
        info = conn.adbc_get_info()
        print("vendor_name=" + str(info.get("vendor_name")))
        sql = ("select count(*) from lineorder, dates "
               "where lo_orderdate = d_datekey and d_year = {}")
        with conn.cursor() as cur:
            cur.execute(sql.format("1994"))
            print("count_literal=" + str(cur.fetchone()[0]))
            cur.execute(sql.format("?"), parameters=(1994,))
            print("count_bound=" + str(cur.fetchone()[0]))
    finally:
        conn.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
