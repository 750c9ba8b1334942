//! `POST /kylin/api/query`: Kylin's query endpoint over the query engine (what kylinpy,
//! Superset's Kylin connector and the console's query page call). The statement shares
//! `kylin.query.max-concurrent` with Flight SQL; its result is rendered as Kylin does: every
//! cell a string (dates `YYYY-MM-DD`, decimals with their scale, timestamps
//! `YYYY-MM-DD HH:MM:SS`) or JSON null, with the cubes that answered. A statement the engine
//! refuses (bad SQL, no realization) is still HTTP 200, with `isException: true` and the
//! engine's message, as in Kylin; a malformed request is 400.
//!
//! The statement runs as the caller sees the data ([`QueryEngine::execute_stream_as`]): only
//! its projects, its row filters applied. A statement touching a table or column denied to it
//! is 403 naming it (audited), and a `project` it holds no role in is 404.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use qilin_cluster::metrics;
use qilin_cluster::web::{ApiError, CallerAccess, Json, JsonBody};
use qilin_engine::error::ErrorKind;
use qilin_engine::model::jdbc::{java_sql_type, sql_type};
use qilin_engine::query::{Answer, QueryEngine};
use qilin_engine::security::{Access, ProjectRole};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// How long a query waits for a free slot before 429 (as Flight SQL does).
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// How much of a refused statement the audit log keeps.
const AUDIT_SQL_CHARS: usize = 500;

/// The request body (Kylin's `PrepareSqlRequest`); other fields Kylin clients send
/// (`backdoorToggles`, …) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
    /// 0 or absent: every row.
    #[serde(default)]
    limit: Option<u64>,
    // `acceptPartial` is accepted and ignored: results are never partial.
}

#[derive(Clone)]
struct QueryState {
    engine: Arc<QueryEngine>,
    slots: Arc<Semaphore>,
}

pub fn router(engine: Arc<QueryEngine>, slots: Arc<Semaphore>) -> Router {
    Router::new()
        .route("/kylin/api/query", post(query))
        .with_state(QueryState { engine, slots })
}

async fn query(
    caller: CallerAccess,
    State(state): State<QueryState>,
    JsonBody(req): JsonBody<QueryRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.sql.trim().is_empty() {
        return Err(ApiError::bad_request(
            "malformed request body: sql is empty",
        ));
    }
    check_project(&state.engine, &caller, req.project.as_deref())?;
    let user = caller.user().to_string();
    let _permit = tokio::time::timeout(SLOT_WAIT, state.slots.clone().acquire_owned())
        .await
        .map_err(|_| {
            metrics::global().query_finished(Duration::ZERO, "rejected");
            ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "server busy: every kylin.query.max-concurrent slot is taken; retry later",
            )
        })?
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "server shutting down",
            )
        })?;
    let started = Instant::now();
    let offset = req.offset.unwrap_or(0) as usize;
    let limit = req.limit.filter(|l| *l > 0).map(|l| l as usize);
    let sql = one_line(&req.sql);
    match run(&state.engine, &caller.access, &req.sql, offset, limit).await {
        Ok(result) => {
            let elapsed = started.elapsed();
            metrics::global().query_finished(elapsed, "ok");
            if result.cached {
                metrics::global().cache_hit()
            } else {
                metrics::global().cache_miss()
            }
            log::info!(
                "user {user} (REST): {} rows in {} ms: {sql}",
                result.rows.len(),
                elapsed.as_millis()
            );
            Ok(Json(response(result, elapsed)))
        }
        Err(Failure::Refused(e)) => {
            metrics::global().query_finished(started.elapsed(), "error");
            log::info!("user {user} (REST): query refused: {e}: {sql}");
            // The statement names what was refused; a long one is clipped for the log.
            let target: String = sql.chars().take(AUDIT_SQL_CHARS).collect();
            Err(caller.refused("query", &target, e))
        }
        Err(Failure::Failed(message)) => {
            let elapsed = started.elapsed();
            metrics::global().query_finished(elapsed, "error");
            log::info!("user {user} (REST): query failed: {message}: {sql}");
            Ok(Json(json!({
                "columnMetas": [],
                "results": [],
                "cube": "",
                "duration": elapsed.as_millis() as u64,
                "totalScanCount": 0,
                "totalScanBytes": 0,
                "isException": true,
                "exceptionMessage": message,
                "pushDown": false,
                "partial": false,
                "affectedRowCount": 0,
                "hitExceptionCache": false,
                "storageCacheUsed": false,
            })))
        }
    }
}

