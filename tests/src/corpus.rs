//! One query corpus, every topology: the 13 SSB queries and the seeded random cube-shaped
//! queries ([`crate::random_queries`]) run through one small client interface,
//! [`QueryClient`], and are compared with the oracle (DataFusion on the raw Parquet files) by
//! the one comparator, [`crate::compare::compare`].
//!
//! Implemented for the in-process engine ([`QueryEngine`]) and for a Flight SQL client
//! ([`Client`]), which reaches a local `qilin-server`, a `qilin-server` on the HBase emulator
//! or a cluster of query nodes behind nginx alike.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use qilin_engine::query::QueryEngine;
use qilin_engine::Error;

use crate::compare::{
    compare, explain_text, has_order_by, oracle_query, run_query, Client, Expect,
};
use crate::random_queries::{check_refusal, generate, seed, Domains, Generated, Rng};

/// How a test talks to Qilin: SQL in, Arrow batches or the gRPC status a client would see out.
#[allow(async_fn_in_trait)] // used with concrete types in tests only, never as `dyn` or `Send`
pub trait QueryClient {
    /// Runs `sql` and collects its result.
    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status>;

    /// The rows of `EXPLAIN sql`, one line each, cells joined with ` | `.
    async fn explain(&mut self, sql: &str) -> Result<String, tonic::Status> {
        let batches = self.query(&format!("EXPLAIN {sql}")).await?;
        Ok(explain_text(&batches))
    }
}

/// A `qilin-server` (or anything in front of one) through the Rust Flight SQL client.
impl QueryClient for Client {
    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
        run_query(self, sql).await
    }
}

/// The query engine in-process, its errors as the status `qilin-server` answers them with.
impl QueryClient for QueryEngine {
    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
        self.execute(sql, None)
            .await
            .map(|out| out.batches)
            .map_err(|e| engine_status(&e))
    }
}

/// An engine error as a client of `qilin-server` would see it, for what the corpus tells
/// apart: a query no cuboid answers is InvalidArgument (as the server's `status.rs` maps it);
/// every other error fails the corpus whatever its code.
fn engine_status(e: &Error) -> tonic::Status {
    match e {
        Error::NoRealization(_) => tonic::Status::invalid_argument(e.to_string()),
        _ => tonic::Status::internal(e.to_string()),
    }
}

/// The 13 SSB queries as `(name, sql)`, from `tests/ssb_queries.sql` (the file the Python
/// ADBC script and the benchmark read too); a `-- Qx.y` line names the statement after it.
pub fn ssb_queries() -> Vec<(String, String)> {
    qilin_engine::sample::ssb::parse_queries(include_str!("../ssb_queries.sql"))
        .expect("ssb_queries.sql holds the 13 SSB queries")
}

/// What one SSB query gave, for checks a topology adds.
#[derive(Debug, Clone)]
pub struct SsbOutcome {
    pub name: String,
    pub sql: String,
    /// Rows in the oracle's result.
    pub rows: usize,
    /// The query's EXPLAIN (see [`QueryClient::explain`]).
    pub explain: String,
}

