#!/usr/bin/env python3
"""Kylin's Python clients against a qilin-server's Kylin REST API: kylinpy (PyPI) and its
SQLAlchemy dialect `kylin://USER:PASSWORD@HOST:PORT/PROJECT`, the one Superset's Kylin
connector (engine spec `kylin`) is built on.

Usage: kylin_clients.py HOST:PORT PROJECT OUTDIR

It writes OUTDIR/report.json and, for every query it ran, OUTDIR/<label>.arrow with the rows the
client returned, converted by the client itself (kylinpy turns the REST API's string cells into
int, float, date... by `columnTypeName`), as Arrow. report.json holds:
  versions         kylinpy, sqlalchemy, pandas
  kylinpy          projects, schemas, tables (of PROJECT), columns {table: [[name, type_NAME]]},
                   authentication (GET /user/authentication's userDetails), q21_response (what
                   POST /query answered for Q2.1, minus the rows), sql_error, wrong_password
  sqlalchemy       url, ping, schemas, tables, columns {table: [[name, type kind]]},
                   wrong_password
  results          [{label, sql, columns, rows}]: every query whose rows are in <label>.arrow
  errors           {what: traceback tail} for every step that raised unexpectedly
The Rust test (tests/tests/all/kylin_clients.rs) checks the report against the SSB model and
compares every result with its oracle.

Needs tests/requirements-superset.txt (kylinpy's dialect needs SQLAlchemy < 2).
Exit codes: 0 when everything was attempted, 3 when a module is missing, 2 on bad usage.
"""

import json
import os
import sys
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bi_corpus import load_corpus  # noqa: E402
from ssb_queries import QUERIES, load_queries  # noqa: E402

USER, PASSWORD = "ADMIN", "KYLIN"

# A GROUP BY as a Superset chart over a physical dataset writes it, run with engine.execute.
GROUP_BY_SQL = (
    "SELECT d_year, p_category, SUM(lo_revenue) AS revenue, COUNT(*) AS orders "
    "FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN part ON lo_partkey = p_partkey "
    "WHERE p_mfgr = 'MFGR#1' GROUP BY d_year, p_category ORDER BY d_year, p_category"
)

# BI-corpus statements Superset writes, read with pandas.read_sql through the dialect.
READ_SQL = ["superset_virtual_dataset_by_year", "superset_filter_values_lookup"]


def type_kind(sa, t):
    """The SQLAlchemy type as one word the Rust side compares."""
    for cls, kind in [
        (sa.types.BigInteger, "bigint"),
        (sa.types.Integer, "integer"),
        (sa.types.String, "string"),
        (sa.types.Float, "float"),
        (sa.types.Numeric, "decimal"),
        (sa.types.DateTime, "timestamp"),
        (sa.types.Date, "date"),
        (sa.types.Boolean, "boolean"),
    ]:
        if isinstance(t, cls):
            return kind
    return type(t).__name__.lower()


def attempt(report, what, fn):
    try:
        return fn()
    except Exception:
        lines = [line for line in traceback.format_exc().splitlines() if line.strip()]
        report["errors"][what] = " / ".join(lines[-3:])
        return None


def refused(fn):
    """What a call that must fail raised: {"type", "message"}, or {"type": None} if it passed."""
    try:
        fn()
    except Exception as e:  # the test wants the exception's class and text, whatever it is
        return {"type": f"{type(e).__module__}.{type(e).__name__}", "message": str(e)}
    return {"type": None, "message": "no error"}


class Results:
    """Writes each result as OUTDIR/<label>.arrow and lists it in the report."""

    def __init__(self, pa, ipc, outdir, report):
        self.pa, self.ipc, self.outdir, self.report = pa, ipc, outdir, report

    def write(self, label, sql, table):
        path = os.path.join(self.outdir, f"{label}.arrow")
        with self.pa.OSFile(path, "wb") as sink:
            with self.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        self.report["results"].append(
            {"label": label, "sql": sql, "columns": table.column_names, "rows": table.num_rows}
        )

    def rows(self, label, sql, names, rows):
        """Python rows (tuples as the DBAPI cursor returns them) → Arrow, types inferred from
        the values kylinpy converted (int → int64, float → double, date → date32, str)."""
        pa = self.pa
        arrays = [pa.array([r[i] for r in rows]) for i in range(len(names))]
        self.write(label, sql, pa.Table.from_arrays(arrays, names=list(names)))

    def frame(self, label, sql, df):
        self.write(label, sql, self.pa.Table.from_pandas(df, preserve_index=False))


def kylinpy_checks(kylinpy, host, port, project, results, report):
    from kylinpy.kylindb import Connection

    out = report["kylinpy"]
    kylin = kylinpy.Kylin(host, username=USER, password=PASSWORD, port=port, project=project)
    out["projects"] = attempt(report, "projects", lambda: sorted(p["name"] for p in kylin.projects()))
    out["schemas"] = attempt(report, "get_all_schemas", lambda: sorted(kylin.get_all_schemas()))
    tables = attempt(report, "get_all_tables", lambda: sorted(kylin.get_all_tables(schema=project)))
    out["tables"] = tables
    out["columns"] = {}
    for t in tables or []:
        cols = attempt(
            report,
            f"get_table_source({t})",
            lambda: [[c.name, c.datatype] for c in kylin.get_table_source(t, project).columns],
        )
        if cols is not None:
            out["columns"][t] = cols
    out["authentication"] = attempt(
        report, "get_authentication", lambda: kylin.service.get_authentication()
    )

    queries = dict(load_queries(QUERIES))

    def q21():
        resp = kylin.query(queries["Q2.1"])
        resp = dict(resp)
        resp["rows"] = len(resp.pop("results") or [])
        resp["columnMetas"] = [[c.get("label"), c.get("columnTypeName")] for c in resp["columnMetas"]]
        return resp

    out["q21_response"] = attempt(report, "query(Q2.1)", q21)

    # The DBAPI cursor (what the dialect executes with): every SSB query, cells converted.
    conn = Connection(host=host, port=port, username=USER, password=PASSWORD, project=project)
    for name, sql in queries.items():
        def run():
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            results.rows(f"kylinpy.{name}", sql, [d[0] for d in cur.description], rows)

        attempt(report, f"cursor.execute({name})", run)

    out["sql_error"] = refused(lambda: kylin.query("SELECT no_such_column FROM lineorder"))
    wrong = kylinpy.Kylin(host, username=USER, password="wrong", port=port, project=project)
    out["wrong_password"] = {
        "query": refused(lambda: wrong.query("SELECT 1")),
        "tables": refused(lambda: wrong.get_all_tables(schema=project)),
    }


