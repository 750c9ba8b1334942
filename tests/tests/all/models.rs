//! Models as real schemas are, on a small hand-made schema: a snowflake (customer → city), one
//! table joined twice under two aliases (city for the customer and for the shop), LEFT joins
//! (sales of customers missing from the customer table), a model filter condition, a
//! computed column over a lookup column, and a lookup with a duplicate key failing the build.
//! Every answer is compared with the same SQL on the raw tables (the fact table seen through
//! the model's filter condition, as the cube is).

use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::desc::from_json;
use qilin_engine::model::{
    CubeDesc, ModelDesc, ProjectDesc, SegmentRange, SourceFormat, TableDesc,
};
use qilin_engine::query::QueryEngine;
use qilin_engine::Error;
use qilin_tests::compare::{compare, explain_text, oracle_query, Expect};
use qilin_tests::{quiet, TestEnv};

const FILTER: &str = "s_amount > 5";

/// Writes the source tables as Parquet under `dir`; `duplicate_city` adds a second row for
/// city 2.
async fn write_sources(dir: &Path, duplicate_city: bool) {
    let ctx = SessionContext::new();
    let sales: Vec<String> = (0..240)
        .map(|i: i64| {
            format!(
                "({i}, DATE '2024-01-01' + INTERVAL '{} days', {}, {}, {})",
                i % 90,
                i % 12 + 1, // customers 11 and 12 are not in the customer table
                i % 3 + 1,
                (i * 7) % 23
            )
        })
        .collect();
    let mut city = vec![
        "(1, 'Lyon', 'FR')",
        "(2, 'Turin', 'IT')",
        "(3, 'Porto', 'PT')",
        "(4, 'Ghent', 'BE')",
    ];
    if duplicate_city {
        city.push("(2, 'Torino', 'IT')");
    }
    let customers: Vec<String> = (1..=10)
        .map(|c| format!("({c}, {}, '{}')", c % 4 + 1, ["retail", "pro"][c % 2]))
        .collect();
    let tables = [
        (
            "sales",
            "s_id BIGINT, s_day DATE, s_cust BIGINT, s_store BIGINT, s_amount BIGINT",
            sales.join(", "),
        ),
        (
            "customer",
            "c_id BIGINT, c_city_id BIGINT, c_segment VARCHAR",
            customers.join(", "),
        ),
        (
            "city",
            "ci_id BIGINT, ci_name VARCHAR, ci_country VARCHAR",
            city.join(", "),
        ),
        (
            "store",
            "st_id BIGINT, st_city_id BIGINT, st_factor BIGINT",
            "(1, 1, 2), (2, 3, 3), (3, 3, 5)".to_string(),
        ),
    ];
    for (name, columns, rows) in tables {
        let names: Vec<&str> = columns
            .split(", ")
            .map(|c| c.split(' ').next().unwrap())
            .collect();
        let types: Vec<&str> = columns
            .split(", ")
            .map(|c| c.split(' ').nth(1).unwrap())
            .collect();
        let select: Vec<String> = names
            .iter()
            .zip(&types)
            .enumerate()
            .map(|(i, (n, t))| format!("CAST(column{} AS {t}) AS {n}", i + 1))
            .collect();
        let file = dir.join(format!("{name}.parquet"));
        let sql = format!(
            "COPY (SELECT {} FROM (VALUES {rows})) TO '{}' STORED AS PARQUET",
            select.join(", "),
            file.display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }
}

fn table(name: &str, columns: &[(&str, &str)]) -> TableDesc {
    TableDesc {
        project: "shop".into(),
        name: name.into(),
        location: format!("{name}.parquet"),
        format: SourceFormat::Parquet,
        columns: columns
            .iter()
            .map(|(n, t)| qilin_engine::model::ColumnDesc {
                name: n.to_string(),
                data_type: t.to_string(),
            })
            .collect(),
        csv_delimiter: None,
        csv_header: None,
        partition_columns: vec![],
    }
}

const MODEL: &str = r#"{
  "name": "shop_model",
  "project": "shop",
  "fact_table": "sales",
  "lookups": [
    { "table": "customer", "join": "left", "foreign_key": ["s_cust"], "primary_key": ["c_id"] },
    { "table": "city", "alias": "cust_city", "join": "left",
      "foreign_key": ["customer.c_city_id"], "primary_key": ["ci_id"] },
    { "table": "store", "alias": "shop", "join": "inner",
      "foreign_key": ["s_store"], "primary_key": ["st_id"] },
    { "table": "city", "alias": "shop_city", "join": "inner",
      "foreign_key": ["shop.st_city_id"], "primary_key": ["ci_id"] }
  ],
  "computed_columns": [
    { "name": "v_weighted", "expression": "s_amount * shop.st_factor", "data_type": "bigint" }
  ],
  "partition": { "column": "s_day" },
  "filter_condition": "s_amount > 5"
}"#;

