//! The one comparison of query results with the oracle (DataFusion on the raw Parquet files),
//! with the tolerances a cube allows, and running SQL through the Rust Flight SQL client.

use std::cmp::Ordering;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use tonic::transport::Channel;

pub type Client = FlightSqlServiceClient<Channel>;

/// Runs `sql` through Flight SQL the way a client does: `GetFlightInfo(CommandStatementQuery)`,
/// then `DoGet` on every endpoint's ticket. Errors come back as the server's gRPC status.
pub async fn run_query(client: &mut Client, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(status)?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .ok_or_else(|| tonic::Status::internal("FlightInfo endpoint without a ticket"))?;
        let stream = client.do_get(ticket).await.map_err(status)?;
        batches.extend(stream.try_collect::<Vec<_>>().await.map_err(status)?);
    }
    Ok(batches)
}

/// The gRPC status inside a client error (anything else becomes `Unknown`, which no test
/// accepts as a proper answer).
pub fn status(e: FlightError) -> tonic::Status {
    crate::server::status_of(&e)
        .unwrap_or_else(|| tonic::Status::unknown(format!("client-side error: {e}")))
}

/// Runs `sql` on the oracle.
pub async fn oracle_query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    let df = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("oracle cannot plan {sql}: {e}"));
    df.collect()
        .await
        .unwrap_or_else(|e| panic!("oracle cannot run {sql}: {e}"))
}

/// Whether the result order is specified by the query (a top-level ORDER BY).
pub fn has_order_by(sql: &str) -> bool {
    sql.to_ascii_lowercase().contains("order by")
}

/// All cells of an EXPLAIN result (`plan_type`, `plan`), one row per line.
pub fn explain_text(batches: &[RecordBatch]) -> String {
    let mut out = String::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| crate::cell(c.as_ref(), r))
                .collect();
            out.push_str(&cells.join(" | "));
            out.push('\n');
        }
    }
    out
}

/// How to compare a result with the oracle's.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Compare rows in order (the query has ORDER BY); otherwise both sides are sorted.
    pub ordered: bool,
    /// Columns (by position) whose numbers may differ by this relative error (HLL counts).
    pub approx: Vec<(usize, f64)>,
}

/// Relative tolerance of floating-point results (SUM/COUNT recombined in another order).
pub const FLOAT_REL: f64 = 1e-9;
/// Relative tolerance of an approximate COUNT(DISTINCT) answered from HyperLogLog states.
pub const HLL_REL: f64 = 0.05;
/// Absolute slack of an approximate count: on a handful of values two hashes landing in one
/// register (about 1 in 100 for 8 values at precision 12) make the estimate one or two low.
pub const HLL_ABS: f64 = 2.0;

/// A cell normalized for comparison: integers of any width alike, floats and decimals as
/// f64, strings of any string type alike.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i128),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => write!(f, "NULL"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v:?}"),
            Cell::Text(s) => write!(f, "{s:?}"),
        }
    }
}

fn is_float(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    )
}

fn normalize(col: &dyn Array, row: usize) -> Cell {
    if col.is_null(row) {
        return Cell::Null;
    }
    let text = crate::cell(col, row);
    let t = col.data_type();
    if t.is_integer() {
        text.parse().map(Cell::Int).unwrap_or(Cell::Text(text))
    } else if is_float(t) {
        text.parse().map(Cell::Float).unwrap_or(Cell::Text(text))
    } else {
        Cell::Text(text)
    }
}

fn as_f64(c: &Cell) -> Option<f64> {
    match c {
        Cell::Int(v) => Some(*v as f64),
        Cell::Float(v) => Some(*v),
        _ => None,
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
}

fn cells_match(got: &Cell, want: &Cell, approx: Option<f64>) -> bool {
    match (got, want) {
        (Cell::Int(a), Cell::Int(b)) if approx.is_none() => a == b,
        (Cell::Float(_), _) | (_, Cell::Float(_)) | (Cell::Int(_), Cell::Int(_)) => {
            match (as_f64(got), as_f64(want)) {
                (Some(a), Some(b)) => {
                    close(a, b, approx.unwrap_or(FLOAT_REL))
                        || (approx.is_some() && (a - b).abs() <= HLL_ABS)
                }
                _ => false,
            }
        }
        _ => got == want,
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| normalize(c.as_ref(), r))
                    .collect(),
            );
        }
    }
    out
}

fn columns(batches: &[RecordBatch]) -> Option<Vec<DataType>> {
    batches.first().map(|b| {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect()
    })
}

fn exact_key(row: &[Cell], inexact: &[bool]) -> Vec<String> {
    row.iter()
        .zip(inexact)
        .filter(|(_, skip)| !**skip)
        .map(|(c, _)| c.to_string())
        .collect()
}

