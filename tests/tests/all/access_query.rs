//! Query enforcement in-process (`QueryEngine::*_as`) over the shared SSB store, read-only:
//! accesses are built by hand. Row filters give the oracle's answer with the filter added on
//! every path (cuboid, table index, lookup snapshot, pushdown, LEFT-joined lookups), cached
//! results never cross accesses with different filters, denied tables and columns are refused
//! by name and left out of `SELECT *`, and projects the caller does not see do not exist.

use std::collections::BTreeMap;
use std::path::PathBuf;

use datafusion::arrow::array::RecordBatch;
use qilin_engine::config::Config;
use qilin_engine::error::ErrorKind;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::query::QueryEngine;
use qilin_engine::security::{Access, ProjectRole, TableRestriction};
use qilin_tests::compare::{compare, explain_text, has_order_by, oracle_query, Expect};
use qilin_tests::corpus::{
    check_random_queries, check_ssb_queries, ssb_queries, QueryClient, RANDOM_QUERIES_SMALL,
};
use qilin_tests::oracle;
use qilin_tests::server::{
    shared_ssb_source_dir, shared_ssb_store, shared_ssb_store_without_table_index, ssb_properties,
    SCALE,
};

/// An engine over the shared store (with its table index or without), `extra` properties.
async fn ssb_engine(table_index: bool, extra: &str) -> (QueryEngine, PathBuf) {
    let store = if table_index {
        shared_ssb_store(SCALE).await
    } else {
        shared_ssb_store_without_table_index(SCALE).await
    };
    let source = shared_ssb_source_dir(SCALE).await;
    let props = ssb_properties(&store, &source, extra);
    let config = Config::from_parts(&props, "test", |_| None).expect("config");
    let meta = Metadata::new(
        qilin_engine::metadata::open_store(&config.stores.metadata_url).expect("meta store"),
    );
    let segments = qilin_engine::storage::open_segment_store(&config.stores.storage_url)
        .expect("segment store");
    (QueryEngine::new(&config, meta, segments), source)
}

/// A QUERY user of project `ssb` with restrictions on its tables.
fn user(name: &str, tables: Vec<(&str, TableRestriction)>) -> Access {
    Access {
        user: name.into(),
        admin: false,
        projects: BTreeMap::from([("ssb".to_string(), ProjectRole::Query)]),
        tables: tables
            .into_iter()
            .map(|(t, r)| (("ssb".to_string(), t.to_string()), r))
            .collect(),
    }
}

