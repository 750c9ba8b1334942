//! SQL the way BI tools write it (Superset's virtual datasets, Tableau's Custom SQL, Power BI's
//! nested selects, CTEs, DISTINCT value lists, ordinals, CASE, HAVING, windows, UNION ALL,
//! filters of every kind, quoted and qualified names) answered from the SSB cube with pushdown
//! off: EXPLAIN names the cube and the result equals DataFusion on the raw files. Shapes that
//! cannot be answered exactly are refused with the reason.

use qilin_engine::query::QueryEngine;
use qilin_engine::Error;
use qilin_tests::compare::{compare, explain_text, oracle_query, Expect};
use qilin_tests::oracle;

use crate::query_engine::engine_with;

/// The SSB cube over two segments (shared with `query_engine`), pushdown off.
async fn cube_only() -> (QueryEngine, datafusion::prelude::SessionContext) {
    let (engine, source) = engine_with(|c| c.query.pushdown_enabled = false).await;
    let ctx = oracle(&source).await;
    (engine, ctx)
}

/// Whether the statement's outermost query has ORDER BY (one inside a subquery orders
/// nothing): the text after the last ORDER BY closes no parenthesis it did not open.
fn top_level_order_by(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let Some(at) = lower.rfind("order by") else {
        return false;
    };
    let mut depth = 0i32;
    for ch in lower[at..].chars() {
        match ch {
            '(' => depth += 1,
            ')' if depth == 0 => return false,
            ')' => depth -= 1,
            _ => {}
        }
    }
    true
}

/// Checks one statement: every EXPLAIN realization row names a cube, the result has the
/// schema `prepare` announces, and it equals the oracle's for `oracle_sql` (the same statement unless the oracle needs other names).
async fn check(
    engine: &QueryEngine,
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    oracle_sql: &str,
) -> Result<(), String> {
    let explain = engine
        .execute(&format!("EXPLAIN {sql}"), None)
        .await
        .map_err(|e| format!("EXPLAIN failed: {e}"))?;
    let text = explain_text(&explain.batches);
    let realizations: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("realization | "))
        .collect();
    if realizations.is_empty() || !realizations.iter().all(|r| r.starts_with("cube ")) {
        return Err(format!("not answered from a cube: {realizations:?}"));
    }
    let got = engine
        .execute(sql, None)
        .await
        .map_err(|e| format!("execution failed: {e}"))?;
    // Clients (ADBC) refuse a stream whose schema is not the one announced, nullability included.
    let announced = engine
        .prepare(sql)
        .await
        .map_err(|e| format!("prepare failed: {e}"))?
        .schema;
    for schema in std::iter::once(got.schema.clone()).chain(got.batches.iter().map(|b| b.schema()))
    {
        if schema.fields() != announced.fields() {
            return Err(format!(
                "schema {schema:?} differs from the announced {announced:?}"
            ));
        }
    }
    let want = oracle_query(ctx, oracle_sql).await;
    let expect = Expect {
        ordered: top_level_order_by(sql),
        approx: vec![],
    };
    compare(&got.batches, &want, &expect)?;
    // A statement that finds nothing proves little.
    if want.iter().map(|b| b.num_rows()).sum::<usize>() == 0 {
        return Err("the oracle finds no rows: choose a statement that does".into());
    }
    Ok(())
}

