//! The Flight SQL surface real clients use: authentication, metadata commands (also through
//! DoGet tickets), prepared statements with bound parameters and large uploads, error codes,
//! the start-up refusal on a public address, arrow-flight's own `flight_sql_client`, and the
//! Python ADBC driver's metadata calls.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, ProstMessageExt, SqlInfo};
use arrow_flight::{FlightInfo, Ticket};
use futures::TryStreamExt;
use prost::Message;
use qilin_tests::compare::{run_query, status, Client};
use qilin_tests::server::SsbServer;
use qilin_tests::server::{client, raw_handshake, run_server_to_exit, try_connect};
use tonic::Code;

async fn fetch(client: &mut Client, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for e in info.endpoint {
        let ticket: Ticket = e.ticket.expect("endpoint with a ticket");
        let stream = client.do_get(ticket).await.expect("do_get");
        out.extend(stream.try_collect::<Vec<_>>().await.expect("stream"));
    }
    out
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(column)
            .unwrap_or_else(|| panic!("no column {column}"));
        let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
        let s = c.as_string::<i32>();
        out.extend((0..s.len()).map(|i| s.value(i).to_string()));
    }
    out
}

fn single_i64(batches: &[RecordBatch]) -> i64 {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let c = arrow::compute::cast(b.column(0), &DataType::Int64).unwrap();
    c.as_primitive::<arrow::datatypes::Int64Type>().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required_and_tokens_are_signed() {
    let secret = "kylin.security.token-secret=shared-cluster-secret\n";
    let a = SsbServer::start(secret).await;
    let b = SsbServer::start(secret).await;
    let addr = a.process.addr.clone();

    let wrong = raw_handshake(&addr, "ADMIN", "nope").await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let unknown = raw_handshake(&addr, "SOMEONE", "KYLIN").await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");

    // No token at all.
    let mut anonymous = client(&addr).await;
    let err = status(anonymous.get_catalogs().await.unwrap_err());
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // A tampered token: one character of the signature changed.
    let token = raw_handshake(&addr, "ADMIN", "KYLIN")
        .await
        .expect("handshake");
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let mut c = client(&addr).await;
    c.set_token(String::from_utf8(forged).unwrap());
    let err = status(c.get_catalogs().await.unwrap_err());
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // The genuine token works here and on another instance with the same secret, so a load
    // balancer may send the next call anywhere.
    for addr in [&a.process.addr, &b.process.addr] {
        let mut c = client(addr).await;
        c.set_token(token.clone());
        let n = single_i64(
            &run_query(&mut c, "select count(*) from lineorder")
                .await
                .unwrap(),
        );
        assert!(n > 0);
    }

    // The Rust client's handshake (Basic auth → bearer token).
    assert!(try_connect(&addr, "ADMIN", "KYLIN").await.is_ok());
    assert!(try_connect(&addr, "ADMIN", "wrong").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_commands_answer_directly_and_through_tickets() {
    let server = SsbServer::start("").await;
    let mut c = server.client().await;

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let batches = fetch(&mut c, info).await;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2, "two requested keys, two rows");
    let text = format!(
        "{}",
        arrow::util::pretty::pretty_format_batches(&batches).unwrap()
    );
    assert!(text.contains("Qilin"), "{text}");

    let info = c.get_catalogs().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "catalog_name"),
        vec!["qilin"]
    );

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("qilin".into()),
            db_schema_filter_pattern: Some("ss%".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "db_schema_name"),
        vec!["ssb"]
    );

    // A ticket that is the command itself works without a GetFlightInfo first.
    let ticket = Ticket::new(
        CommandGetTables {
            catalog: Some("qilin".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("d_te_".into()),
            table_types: vec!["TABLE".into()],
            include_schema: false,
        }
        .as_any()
        .encode_to_vec(),
    );
    let direct: Vec<RecordBatch> = c
        .do_get(ticket)
        .await
        .expect("do_get with a command ticket")
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(strings(&direct, "table_name"), vec!["dates"]);

    let info = c.get_table_types().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "table_type"),
        vec!["TABLE"]
    );

    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("ssb".into()),
            table_name_filter_pattern: Some("%order".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut c, info).await;
    assert_eq!(strings(&tables, "table_name"), vec!["lineorder"]);
    let schema_bytes = tables[0]
        .column_by_name("table_schema")
        .expect("table_schema column");
    let bytes = schema_bytes.as_binary::<i32>().value(0);
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(bytes).expect("IPC schema");
    assert!(schema.field_with_name("lo_revenue").is_ok(), "{schema:?}");

    let info = c
        .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let types = strings(&fetch(&mut c, info).await, "type_name");
    assert!(
        types.iter().any(|t| t == "BIGINT") && types.iter().any(|t| t == "VARCHAR"),
        "{types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_right_codes() {
    // Without a table index, an aggregate no cuboid covers is refused (with pushdown off).
    let server = SsbServer::start_without_table_index("").await;
    let mut c = server.client().await;

    let err = run_query(&mut c, "select count(*) from no_such_table")
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::NotFound | Code::InvalidArgument),
        "{err:?}"
    );
    assert!(err.message().contains("no_such_table"), "{err:?}");

    let err = run_query(&mut c, "selec count(*) from lineorder")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let err = run_query(
        &mut c,
        "select count(*) from lineorder where no_such_column = 1",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("no_such_column"), "{err:?}");

    let err = run_query(&mut c, "create table t (a int)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let err = run_query(
        &mut c,
        "select c_phone, sum(lo_revenue) from lineorder, customer where lo_custkey = c_custkey group by c_phone",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("c_phone") && err.message().contains("no realization"),
        "{err:?}"
    );

    // A ticket that is not ours.
    let err = c
        .do_get(Ticket {
            ticket: bytes::Bytes::from_static(b"garbage"),
        })
        .await
        .unwrap_err();
    let err = status(err);
    assert!(
        matches!(err.code(), Code::InvalidArgument | Code::Unimplemented),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_parameters_and_accept_large_uploads() {
    let server = SsbServer::start("").await;
    let mut c = server.client().await;
    let literal =
        "select count(*) from lineorder, dates where lo_orderdate = d_datekey and d_year = 1994";
    let want = single_i64(&run_query(&mut c, literal).await.unwrap());
    assert!(want > 0);

    let mut prepared = c
        .prepare(literal.replace("1994", "$1"), None)
        .await
        .expect("prepare");
    assert_eq!(prepared.parameter_schema().unwrap().fields().len(), 1);
    assert_eq!(prepared.dataset_schema().unwrap().fields().len(), 1);
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int32, true)])),
        vec![Arc::new(Int32Array::from(vec![1994]))],
    )
    .unwrap();
    prepared.set_parameters(params).unwrap();
    let info = prepared.execute().await.expect("execute prepared");
    assert_eq!(single_i64(&fetch(&mut c, info).await), want);
    prepared.close().await.expect("close");

    // A parameter batch above tonic's 4 MiB default message size is accepted.
    let big = "x".repeat(6 * 1024 * 1024);
    let mut prepared = c
        .prepare(
            "select count(*) from lineorder where $1 = 'never' ".to_string(),
            None,
        )
        .await
        .expect("prepare");
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec![big]))],
    )
    .unwrap();
    prepared.set_parameters(params).unwrap();
    // The DoPut carries the 6 MiB batch, and the handle that comes back (and the ticket after
    // it) carry it too: every hop must accept messages above 4 MiB.
    let info = prepared
        .execute()
        .await
        .unwrap_or_else(|e| panic!("large upload refused: {:?}", status(e)));
    assert_eq!(single_i64(&fetch(&mut c, info).await), 0);
}

