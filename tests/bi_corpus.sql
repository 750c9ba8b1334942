-- The BI corpus: SQL written the way BI tools write it, against the SSB sample (project/schema
-- `ssb`: lineorder, customer, supplier, part, dates; cube `ssb_cube`). Read by
-- tests/src/bi_corpus.rs (the Rust oracle comparison) and tests/python/bi_corpus.py (the ADBC run).
--
-- Format: each statement is preceded by `-- key: value` lines and ends with `;` at a line end.
--   name:    unique, [a-z0-9_]
--   tool:    superset | tableau | metabase | powerbi | grafana | dbeaver | adhoc | none
--   expect:  where the answer must come from (the EXPLAIN `realization` row):
--            cube        an aggregate over the star (`cube ssb_cube`)
--            snapshot    reads lookup tables only (`snapshot of ssb.<table> (segment ...)`)
--            table_index detail rows of lineorder, maybe joined with lookups
--                        (`table index of cube ssb_cube`)
--            none        no table (SELECT 1, version(), information_schema)
--   source:  where the tool's SQL shape comes from (a file in the tool's repository, or its
--            documentation), and what of it the statement reproduces
--   approx:  optional, 0-based result columns compared with the HyperLogLog tolerance
--            (COUNT(DISTINCT lo_custkey) is an hll(12) measure)
--   compare: optional, `shape` = only the row and column counts are compared (version())
-- Results are compared with the oracle (DataFusion on the raw Parquet files): in order when the
-- statement has a top-level ORDER BY; with a top-level LIMIT and no ORDER BY every returned row
-- must be a row of the unlimited result and the count must be min(limit, total).
--
-- Every `cube` statement uses dimensions of one aggregation group of ssb_cube
-- (engine/src/sample/ssb.rs): {d_year > d_yearmonthnum, d_weeknuminyear, lo_discount,
-- lo_quantity}; {d_year > d_yearmonth, c_region > c_nation > c_city, s_region > s_nation >
-- s_city}; {d_year, c_region > c_nation, s_region > s_nation > s_city, p_mfgr > p_category >
-- p_brand}; {lo_orderdate (and the dates columns derived from it), c_region, s_region}; and
-- the measures COUNT(*), SUM of lo_revenue, lo_supplycost, lo_quantity, lo_extendedprice,
-- lo_extendedprice * lo_discount, lo_revenue - lo_supplycost, MIN/MAX(lo_extendedprice),
-- COUNT(DISTINCT lo_custkey) (hll) and COUNT(DISTINCT lo_suppkey) (bitmap).