/// A `project` the request names must exist and be one the caller holds a role in (else
/// 404, as if it did not exist); `default` (what kylinpy sends without one) and none mean the
/// server's default project. Unqualified table names resolve in
/// `kylin.query.default-project`; qualified ones (`ssb.lineorder`) in their project.
fn check_project(
    engine: &QueryEngine,
    caller: &CallerAccess,
    project: Option<&str>,
) -> Result<(), ApiError> {
    let Some(p) = project.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    if p.eq_ignore_ascii_case("default") {
        return Ok(());
    }
    let known = engine
        .tables()?
        .iter()
        .any(|t| t.project.eq_ignore_ascii_case(p))
        || engine.default_project()?.eq_ignore_ascii_case(p);
    if known {
        caller.require(p, ProjectRole::Query, "query", &format!("project {p}"))
    } else {
        Err(qilin_engine::Error::NotFound {
            kind: "project",
            name: p.to_string(),
        }
        .into())
    }
}

/// Why a statement gave no result.
enum Failure {
    /// It touches what the caller may not see: 403, audited.
    Refused(qilin_engine::Error),
    /// Anything else (bad SQL, no realization): Kylin's `isException` answer.
    Failed(String),
}

struct QueryResult {
    fields: Vec<Arc<Field>>,
    rows: Vec<Vec<Value>>,
    /// Rows the statement produced up to where reading stopped (offset + limit).
    produced: usize,
    cached: bool,
    answer: Answer,
}

/// Runs `sql`, keeping rows `offset..offset+limit` rendered as strings; stops reading (and so
/// executing) once it has them.
async fn run(
    engine: &QueryEngine,
    access: &Access,
    sql: &str,
    offset: usize,
    limit: Option<usize>,
) -> Result<QueryResult, Failure> {
    let mut stream = engine
        .execute_stream_as(access, sql, None)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::PermissionDenied => Failure::Refused(e),
            _ => Failure::Failed(e.to_string()),
        })?;
    let failed = |e: &dyn std::fmt::Display| Failure::Failed(e.to_string());
    let end = limit.map(|l| offset.saturating_add(l));
    let mut rows = Vec::new();
    let mut produced = 0usize;
    while let Some(batch) = stream.batches.next().await {
        let batch = batch.map_err(|e| failed(&e))?;
        let n = batch.num_rows();
        let (from, to) = (
            offset.saturating_sub(produced).min(n),
            end.map_or(n, |e| e.saturating_sub(produced).min(n)),
        );
        if from < to {
            render_rows(&batch, from, to, &mut rows).map_err(|e| failed(&e))?;
        }
        produced += n;
        if end.is_some_and(|e| produced >= e) {
            break;
        }
    }
    Ok(QueryResult {
        fields: stream.schema.fields().iter().cloned().collect(),
        rows,
        produced,
        cached: stream.cached,
        answer: stream.answer,
    })
}

