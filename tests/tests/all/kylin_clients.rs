//! Kylin's Python clients against `qilin-server`'s Kylin REST API, on the SSB SF 0.01 sample:
//! kylinpy (PyPI) and its SQLAlchemy dialect `kylin://USER:PASSWORD@HOST:PORT/PROJECT`, which
//! Superset's Kylin connector is built on. `tests/python/kylin_clients.py` drives them (in the
//! venv of `tests/requirements-superset.txt`: the dialect needs SQLAlchemy < 2) and writes a
//! report and the rows each client returned; this test checks that
//!
//! - kylinpy lists the project, the SSB tables and their columns with Kylin's type names,
//!   reads the signed-in user, and answers all 13 SSB queries (through its DBAPI cursor, which
//!   converts the REST API's string cells by `columnTypeName`) equal to the oracle, Q2.1 from
//!   the cube;
//! - through the dialect: `do_ping` (Superset's "Test connection"), the inspector's schema
//!   names, table names and column types, `engine.execute` of a GROUP BY, a SQLAlchemy Core
//!   select compiled with literal binds as Superset's charts do, and `pandas.read_sql` of
//!   Superset-written BI-corpus statements, all equal to the oracle;
//! - a SQL error is kylinpy's `KylinQueryError` with the engine's message, and a wrong password
//!   is refused (401 → `UnauthorizedError` with the server's message) on every path.
//!
//! Every problem is listed in one failure message.

use std::path::Path;
use std::process::Command;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::ipc::reader::FileReader;
use qilin_engine::sample::ssb;
use qilin_tests::bi_corpus::{self, check_result};
use qilin_tests::compare::{compare, has_order_by, oracle_query, Expect};
use qilin_tests::corpus::ssb_queries;
use qilin_tests::server::SsbServer;
use serde_json::Value;

const INSTALL_HINT: &str = "./scripts/test creates $CARGO_TARGET_DIR/venv-superset from \
     tests/requirements-superset.txt (kylinpy, SQLAlchemy < 2) and sets QILIN_SUPERSET_PYTHON";

/// Results read by label prefix `sqlalchemy.` that are BI-corpus statements (compared with
/// the corpus' rules, e.g. any `LIMIT n` rows); must match `READ_SQL` in kylin_clients.py.
const CORPUS_READ_SQL: [&str; 2] = [
    "superset_virtual_dataset_by_year",
    "superset_filter_values_lookup",
];

