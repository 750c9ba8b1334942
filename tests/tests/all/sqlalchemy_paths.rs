//! The SQLAlchemy paths into `qilin-server` (what Superset and pandas users take), against the
//! SSB SF 0.01 sample, pushdown off (`QILIN_BI_PUSHDOWN=1`: on, as in `bi_corpus`):
//!
//! - Superset's: flightsql-dbapi's dialect (`datafusion://USER:PASS@HOST:PORT?insecure=true`)
//!   on SQLAlchemy 1.4, in the venv of `tests/requirements-superset.txt`. The inspector's
//!   schema names, table names, columns (names and types) and primary keys must match the SSB
//!   tables and model; foreign keys are read through the dialect's connection
//!   (`flightsql_get_foreign_keys`, GetImportedKeys) because the dialect's own
//!   `get_foreign_keys` is a stub that returns `[]`.
//! - ADBC's: sqlalchemy-adbc (`adbc+flightsql://HOST:PORT?tls=false&username=..&password=..`,
//!   the only SQLAlchemy dialect for ADBC Flight SQL on PyPI) on SQLAlchemy 2, and pandas'
//!   native ADBC support. Schema names and columns must be right; table names are checked
//!   through ADBC GetObjects (what the dialect reads) because sqlalchemy-adbc 0.3 lists only
//!   tables whose type is lower-case `table` (SQLite's word; Flight SQL servers say `TABLE`);
//!   keys are not checked on this path: ADBC exposes them only in GetObjects'
//!   `table_constraints`, which the Flight SQL ADBC driver leaves empty.
//!
//! On both paths `pandas.read_sql` of BI statements from the corpus must equal the oracle.
//! Every problem of both paths is listed in one failure message.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::ipc::reader::FileReader;
use qilin_engine::sample::ssb;
use qilin_tests::bi_corpus::{self, check_result};
use qilin_tests::server::SsbServer;
use serde_json::Value;

/// Corpus statements read with `pandas.read_sql` on every path: a Superset chart over a
/// virtual dataset, a Superset time series, a filter-value list of a lookup table.
const READ_SQL: [&str; 3] = [
    "superset_virtual_dataset_by_year",
    "superset_time_grain_month",
    "superset_filter_values_lookup",
];

