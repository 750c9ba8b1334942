//! A dataset that is not SSB, end to end from the command line alone: TPC-H at SF 0.1 written
//! by `qilin-jobs sample --dataset tpch`, registered with `table add`, the snowflake model and
//! cube of `conf/examples/tpch/` put as JSON, built as two segments and merged; then the
//! aggregate-shaped TPC-H queries as the specification writes them (substitution parameters
//! at their validation values) are answered from the cube — EXPLAIN names it — and equal
//! DataFusion on the raw files, or refused naming what the cube lacks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use qilin_engine::config::Config;
use qilin_engine::metadata::{managers::Metadata, open_store};
use qilin_engine::query::QueryEngine;
use qilin_engine::storage::open_segment_store;
use qilin_engine::Error;
use qilin_tests::compare::{compare, explain_text, has_order_by, oracle_query, Expect};

const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

const Q1: &str = "select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, \
    sum(l_extendedprice) as sum_base_price, \
    sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, \
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge, \
    avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, \
    avg(l_discount) as avg_disc, count(*) as count_order \
    from lineitem \
    where l_shipdate <= date '1998-12-01' - interval '90' day \
    group by l_returnflag, l_linestatus \
    order by l_returnflag, l_linestatus";

const Q3: &str = "select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, \
    o_orderdate, o_shippriority \
    from customer, orders, lineitem \
    where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey \
    and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15' \
    group by l_orderkey, o_orderdate, o_shippriority \
    order by revenue desc, o_orderdate limit 10";

const Q5: &str = "select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue \
    from customer, orders, lineitem, supplier, nation, region \
    where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey \
    and c_nationkey = s_nationkey and s_nationkey = n_nationkey \
    and n_regionkey = r_regionkey and r_name = 'ASIA' \
    and o_orderdate >= date '1994-01-01' \
    and o_orderdate < date '1994-01-01' + interval '1' year \
    group by n_name order by revenue desc";

const Q6: &str = "select sum(l_extendedprice * l_discount) as revenue \
    from lineitem \
    where l_shipdate >= date '1994-01-01' \
    and l_shipdate < date '1994-01-01' + interval '1' year \
    and l_discount between 0.06 - 0.01 and 0.06 + 0.01 and l_quantity < 24";

const Q7: &str = "select supp_nation, cust_nation, l_year, sum(volume) as revenue \
    from (select n1.n_name as supp_nation, n2.n_name as cust_nation, \
          extract(year from l_shipdate) as l_year, \
          l_extendedprice * (1 - l_discount) as volume \
          from supplier, lineitem, orders, customer, nation n1, nation n2 \
          where s_suppkey = l_suppkey and o_orderkey = l_orderkey and c_custkey = o_custkey \
          and s_nationkey = n1.n_nationkey and c_nationkey = n2.n_nationkey \
          and ((n1.n_name = 'FRANCE' and n2.n_name = 'GERMANY') \
            or (n1.n_name = 'GERMANY' and n2.n_name = 'FRANCE')) \
          and l_shipdate between date '1995-01-01' and date '1996-12-31') as shipping \
    group by supp_nation, cust_nation, l_year \
    order by supp_nation, cust_nation, l_year";

const Q10: &str = "select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, \
    c_acctbal, n_name, c_address, c_phone, c_comment \
    from customer, orders, lineitem, nation \
    where c_custkey = o_custkey and l_orderkey = o_orderkey \
    and o_orderdate >= date '1993-10-01' \
    and o_orderdate < date '1993-10-01' + interval '3' month \
    and l_returnflag = 'R' and c_nationkey = n_nationkey \
    group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment \
    order by revenue desc limit 20";

const Q12: &str = "select l_shipmode, \
    sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1 else 0 end) \
      as high_line_count, \
    sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1 else 0 end) \
      as low_line_count \
    from orders, lineitem \
    where o_orderkey = l_orderkey and l_shipmode in ('MAIL', 'SHIP') \
    and l_commitdate < l_receiptdate and l_shipdate < l_commitdate \
    and l_receiptdate >= date '1994-01-01' \
    and l_receiptdate < date '1994-01-01' + interval '1' year \
    group by l_shipmode order by l_shipmode";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/examples/tpch")
}

