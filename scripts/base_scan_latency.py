# Times base-cuboid GROUP BYs (dimensions from two aggregation groups, filters on rowkey and
# derived columns) on qilin-server through ADBC and on DuckDB over the raw Parquet.
# usage: base_scan_latency.py URI SOURCE_DIR RUNS [qilin|duckdb|both]
import json, sys, time
URI, SRC, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])
WHICH = sys.argv[4] if len(sys.argv) > 4 else "both"
J = "FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey"
Q = {
    "week_city": f"SELECT d_weeknuminyear, c_city, sum(lo_revenue) AS r {J} GROUP BY 1, 2",
    "week_city_1993": f"SELECT d_weeknuminyear, c_city, sum(lo_revenue) AS r {J} WHERE d_year = 1993 GROUP BY 1, 2",
    "week_city_asia": f"SELECT d_weeknuminyear, c_city, sum(lo_revenue) AS r {J} WHERE c_region = 'ASIA' GROUP BY 1, 2",
    "month_city_derived": f"SELECT d_weeknuminyear, c_city, sum(lo_revenue) AS r, count(*) AS n {J} WHERE d_month = 'May' AND d_year = 1995 GROUP BY 1, 2",
    "season_quantity": f"SELECT d_sellingseason, lo_quantity, c_region, sum(lo_revenue) AS r {J} WHERE d_sellingseason = 'Christmas' GROUP BY 1, 2, 3",
}
def stats(ts):
    first = ts[0]
    ts = sorted(ts)
    return {"first": round(first, 1), "min": round(ts[0], 1), "median": round(ts[len(ts) // 2], 1)}
out = {}
if WHICH in ("qilin", "both"):
    import adbc_driver_flightsql.dbapi as flightsql
    conn = flightsql.connect(URI, db_kwargs={"username": "ADMIN", "password": "KYLIN"})
    for name, sql in Q.items():
        ts, rows = [], 0
        for _ in range(RUNS):
            cur = conn.cursor(); t0 = time.perf_counter(); cur.execute(sql)
            rows = cur.to_arrow_table().num_rows; ts.append((time.perf_counter() - t0) * 1000); cur.close()
        out.setdefault(name, {})["qilin"] = stats(ts) | {"rows": rows}
    conn.close()
    print(json.dumps(out), file=sys.stderr, flush=True)
if WHICH in ("duckdb", "both"):
    import duckdb
    con = duckdb.connect()
    for t in ["lineorder", "dates", "customer"]:
        con.execute(f"create view {t} as select * from read_parquet('{SRC}/{t}.parquet')")
    for name, sql in Q.items():
        ts, rows = [], 0
        for _ in range(RUNS):
            t0 = time.perf_counter(); rows = con.sql(sql).to_arrow_table().num_rows; ts.append((time.perf_counter() - t0) * 1000)
        out.setdefault(name, {})["duckdb"] = stats(ts) | {"rows": rows}
print(json.dumps(out, indent=1))