#[test]
fn public_address_with_default_credentials_is_refused() {
    let exe = qilin_tests::server_exe();
    let dir = tempfile::tempdir().unwrap();
    let props = format!(
        "kylin.server.host=0.0.0.0\nkylin.sample.auto-create=false\nkylin.metadata.url={}\nkylin.storage.url={}\n",
        dir.path().join("meta").display(),
        dir.path().join("segments").display()
    );
    let (status, output) = run_server_to_exit(&exe, &props, Duration::from_secs(60));
    assert!(!status.success(), "{output}");
    assert!(output.contains("kylin.security.users"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
}

fn flight_sql_client() -> PathBuf {
    let exe = qilin_tests::server_exe()
        .parent()
        .expect("<target>/<profile>")
        .join("flight_sql_client");
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo build -p arrow-flight -p qilin-tests --bin flight_sql_client` (scripts/test does)",
        exe.display()
    );
    exe
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_flight_cli_runs_statements() {
    let server = SsbServer::start("").await;
    let port = server.process.port().to_string();
    let exe = flight_sql_client();
    let run = |args: Vec<String>| {
        let out = Command::new(&exe)
            .args(&args)
            .output()
            .expect("run flight_sql_client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let base = |cmd: &str| -> Vec<String> {
        [
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--username",
            "ADMIN",
            "--password",
            "KYLIN",
            cmd,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut args = base("statement-query");
    args.push("select d_year, count(*) as n from lineorder, dates where lo_orderdate = d_datekey group by d_year order by d_year".into());
    let (ok, text) = run(args);
    assert!(ok, "{text}");
    assert!(
        text.contains("1992") && text.contains("1998") && text.contains("d_year"),
        "{text}"
    );

    let (ok, text) = run(base("catalogs"));
    assert!(ok && text.contains("qilin"), "{text}");

    let mut args = base("statement-query");
    args[7] = "wrong".into();
    args.push("select 1".into());
    let (ok, text) = run(args);
    assert!(!ok, "wrong password accepted: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_adbc_metadata_and_parameters() {
    let server = SsbServer::start("").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/protocol_adbc.py");
    let uri = server.process.uri();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(qilin_tests::python())
            .arg(&script)
            .arg(uri)
            .output()
    })
    .await
    .expect("join")
    .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(
        out.status.code(),
        Some(3),
        "{err}\n(./scripts/test installs tests/requirements.txt into its venv)"
    );
    assert!(
        out.status.success(),
        "protocol_adbc.py failed:\n{text}\n{err}"
    );
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= line in:\n{text}\n{err}"))
            .to_string()
    };
    assert!(line("catalogs").contains("qilin"), "{text}");
    assert!(
        line("tables").contains("lineorder") && line("tables").contains("dates"),
        "{text}"
    );
    assert!(line("lineorder_columns").contains("lo_revenue"), "{text}");
    assert_eq!(line("table_types"), "TABLE");
    assert!(line("vendor_name").contains("Qilin"), "{text}");
    // `?` parameters bound through DoPut give the same count as the literal.
    let literal = line("count_literal");
    assert_eq!(line("count_bound"), literal);
    assert_ne!(literal, "0");
}