const CUBE: &str = r#"{
  "name": "shop_cube",
  "model": "shop_model",
  "dimensions": [
    { "column": "s_day" },
    { "column": "c_segment" },
    { "name": "buyer_city", "column": "cust_city.ci_name" },
    { "name": "shop_city", "column": "shop_city.ci_name" },
    { "table": "shop", "derived": ["st_factor"] }
  ],
  "measures": [
    { "name": "n", "function": "COUNT" },
    { "name": "amount", "function": "SUM", "column": "s_amount" },
    { "name": "weighted", "function": "SUM", "column": "v_weighted" }
  ],
  "aggregation_groups": [
    { "includes": ["s_day", "c_segment", "buyer_city", "shop_city", "s_store"] }
  ]
}"#;

async fn install(env: &TestEnv) {
    let meta: &Metadata = env.meta();
    meta.save_project(&ProjectDesc {
        name: "shop".into(),
        description: String::new(),
    })
    .unwrap();
    for t in [
        table(
            "sales",
            &[
                ("s_id", "bigint"),
                ("s_day", "date"),
                ("s_cust", "bigint"),
                ("s_store", "bigint"),
                ("s_amount", "bigint"),
            ],
        ),
        table(
            "customer",
            &[
                ("c_id", "bigint"),
                ("c_city_id", "bigint"),
                ("c_segment", "varchar"),
            ],
        ),
        table(
            "city",
            &[
                ("ci_id", "bigint"),
                ("ci_name", "varchar"),
                ("ci_country", "varchar"),
            ],
        ),
        table(
            "store",
            &[
                ("st_id", "bigint"),
                ("st_city_id", "bigint"),
                ("st_factor", "bigint"),
            ],
        ),
    ] {
        meta.save_table(&t).unwrap();
    }
    let model: ModelDesc = from_json("model", MODEL.as_bytes()).unwrap();
    meta.save_model(&model).unwrap();
    let cube: CubeDesc = from_json("cube", CUBE.as_bytes()).unwrap();
    meta.save_cube(&cube, 4096).unwrap();
}

async fn build(env: &TestEnv, start: &str, end: &str) -> qilin_engine::Result<()> {
    let sub = env
        .engine
        .submit_build("shop_cube", Some(SegmentRange::parse(start, end)?))?;
    env.engine.run(&sub.job().id, quiet()).await.map(|_| ())
}