/// Runs the 13 SSB queries through `client` (`topology` names it in messages): each result
/// must equal the oracle's (in order when the query has ORDER BY), and each EXPLAIN must name
/// a cuboid of `ssb_cube` and no pushdown. Panics listing every problem.
pub async fn check_ssb_queries(
    topology: &str,
    client: &mut impl QueryClient,
    oracle: &SessionContext,
) -> Vec<SsbOutcome> {
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for (name, sql) in ssb_queries() {
        let want = oracle_query(oracle, &sql).await;
        let rows = want.iter().map(|b| b.num_rows()).sum();
        let t = Instant::now();
        match client.query(&sql).await {
            Ok(got) => {
                let expect = Expect {
                    ordered: has_order_by(&sql),
                    approx: vec![],
                };
                match compare(&got, &want, &expect) {
                    Ok(()) => println!(
                        "{topology} {name}: {rows} rows match the oracle ({:.1?})",
                        t.elapsed()
                    ),
                    Err(e) => failures.push(format!("{name}: {e}\n    {sql}")),
                }
            }
            Err(s) => failures.push(format!("{name}: {:?}: {}", s.code(), s.message())),
        }
        let explain = match client.explain(&sql).await {
            Ok(text) => {
                let lower = text.to_lowercase();
                if !lower.contains("cuboid")
                    || !lower.contains("ssb_cube")
                    || lower.contains("pushdown")
                {
                    failures.push(format!(
                        "{name}: EXPLAIN should show a cuboid of ssb_cube, no pushdown:\n{text}"
                    ));
                }
                text
            }
            Err(s) => {
                failures.push(format!("{name}: EXPLAIN: {:?}: {}", s.code(), s.message()));
                String::new()
            }
        };
        outcomes.push(SsbOutcome {
            name,
            sql,
            rows,
            explain,
        });
    }
    assert!(
        failures.is_empty(),
        "{topology}: {} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    outcomes
}

/// Random queries on the in-process engine and a local `qilin-server`.
pub const RANDOM_QUERIES: usize = 240;
/// Random queries on the topologies whose every query costs more (HBase, the cluster): the
/// first ones of the same seeded sequence.
pub const RANDOM_QUERIES_SMALL: usize = 40;
/// Refused queries re-run with `kylin.query.pushdown.enabled=true`.
pub const PUSHDOWN_SAMPLE: usize = 8;
/// Longest a single random query may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the first `count` seeded random queries through `client`: each must equal the oracle
/// or be refused with InvalidArgument "no realization ..." naming what no cuboid covers (and
/// only if no aggregation group covers it). Up to [`PUSHDOWN_SAMPLE`] refused ones are then
/// run through `pushdown` (the same data with pushdown on) and must equal the oracle. At least
/// 60 % must be answered and some refused — or, on a cube with a table index, answered from it
/// (EXPLAIN says so) although no cuboid covers them. Panics listing the failures (with the seed).
pub async fn check_random_queries(
    topology: &str,
    client: &mut impl QueryClient,
    pushdown: &mut impl QueryClient,
    oracle: &SessionContext,
    count: usize,
) {
    let seed = seed();
    println!(
        "{topology} random queries: seed {seed:#x} (reproduce with QILIN_TEST_SEED={seed:#x})"
    );
    let started = Instant::now();
    let domains = Domains::load(oracle).await;
    let mut rng = Rng::new(seed);
    let queries: Vec<Generated> = (0..count).map(|_| generate(&mut rng, &domains)).collect();

    let (mut answered, mut refused, mut failures) = (0usize, Vec::new(), Vec::new());
    let mut from_index = 0usize;
    let mut query_time = Duration::ZERO;
    for (i, q) in queries.iter().enumerate() {
        let want = oracle_query(oracle, &q.sql).await;
        let t = Instant::now();
        let got = tokio::time::timeout(QUERY_TIMEOUT, client.query(&q.sql))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("test timeout")));
        query_time += t.elapsed();
        match got {
            Ok(got) => {
                answered += 1;
                if let Err(e) = compare(&got, &want, &q.expect) {
                    failures.push(format!("#{i} {}\n    wrong result: {e}", q.sql));
                }
                if !q.covered
                    && client
                        .explain(&q.sql)
                        .await
                        .is_ok_and(|text| text.contains("table index of cube"))
                {
                    from_index += 1;
                }
            }
            Err(status) => match check_refusal(&status, q) {
                Ok(()) => refused.push(i),
                Err(e) => failures.push(format!("#{i} {}\n    {e}", q.sql)),
            },
        }
    }
    let predicted = queries.iter().filter(|q| q.covered).count();
    println!(
        "{topology} random queries: {} queries, {answered} answered ({from_index} from a table \
         index), {} refused, {} failed; {predicted} predicted coverable; query time {:.1?}, \
         total {:.1?}",
        queries.len(),
        refused.len(),
        failures.len(),
        query_time,
        started.elapsed()
    );

    // Queries no cube answers, pushed down to the raw tables.
    let mut pushed = 0;
    for &i in refused.iter().take(PUSHDOWN_SAMPLE) {
        let q = &queries[i];
        let want = oracle_query(oracle, &q.sql).await;
        match pushdown.query(&q.sql).await {
            Ok(got) => {
                pushed += 1;
                if let Err(e) = compare(&got, &want, &q.expect) {
                    failures.push(format!("#{i} (pushdown) {}\n    wrong result: {e}", q.sql));
                }
            }
            Err(s) => failures.push(format!(
                "#{i} (pushdown) {}\n    error {:?}: {}",
                q.sql,
                s.code(),
                s.message()
            )),
        }
    }
    println!(
        "{topology} random queries: {pushed} refused queries answered by pushdown; total {:.1?}",
        started.elapsed()
    );

    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(40).map(String::as_str).collect();
        panic!(
            "{topology}: {} of {} generated queries failed (seed {seed:#x}):\n{}",
            failures.len(),
            queries.len(),
            shown.join("\n")
        );
    }
    assert!(
        answered * 100 >= queries.len() * 60,
        "{topology}: only {answered} of {} queries answered",
        queries.len()
    );
    // 5 of the full 240; proportionally fewer (at least one) of a shorter run.
    let min_refused = (5 * count / RANDOM_QUERIES).max(1);
    assert!(
        refused.len() + from_index >= min_refused,
        "{topology}: only {} queries refused and {from_index} answered from a table index: the \
         generator should produce queries no cuboid covers",
        refused.len()
    );
    assert_eq!(pushed, refused.len().min(PUSHDOWN_SAMPLE));
}