def fix_compiler(sa):
    """kylinpy 2.8.4 (the latest on PyPI) overrides SQLCompiler._compose_select_body with
    SQLAlchemy 1.3's signature, so on SQLAlchemy 1.4 (Superset 2 and later) compiling any SELECT
    construct raises TypeError (apache/superset#22532). kylinpy's master removed the override
    (Kyligence/kylinpy#49) but no release has it; do the same here. Returns what was done."""
    from kylinpy.sqla_dialect import KylinSQLCompiler

    if "_compose_select_body" in vars(KylinSQLCompiler) and not sa.__version__.startswith("1.3."):
        del KylinSQLCompiler._compose_select_body
        return "removed KylinSQLCompiler._compose_select_body (Kyligence/kylinpy#49)"
    return None


def sqlalchemy_checks(sa, pd, host, port, project, results, report):
    out = report["sqlalchemy"]
    out["compiler_fix"] = fix_compiler(sa)
    url = f"kylin://{USER}:{PASSWORD}@{host}:{port}/{project}"
    out["url"] = url.replace(PASSWORD, "***")
    engine = sa.create_engine(url)

    def ping():
        # Superset's "Test connection": the dialect's do_ping runs SELECT 1 on a raw connection.
        raw = engine.raw_connection()
        try:
            return engine.dialect.do_ping(raw)
        finally:
            raw.close()

    out["ping"] = attempt(report, "do_ping", ping)
    insp = sa.inspect(engine)
    out["schemas"] = attempt(report, "get_schema_names", lambda: sorted(insp.get_schema_names()))
    tables = attempt(report, "get_table_names", lambda: sorted(insp.get_table_names(schema=project)))
    out["tables"] = tables
    out["columns"] = {}
    for t in tables or []:
        cols = attempt(report, f"get_columns({t})", lambda: insp.get_columns(t, schema=project))
        if cols is not None:
            out["columns"][t] = [[c["name"], type_kind(sa, c["type"])] for c in cols]

    def execute():
        result = engine.execute(sa.text(GROUP_BY_SQL))
        names = list(result.keys())
        results.rows("sqlalchemy.execute_group_by", GROUP_BY_SQL, names, result.fetchall())

    attempt(report, "engine.execute(GROUP BY)", execute)

    def core_select():
        # Superset builds a chart's query with SQLAlchemy Core over its dataset's columns and
        # compiles it with literal binds; the dialect drops the schema (omit_schema).
        c = sa.column
        lineorder = sa.table("lineorder", c("lo_orderdate"), c("lo_revenue"), schema=project)
        dates = sa.table("dates", c("d_datekey"), c("d_year"), schema=project)
        query = (
            sa.select([dates.c.d_year, sa.func.sum(lineorder.c.lo_revenue).label("SUM(lo_revenue)")])
            .select_from(lineorder.join(dates, lineorder.c.lo_orderdate == dates.c.d_datekey))
            .where(dates.c.d_year >= 1993)
            .group_by(dates.c.d_year)
            .order_by(dates.c.d_year)
        )
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        results.frame("sqlalchemy.core_select", sql, pd.read_sql(sql, engine))

    attempt(report, "Core select", core_select)

    by_name = {s["name"]: s for s in load_corpus()}
    for name in READ_SQL:
        sql = by_name[name]["sql"]
        attempt(
            report,
            f"read_sql({name})",
            lambda: results.frame(f"sqlalchemy.{name}", sql, pd.read_sql(sql, engine)),
        )

    wrong = sa.create_engine(f"kylin://{USER}:wrong@{host}:{port}/{project}")
    out["wrong_password"] = refused(lambda: sa.inspect(wrong).get_table_names(schema=project))


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    addr, project, outdir = sys.argv[1:]
    host, port = addr.rsplit(":", 1)
    port = int(port)
    try:
        import kylinpy
        import pandas as pd
        import pyarrow as pa
        import pyarrow.ipc as ipc
        import sqlalchemy as sa
    except ImportError as e:  # the Rust side turns exit code 3 into an explicit failure
        print(f"missing Python module ({e}): pip install -r tests/requirements-superset.txt",
              file=sys.stderr)
        sys.exit(3)
    # SQLAlchemy 1.4 warns about kylinpy's use of deprecated 1.x APIs; they work.
    warnings.simplefilter("ignore")
    os.makedirs(outdir, exist_ok=True)
    report = {
        "versions": {"kylinpy": kylinpy.__version__, "sqlalchemy": sa.__version__,
                     "pandas": pd.__version__},
        "kylinpy": {},
        "sqlalchemy": {},
        "results": [],
        "errors": {},
    }
    results = Results(pa, ipc, outdir, report)
    kylinpy_checks(kylinpy, host, port, project, results, report)
    sqlalchemy_checks(sa, pd, host, port, project, results, report)
    with open(os.path.join(outdir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