fn read_ipc(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    FileReader::try_new(file, None)
        .unwrap_or_else(|e| panic!("{}: not an Arrow IPC file: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `sqlalchemy_paths.py PATH` with `python`; returns its report and output dir.
async fn run_path(python: &str, path: &str, addr: &str, dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sqlalchemy_paths.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(path).arg(addr).arg(dir).args(READ_SQL);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(3),
        "{path}: a Python module is missing ({python}): ./scripts/test installs tests/requirements*.txt\n{stderr}"
    );
    assert!(
        out.status.success(),
        "sqlalchemy_paths.py {path} failed ({}):\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// The type kind (see `type_kind` in sqlalchemy_paths.py) a column of `t` must reflect as.
fn kind(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "bigint",
        t if t.is_integer() => "integer",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Float32 | DataType::Float64 => "float",
        _ => "other",
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A foreign key as `lo_custkey -> customer.c_custkey` (columns joined by commas).
fn fk_text(constrained: &[String], table: &str, referred: &[String]) -> String {
    format!(
        "{} -> {table}.{}",
        constrained.join(","),
        referred.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_inspectors_and_read_sql_through_flightsql_dbapi_and_adbc() {
    let superset_python = qilin_tests::superset_python().unwrap_or_else(|| {
        panic!(
            "QILIN_SUPERSET_PYTHON is not set: ./scripts/test creates $CARGO_TARGET_DIR/venv-superset \
             from tests/requirements-superset.txt (flightsql-dbapi needs SQLAlchemy < 2) and sets it"
        )
    });
    let pushdown = std::env::var("QILIN_BI_PUSHDOWN").is_ok_and(|v| v == "1" || v == "true");
    let ssb_server = SsbServer::start(&format!("kylin.query.pushdown.enabled={pushdown}\n")).await;
    let oracle = bi_corpus::oracle(&ssb_server.source).await;
    let statements = bi_corpus::statements();
    let addr = ssb_server.process.addr.clone();

    // What the model and the source files say.
    let mut columns = Vec::new();
    for t in ssb::TABLES {
        let provider = oracle.table_provider(t).await.expect("oracle table");
        let cols: Vec<(String, &str)> = provider
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), kind(f.data_type())))
            .collect();
        columns.push((t, cols));
    }
    let model = ssb::model();
    let primary_key = |t: &str| -> Vec<String> {
        model
            .lookups
            .iter()
            .find(|l| l.table == t)
            .map(|l| l.primary_key.clone())
            .unwrap_or_default()
    };
    let fact_fks: BTreeSet<String> = model
        .lookups
        .iter()
        .map(|l| fk_text(&l.foreign_key, &l.table, &l.primary_key))
        .collect();
    let tables: Vec<String> = {
        let mut t: Vec<String> = ssb::TABLES.iter().map(|s| s.to_string()).collect();
        t.sort();
        t
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for (path, python) in [
        ("flightsql-dbapi", superset_python.as_str()),
        ("adbc", &qilin_tests::python()),
    ] {
        let out = dir.path().join(path);
        let report = run_path(python, path, &addr, &out).await;
        println!("{path}: {} ({})", report["url"], report["versions"]);
        let mut fail = |what: String| failures.push(format!("{path}: {what}"));
        if let Some(errors) = report["errors"].as_object() {
            for (what, e) in errors {
                fail(format!("{what} raised: {e}"));
            }
        }
        if !strings(&report["schemas"])
            .iter()
            .any(|s| s == ssb::PROJECT)
        {
            fail(format!(
                "get_schema_names {} lacks {}",
                report["schemas"],
                ssb::PROJECT
            ));
        }
        // Table names: the inspector's, or on the ADBC path GetObjects' (see the module doc).
        let listed: Vec<String> = if path == "adbc" {
            println!(
                "adbc: sqlalchemy-adbc get_table_names = {}",
                report["tables"]
            );
            let objects = report["get_objects_tables"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for o in &objects {
                if o[1] != "TABLE" {
                    fail(format!("GetObjects table type {o}, expected TABLE"));
                }
            }
            objects
                .iter()
                .filter_map(|o| o[0].as_str().map(str::to_string))
                .collect()
        } else {
            let mut t = strings(&report["tables"]);
            t.sort();
            t
        };
        if listed != tables {
            fail(format!("tables {listed:?}, expected {tables:?}"));
        }
        for (t, want) in &columns {
            let got: Vec<(String, String)> = report["columns"][*t]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            (
                                c[0].as_str().unwrap_or("").to_string(),
                                c[1].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, k)| (n.clone(), k.to_string()))
                .collect();
            if got != want {
                fail(format!("get_columns({t}) {got:?}, expected {want:?}"));
            }
        }
        if path == "flightsql-dbapi" {
            for t in ssb::TABLES {
                let pk = strings(&report["pk"][t]);
                if pk != primary_key(t) {
                    fail(format!(
                        "get_pk_constraint({t}) {pk:?}, expected {:?}",
                        primary_key(t)
                    ));
                }
                let fks: BTreeSet<String> = report["fk"][t]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|k| {
                                fk_text(
                                    &strings(&k["constrained_columns"]),
                                    k["referred_table"].as_str().unwrap_or(""),
                                    &strings(&k["referred_columns"]),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let want = if t == model.fact_table {
                    fact_fks.clone()
                } else {
                    BTreeSet::new()
                };
                if fks != want {
                    fail(format!("foreign keys of {t} {fks:?}, expected {want:?}"));
                }
            }
        } else {
            println!(
                "adbc: sqlalchemy-adbc keys (from GetObjects constraints): pk {} fk {}",
                report["pk"], report["fk"]
            );
        }
        let labels: &[&str] = if path == "adbc" {
            &["adbc-sqlalchemy", "adbc-native"]
        } else {
            &["flightsql-dbapi"]
        };
        for label in labels {
            for name in READ_SQL {
                let st = statements
                    .iter()
                    .find(|s| s.name == name)
                    .expect("corpus statement");
                let file = out.join(format!("{label}.{name}.arrow"));
                if !file.exists() {
                    continue; // its error is in the report
                }
                match check_result(&oracle, st, &read_ipc(&file)).await {
                    Ok(()) => println!("{label}: pandas.read_sql({name}) matches the oracle"),
                    Err(e) => failures.push(format!(
                        "{label}: pandas.read_sql({name}) differs from the oracle: {e}"
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} SQLAlchemy path problems (pushdown {}):\n{}",
        failures.len(),
        if pushdown { "on" } else { "off" },
        failures.join("\n")
    );
}