fn filters(f: &[&str]) -> TableRestriction {
    TableRestriction {
        row_filters: f.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A comma-join SSB query with `predicate` added to its WHERE clause.
fn with_predicate(sql: &str, predicate: &str) -> String {
    sql.replacen(" where ", &format!(" where {predicate} and "), 1)
}

fn q3() -> Vec<(String, String)> {
    ssb_queries()
        .into_iter()
        .filter(|(name, _)| name.starts_with("Q3."))
        .collect()
}

fn assert_same(got: &[RecordBatch], want: &[RecordBatch], ordered: bool, what: &str) {
    let expect = Expect {
        ordered,
        approx: vec![],
    };
    compare(got, want, &expect).unwrap_or_else(|e| panic!("{what}: {e}"));
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

async fn explain(engine: &QueryEngine, access: &Access, sql: &str) -> String {
    let out = engine
        .execute_as(access, &format!("EXPLAIN {sql}"), None)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    explain_text(&out.batches)
}

/// Runs `sql` as `access` and compares it with the oracle running `oracle_sql`; returns the
/// engine's EXPLAIN text.
async fn check(
    engine: &QueryEngine,
    ctx: &datafusion::prelude::SessionContext,
    access: &Access,
    sql: &str,
    oracle_sql: &str,
) -> (String, qilin_engine::query::Answer, usize) {
    let out = engine
        .execute_as(access, sql, None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let want = oracle_query(ctx, oracle_sql).await;
    assert_same(&out.batches, &want, has_order_by(sql), sql);
    (
        explain(engine, access, sql).await,
        out.answer,
        rows(&out.batches),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssb_q3_with_a_row_filter_is_answered_from_the_cube() {
    let (engine, source) = ssb_engine(true, "").await;
    let ctx = oracle(&source).await;
    let mut answers = Vec::new();
    for region in ["ASIA", "AMERICA", "EUROPE"] {
        let filter = format!("c_region = '{region}'");
        let access = user("bob", vec![("customer", filters(&[&filter]))]);
        // The four Q3 queries, and Q3.1 without its own region predicate: the row filter alone
        // decides which customers count.
        let mut queries = q3();
        let q31 = queries[0].1.replace("c_region = 'ASIA' and ", "");
        assert_ne!(q31, queries[0].1);
        queries.push(("Q3.1 any region".into(), q31));
        for (name, sql) in queries {
            let (plan, answer, n) =
                check(&engine, &ctx, &access, &sql, &with_predicate(&sql, &filter)).await;
            assert!(
                plan.contains("realization | cube ssb_cube"),
                "{name} with {filter}: not a cuboid answer:\n{plan}"
            );
            assert_eq!(answer.cubes, ["ssb_cube"], "{name}");
            assert!(!answer.pushdown);
            if name == "Q3.1 any region" {
                assert!(n > 0, "{name} with {filter}: no rows");
                answers.push(n);
            }
        }
    }
    // At SF 0.01 Q3.2-Q3.4 (one nation's or two cities' customers) find no rows: the
    // unrestricted Q3.1 rows are what tells the filters apart.
    assert_eq!(answers.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_filter_no_cuboid_applies_goes_to_pushdown_or_is_refused() {
    // `c_custkey >= 0` holds for every row but is no dimension: no cuboid can apply it.
    let access = user(
        "bob",
        vec![(
            "customer",
            filters(&["c_region = 'ASIA'", "c_custkey >= 0"]),
        )],
    );
    let (pushdown, source) = ssb_engine(
        false,
        "kylin.query.pushdown.enabled=true\nkylin.query.cache-enabled=true\n",
    )
    .await;
    let ctx = oracle(&source).await;
    for (name, sql) in q3() {
        let (plan, answer, _) = check(
            &pushdown,
            &ctx,
            &access,
            &sql,
            &with_predicate(&sql, "c_region = 'ASIA'"),
        )
        .await;
        assert!(answer.pushdown, "{name}: {answer:?}");
        assert!(plan.contains("pushdown to the source tables"), "{plan}");
    }
    let (refusing, _) = ssb_engine(false, "").await;
    let (_, sql) = &q3()[0];
    let e = refusing.execute_as(&access, sql, None).await.unwrap_err();
    assert!(matches!(e, qilin_engine::Error::NoRealization(_)), "{e:?}");
    // The same query without the filter is a cuboid answer: the filter made the difference.
    let plain = user("carl", vec![]);
    let out = refusing.execute_as(&plain, sql, None).await.unwrap();
    assert_eq!(out.answer.cubes, ["ssb_cube"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_filters_apply_on_the_table_index_snapshots_and_left_joins() {
    let (engine, source) = ssb_engine(true, "").await;
    let ctx = oracle(&source).await;
    // No cuboid applies `c_custkey >= 0`: the table index and the lookup snapshots answer.
    let access = user(
        "bob",
        vec![(
            "customer",
            filters(&["c_region = 'ASIA'", "c_custkey >= 0"]),
        )],
    );
    let (_, q31) = &q3()[0];
    let (plan, answer, n) = check(
        &engine,
        &ctx,
        &access,
        q31,
        &with_predicate(q31, "c_region = 'ASIA'"),
    )
    .await;
    assert!(plan.contains("table index of cube ssb_cube"), "{plan}");
    assert!(!answer.pushdown);
    assert!(n > 0);

    // A lookup-only detail query reads the snapshot, filtered.
    let sql = "select c_custkey, c_nation from customer order by c_custkey";
    let (plan, _, n) = check(
        &engine,
        &ctx,
        &access,
        sql,
        "select c_custkey, c_nation from customer where c_region = 'ASIA' order by c_custkey",
    )
    .await;
    assert!(plan.contains("snapshot of ssb.customer"), "{plan}");
    assert!(n > 0);

    // A LEFT-joined filtered lookup: facts of other regions' customers keep a NULL region.
    let asia = user("ann", vec![("customer", filters(&["c_region = 'ASIA'"]))]);
    let sql = "select c_region, count(*) as n, sum(lo_revenue) as revenue from lineorder \
               left join customer on lo_custkey = c_custkey group by c_region";
    let (_, _, n) = check(
        &engine,
        &ctx,
        &asia,
        sql,
        "select c_region, count(*) as n, sum(lo_revenue) as revenue from lineorder \
         left join (select * from customer where c_region = 'ASIA') c on lo_custkey = c_custkey \
         group by c_region",
    )
    .await;
    assert_eq!(n, 2, "ASIA and NULL");

    // A filter on the fact table, through a subquery and an alias.
    let discount = user("dan", vec![("lineorder", filters(&["lo_discount = 1"]))]);
    let sql = "select d_year, sum(lo_revenue) as revenue from (select * from lineorder) l, \
               dates d where l.lo_orderdate = d.d_datekey group by d_year order by d_year";
    let (plan, _, _) = check(
        &engine,
        &ctx,
        &discount,
        sql,
        "select d_year, sum(lo_revenue) as revenue from lineorder, dates \
         where lo_orderdate = d_datekey and lo_discount = 1 group by d_year order by d_year",
    )
    .await;
    assert!(plan.contains("realization | cube ssb_cube"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_filters_never_share_a_cached_result() {
    let (engine, source) = ssb_engine(true, "kylin.query.cache-enabled=true\n").await;
    let ctx = oracle(&source).await;
    let sql = "select c_region, sum(lo_revenue) as revenue from lineorder, customer \
               where lo_custkey = c_custkey group by c_region order by c_region";
    let asia = user("ann", vec![("customer", filters(&["c_region = 'ASIA'"]))]);
    let europe = user("bob", vec![("customer", filters(&["c_region = 'EUROPE'"]))]);
    let admin = Access::unrestricted("ADMIN");
    let cases = [
        (&asia, with_predicate(sql, "c_region = 'ASIA'"), 1),
        (&europe, with_predicate(sql, "c_region = 'EUROPE'"), 1),
        (&admin, sql.to_string(), 5),
    ];
    for round in 0..2 {
        for (access, oracle_sql, regions) in &cases {
            let out = engine.execute_as(access, sql, None).await.unwrap();
            let want = oracle_query(&ctx, oracle_sql).await;
            assert_same(&out.batches, &want, true, &access.user);
            assert_eq!(rows(&out.batches), *regions, "{}", access.user);
            // The second round is served from the cache, each access its own entry.
            assert_eq!(out.cached, round == 1, "{} round {round}", access.user);
        }
    }
    // Same filters under another name share the entry (the fingerprint ignores names).
    let again = user("zed", vec![("customer", filters(&["c_region = 'ASIA'"]))]);
    let out = engine.execute_as(&again, sql, None).await.unwrap();
    assert!(out.cached);
    assert_eq!(rows(&out.batches), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_tables_columns_and_unseen_projects() {
    let (engine, source) = ssb_engine(true, "").await;
    let ctx = oracle(&source).await;
    let access = user(
        "bob",
        vec![
            (
                "customer",
                TableRestriction {
                    denied_columns: ["c_phone".to_string()].into(),
                    ..Default::default()
                },
            ),
            (
                "part",
                TableRestriction {
                    denied: true,
                    ..Default::default()
                },
            ),
        ],
    );
    let e = engine
        .execute_as(&access, "select c_name, c_phone from customer", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("c_phone"), "{e}");
    let out = engine
        .execute_as(&access, "select * from customer", None)
        .await
        .unwrap();
    let names: Vec<&str> = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert!(
        !names.contains(&"c_phone") && names.contains(&"c_name"),
        "{names:?}"
    );
    let want = oracle_query(
        &ctx,
        "select c_custkey, c_name, c_address, c_city, c_nation, c_region, c_mktsegment \
         from customer",
    )
    .await;
    assert_same(&out.batches, &want, false, "select * from customer");
    let prepared = engine
        .prepare_as(&access, "select * from customer")
        .await
        .unwrap();
    assert_eq!(prepared.schema, out.schema);
    let tables = engine.tables_as(&access).unwrap();
    assert!(tables.iter().all(|t| t.name != "part"));
    let customer = tables.iter().find(|t| t.name == "customer").unwrap();
    assert!(customer.schema.field_with_name("c_phone").is_err());
    // Keys of the denied table are left out.
    assert!(engine
        .foreign_keys_as(&access)
        .unwrap()
        .iter()
        .all(|k| k.pk_table != "part"));
    assert!(engine
        .foreign_keys()
        .unwrap()
        .iter()
        .any(|k| k.pk_table == "part"));

    let q21 = &ssb_queries()[3];
    assert_eq!(q21.0, "Q2.1");
    let e = engine.execute_as(&access, &q21.1, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(
        e.to_string()
            .contains("table ssb.part is denied to user bob"),
        "{e}"
    );

    // A caller without a role in ssb: it does not exist, qualified or not.
    let mut stranger = access.clone();
    stranger.projects = BTreeMap::from([("tpch".to_string(), ProjectRole::Admin)]);
    for sql in [
        "select count(*) from lineorder",
        "select count(*) from ssb.lineorder",
        "select count(*) from SSB.LINEORDER",
    ] {
        let e = engine.execute_as(&stranger, sql, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{sql}: {e}");
        assert!(e.to_string().contains("project"), "{sql}: {e}");
    }
    assert!(engine.tables_as(&stranger).unwrap().is_empty());
    let out = engine
        .execute_as(
            &stranger,
            "select count(*) as n from information_schema.tables where table_schema = 'ssb'",
            None,
        )
        .await
        .unwrap();
    assert_eq!(qilin_tests::cell(out.batches[0].column(0).as_ref(), 0), "0");
}

/// The engine as one user, for the shared query corpus.
struct AsUser<'a> {
    engine: &'a QueryEngine,
    access: Access,
}

impl QueryClient for AsUser<'_> {
    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
        match self.engine.execute_as(&self.access, sql, None).await {
            Ok(out) => Ok(out.batches),
            // As `qilin-server` maps them (what the corpus tells apart).
            Err(e @ qilin_engine::Error::NoRealization(_)) => {
                Err(tonic::Status::invalid_argument(e.to_string()))
            }
            Err(e) => Err(tonic::Status::internal(e.to_string())),
        }
    }
}

/// The oracle whose `customer` holds only the rows `c_region = 'ASIA'`: any query on it is
/// what a user with that row filter must get.
async fn asia_oracle(source: &std::path::Path) -> datafusion::prelude::SessionContext {
    let ctx = oracle(source).await;
    let raw = ctx.table_provider("customer").await.expect("customer");
    ctx.deregister_table("customer").expect("deregister");
    ctx.register_table("customer_raw", raw)
        .expect("register raw");
    let view = ctx
        .sql("select * from customer_raw where c_region = 'ASIA'")
        .await
        .expect("filtered customer")
        .into_view();
    ctx.register_table("customer", view).expect("register view");
    ctx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_corpus_as_a_filtered_user_equals_a_filtered_oracle() {
    let (engine, source) = ssb_engine(true, "").await;
    let (pushdown, _) = ssb_engine(true, "kylin.query.pushdown.enabled=true\n").await;
    let ctx = asia_oracle(&source).await;
    let access = user("bob", vec![("customer", filters(&["c_region = 'ASIA'"]))]);
    // The 13 SSB queries: every one still a cuboid answer (c_region is a dimension).
    let mut client = AsUser {
        engine: &engine,
        access: access.clone(),
    };
    check_ssb_queries("as bob", &mut client, &ctx).await;
    let mut pushed = AsUser {
        engine: &pushdown,
        access,
    };
    check_random_queries(
        "as bob",
        &mut client,
        &mut pushed,
        &ctx,
        RANDOM_QUERIES_SMALL,
    )
    .await;
}