---------------------------------------------------------------------------------------------
-- Superset (SQLAlchemy through flightsql-dbapi's `datafusion+flightsql` dialect)
---------------------------------------------------------------------------------------------

-- name: superset_virtual_dataset_by_year
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — get_from_clause wraps a virtual dataset's SQL as a subquery aliased VIRTUAL_TABLE_ALIAS = "virtual_table"; metrics are labelled like "SUM(lo_revenue)" and ordered DESC under the row limit
SELECT d_year AS d_year, sum(lo_revenue) AS "SUM(lo_revenue)"
FROM (SELECT lo_revenue, d_year, c_region FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey) AS virtual_table
WHERE c_region = 'AMERICA'
GROUP BY d_year
ORDER BY "SUM(lo_revenue)" DESC
LIMIT 10000;

-- name: superset_virtual_dataset_select_star
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — a virtual dataset defined as SELECT * over a join, wrapped as "virtual_table"; COUNT(*) is Superset's default "count" metric
SELECT c_nation AS c_nation, COUNT(*) AS count
FROM (SELECT * FROM lineorder JOIN customer ON lo_custkey = c_custkey) AS virtual_table
GROUP BY c_nation
ORDER BY c_nation
LIMIT 10000;

-- name: superset_filter_values_star
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — values_for_column: SELECT DISTINCT <col> AS column_values FROM <dataset> LIMIT <n> (native filter value lists)
SELECT DISTINCT c_region AS column_values
FROM (SELECT * FROM lineorder JOIN customer ON lo_custkey = c_custkey) AS virtual_table
LIMIT 10000;

-- name: superset_filter_values_lookup
-- tool: superset
-- expect: snapshot
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — values_for_column on a physical dataset (the supplier table): SELECT DISTINCT ... AS column_values ... LIMIT
SELECT DISTINCT s_nation AS column_values
FROM ssb.supplier
LIMIT 10000;

-- name: superset_time_grain_month
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/db_engine_specs/datafusion.py — time grain P1M = DATE_TRUNC('month', {col}); the time column is a calculated column (an expression over lo_orderdate) and the x-axis is labelled __timestamp (DTTM_ALIAS in https://github.com/apache/superset/blob/master/superset/utils/core.py)
SELECT date_trunc('month', to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d')) AS __timestamp, sum(lo_revenue) AS "SUM(lo_revenue)"
FROM lineorder JOIN customer ON lo_custkey = c_custkey
WHERE c_region = 'ASIA'
GROUP BY date_trunc('month', to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d'))
ORDER BY __timestamp
LIMIT 10000;

-- name: superset_time_range_year
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/db_engine_specs/datafusion.py — convert_dttm renders a time range bound on a DATE column as DATE '<iso date>'; P1Y = DATE_TRUNC('year', {col})
SELECT date_trunc('year', to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d')) AS __timestamp, COUNT(*) AS count
FROM lineorder
WHERE to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d') >= DATE '1994-01-01' AND to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d') < DATE '1997-01-01'
GROUP BY date_trunc('year', to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d'))
ORDER BY __timestamp;

-- name: superset_series_limit
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — a series limit joins the main query with an inner top-N aggregate aliased SERIES_LIMIT_SUBQ_ALIAS = "series_limit" whose metric is labelled mme_inner__ and whose columns end with "__"
SELECT c_nation AS c_nation, d_year AS d_year, sum(lo_revenue) AS "SUM(lo_revenue)"
FROM lineorder JOIN customer ON lo_custkey = c_custkey JOIN dates ON lo_orderdate = d_datekey
JOIN (SELECT c_nation AS c_nation__, sum(lo_revenue) AS mme_inner__ FROM lineorder JOIN customer ON lo_custkey = c_custkey GROUP BY c_nation ORDER BY mme_inner__ DESC LIMIT 5) AS series_limit ON c_nation = c_nation__
GROUP BY c_nation, d_year
ORDER BY c_nation, d_year;

-- name: superset_adhoc_in_filter
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — an adhoc filter with operator IN becomes <col> IN (...); the query ends with the chart's row limit
SELECT s_region AS s_region, sum(lo_supplycost) AS "SUM(lo_supplycost)"
FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey
WHERE s_region IN ('AMERICA', 'ASIA')
GROUP BY s_region
LIMIT 10000;

-- name: superset_big_number
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — the Big Number chart: one metric, no groupby, over a virtual dataset "virtual_table"
SELECT COUNT(*) AS count
FROM (SELECT * FROM lineorder) AS virtual_table
LIMIT 50000;

-- name: superset_pie_top
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — a pie chart: one dimension, the metric ordered DESC, row limit 100
SELECT p_category AS p_category, sum(lo_revenue) AS "SUM(lo_revenue)"
FROM lineorder JOIN part ON lo_partkey = p_partkey
GROUP BY p_category
ORDER BY "SUM(lo_revenue)" DESC
LIMIT 100;

-- name: superset_custom_sql_ratio_metric
-- tool: superset
-- expect: cube
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — an adhoc metric of type SQL is pasted verbatim (a ratio of two aggregates) and labelled with its expression
SELECT s_region AS s_region, SUM(lo_revenue) / SUM(lo_supplycost) AS "SUM(lo_revenue) / SUM(lo_supplycost)"
FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey
GROUP BY s_region
ORDER BY s_region;

-- name: superset_samples
-- tool: superset
-- expect: table_index
-- source: https://github.com/apache/superset/blob/master/superset/db_engine_specs/base.py — select_star: the dataset/table preview SELECT * FROM <schema>.<table> LIMIT 100
SELECT * FROM ssb.lineorder LIMIT 100;

-- name: superset_sqllab_lookup_preview
-- tool: superset
-- expect: snapshot
-- source: https://github.com/apache/superset/blob/master/superset/db_engine_specs/base.py — select_star on a lookup table (SQL Lab's table preview)
SELECT * FROM ssb.customer LIMIT 100;

-- name: superset_raw_records
-- tool: superset
-- expect: table_index
-- source: https://github.com/apache/superset/blob/master/superset/models/helpers.py — a table chart in raw-records mode: the chosen columns, the filters, the row limit, no GROUP BY
SELECT lo_orderkey AS lo_orderkey, lo_linenumber AS lo_linenumber, lo_revenue AS lo_revenue, lo_shipmode AS lo_shipmode
FROM lineorder
WHERE lo_shipmode = 'AIR'
LIMIT 1000;

---------------------------------------------------------------------------------------------
-- Tableau (generic "Other Databases" connection)
---------------------------------------------------------------------------------------------

-- name: tableau_custom_sql_sum
-- tool: tableau
-- expect: cube
-- source: https://help.tableau.com/current/pro/desktop/en-us/customsql.htm and https://www.dataarchitect.co/blog/tableau-custom-sql — Tableau wraps a Custom SQL connection's query as a subquery (SELECT ... FROM (your custom SQL) ... GROUP BY ...), aliased "Custom SQL Query", with quoted aliases like "sum:lo_revenue:ok" and GROUP BY ordinals
SELECT "Custom SQL Query"."d_year" AS "d_year", SUM("Custom SQL Query"."lo_revenue") AS "sum:lo_revenue:ok"
FROM (SELECT d_year, lo_revenue, s_region FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN supplier ON lo_suppkey = s_suppkey) "Custom SQL Query"
WHERE ("Custom SQL Query"."s_region" = 'EUROPE')
GROUP BY 1;

-- name: tableau_countd_suppkey
-- tool: tableau
-- expect: cube
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — Tableau's generated aggregate SQL (quoted table aliases, GROUP BY 1); COUNTD becomes COUNT(DISTINCT ...)
SELECT "lineorder"."lo_discount" AS "lo_discount", COUNT(DISTINCT "lineorder"."lo_suppkey") AS "ctd:lo_suppkey:ok"
FROM "ssb"."lineorder" "lineorder"
GROUP BY 1;

-- name: tableau_countd_custkey
-- tool: tableau
-- expect: cube
-- approx: 1
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — COUNTD over a joined dimension: COUNT(DISTINCT ...) with INNER JOIN between quoted table aliases
SELECT "customer"."c_region" AS "c_region", COUNT(DISTINCT "lineorder"."lo_custkey") AS "ctd:lo_custkey:ok"
FROM "ssb"."lineorder" "lineorder" INNER JOIN "ssb"."customer" "customer" ON ("lineorder"."lo_custkey" = "customer"."c_custkey")
GROUP BY 1;

-- name: tableau_sum_case
-- tool: tableau
-- expect: cube
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — a calculated field IF [lo_discount] ... THEN [lo_revenue] END aggregated as SUM(CASE WHEN ... THEN ... ELSE 0 END) named "sum:Calculation_...:ok"
SELECT "dates"."d_year" AS "d_year", SUM(CASE WHEN "lineorder"."lo_discount" BETWEEN 1 AND 3 THEN "lineorder"."lo_revenue" ELSE 0 END) AS "sum:Calculation_1:ok"
FROM "ssb"."lineorder" "lineorder" INNER JOIN "ssb"."dates" "dates" ON ("lineorder"."lo_orderdate" = "dates"."d_datekey")
GROUP BY 1;

-- name: tableau_count_case
-- tool: tableau
-- expect: cube
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — a conditional count calculated field: SUM(CASE WHEN <dimension test> THEN 1 ELSE 0 END)
SELECT "dates"."d_year" AS "d_year", SUM(CASE WHEN "customer"."c_region" = 'ASIA' THEN 1 ELSE 0 END) AS "sum:Calculation_2:ok"
FROM "ssb"."lineorder" "lineorder" INNER JOIN "ssb"."customer" "customer" ON ("lineorder"."lo_custkey" = "customer"."c_custkey") INNER JOIN "ssb"."dates" "dates" ON ("lineorder"."lo_orderdate" = "dates"."d_datekey")
GROUP BY 1;

-- name: tableau_filter_domain
-- tool: tableau
-- expect: snapshot
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — a quick filter's domain: the dimension alone, GROUP BY 1, on the lookup table
SELECT "customer"."c_nation" AS "c_nation"
FROM "ssb"."customer" "customer"
GROUP BY 1;

-- name: tableau_having_condition
-- tool: tableau
-- expect: cube
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — a filter on an aggregate (condition tab) becomes HAVING (SUM(...) > n)
SELECT "supplier"."s_city" AS "s_city", SUM("lineorder"."lo_revenue") AS "sum:lo_revenue:ok"
FROM "ssb"."lineorder" "lineorder" INNER JOIN "ssb"."supplier" "supplier" ON ("lineorder"."lo_suppkey" = "supplier"."s_suppkey")
GROUP BY 1
HAVING (SUM("lineorder"."lo_revenue") > 10200000000);

-- name: tableau_case_group
-- tool: tableau
-- expect: cube
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — a group/calculated dimension: a CASE over a dimension in the select list, grouped by ordinal
SELECT (CASE WHEN "customer"."c_region" IN ('AMERICA', 'EUROPE') THEN 'West' ELSE 'East' END) AS "Calculation_3", SUM("lineorder"."lo_revenue") AS "sum:lo_revenue:ok"
FROM "ssb"."lineorder" "lineorder" INNER JOIN "ssb"."customer" "customer" ON ("lineorder"."lo_custkey" = "customer"."c_custkey")
GROUP BY 1;

-- name: tableau_min_max
-- tool: tableau
-- expect: cube
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — MIN/MAX aggregations of a measure, "min:...:ok" / "max:...:ok"
SELECT "part"."p_mfgr" AS "p_mfgr", MIN("lineorder"."lo_extendedprice") AS "min:lo_extendedprice:ok", MAX("lineorder"."lo_extendedprice") AS "max:lo_extendedprice:ok"
FROM "ssb"."lineorder" "lineorder" INNER JOIN "ssb"."part" "part" ON ("lineorder"."lo_partkey" = "part"."p_partkey")
GROUP BY 1;

-- name: tableau_avg
-- tool: tableau
-- expect: cube
-- source: https://interworks.com/blog/fzimmer/2016/07/10/tableau-sql-out-tableau-data-lifecycle-simple-aggregates-disaggregate/ — the AVG aggregation, "avg:...:ok"
SELECT "dates"."d_year" AS "d_year", AVG("lineorder"."lo_quantity") AS "avg:lo_quantity:ok"
FROM "ssb"."lineorder" "lineorder" INNER JOIN "ssb"."dates" "dates" ON ("lineorder"."lo_orderdate" = "dates"."d_datekey")
GROUP BY 1;

---------------------------------------------------------------------------------------------
-- Metabase
---------------------------------------------------------------------------------------------

-- name: metabase_sum_by_joined_column
-- tool: metabase
-- expect: cube
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/driver/sql/query_processor.clj — MBQL compiled to SQL with schema-qualified quoted identifiers ("ssb"."lineorder"."lo_revenue"), joined tables aliased by their display name, breakouts in GROUP BY and ORDER BY ... ASC, the sum aggregation named "sum"
SELECT "Customer"."c_region" AS "Customer__c_region", SUM("ssb"."lineorder"."lo_revenue") AS "sum"
FROM "ssb"."lineorder"
INNER JOIN "ssb"."customer" AS "Customer" ON "ssb"."lineorder"."lo_custkey" = "Customer"."c_custkey"
GROUP BY "Customer"."c_region"
ORDER BY "Customer"."c_region" ASC;

-- name: metabase_count_by_year
-- tool: metabase
-- expect: cube
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/driver/sql/query_processor.clj — the count aggregation is COUNT(*) AS "count"
SELECT "Dates"."d_year" AS "Dates__d_year", COUNT(*) AS "count"
FROM "ssb"."lineorder"
INNER JOIN "ssb"."dates" AS "Dates" ON "ssb"."lineorder"."lo_orderdate" = "Dates"."d_datekey"
GROUP BY "Dates"."d_year"
ORDER BY "Dates"."d_year" ASC;

-- name: metabase_raw_rows_2000
-- tool: metabase
-- expect: table_index
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/query_processor/middleware/constraints.clj — a question without aggregation ("raw rows") is limited to max-results-bare-rows = 2000
SELECT "ssb"."lineorder"."lo_orderkey" AS "lo_orderkey", "ssb"."lineorder"."lo_linenumber" AS "lo_linenumber", "ssb"."lineorder"."lo_custkey" AS "lo_custkey", "ssb"."lineorder"."lo_revenue" AS "lo_revenue"
FROM "ssb"."lineorder"
LIMIT 2000;

-- name: metabase_download_1048575
-- tool: metabase
-- expect: table_index
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/query_processor/interface.clj — downloads are limited to absolute-max-results = 1048575 rows (Excel's row limit less the header)
SELECT "ssb"."lineorder"."lo_orderkey" AS "lo_orderkey", "ssb"."lineorder"."lo_linenumber" AS "lo_linenumber", "ssb"."lineorder"."lo_quantity" AS "lo_quantity", "ssb"."lineorder"."lo_shipmode" AS "lo_shipmode"
FROM "ssb"."lineorder"
WHERE "ssb"."lineorder"."lo_quantity" > 45
LIMIT 1048575;

-- name: metabase_lookup_rows
-- tool: metabase
-- expect: snapshot
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/query_processor/middleware/constraints.clj — browsing a lookup table's rows, limited to 2000
SELECT "ssb"."part"."p_partkey" AS "p_partkey", "ssb"."part"."p_name" AS "p_name", "ssb"."part"."p_brand" AS "p_brand"
FROM "ssb"."part"
LIMIT 2000;

-- name: metabase_cast_breakout
-- tool: metabase
-- expect: cube
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/driver/sql/query_processor.clj — a breakout on a coerced field compiles to CAST(<field> AS <type>) in both SELECT and GROUP BY
SELECT CAST("Dates"."d_year" AS VARCHAR) AS "Dates__d_year", SUM("ssb"."lineorder"."lo_revenue") AS "sum"
FROM "ssb"."lineorder"
INNER JOIN "ssb"."dates" AS "Dates" ON "ssb"."lineorder"."lo_orderdate" = "Dates"."d_datekey"
GROUP BY CAST("Dates"."d_year" AS VARCHAR)
ORDER BY CAST("Dates"."d_year" AS VARCHAR) ASC;

-- name: metabase_distinct_count
-- tool: metabase
-- expect: cube
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/driver/sql/query_processor.clj — the distinct aggregation is COUNT(DISTINCT <field>) AS "count"
SELECT "Supplier"."s_nation" AS "Supplier__s_nation", COUNT(DISTINCT "ssb"."lineorder"."lo_suppkey") AS "count"
FROM "ssb"."lineorder"
INNER JOIN "ssb"."supplier" AS "Supplier" ON "ssb"."lineorder"."lo_suppkey" = "Supplier"."s_suppkey"
GROUP BY "Supplier"."s_nation"
ORDER BY "Supplier"."s_nation" ASC;

-- name: metabase_is_not_filter
-- tool: metabase
-- expect: cube
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/driver/sql/query_processor.clj — a "is not" filter compiles to (<field> <> value OR <field> IS NULL)
SELECT "Customer"."c_nation" AS "Customer__c_nation", SUM("ssb"."lineorder"."lo_revenue") AS "sum"
FROM "ssb"."lineorder"
INNER JOIN "ssb"."customer" AS "Customer" ON "ssb"."lineorder"."lo_custkey" = "Customer"."c_custkey"
WHERE ("Customer"."c_nation" <> 'CHINA' OR "Customer"."c_nation" IS NULL)
GROUP BY "Customer"."c_nation"
ORDER BY "Customer"."c_nation" ASC;

-- name: metabase_starts_with
-- tool: metabase
-- expect: cube
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/driver/sql/query_processor.clj — a "starts with" filter compiles to <field> LIKE 'prefix%'
SELECT "Part"."p_category" AS "Part__p_category", SUM("ssb"."lineorder"."lo_quantity") AS "sum"
FROM "ssb"."lineorder"
INNER JOIN "ssb"."part" AS "Part" ON "ssb"."lineorder"."lo_partkey" = "Part"."p_partkey"
WHERE "Part"."p_category" LIKE 'MFGR#1%'
GROUP BY "Part"."p_category"
ORDER BY "Part"."p_category" ASC;

-- name: metabase_field_values
-- tool: metabase
-- expect: snapshot
-- source: https://github.com/metabase/metabase/blob/master/src/metabase/driver/sql/query_processor.clj — a breakout with no aggregation on a lookup table (the field values of a filter widget): GROUP BY the field, ORDER BY ... ASC
SELECT "ssb"."customer"."c_mktsegment" AS "c_mktsegment"
FROM "ssb"."customer"
GROUP BY "ssb"."customer"."c_mktsegment"
ORDER BY "ssb"."customer"."c_mktsegment" ASC;

---------------------------------------------------------------------------------------------
-- Power BI (Power Query folding through a generic SQL connector)
---------------------------------------------------------------------------------------------

-- name: powerbi_nested_select
-- tool: powerbi
-- expect: cube
-- source: https://learn.microsoft.com/en-us/power-query/query-folding-examples — folded native queries nest each applied step as a subquery aliased _ and project "_"."column"; DirectQuery asks for one row more than its limit (top 1000001), written LIMIT for a LIMIT dialect (https://learn.microsoft.com/en-us/powerquery-m/limitclausekind-type)
select "_"."c_nation" as "c_nation", "_"."a0" as "a0"
from (
  select "rows"."c_nation" as "c_nation", sum("rows"."lo_revenue") as "a0"
  from (
    select "_"."lo_revenue" as "lo_revenue", "_"."c_nation" as "c_nation"
    from (select "lo_revenue", "c_nation", "c_region" from "ssb"."lineorder" inner join "ssb"."customer" on "lo_custkey" = "c_custkey") "_"
    where "_"."c_region" = 'EUROPE'
  ) "rows"
  group by "c_nation"
) "_"
where not "_"."a0" is null
limit 1000001;

-- name: powerbi_or_filter
-- tool: powerbi
-- expect: cube
-- source: https://learn.microsoft.com/en-us/power-query/query-folding-examples — a filter step with an OR across two columns folds into the WHERE of the nested "_" subquery
select "_"."d_year" as "d_year", sum("_"."lo_revenue") as "a0"
from (
  select "d_year", "c_region", "s_region", "lo_revenue"
  from "ssb"."lineorder" inner join "ssb"."dates" on "lo_orderdate" = "d_datekey" inner join "ssb"."customer" on "lo_custkey" = "c_custkey" inner join "ssb"."supplier" on "lo_suppkey" = "s_suppkey"
) "_"
where ("_"."c_region" = 'ASIA' or "_"."s_region" = 'ASIA')
group by "_"."d_year"
limit 1000001;

-- name: powerbi_ordered_limit
-- tool: powerbi
-- expect: cube
-- source: https://learn.microsoft.com/en-us/powerquery-m/limitclausekind-type — Kept top rows after a sort folds to ORDER BY ... LIMIT n on a LimitClauseKind.Limit source
select "_"."d_year" as "d_year", "_"."a0" as "a0"
from (select "d_year", sum("lo_supplycost") as "a0" from "ssb"."lineorder" inner join "ssb"."dates" on "lo_orderdate" = "d_datekey" group by "d_year") "_"
order by "_"."d_year"
limit 1000001;

-- name: powerbi_navigator_preview
-- tool: powerbi
-- expect: table_index
-- source: https://learn.microsoft.com/en-us/power-query/query-folding-examples — the Navigator/editor preview of a table folds to a projection of its columns with a row limit (the table aliased "$Table")
select "$Table"."lo_orderkey" as "lo_orderkey", "$Table"."lo_linenumber" as "lo_linenumber", "$Table"."lo_orderdate" as "lo_orderdate", "$Table"."lo_revenue" as "lo_revenue"
from "ssb"."lineorder" "$Table"
limit 1000;

-- name: powerbi_lookup_preview
-- tool: powerbi
-- expect: snapshot
-- source: https://learn.microsoft.com/en-us/power-query/query-folding-examples — the preview of a lookup table folds to its columns with a row limit
select "$Table"."d_datekey" as "d_datekey", "$Table"."d_date" as "d_date", "$Table"."d_year" as "d_year", "$Table"."d_sellingseason" as "d_sellingseason"
from "ssb"."dates" "$Table"
limit 1000;

-- name: powerbi_count_rows
-- tool: powerbi
-- expect: cube
-- source: https://learn.microsoft.com/en-us/power-query/query-folding-examples — Table.RowCount folds to select count(1) over the nested source
select count(1) as "a0"
from (select "lo_orderkey", "lo_revenue" from "ssb"."lineorder") "rows";

-- name: powerbi_in_list
-- tool: powerbi
-- expect: cube
-- source: https://learn.microsoft.com/en-us/power-query/query-folding-examples — a filter on a list of values folds to <column> in (...)
select "_"."p_category" as "p_category", sum("_"."lo_extendedprice") as "a0"
from (select "p_mfgr", "p_category", "lo_extendedprice" from "ssb"."lineorder" inner join "ssb"."part" on "lo_partkey" = "p_partkey") "_"
where "_"."p_mfgr" in ('MFGR#1', 'MFGR#2')
group by "_"."p_category";

-- name: powerbi_slicer_values
-- tool: powerbi
-- expect: cube
-- source: https://learn.microsoft.com/en-us/power-query/query-folding-examples — a slicer's values: the column grouped over the nested (filtered) fact-and-dimension query
select "_"."c_city" as "c_city"
from (select "c_city", "c_nation" from "ssb"."lineorder" inner join "ssb"."customer" on "lo_custkey" = "c_custkey") "_"
where "_"."c_nation" = 'CHINA'
group by "_"."c_city";

---------------------------------------------------------------------------------------------
-- Grafana (influxdata/grafana-flightsql-datasource)
---------------------------------------------------------------------------------------------

-- name: grafana_builder_group_by
-- tool: grafana
-- expect: cube
-- source: https://github.com/influxdata/grafana-flightsql-datasource/blob/main/src/components/utils.ts — buildQueryString: SELECT <columns> FROM <table> [WHERE] [GROUP BY] [ORDER BY] [LIMIT]
SELECT d_yearmonthnum, sum(lo_revenue) FROM lineorder JOIN dates ON lo_orderdate = d_datekey GROUP BY d_yearmonthnum ORDER BY d_yearmonthnum;

-- name: grafana_date_bin_time_filter
-- tool: grafana
-- expect: cube
-- source: https://github.com/influxdata/grafana-flightsql-datasource/blob/main/pkg/flightsql/macro.go — $__dateBin(col) = date_bin(interval '<interval> second', col, timestamp '1970-01-01T00:00:00Z'); $__timeFilter(col) = col >= '<from RFC3339>' AND col <= '<to>' (https://github.com/grafana/grafana-plugin-sdk-go/blob/main/data/sqlutil/macros.go)
SELECT date_bin(interval '604800 second', CAST(to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d') AS TIMESTAMP), timestamp '1970-01-01T00:00:00') AS time, sum(lo_revenue) AS revenue
FROM lineorder
WHERE CAST(to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d') AS TIMESTAMP) >= '1995-01-01T00:00:00' AND CAST(to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d') AS TIMESTAMP) <= '1995-12-31T23:59:59'
GROUP BY 1
ORDER BY 1;

-- name: grafana_where_group_limit
-- tool: grafana
-- expect: cube
-- source: https://github.com/influxdata/grafana-flightsql-datasource/blob/main/src/components/utils.ts — buildQueryString with WHERE, GROUP BY, ORDER BY and LIMIT
SELECT s_nation, sum(lo_revenue) FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey WHERE s_region = 'AMERICA' GROUP BY s_nation ORDER BY s_nation LIMIT 100;

-- name: grafana_columns_only
-- tool: grafana
-- expect: table_index
-- source: https://github.com/influxdata/grafana-flightsql-datasource/blob/main/src/components/utils.ts — buildQueryString with columns and a LIMIT only (the builder's table view)
SELECT lo_orderdate, lo_revenue FROM lineorder LIMIT 100;

-- name: grafana_derived_day_of_week
-- tool: grafana
-- expect: cube
-- source: https://github.com/influxdata/grafana-flightsql-datasource/blob/main/src/components/utils.ts — buildQueryString grouping by a day-level dates column (derived through lo_orderdate in the cube)
SELECT d_dayofweek, count(*) FROM lineorder JOIN dates ON lo_orderdate = d_datekey GROUP BY d_dayofweek ORDER BY d_dayofweek;

-- name: grafana_season_by_region
-- tool: grafana
-- expect: cube
-- source: https://github.com/influxdata/grafana-flightsql-datasource/blob/main/src/components/utils.ts — buildQueryString with two GROUP BY columns (a derived dates column and a dimension) and a WHERE
SELECT d_sellingseason, s_region, sum(lo_revenue) FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN supplier ON lo_suppkey = s_suppkey WHERE s_region <> 'AFRICA' GROUP BY d_sellingseason, s_region ORDER BY d_sellingseason, s_region;

---------------------------------------------------------------------------------------------
-- DBeaver
---------------------------------------------------------------------------------------------

-- name: dbeaver_data_tab
-- tool: dbeaver
-- expect: table_index
-- source: https://github.com/dbeaver/dbeaver/blob/devel/plugins/org.jkiss.dbeaver.model/src/org/jkiss/dbeaver/model/impl/jdbc/struct/JDBCTable.java — readData: SELECT x.* FROM <fully qualified table> x (DEFAULT_TABLE_ALIAS = "x"), no LIMIT (the row count is a fetch size)
SELECT x.* FROM ssb.lineorder x;

-- name: dbeaver_count
-- tool: dbeaver
-- expect: cube
-- source: https://github.com/dbeaver/dbeaver/blob/devel/plugins/org.jkiss.dbeaver.model/src/org/jkiss/dbeaver/model/impl/jdbc/struct/JDBCTable.java — countData: SELECT COUNT(*) FROM <fully qualified table>
SELECT COUNT(*) FROM ssb.lineorder;

-- name: dbeaver_count_lookup
-- tool: dbeaver
-- expect: snapshot
-- source: https://github.com/dbeaver/dbeaver/blob/devel/plugins/org.jkiss.dbeaver.model/src/org/jkiss/dbeaver/model/impl/jdbc/struct/JDBCTable.java — countData on a lookup table
SELECT COUNT(*) FROM ssb.customer;

-- name: dbeaver_lookup_data_tab
-- tool: dbeaver
-- expect: snapshot
-- source: https://github.com/dbeaver/dbeaver/blob/devel/plugins/org.jkiss.dbeaver.model/src/org/jkiss/dbeaver/model/impl/jdbc/struct/JDBCTable.java — readData on a lookup table: SELECT x.* FROM ssb.supplier x
SELECT x.* FROM ssb.supplier x;

-- name: dbeaver_filtered_data_tab
-- tool: dbeaver
-- expect: table_index
-- source: https://github.com/dbeaver/dbeaver/blob/devel/plugins/org.jkiss.dbeaver.model/src/org/jkiss/dbeaver/model/impl/jdbc/struct/JDBCTable.java — readData with a data filter: appendQueryConditions adds WHERE on the aliased columns
SELECT x.* FROM ssb.lineorder x WHERE x.lo_quantity < 3 AND x.lo_discount = 10;

-- name: dbeaver_count_filtered
-- tool: dbeaver
-- expect: cube
-- source: https://github.com/dbeaver/dbeaver/blob/devel/plugins/org.jkiss.dbeaver.model/src/org/jkiss/dbeaver/model/impl/jdbc/struct/JDBCTable.java — countData with the data filter's conditions
SELECT COUNT(*) FROM ssb.lineorder WHERE lo_discount = 3;

---------------------------------------------------------------------------------------------
-- Ad-hoc analyst SQL (the DataFusion dialect the server speaks)
---------------------------------------------------------------------------------------------

-- name: adhoc_having
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/select.html — GROUP BY with HAVING on an aggregate
SELECT p_brand, sum(lo_revenue) AS revenue FROM lineorder JOIN part ON lo_partkey = p_partkey WHERE p_category = 'MFGR#12' GROUP BY p_brand HAVING sum(lo_revenue) > 300000000 ORDER BY p_brand;

-- name: adhoc_window_rank
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/window_functions.html — rank() over the aggregate, partitioned by year
SELECT d_year, c_region, sum(lo_revenue) AS revenue, rank() OVER (PARTITION BY d_year ORDER BY sum(lo_revenue) DESC) AS rnk
FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey
GROUP BY d_year, c_region
ORDER BY d_year, c_region;

-- name: adhoc_window_share
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/window_functions.html — a share of total: an aggregate divided by the window sum of the aggregate
SELECT d_year, s_region, sum(lo_revenue) * 1.0 / sum(sum(lo_revenue)) OVER (PARTITION BY d_year) AS share
FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN supplier ON lo_suppkey = s_suppkey
GROUP BY d_year, s_region
ORDER BY d_year, s_region;

-- name: adhoc_union_all
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/select.html — UNION ALL of two aggregates, each over the star
SELECT 'customer' AS side, c_region AS region, sum(lo_revenue) AS revenue FROM lineorder JOIN customer ON lo_custkey = c_custkey GROUP BY c_region
UNION ALL
SELECT 'supplier' AS side, s_region AS region, sum(lo_revenue) AS revenue FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey GROUP BY s_region;

-- name: adhoc_not_in
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/operators.html — NOT IN a list of values
SELECT c_region, count(*) AS orders FROM lineorder JOIN customer ON lo_custkey = c_custkey WHERE c_nation NOT IN ('CHINA', 'JAPAN', 'INDIA') GROUP BY c_region ORDER BY c_region;

-- name: adhoc_like
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/operators.html — LIKE with a prefix pattern
SELECT p_brand, sum(lo_quantity) AS qty FROM lineorder JOIN part ON lo_partkey = p_partkey WHERE p_brand LIKE 'MFGR#22%' GROUP BY p_brand ORDER BY p_brand;

-- name: adhoc_is_not_null
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/operators.html — IS NOT NULL on a dimension
SELECT s_region, count(*) AS orders FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey WHERE s_nation IS NOT NULL GROUP BY s_region ORDER BY s_region;

-- name: adhoc_extract_year
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/scalar_functions.html — extract(year FROM <date>) and to_date over the order date
SELECT extract(year FROM to_date(CAST(lo_orderdate AS VARCHAR), '%Y%m%d')) AS y, sum(lo_revenue) AS revenue FROM lineorder GROUP BY 1 ORDER BY 1;

-- name: adhoc_ratio
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/aggregate_functions.html — ratios of aggregates (average revenue per order line, margin)
SELECT p_mfgr, sum(lo_revenue) * 1.0 / count(*) AS revenue_per_line, (sum(lo_revenue) - sum(lo_supplycost)) * 1.0 / sum(lo_revenue) AS margin FROM lineorder JOIN part ON lo_partkey = p_partkey GROUP BY p_mfgr ORDER BY p_mfgr;

-- name: adhoc_cte
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/select.html — a WITH clause (CTE) holding the star join, aggregated outside
WITH sales AS (SELECT s_region, lo_revenue, lo_supplycost FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey)
SELECT s_region, sum(lo_revenue) AS revenue, sum(lo_supplycost) AS cost FROM sales GROUP BY s_region ORDER BY s_region;

-- name: adhoc_group_by_ordinals
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/select.html — GROUP BY and ORDER BY column ordinals
SELECT d_year, s_nation, sum(lo_revenue) FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN supplier ON lo_suppkey = s_suppkey WHERE s_region = 'ASIA' GROUP BY 1, 2 ORDER BY 1, 2;

-- name: adhoc_profit_expression
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/aggregate_functions.html — SUM of an arithmetic expression (SSB Q4's profit, a computed column of the model)
SELECT d_year, c_nation, sum(lo_revenue - lo_supplycost) AS profit FROM lineorder JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey WHERE c_region = 'AMERICA' GROUP BY d_year, c_nation ORDER BY d_year, c_nation;

-- name: adhoc_discounted_revenue
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/aggregate_functions.html — SUM(lo_extendedprice * lo_discount) with range filters (SSB Q1's shape) per week
SELECT d_weeknuminyear, sum(lo_extendedprice * lo_discount) AS revenue FROM lineorder JOIN dates ON lo_orderdate = d_datekey WHERE d_year = 1994 AND lo_discount BETWEEN 5 AND 7 AND lo_quantity BETWEEN 26 AND 35 GROUP BY d_weeknuminyear ORDER BY d_weeknuminyear;

-- name: adhoc_upper_case_identifiers
-- tool: adhoc
-- expect: cube
-- source: https://datafusion.apache.org/user-guide/sql/select.html — unquoted identifiers in upper case (normalized to lower case), schema-qualified
SELECT D_YEAR, SUM(LO_REVENUE) AS REVENUE FROM SSB.LINEORDER JOIN SSB.DATES ON LO_ORDERDATE = D_DATEKEY GROUP BY D_YEAR ORDER BY D_YEAR;

-- name: adhoc_lookup_group
-- tool: adhoc
-- expect: snapshot
-- source: https://datafusion.apache.org/user-guide/sql/select.html — an aggregate over a lookup table alone
SELECT c_region, count(*) AS customers FROM customer GROUP BY c_region ORDER BY c_region;

-- name: adhoc_distinct_years
-- tool: adhoc
-- expect: snapshot
-- source: https://datafusion.apache.org/user-guide/sql/select.html — SELECT DISTINCT over a lookup table (the issue's `SELECT DISTINCT d_year FROM dates`)
SELECT DISTINCT d_year FROM dates ORDER BY d_year;

-- name: adhoc_detail_join
-- tool: adhoc
-- expect: table_index
-- source: https://datafusion.apache.org/user-guide/sql/select.html — detail rows of the fact table joined with a lookup and filtered on it
SELECT lo_orderkey, lo_linenumber, c_name, lo_revenue FROM lineorder JOIN customer ON lo_custkey = c_custkey WHERE c_nation = 'CHINA' AND lo_quantity = 1;

-- name: adhoc_detail_top_n
-- tool: adhoc
-- expect: table_index
-- source: https://datafusion.apache.org/user-guide/sql/select.html — the largest order lines: ORDER BY a fact column with LIMIT
SELECT lo_orderkey, lo_linenumber, lo_revenue FROM lineorder ORDER BY lo_revenue DESC, lo_orderkey, lo_linenumber LIMIT 20;

---------------------------------------------------------------------------------------------
-- No table (connection checks and catalog queries)
---------------------------------------------------------------------------------------------

-- name: none_select_1
-- tool: none
-- expect: none
-- source: https://github.com/sqlalchemy/sqlalchemy/blob/main/lib/sqlalchemy/engine/default.py — DefaultDialect.do_ping (pool_pre_ping, the connection test Superset runs) executes SELECT 1
SELECT 1;

-- name: none_version
-- tool: none
-- expect: none
-- compare: shape
-- source: https://datafusion.apache.org/user-guide/sql/scalar_functions.html — version(), the server version a client shows after connecting
SELECT version();

-- name: none_information_schema_tables
-- tool: none
-- expect: none
-- source: https://github.com/influxdata/flightsql-dbapi/blob/main/flightsql/sqlalchemy.py — DataFusionDialect documents answering metadata through information_schema queries; tables of a schema by name
SELECT table_name FROM information_schema.tables WHERE table_schema = 'ssb' ORDER BY table_name;

-- name: none_information_schema_columns
-- tool: none
-- expect: none
-- source: https://github.com/influxdata/flightsql-dbapi/blob/main/flightsql/sqlalchemy.py — information_schema.columns of one table, in ordinal order
SELECT column_name FROM information_schema.columns WHERE table_schema = 'ssb' AND table_name = 'supplier' ORDER BY ordinal_position;