/// Runs every statement and fails naming each one that is not answered or differs.
async fn check_all(cases: &[&str]) {
    let (engine, ctx) = cube_only().await;
    let mut failures = Vec::new();
    for sql in cases {
        if let Err(e) = check(&engine, &ctx, sql, sql).await {
            failures.push(format!("{sql}\n    -> {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} statements failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const JOIN_DATES: &str = "lineorder JOIN dates ON lo_orderdate = d_datekey";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subqueries_and_ctes_in_from() {
    let cases = [
        // Superset's virtual dataset (superset/connectors/sqla/models.py wraps the dataset's SQL
        // as `(<sql>) AS virtual_table`).
        "SELECT d_year, sum(rev) AS revenue FROM (SELECT d_year, lo_revenue AS rev FROM lineorder \
         JOIN dates ON lo_orderdate = d_datekey WHERE d_year >= 1993) AS virtual_table GROUP BY d_year",
        "SELECT virtual_table.d_year AS d_year, sum(virtual_table.rev) AS \"SUM(rev)\" FROM \
         (SELECT d_year, c_region, lo_revenue AS rev FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
         JOIN customer ON lo_custkey = c_custkey) AS virtual_table WHERE virtual_table.c_region = 'ASIA' \
         GROUP BY virtual_table.d_year ORDER BY \"SUM(rev)\" DESC LIMIT 10000",
        // Superset's time series: a time grain over the dataset's date column.
        "SELECT date_trunc('year', to_timestamp(CAST(virtual_table.datekey AS VARCHAR), '%Y%m%d')) \
         AS __timestamp, sum(virtual_table.lo_revenue) AS \"SUM(lo_revenue)\" FROM (SELECT \
         d_datekey AS datekey, lo_revenue FROM lineorder JOIN dates ON lo_orderdate = d_datekey) \
         AS virtual_table GROUP BY date_trunc('year', to_timestamp(CAST(virtual_table.datekey AS \
         VARCHAR), '%Y%m%d')) ORDER BY \"SUM(lo_revenue)\" DESC LIMIT 10000",
        // Tableau's Custom SQL: `SELECT ... FROM (<custom sql>) "Custom SQL Query" GROUP BY 1`.
        "SELECT \"Custom SQL Query\".\"c_region\" AS \"c_region\", \
         SUM(\"Custom SQL Query\".\"lo_revenue\") AS \"sum:lo_revenue:ok\" \
         FROM (SELECT c_region, lo_revenue FROM lineorder JOIN customer ON lo_custkey = c_custkey) \
         \"Custom SQL Query\" GROUP BY 1",
        // Power BI's nested selects (`select ... from (select ...) as "_"`, several levels).
        "select \"rows\".\"d_year\" as \"d_year\", sum(\"rows\".\"lo_revenue\") as \"a0\" from \
         (select \"_\".\"d_year\", \"_\".\"lo_revenue\" from (select \"$Table\".\"d_year\", \"$Table\".\"lo_revenue\", \
         \"$Table\".\"s_region\" from (select d_year, lo_revenue, s_region from lineorder join dates on \
         lo_orderdate = d_datekey join supplier on lo_suppkey = s_suppkey) as \"$Table\") as \"_\" \
         where \"_\".\"s_region\" = 'EUROPE') as \"rows\" group by \"d_year\" limit 1000001",
        // Tableau casts measures it sums (`SUM(CAST(... AS BIGINT))`).
        "SELECT \"Custom SQL Query\".\"d_year\" AS \"d_year\", \
         SUM(CAST(\"Custom SQL Query\".\"lo_revenue\" AS BIGINT)) AS \"sum:lo_revenue:ok\" \
         FROM (SELECT d_year, lo_revenue FROM lineorder JOIN dates ON lo_orderdate = d_datekey) \
         \"Custom SQL Query\" GROUP BY 1",
        // Metabase's native-query questions (`SELECT ... FROM (<native sql>) AS "source"`).
        "SELECT \"source\".\"p_mfgr\" AS \"p_mfgr\", count(*) AS \"count\", \
         sum(\"source\".\"lo_quantity\") AS \"sum\" FROM (SELECT p_mfgr, lo_quantity FROM lineorder \
         JOIN part ON lo_partkey = p_partkey) AS \"source\" GROUP BY \"source\".\"p_mfgr\" \
         ORDER BY \"source\".\"p_mfgr\" ASC",
        // CTEs, one and chained.
        "WITH t AS (SELECT d_year, c_region, lo_revenue FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
         JOIN customer ON lo_custkey = c_custkey) SELECT c_region, d_year, sum(lo_revenue) FROM t \
         GROUP BY c_region, d_year",
        "WITH base AS (SELECT * FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey), \
         asia AS (SELECT * FROM base WHERE s_region = 'ASIA') \
         SELECT s_nation, sum(lo_revenue) AS r, count(*) AS n FROM asia GROUP BY s_nation",
        // A product computed inside and summed outside (a computed column of the model).
        "SELECT d_year, sum(x) AS revenue FROM (SELECT d_year, lo_extendedprice * lo_discount AS x \
         FROM lineorder, dates WHERE lo_orderdate = d_datekey AND d_year = 1993 \
         AND lo_discount BETWEEN 1 AND 3 AND lo_quantity < 25) s GROUP BY d_year",
        // Columns renamed inside, grouped and filtered by their new names.
        "SELECT yr, region, count(*) AS n, sum(rev) AS r, avg(rev) AS a, min(price) AS lo, max(price) AS hi \
         FROM (SELECT d_year AS yr, c_region AS region, lo_revenue AS rev, lo_extendedprice AS price \
         FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey) q \
         WHERE yr > 1994 GROUP BY yr, region",
        // A CASE over dimensions computed inside.
        "SELECT period, sum(lo_revenue) FROM (SELECT CASE WHEN d_year < 1995 THEN 'early' ELSE 'late' END \
         AS period, lo_revenue FROM lineorder JOIN dates ON lo_orderdate = d_datekey) p GROUP BY period",
        // Each side of the join a subquery.
        "SELECT d.d_year, sum(l.lo_revenue) FROM (SELECT * FROM lineorder) l \
         JOIN (SELECT d_datekey, d_year FROM dates) d ON l.lo_orderdate = d.d_datekey GROUP BY d.d_year",
        // COUNT(DISTINCT) through a rename.
        "SELECT c_region, count(DISTINCT sk) FROM (SELECT c_region, lo_suppkey AS sk FROM lineorder \
         JOIN customer ON lo_custkey = c_custkey) t GROUP BY c_region",
        // An aggregate in FROM (answered on its own), aggregated again outside.
        "SELECT max(r) AS best, count(*) AS years FROM (SELECT d_year, sum(lo_revenue) AS r FROM \
         lineorder JOIN dates ON lo_orderdate = d_datekey GROUP BY d_year) t",
        // A sort in a subquery changes no row.
        "SELECT c_region, sum(lo_revenue) FROM (SELECT c_region, lo_revenue FROM lineorder JOIN customer \
         ON lo_custkey = c_custkey ORDER BY c_region) t GROUP BY c_region",
    ];
    check_all(&cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_value_lists() {
    let cases = [
        // Superset's filter values (`SELECT DISTINCT col AS column_values FROM ... LIMIT n`).
        "SELECT DISTINCT c_region AS column_values FROM customer JOIN lineorder ON lo_custkey = c_custkey \
         LIMIT 1000",
        "SELECT DISTINCT d_year FROM lineorder JOIN dates ON lo_orderdate = d_datekey ORDER BY d_year",
        "SELECT DISTINCT c_region, s_region FROM lineorder, customer, supplier \
         WHERE lo_custkey = c_custkey AND lo_suppkey = s_suppkey",
        "SELECT DISTINCT p_category FROM lineorder JOIN part ON lo_partkey = p_partkey \
         WHERE p_mfgr = 'MFGR#1' ORDER BY p_category",
        "SELECT DISTINCT d_sellingseason FROM lineorder JOIN dates ON lo_orderdate = d_datekey",
        // COUNT(*) over a DISTINCT subquery counts the groups the cube answers.
        "SELECT count(*) FROM (SELECT DISTINCT d_year FROM lineorder JOIN dates ON lo_orderdate = d_datekey) t",
        "SELECT DISTINCT virtual_table.c_nation FROM (SELECT c_nation, c_region FROM lineorder JOIN customer \
         ON lo_custkey = c_custkey) AS virtual_table WHERE c_region = 'AMERICA'",
    ];
    check_all(&cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_ordering_windows_unions_ratios() {
    let from_cdc =
        "lineorder JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey";
    let cases = [
        format!("SELECT c_region, d_year, sum(lo_revenue) FROM {from_cdc} GROUP BY 1, 2 ORDER BY 1, 2"),
        format!("SELECT d_year / 2 * 2 AS biennium, sum(lo_revenue) FROM {JOIN_DATES} GROUP BY d_year / 2 * 2"),
        format!(
            "SELECT CASE WHEN c_region IN ('ASIA', 'EUROPE') THEN 'eurasia' ELSE 'other' END AS zone, \
             sum(lo_revenue) FROM {from_cdc} GROUP BY 1"
        ),
        format!(
            "SELECT d_year, count(*) FROM {from_cdc} JOIN supplier ON lo_suppkey = s_suppkey \
             WHERE CASE WHEN d_year > 1995 THEN s_region ELSE c_region END = 'AMERICA' GROUP BY d_year"
        ),
        format!(
            "SELECT c_nation, sum(lo_revenue) AS r FROM {from_cdc} GROUP BY c_nation \
             HAVING sum(lo_revenue) > 1000000 AND count(*) > 10 ORDER BY r DESC"
        ),
        format!(
            "SELECT c_nation, sum(lo_revenue) FROM {from_cdc} GROUP BY c_nation \
             ORDER BY sum(lo_revenue) DESC, c_nation LIMIT 5"
        ),
        format!(
            "SELECT c_region, sum(lo_revenue) AS r, rank() OVER (ORDER BY sum(lo_revenue) DESC) AS rk \
             FROM {from_cdc} GROUP BY c_region ORDER BY rk"
        ),
        format!(
            "SELECT d_year, sum(lo_revenue) * 1.0 / sum(sum(lo_revenue)) OVER () AS share \
             FROM {JOIN_DATES} GROUP BY d_year ORDER BY d_year"
        ),
        "SELECT 'customer' AS side, c_region AS region, sum(lo_revenue) AS r FROM lineorder \
         JOIN customer ON lo_custkey = c_custkey GROUP BY c_region \
         UNION ALL SELECT 'supplier', s_region, sum(lo_revenue) FROM lineorder \
         JOIN supplier ON lo_suppkey = s_suppkey GROUP BY s_region"
            .to_string(),
        // Tableau's "Number of Records" (`SUM(1)`), grouped and not.
        format!(
            "SELECT c_region, SUM(1) AS \"sum:Number of Records:ok\" FROM {from_cdc} GROUP BY 1"
        ),
        format!("SELECT SUM(1), SUM(3) FROM {JOIN_DATES} WHERE d_year = 1994"),
        // No row: SUM(1) is NULL, COUNT(*) is 0.
        format!("SELECT SUM(1), count(*) FROM {JOIN_DATES} WHERE d_year = 2050"),
        // UNION (distinct) of two aggregates: each branch from the cube.
        "SELECT c_region AS region FROM lineorder JOIN customer ON lo_custkey = c_custkey \
         GROUP BY c_region UNION SELECT s_region FROM lineorder JOIN supplier \
         ON lo_suppkey = s_suppkey GROUP BY s_region"
            .to_string(),
        format!(
            "SELECT d_year, sum(lo_revenue) / sum(lo_supplycost) AS ratio, \
             sum(lo_revenue) * 1.0 / count(*) AS per_row, \
             sum(lo_extendedprice * lo_discount) / sum(lo_quantity) AS v \
             FROM {JOIN_DATES} GROUP BY d_year"
        ),
    ];
    let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
    check_all(&cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_of_every_kind() {
    let star =
        "lineorder JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey \
                JOIN supplier ON lo_suppkey = s_suppkey";
    let cases = [
        format!("SELECT d_year, sum(lo_revenue) FROM {star} WHERE c_region = 'ASIA' OR s_region = 'ASIA' GROUP BY d_year"),
        format!("SELECT c_region, count(*) FROM {star} WHERE c_region NOT IN ('ASIA', 'AFRICA') GROUP BY c_region"),
        format!("SELECT s_region, count(*) FROM {star} WHERE s_region <> 'EUROPE' GROUP BY s_region"),
        "SELECT p_category, sum(lo_revenue) FROM lineorder JOIN part ON lo_partkey = p_partkey \
         WHERE p_brand LIKE 'MFGR#12%' GROUP BY p_category"
            .to_string(),
        format!(
            "SELECT c_region, count(*) FROM {star} WHERE c_nation IS NOT NULL AND \
             (s_city IS NULL OR d_year = 1997) GROUP BY c_region"
        ),
        format!(
            "SELECT d_year, sum(lo_extendedprice * lo_discount) FROM {JOIN_DATES} \
             WHERE d_year BETWEEN 1993 AND 1995 AND lo_discount BETWEEN 1 AND 3 GROUP BY d_year"
        ),
        // Date literals and date functions over the date dimensions (`lo_orderdate`, its
        // `d_datekey`, and `d_date` derived from it).
        format!(
            "SELECT c_region, count(*) FROM {star} \
             WHERE to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d') >= DATE '1997-06-01' GROUP BY c_region"
        ),
        format!(
            "SELECT extract(year FROM to_date(CAST(d_datekey AS VARCHAR), '%Y%m%d')) AS y, sum(lo_revenue) \
             FROM {JOIN_DATES} GROUP BY 1"
        ),
        format!(
            "SELECT date_trunc('month', to_timestamp(CAST(d_datekey AS VARCHAR), '%Y%m%d')) AS m, count(*) \
             FROM {JOIN_DATES} WHERE d_year = 1994 GROUP BY 1 ORDER BY 1"
        ),
        format!("SELECT d_sellingseason, count(*) FROM {JOIN_DATES} WHERE d_date LIKE 'December%' GROUP BY d_sellingseason"),
    ];
    let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
    check_all(&cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_qualified_and_upper_case_names() {
    let (engine, ctx) = cube_only().await;
    let plain =
        "SELECT d_year, sum(lo_revenue) FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
                 GROUP BY d_year";
    let mut failures = Vec::new();
    for sql in [
        "SELECT \"d_year\", SUM(\"lo_revenue\") FROM \"ssb\".\"lineorder\" JOIN \"ssb\".\"dates\" \
         ON \"lo_orderdate\" = \"d_datekey\" GROUP BY \"d_year\"",
        // Unquoted names are folded to lower case.
        "SELECT D_YEAR, SUM(LO_REVENUE) FROM SSB.LINEORDER JOIN Ssb.Dates ON LO_ORDERDATE = D_DATEKEY \
         GROUP BY D_Year",
        "SELECT d.d_year, SUM(l.lo_revenue) FROM ssb.lineorder AS l JOIN qilin.ssb.dates AS d \
         ON l.lo_orderdate = d.d_datekey GROUP BY d.d_year",
        // Project and table names are found whatever their case, quoted or not.
        "SELECT \"d_year\", SUM(\"lo_revenue\") FROM \"SSB\".\"LINEORDER\" JOIN \"Dates\" \
         ON \"lo_orderdate\" = \"d_datekey\" GROUP BY \"d_year\"",
    ] {
        if let Err(e) = check(&engine, &ctx, sql, plain).await {
            failures.push(format!("{sql}\n    -> {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A quoted column name keeps its case (SQL's rule): an error naming it, not a panic.
    let err = engine
        .execute(
            "SELECT \"D_YEAR\", count(*) FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
             GROUP BY \"D_YEAR\"",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Sql(_)), "{err}");
    assert!(err.to_string().contains("D_YEAR"), "{err}");
}

/// Shapes a cube cannot answer exactly are refused naming why, never answered wrongly (with
/// pushdown off, only detail rows of a table index could answer them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_that_cannot_be_answered_are_refused() {
    let (engine, ctx) = cube_only().await;
    for (sql, reason) in [
        // Which 10 rows is the engine's choice: no cuboid knows.
        (
            "SELECT sum(rev) FROM (SELECT lo_revenue AS rev FROM lineorder LIMIT 10) t",
            "LIMIT",
        ),
        (
            "SELECT sum(rn) FROM (SELECT row_number() OVER (ORDER BY lo_orderkey) AS rn FROM lineorder) t",
            "window",
        ),
        // A volatile function would be evaluated once per cuboid row, not per fact row.
        (
            "SELECT count(*) FROM lineorder WHERE random() < 0.5",
            "random",
        ),
        (
            "SELECT c_phone, sum(r) FROM (SELECT c_phone, lo_revenue AS r FROM lineorder \
             JOIN customer ON lo_custkey = c_custkey) t GROUP BY c_phone",
            "c_phone",
        ),
        (
            "SELECT sum(x) FROM (SELECT lo_revenue + lo_tax AS x FROM lineorder) t",
            "lo_tax",
        ),
        // A correlated subquery reads fact rows.
        (
            "SELECT d_year, count(*) FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
             WHERE EXISTS (SELECT 1 FROM customer WHERE c_custkey = lo_custkey \
             AND c_region = 'ASIA') GROUP BY d_year",
            "correlated subquery",
        ),
        // Computed inside the right side of a LEFT JOIN it is NULL for unmatched rows;
        // computed after the join it would not be.
        (
            "SELECT y, sum(lo_revenue) FROM lineorder LEFT JOIN (SELECT d_datekey, \
             coalesce(d_year, 0) AS y FROM dates) d ON lo_orderdate = d.d_datekey GROUP BY y",
            "right side of a LEFT JOIN computes",
        ),
    ] {
        match engine.execute(sql, None).await {
            Err(err) => {
                assert!(matches!(err, Error::NoRealization(_)), "{sql}: {err}");
                assert!(
                    err.to_string()
                        .to_ascii_lowercase()
                        .contains(&reason.to_ascii_lowercase()),
                    "{sql}: {err}"
                );
            }
            // Detail rows (a table index) may answer some of these exactly; a cuboid never.
            Ok(out) => {
                let explain = engine.execute(&format!("EXPLAIN {sql}"), None).await;
                let text = explain_text(&explain.expect("EXPLAIN").batches);
                assert!(
                    !text.lines().any(|l| l.starts_with("realization | cube ")),
                    "{sql} answered from a cuboid:\n{text}"
                );
                // Which rows `random()` or a LIMIT without ORDER BY keeps is the engine's choice.
                if !sql.contains("random()") && !sql.contains("LIMIT") {
                    let want = oracle_query(&ctx, sql).await;
                    let expect = Expect::default();
                    compare(&out.batches, &want, &expect).unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            }
        }
    }
}

const JOIN_CUSTOMER_DATES: &str = "lineorder JOIN customer ON lo_custkey = c_custkey \
     JOIN dates ON lo_orderdate = d_datekey";

/// Tableau's calculated fields aggregated (conditional aggregation over dimensions) and
/// Superset's series limit (a join with a top-N subquery): answered from cuboids only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_aggregates_and_series_limits() {
    let sum_case = |case: &str, group: &str| {
        format!("SELECT {group}, {case} AS v FROM {JOIN_CUSTOMER_DATES} GROUP BY {group}")
    };
    let series_limit = |outer_where: &str| {
        format!(
            "SELECT c_nation AS c_nation, d_year AS d_year, sum(lo_revenue) AS \"SUM(lo_revenue)\" \
             FROM {JOIN_CUSTOMER_DATES} JOIN (SELECT c_nation AS c_nation__, sum(lo_revenue) AS \
             mme_inner__ FROM lineorder JOIN customer ON lo_custkey = c_custkey GROUP BY c_nation \
             ORDER BY mme_inner__ DESC LIMIT 5) AS series_limit ON c_nation = c_nation__ \
             {outer_where} GROUP BY c_nation, d_year ORDER BY c_nation, d_year"
        )
    };
    let cases = [
        sum_case(
            "SUM(CASE WHEN lo_discount BETWEEN 1 AND 3 THEN lo_revenue ELSE 0 END)",
            "d_year",
        ),
        sum_case(
            "SUM(CASE WHEN c_region = 'ASIA' THEN 1 ELSE 0 END)",
            "d_year",
        ),
        // No ELSE: NULL for the groups without a matching row, as over the fact rows.
        sum_case(
            "SUM(CASE WHEN c_region = 'ASIA' THEN lo_revenue END)",
            "c_region",
        ),
        sum_case(
            "SUM(CASE WHEN c_region = 'ASIA' THEN lo_revenue ELSE NULL END)",
            "c_nation",
        ),
        sum_case(
            "SUM(CASE d_year WHEN 1993 THEN lo_revenue WHEN 1994 THEN 2 ELSE 0 END)",
            "c_region",
        ),
        sum_case("COUNT(CASE WHEN d_year = 1994 THEN 1 END)", "c_region"),
        sum_case(
            "COUNT(CASE WHEN d_year = 1994 AND c_region <> 'ASIA' THEN 'x' ELSE NULL END)",
            "d_year",
        ),
        series_limit(""),
        series_limit("WHERE d_year >= 1995"),
    ];
    let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
    check_all(&cases).await;
}

/// A CASE over a column a cuboid row mixes, and a series-limit join whose key is not unique
/// in its subquery, are never answered from cuboids alone: refused naming why, or answered
/// (exactly) with a table index reading the detail rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_aggregates_and_joins_cuboids_cannot_answer() {
    let (engine, ctx) = cube_only().await;
    for (sql, reason) in [
        (
            "SELECT d_year, SUM(CASE WHEN lo_tax > 4 THEN lo_revenue ELSE 0 END) AS v \
             FROM lineorder JOIN dates ON lo_orderdate = d_datekey GROUP BY d_year"
                .to_string(),
            "not a dimension",
        ),
        (
            format!(
                "SELECT c_nation, d_year, sum(lo_revenue) AS r FROM {JOIN_CUSTOMER_DATES} \
                 JOIN (SELECT c_nation AS n, c_region AS g, sum(lo_revenue) AS m FROM lineorder \
                 JOIN customer ON lo_custkey = c_custkey GROUP BY c_nation, c_region \
                 ORDER BY m DESC LIMIT 5) AS s ON c_nation = s.n GROUP BY c_nation, d_year"
            ),
            "not provably unique",
        ),
    ] {
        match engine.execute(&sql, None).await {
            Err(err) => {
                assert!(matches!(err, Error::NoRealization(_)), "{sql}: {err}");
                assert!(err.to_string().contains(reason), "{sql}: {err}");
            }
            Ok(out) => {
                let explain = engine.execute(&format!("EXPLAIN {sql}"), None).await;
                let text = explain_text(&explain.expect("EXPLAIN").batches);
                let realizations: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("realization | "))
                    .collect();
                assert!(
                    realizations.iter().any(|r| r.starts_with("table index ")),
                    "{sql} answered without detail rows: {realizations:?}"
                );
                let want = oracle_query(&ctx, &sql).await;
                compare(&out.batches, &want, &Expect::default())
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }
}