fn show(row: &[Cell]) -> String {
    let cells: Vec<String> = row.iter().map(Cell::to_string).collect();
    format!("({})", cells.join(", "))
}

/// Compares a result with the oracle's; `Err` explains the first difference.
///
/// Unordered results are sorted on their exact columns (everything but floats and approximate
/// columns, which for an aggregate query includes every group key), so equal groups line up.
pub fn compare(got: &[RecordBatch], want: &[RecordBatch], expect: &Expect) -> Result<(), String> {
    let (mut g, mut w) = (rows(got), rows(want));
    if g.len() != w.len() {
        let sample = |rs: &[Vec<Cell>]| -> String {
            rs.iter()
                .take(5)
                .map(|r| show(r))
                .collect::<Vec<_>>()
                .join(" ")
        };
        return Err(format!(
            "{} rows, expected {} (first rows: got {} / expected {})",
            g.len(),
            w.len(),
            sample(&g),
            sample(&w)
        ));
    }
    if g.is_empty() {
        return Ok(());
    }
    let (gw, ww) = (g[0].len(), w[0].len());
    if gw != ww {
        return Err(format!("{gw} columns, expected {ww}"));
    }
    let gt = columns(got).unwrap_or_default();
    let wt = columns(want).unwrap_or_default();
    let approx = |i: usize| expect.approx.iter().find(|(c, _)| *c == i).map(|a| a.1);
    let inexact: Vec<bool> = (0..ww)
        .map(|i| {
            approx(i).is_some()
                || gt.get(i).is_some_and(is_float)
                || wt.get(i).is_some_and(is_float)
        })
        .collect();
    if !expect.ordered {
        let by_key = |a: &Vec<Cell>, b: &Vec<Cell>| -> Ordering {
            exact_key(a, &inexact).cmp(&exact_key(b, &inexact))
        };
        g.sort_by(by_key);
        w.sort_by(by_key);
    }
    for (i, (gr, wr)) in g.iter().zip(&w).enumerate() {
        for c in 0..ww {
            if !cells_match(&gr[c], &wr[c], approx(c)) {
                return Err(format!(
                    "row {i} column {c}: got {} expected {} (row got {} expected {}; types got {:?} expected {:?})",
                    gr[c],
                    wr[c],
                    show(gr),
                    show(wr),
                    gt.get(c),
                    wt.get(c)
                ));
            }
        }
    }
    Ok(())
}

/// Compares the result of a statement with a top-level `LIMIT limit` and no ORDER BY, where
/// any `limit` rows are a right answer: exactly min(limit, total) rows must come back, each
/// matching a distinct row of `unlimited` (the oracle's result without the LIMIT). `Err`
/// explains the first difference.
pub fn compare_limited(
    got: &[RecordBatch],
    unlimited: &[RecordBatch],
    limit: usize,
    expect: &Expect,
) -> Result<(), String> {
    let (g, w) = (rows(got), rows(unlimited));
    let want_rows = limit.min(w.len());
    if g.len() != want_rows {
        return Err(format!(
            "{} rows, expected min(LIMIT {limit}, {} rows without the LIMIT) = {want_rows}",
            g.len(),
            w.len()
        ));
    }
    let Some(first) = g.first() else {
        return Ok(());
    };
    let width = w.first().map_or(first.len(), Vec::len);
    if first.len() != width {
        return Err(format!("{} columns, expected {width}", first.len()));
    }
    let (gt, wt) = (
        columns(got).unwrap_or_default(),
        columns(unlimited).unwrap_or_default(),
    );
    let approx = |i: usize| expect.approx.iter().find(|(c, _)| *c == i).map(|a| a.1);
    let inexact: Vec<bool> = (0..width)
        .map(|i| {
            approx(i).is_some()
                || gt.get(i).is_some_and(is_float)
                || wt.get(i).is_some_and(is_float)
        })
        .collect();
    // Candidate rows of the full result by their exact cells; each may be used once.
    let mut candidates: std::collections::HashMap<Vec<String>, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, r) in w.iter().enumerate() {
        candidates
            .entry(exact_key(r, &inexact))
            .or_default()
            .push(i);
    }
    for (i, gr) in g.iter().enumerate() {
        let bucket = candidates
            .get_mut(&exact_key(gr, &inexact))
            .ok_or_else(|| format!("row {i} {} is not a row of the full result", show(gr)))?;
        let pos = bucket
            .iter()
            .position(|&wi| (0..width).all(|c| cells_match(&gr[c], &w[wi][c], approx(c))))
            .ok_or_else(|| {
                format!(
                    "row {i} {} matches no unused row of the full result (a duplicate, or inexact cells differ)",
                    show(gr)
                )
            })?;
        bucket.swap_remove(pos);
    }
    Ok(())
}