/// The raw tables, the fact table through the model's filter condition.
async fn oracle(dir: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for t in ["customer", "city", "store"] {
        ctx.register_parquet(
            t,
            dir.join(format!("{t}.parquet")).to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    ctx.register_parquet(
        "raw_sales",
        dir.join("sales.parquet").to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let view = ctx
        .sql(&format!("SELECT * FROM raw_sales WHERE {FILTER}"))
        .await
        .unwrap()
        .into_view();
    ctx.register_table("sales", view).unwrap();
    ctx
}

async fn answer(engine: &QueryEngine, sql: &str) -> Vec<RecordBatch> {
    let explain = engine
        .execute(&format!("EXPLAIN {sql}"), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let text = explain_text(&explain.batches);
    assert!(
        text.contains("shop_cube"),
        "{sql}: not from the cube:\n{text}"
    );
    engine.execute(sql, None).await.unwrap().batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowflakes_aliases_left_joins_and_filters_match_the_raw_tables() {
    let source = tempfile::tempdir().unwrap();
    write_sources(source.path(), false).await;
    let env = TestEnv::new(source.path());
    install(&env).await;
    build(&env, "2024-01-01", "2024-02-01")
        .await
        .expect("first segment");
    build(&env, "2024-02-01", "2024-04-01")
        .await
        .expect("second segment");
    let engine = QueryEngine::new(
        &env.config,
        Metadata::new(env.meta().store().clone()),
        env.engine.segment_store().clone(),
    );
    let ctx = oracle(source.path()).await;
    let unordered = Expect::default();
    for sql in [
        // Snowflake through LEFT joins: sales of unknown customers form the NULL group.
        "SELECT ci.ci_name, sum(s_amount), count(*) FROM sales \
         LEFT JOIN customer c ON s_cust = c.c_id LEFT JOIN city ci ON c.c_city_id = ci.ci_id \
         GROUP BY ci.ci_name",
        // The same table under two aliases, whatever the query calls them; GROUP BY ordinals.
        "SELECT b.ci_name AS buyer, s.ci_name AS seller, sum(s_amount) FROM sales \
         JOIN store st ON s_store = st.st_id JOIN city s ON st.st_city_id = s.ci_id \
         LEFT JOIN customer c ON s_cust = c.c_id LEFT JOIN city b ON c.c_city_id = b.ci_id \
         GROUP BY 1, 2",
        // The shop's city under the name of the model's other alias: bound by the join
        // path, not by name.
        "SELECT cust_city.ci_name, count(*) FROM sales, store, city AS cust_city \
         WHERE s_store = st_id AND st_city_id = cust_city.ci_id AND cust_city.ci_name <> 'Lyon' \
         GROUP BY cust_city.ci_name",
        // A computed column over a lookup column.
        "SELECT c_segment, sum(s_amount * st_factor) FROM sales \
         LEFT JOIN customer ON s_cust = c_id JOIN store ON s_store = st_id GROUP BY c_segment",
        // A derived lookup column next to a date filter.
        "SELECT st_factor, sum(s_amount) FROM sales JOIN store ON s_store = st_id \
         WHERE s_day >= DATE '2024-01-15' GROUP BY st_factor",
    ] {
        let got = answer(&engine, sql).await;
        let want = oracle_query(&ctx, sql).await;
        compare(&got, &want, &unordered).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!want.iter().all(|b| b.num_rows() == 0), "{sql}: no rows");
    }

    // An INNER join of a lookup the model LEFT-joins would drop rows the cube keeps: refused.
    let err = engine
        .execute(
            "SELECT c_segment, sum(s_amount) FROM sales JOIN customer ON s_cust = c_id \
             GROUP BY c_segment",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRealization(_)), "{err}");
    assert!(err.to_string().contains("LEFT join"), "{err}");
    // A join the model does not have (customer's city through the shop's key).
    let err = engine
        .execute(
            "SELECT ci_name, count(*) FROM sales JOIN store ON s_store = st_id \
             JOIN city ON st_id = ci_id GROUP BY ci_name",
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be joined on"), "{err}");

    // A lookup whose key is not unique fails the build, naming the table and the key.
    write_sources(source.path(), true).await;
    let err = build(&env, "2024-04-01", "2024-05-01")
        .await
        .expect_err("duplicate city key");
    let text = err.to_string();
    assert!(
        text.contains("city") && text.contains("ci_id = 2"),
        "{text}"
    );
}