fn run(conf: &Path, args: &[&str]) -> Output {
    let out = Command::new(qilin_tests::workspace_exe("qilin-jobs"))
        .arg("--conf")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qilin-jobs {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_snowflake_cube_from_the_cli_answers_the_spec_queries() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let conf = dir.path().join("kylin.properties");
    let props = format!(
        "kylin.metadata.url={0}/meta\nkylin.storage.url={0}/segments\nkylin.source.url={1}\n",
        dir.path().display(),
        source.display()
    );
    std::fs::write(&conf, &props).unwrap();
    let tpch = source.join("tpch");
    let tpch_dir = tpch.to_str().unwrap();
    run(
        &conf,
        &[
            "sample",
            "--dataset",
            "tpch",
            "--scale",
            "0.1",
            "--dir",
            tpch_dir,
        ],
    );
    run(&conf, &["project", "create", "tpch"]);
    for t in TABLES {
        let location = format!("tpch/{t}");
        run(
            &conf,
            &[
                "table",
                "add",
                "--project",
                "tpch",
                "--name",
                t,
                "--location",
                &location,
            ],
        );
    }
    let model = examples().join("model.json");
    let cube = examples().join("cube.json");
    run(
        &conf,
        &["model", "put", "--project", "tpch", model.to_str().unwrap()],
    );
    run(&conf, &["cube", "put", cube.to_str().unwrap()]);
    for (start, end) in [("1992-01-01", "1995-01-01"), ("1995-01-01", "1999-01-01")] {
        run(
            &conf,
            &[
                "build",
                "--cube",
                "tpch_cube",
                "--start",
                start,
                "--end",
                end,
            ],
        );
    }
    run(
        &conf,
        &[
            "merge",
            "--cube",
            "tpch_cube",
            "--start",
            "1992-01-01",
            "--end",
            "1999-01-01",
        ],
    );
    let segments =
        String::from_utf8(run(&conf, &["segments", "--cube", "tpch_cube"]).stdout).unwrap();
    let ready: Vec<&str> = segments.lines().filter(|l| l.contains("READY")).collect();
    assert_eq!(ready.len(), 1, "one merged segment:\n{segments}");
    assert!(
        ready[0].contains("19920101000000_19990101000000"),
        "{segments}"
    );

    let config = Config::from_parts(&props, "test", |_| None).unwrap();
    let engine = QueryEngine::new(
        &config,
        Metadata::new(open_store(&config.stores.metadata_url).unwrap()),
        open_segment_store(&config.stores.storage_url).unwrap(),
    );
    let oracle = SessionContext::new();
    for t in TABLES {
        oracle
            .register_parquet(
                t,
                tpch.join(t).to_str().unwrap(),
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
    }

    let mut answered = Vec::new();
    for (name, sql) in [
        ("Q1", Q1),
        ("Q3", Q3),
        ("Q5", Q5),
        ("Q6", Q6),
        ("Q7", Q7),
        ("Q10", Q10),
        ("Q12", Q12),
    ] {
        match engine.execute(sql, None).await {
            Ok(out) => {
                let explain = engine
                    .execute(&format!("EXPLAIN {sql}"), None)
                    .await
                    .unwrap();
                let text = explain_text(&explain.batches);
                assert!(
                    text.contains("tpch_cube"),
                    "{name}: not from the cube:\n{text}"
                );
                let got = out.batches;
                let want = oracle_query(&oracle, sql).await;
                assert!(
                    want.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
                    "{name}: the oracle finds no rows"
                );
                let expect = Expect {
                    ordered: has_order_by(sql),
                    approx: vec![],
                };
                compare(&got, &want, &expect).unwrap_or_else(|e| panic!("{name}: {e}"));
                answered.push(name);
            }
            Err(e) => {
                // Refused: the reason names what the cube lacks, never a wrong answer.
                assert!(matches!(e, Error::NoRealization(_)), "{name}: {e}");
                println!("{name} refused: {e}");
            }
        }
    }
    println!("answered from the cube: {answered:?}");
    for must in ["Q1", "Q5", "Q6", "Q7"] {
        assert!(
            answered.contains(&must),
            "{must} not answered: {answered:?}"
        );
    }
}