/// Rows `from..to` of `batch` as Kylin renders them.
fn render_rows(
    batch: &RecordBatch,
    from: usize,
    to: usize,
    out: &mut Vec<Vec<Value>>,
) -> Result<(), arrow::error::ArrowError> {
    let options = FormatOptions::default()
        .with_date_format(Some("%Y-%m-%d"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_time_format(Some("%H:%M:%S%.f"));
    let columns = batch.columns();
    let formatters = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for row in from..to {
        out.push(
            columns
                .iter()
                .zip(&formatters)
                .map(|(c, f)| {
                    if c.is_null(row) {
                        Value::Null
                    } else {
                        Value::String(f.value(row).to_string())
                    }
                })
                .collect(),
        );
    }
    Ok(())
}

fn response(result: QueryResult, elapsed: Duration) -> Value {
    let metas: Vec<Value> = result
        .fields
        .iter()
        .map(|f| column_meta(f.as_ref()))
        .collect();
    let cube = result
        .answer
        .cubes
        .iter()
        .map(|c| format!("CUBE[name={c}]"))
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "columnMetas": metas,
        "results": result.rows,
        "cube": cube,
        "cuboidIds": null,
        "realizationTypes": result.answer.cubes.iter().map(|_| "CUBE").collect::<Vec<_>>(),
        "duration": elapsed.as_millis() as u64,
        "totalScanCount": result.produced,
        "totalScanBytes": 0,
        "isException": false,
        "exceptionMessage": null,
        "pushDown": result.answer.pushdown,
        "partial": false,
        "affectedRowCount": 0,
        "hitExceptionCache": false,
        "storageCacheUsed": result.cached,
        "traceUrl": null,
        // Not Kylin's: the aggregate that read a much larger cuboid than it needed, if any.
        "fallback": result.answer.fallback().map(|u| json!({
            "cube": u.cube,
            "wanted": u.wanted,
            "wantedDimensions": u.wanted_dimensions,
            "wantedRows": u.wanted_rows,
            "wantedBuilt": u.wanted_built,
            "chosen": u.chosen,
            "chosenDimensions": u.chosen_dimensions,
            "chosenRows": u.chosen_rows,
            "chosenIsBase": u.chosen_is_base,
            "text": u.fallback_text(),
        })),
    })
}

/// Kylin's `SelectedColumnMeta` of a result column (kylinpy reads `label`, `columnTypeName`,
/// `displaySize`, `precision`, `scale`, `isNullable`).
fn column_meta(f: &Field) -> Value {
    let (type_name, precision, scale) = sql_type(f.data_type());
    let display = match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 256,
        _ => precision.map_or(64, |p| p as i64 + 2),
    };
    json!({
        "label": f.name(),
        "name": f.name(),
        "columnTypeName": type_name,
        "columnType": java_sql_type(&type_name),
        "precision": precision.unwrap_or(0),
        "scale": scale.unwrap_or(0),
        "isNullable": i32::from(f.is_nullable()),
        "displaySize": display,
        "schemaName": null,
        "tableName": null,
        "catelogName": null,
        "autoIncrement": false,
        "caseSensitive": matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        "searchable": true,
        "currency": false,
        "signed": !matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Date32 | DataType::Boolean),
        "readOnly": true,
        "writable": false,
        "definitelyWritable": false,
    })
}

/// The statement on one line, for the log.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Schema;

    #[test]
    fn cells_render_as_kylin_strings() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Date32, true),
            Field::new("m", DataType::Decimal128(15, 2), true),
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from(vec![Some(8766), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12340), None])
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ),
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap();
        let mut rows = Vec::new();
        render_rows(&batch, 0, 2, &mut rows).unwrap();
        assert_eq!(
            rows[0],
            vec![
                json!("1994-01-01"),
                json!("123.40"),
                json!("7"),
                json!("1.5"),
                json!("x")
            ]
        );
        assert!(rows[1].iter().all(Value::is_null));
        let meta = column_meta(&Field::new("m", DataType::Decimal128(15, 2), false));
        assert_eq!(meta["columnTypeName"], "DECIMAL");
        assert_eq!(meta["columnType"], 3);
        assert_eq!(meta["precision"], 15);
        assert_eq!(meta["scale"], 2);
        assert_eq!(meta["isNullable"], 0);
    }
}