fn read_ipc(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    FileReader::try_new(file, None)
        .unwrap_or_else(|e| panic!("{}: not an Arrow IPC file: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Kylin type name (`type_NAME` without `(p,s)`) the REST API must give a column of `t`.
fn kylin_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 | DataType::UInt64 | DataType::UInt32 => "BIGINT",
        DataType::Int32 | DataType::UInt16 => "INTEGER",
        DataType::Int16 | DataType::UInt8 => "SMALLINT",
        DataType::Int8 => "TINYINT",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR",
        DataType::Float64 => "DOUBLE",
        DataType::Float32 | DataType::Float16 => "FLOAT",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "DECIMAL",
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Timestamp(..) => "TIMESTAMP",
        DataType::Boolean => "BOOLEAN",
        _ => "other",
    }
}

/// The SQLAlchemy type kind (`type_kind` in kylin_clients.py) kylinpy's dialect must reflect
/// a column of `t` as (it maps Kylin's type names: DOUBLE → FLOAT, INTEGER → INTEGER, …).
fn sqla_kind(t: &DataType) -> &'static str {
    match kylin_type(t) {
        "BIGINT" => "bigint",
        "INTEGER" | "SMALLINT" | "TINYINT" => "integer",
        "VARCHAR" => "string",
        "DOUBLE" | "FLOAT" => "float",
        "DECIMAL" => "decimal",
        "DATE" => "date",
        "TIMESTAMP" => "timestamp",
        "BOOLEAN" => "boolean",
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

/// `[[name, type], …]` of a report as pairs.
fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
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
        .unwrap_or_default()
}

/// Checks a refused call's `{"type", "message"}`: `class` must end the exception's type and
/// the message must contain `needle` (case-insensitive).
fn check_refused(what: &str, v: &Value, class: &str, needle: &str, fail: &mut Vec<String>) {
    let ty = v["type"].as_str().unwrap_or("");
    let msg = v["message"].as_str().unwrap_or("");
    if !ty.ends_with(class) || !msg.to_lowercase().contains(&needle.to_lowercase()) {
        fail.push(format!(
            "{what}: raised {ty:?} {msg:?}, expected {class} mentioning {needle:?}"
        ));
    } else {
        println!("{what}: {ty}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kylinpy_and_its_sqlalchemy_dialect_list_tables_and_answer_ssb_queries() {
    let python = qilin_tests::superset_python()
        .unwrap_or_else(|| panic!("QILIN_SUPERSET_PYTHON is not set: {INSTALL_HINT}"));
    let server = SsbServer::start_with_http("").await;
    let http = server.http_addr();
    let oracle = bi_corpus::oracle(&server.source).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kylin_clients.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(&http)
        .arg(ssb::PROJECT)
        .arg(dir.path());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; {INSTALL_HINT}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(3), "{INSTALL_HINT}\n{stderr}");
    assert!(
        out.status.success(),
        "kylin_clients.py failed ({}):\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(dir.path().join("report.json")).expect("report.json");
    let report: Value = serde_json::from_str(&text).expect("report.json is JSON");
    println!("versions {}", report["versions"]);

    let mut fail = Vec::new();
    if let Some(errors) = report["errors"].as_object() {
        for (what, e) in errors {
            fail.push(format!("{what} raised: {e}"));
        }
    }

    // What the source files say: table names and typed columns.
    let mut tables: Vec<String> = ssb::TABLES.iter().map(|s| s.to_string()).collect();
    tables.sort();
    let mut columns = Vec::new();
    for t in ssb::TABLES {
        let provider = oracle.table_provider(t).await.expect("oracle table");
        let fields: Vec<(String, DataType)> = provider
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        columns.push((t, fields));
    }

    // kylinpy's own API.
    let k = &report["kylinpy"];
    if !strings(&k["projects"]).iter().any(|p| p == ssb::PROJECT) {
        fail.push(format!(
            "kylinpy projects() {} lacks {}",
            k["projects"],
            ssb::PROJECT
        ));
    }
    if strings(&k["schemas"]) != [ssb::PROJECT] {
        fail.push(format!(
            "kylinpy get_all_schemas() {}, expected [{}]",
            k["schemas"],
            ssb::PROJECT
        ));
    }
    if strings(&k["tables"]) != tables {
        fail.push(format!(
            "kylinpy get_all_tables() {}, expected {tables:?}",
            k["tables"]
        ));
    }
    for (t, fields) in &columns {
        // type_NAME may carry `(p,s)`; the name before it is what kylinpy maps.
        let got: Vec<(String, String)> = pairs(&k["columns"][*t])
            .into_iter()
            .map(|(n, ty)| (n, ty.split('(').next().unwrap_or("").to_string()))
            .collect();
        let want: Vec<(String, String)> = fields
            .iter()
            .map(|(n, ty)| (n.clone(), kylin_type(ty).to_string()))
            .collect();
        if got != want {
            fail.push(format!("kylinpy columns of {t} {got:?}, expected {want:?}"));
        }
    }
    if k["authentication"]["username"] != "ADMIN" {
        fail.push(format!(
            "GET /kylin/api/user/authentication userDetails {}, expected username ADMIN",
            k["authentication"]
        ));
    }
    let q21 = &k["q21_response"];
    let q21_sql = ssb_queries()
        .into_iter()
        .find(|(n, _)| n == "Q2.1")
        .expect("Q2.1")
        .1;
    let q21_rows: usize = oracle_query(&oracle, &q21_sql)
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let labels: Vec<String> = q21["columnMetas"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c[0].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    if !q21["cube"].as_str().unwrap_or("").contains("CUBE[name=")
        || q21["pushDown"] != false
        || q21["isException"] != false
        || q21["rows"] != q21_rows
        || labels != ["lo_revenue", "d_year", "p_brand"]
    {
        fail.push(format!(
            "POST /kylin/api/query of Q2.1 answered {q21}: expected a CUBE[name=…] answer, \
             pushDown false, {q21_rows} rows, labels lo_revenue, d_year, p_brand"
        ));
    } else {
        println!(
            "kylinpy query(Q2.1): cube {}, {} rows",
            q21["cube"], q21["rows"]
        );
    }
    check_refused(
        "kylinpy query of an unknown column",
        &k["sql_error"],
        "KylinQueryError",
        "no_such_column",
        &mut fail,
    );
    for path in ["query", "tables"] {
        check_refused(
            &format!("kylinpy {path} with a wrong password"),
            &k["wrong_password"][path],
            "UnauthorizedError",
            "",
            &mut fail,
        );
        if k["wrong_password"][path]["message"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            fail.push(format!(
                "kylinpy {path} with a wrong password: no message from the server"
            ));
        }
    }

    // The SQLAlchemy dialect, as Superset uses it.
    let s = &report["sqlalchemy"];
    println!(
        "SQLAlchemy {} (kylinpy compiler fix: {})",
        s["url"], s["compiler_fix"]
    );
    if s["ping"] != true {
        fail.push(format!("dialect do_ping (SELECT 1) answered {}", s["ping"]));
    }
    if !strings(&s["schemas"]).iter().any(|p| p == ssb::PROJECT) {
        fail.push(format!(
            "get_schema_names {} lacks {}",
            s["schemas"],
            ssb::PROJECT
        ));
    }
    if strings(&s["tables"]) != tables {
        fail.push(format!(
            "get_table_names {}, expected {tables:?}",
            s["tables"]
        ));
    }
    for (t, fields) in &columns {
        let got = pairs(&s["columns"][*t]);
        let want: Vec<(String, String)> = fields
            .iter()
            .map(|(n, ty)| (n.clone(), sqla_kind(ty).to_string()))
            .collect();
        if got != want {
            fail.push(format!("get_columns({t}) {got:?}, expected {want:?}"));
        }
    }
    check_refused(
        "inspector with a wrong password",
        &s["wrong_password"],
        "UnauthorizedError",
        "",
        &mut fail,
    );

    // Every result equals the oracle's.
    let results = report["results"].as_array().cloned().unwrap_or_default();
    let statements = bi_corpus::statements();
    let mut want_labels: Vec<String> = ssb_queries()
        .iter()
        .map(|(n, _)| format!("kylinpy.{n}"))
        .collect();
    want_labels.extend(
        ["execute_group_by", "core_select"]
            .iter()
            .chain(CORPUS_READ_SQL.iter())
            .map(|n| format!("sqlalchemy.{n}")),
    );
    for label in &want_labels {
        let Some(r) = results.iter().find(|r| r["label"] == label.as_str()) else {
            fail.push(format!("{label}: no result (see the errors above)"));
            continue;
        };
        let sql = r["sql"].as_str().expect("sql");
        let got = read_ipc(&dir.path().join(format!("{label}.arrow")));
        let corpus = label
            .strip_prefix("sqlalchemy.")
            .and_then(|n| statements.iter().find(|s| s.name == n));
        let checked = match corpus {
            Some(st) => check_result(&oracle, st, &got).await,
            None => {
                let expect = Expect {
                    ordered: has_order_by(sql),
                    ..Default::default()
                };
                compare(&got, &oracle_query(&oracle, sql).await, &expect)
            }
        };
        match checked {
            Ok(()) => println!("{label}: {} rows match the oracle", r["rows"]),
            Err(e) => fail.push(format!("{label} differs from the oracle: {e}\n  {sql}")),
        }
    }

    assert!(
        fail.is_empty(),
        "{} Kylin client problems:\n{}",
        fail.len(),
        fail.join("\n")
    );
}
