//! Kylin's REST API on `qilin-server`'s HTTP server (and on `qilin-jobs serve`): sign-in,
//! the catalog endpoints with Kylin's field names, `POST /kylin/api/query` answering SSB
//! queries like the oracle, and errors with the right status (401, 404, 400, SQL errors as
//! `isException`), next to unchanged `/health` and `/metrics`.

use qilin_engine::sample::ssb;
use qilin_tests::http::Http;
use qilin_tests::server::{ServerProcess, SsbServer};
use serde_json::{json, Value};

/// Runs a blocking HTTP exchange off the async workers.
async fn call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("HTTP exchange")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_credentials() {
    let server = SsbServer::start_with_http("").await;
    let addr = server.http_addr();
    call(move || {
        // Basic credentials → the user and a token; GET works too (kylinpy).
        for method in ["POST", "GET"] {
            let r = Http::basic(&addr, "ADMIN", "KYLIN").request(
                method,
                "/kylin/api/user/authentication",
                None,
            );
            let v = r.expect(200);
            assert_eq!(v["userDetails"]["username"], "ADMIN", "{v}");
            assert_eq!(
                v["userDetails"]["authorities"][0]["authority"],
                "ROLE_ADMIN"
            );
            assert_eq!(v["can_operate"], true);
            assert!(v["token"].as_str().unwrap().contains('.'), "{v}");
        }
        let token = Http::basic(&addr, "ADMIN", "KYLIN")
            .post_raw("/kylin/api/user/authentication", b"")
            .json()["token"]
            .as_str()
            .unwrap()
            .to_string();

        // The bearer token opens every endpoint.
        let projects = Http::bearer(&addr, &token)
            .get("/kylin/api/projects")
            .expect(200);
        assert_eq!(projects[0]["name"], ssb::PROJECT);

        // Wrong password, unknown user, no credentials, a forged token: 401 with Kylin's
        // error JSON and a Basic challenge (none for the console's XHR calls).
        for client in [
            Http::basic(&addr, "ADMIN", "wrong"),
            Http::basic(&addr, "nobody", "KYLIN"),
            Http::new(&addr),
            Http::bearer(&addr, &format!("{token}x")),
        ] {
            for path in [
                "/kylin/api/user/authentication",
                "/kylin/api/projects",
                "/kylin/api/cubes",
            ] {
                let r = client.get(path);
                let v = r.expect(401);
                assert_eq!(v["code"], "999", "{v}");
                assert!(!v["exception"].as_str().unwrap().is_empty(), "{v}");
                assert_eq!(v["msg"], v["exception"]);
                assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Qilin\""));
            }
            let r = client
                .clone()
                .with_header("X-Requested-With: XMLHttpRequest")
                .post_json("/kylin/api/query", &json!({"sql": "select 1"}));
            assert_eq!(r.status, 401, "{}", r.text());
            assert_eq!(r.header("www-authenticate"), None);
        }
        let v = Http::basic(&addr, "ADMIN", "wrong")
            .get("/kylin/api/projects")
            .json();
        assert_eq!(v["exception"], "invalid user name or password");

        // /health and /metrics stay open and keep their contracts.
        let r = Http::new(&addr).get("/health");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "ok");
        let r = Http::new(&addr).get("/metrics");
        assert_eq!(r.status, 200);
        assert!(r.text().contains("# TYPE qilin_queries_total counter"));
        assert_eq!(Http::new(&addr).get("/nope").status, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_endpoints_use_kylin_field_names() {
    let server = SsbServer::start_with_http("").await;
    let http = server.http();
    let source = server.source.clone();
    call(move || {
        let projects = http
            .get("/kylin/api/projects?pageOffset=0&pageSize=1000")
            .expect(200);
        let p = &projects.as_array().unwrap()[0];
        assert_eq!(p["name"], ssb::PROJECT);
        let mut tables = strings(&p["tables"]);
        tables.sort();
        let mut want: Vec<String> = ssb::TABLES.iter().map(|t| t.to_string()).collect();
        want.sort();
        assert_eq!(tables, want);
        assert_eq!(strings(&p["models"]), vec![ssb::MODEL]);
        assert_eq!(
            p["realizations"],
            json!([{"type": "CUBE", "realization": ssb::CUBE}])
        );

        // Tables and columns: Kylin's TableMeta, schema = project, JDBC types.
        let tables = http
            .get(&format!(
                "/kylin/api/tables_and_columns?project={}",
                ssb::PROJECT
            ))
            .expect(200);
        let tables = tables.as_array().unwrap();
        assert_eq!(tables.len(), ssb::TABLES.len());
        let lineorder = tables
            .iter()
            .find(|t| t["table_NAME"] == "lineorder")
            .expect("lineorder listed");
        assert_eq!(lineorder["table_SCHEM"], ssb::PROJECT);
        assert_eq!(lineorder["table_TYPE"], "TABLE");
        let columns = lineorder["columns"].as_array().unwrap();
        let want_columns = ssb::tables(&source)
            .unwrap()
            .into_iter()
            .find(|t| t.name == "lineorder")
            .unwrap()
            .columns;
        assert_eq!(columns.len(), want_columns.len());
        for (i, (c, w)) in columns.iter().zip(&want_columns).enumerate() {
            assert_eq!(c["column_NAME"], w.name.as_str(), "{c}");
            assert_eq!(c["ordinal_POSITION"], i + 1);
            assert_eq!(c["table_NAME"], "lineorder");
            assert!(c["nullable"] == 0 || c["nullable"] == 1, "{c}");
            assert_eq!(
                c["is_NULLABLE"],
                if c["nullable"] == 1 { "YES" } else { "NO" }
            );
            // The type name kylinpy parses and the java.sql.Types code that goes with it.
            let code = match c["type_NAME"].as_str().unwrap() {
                "INTEGER" => 4,
                "BIGINT" => -5,
                "VARCHAR" => 12,
                "DATE" => 91,
                "DOUBLE" => 8,
                "DECIMAL" => 3,
                "SMALLINT" => 5,
                "TINYINT" => -6,
                other => panic!("unexpected type_NAME {other} in {c}"),
            };
            assert_eq!(c["data_TYPE"], code, "{c}");
        }
        let orderdate = columns
            .iter()
            .find(|c| c["column_NAME"] == "lo_orderdate")
            .unwrap();
        assert!(
            ["INTEGER", "DATE", "BIGINT"].contains(&orderdate["type_NAME"].as_str().unwrap()),
            "{orderdate}"
        );
        // Without a project: every project; an unknown one: 404.
        let all = http.get("/kylin/api/tables_and_columns").expect(200);
        assert_eq!(all.as_array().unwrap().len(), ssb::TABLES.len());
        let v = http
            .get("/kylin/api/tables_and_columns?project=nope")
            .expect(404);
        assert!(
            v["exception"]
                .as_str()
                .unwrap()
                .contains("project nope not found"),
            "{v}"
        );

        // Models: as stored, plus the project.
        let models = http
            .get(&format!("/kylin/api/models?projectName={}", ssb::PROJECT))
            .expect(200);
        let m = &models.as_array().unwrap()[0];
        assert_eq!(m["name"], ssb::MODEL);
        assert_eq!(m["project"], ssb::PROJECT);
        assert_eq!(m["fact_table"], ssb::model().fact_table.as_str());
        assert_eq!(
            m["lookups"].as_array().unwrap().len(),
            ssb::model().lookups.len()
        );

        // Cubes: Kylin's CubeInstance with the READY segment the shared store built.
        let cubes = http
            .get(&format!(
                "/kylin/api/cubes?projectName={}&limit=50000&offset=0",
                ssb::PROJECT
            ))
            .expect(200);
        assert_eq!(cubes.as_array().unwrap().len(), 1);
        let cube = http
            .get(&format!("/kylin/api/cubes/{}", ssb::CUBE))
            .expect(200);
        assert_eq!(cubes[0], cube);
        assert_eq!(cube["name"], ssb::CUBE);
        assert_eq!(cube["project"], ssb::PROJECT);
        assert_eq!(cube["model"], ssb::MODEL);
        assert_eq!(cube["status"], "READY");
        let segments = cube["segments"].as_array().unwrap();
        assert_eq!(segments.len(), 1, "{cube}");
        let s = &segments[0];
        assert_eq!(s["status"], "READY");
        let range = ssb::full_range();
        let start = range.start.and_hms_opt(0, 0, 0).unwrap().and_utc();
        let end = range.end.and_hms_opt(0, 0, 0).unwrap().and_utc();
        assert_eq!(s["date_range_start"], start.timestamp_millis());
        assert_eq!(s["date_range_end"], end.timestamp_millis());
        assert!(s["size_bytes"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["size_kb"], s["size_bytes"].as_u64().unwrap() / 1024);
        assert_eq!(s["stale"], false);
        assert!(s["cuboid_rows"].as_u64().unwrap() > 0);
        assert!(s["last_build_time"].as_i64().unwrap() > 0);
        assert!(s["last_build_job_id"].is_string(), "{s}");
        // Fact rows at SF 0.01: what the oracle counts.
        assert_eq!(s["input_records"], cube["input_records_count"]);
        assert!(
            cube["input_records_count"].as_u64().unwrap() > 50_000,
            "{cube}"
        );
        assert!(cube["cuboid_count"].as_u64().unwrap() > 1, "{cube}");
        let one = http
            .get(&format!("/kylin/api/cubes?cubeName={}", ssb::CUBE))
            .expect(200);
        assert_eq!(one.as_array().unwrap().len(), 1);

        // Cube descriptor: as stored plus the cuboid count, in a list (and as an object).
        let desc = http
            .get(&format!("/kylin/api/cube_desc/{}", ssb::CUBE))
            .expect(200);
        let d = &desc.as_array().unwrap()[0];
        assert_eq!(d["name"], ssb::CUBE);
        assert_eq!(d["model"], ssb::MODEL);
        assert_eq!(d["cuboid_count"], cube["cuboid_count"]);
        assert_eq!(
            d["dimensions"].as_array().unwrap().len(),
            ssb::cube().dimensions.len()
        );
        assert_eq!(
            d["measures"].as_array().unwrap().len(),
            ssb::cube().measures.len()
        );
        let obj = http
            .get(&format!("/kylin/api/cube_desc/{}/desc", ssb::CUBE))
            .expect(200);
        assert_eq!(obj["model_name"], ssb::MODEL);

        // Unknown cube: 404 naming it, everywhere; a bad name: 400.
        for path in [
            "/kylin/api/cubes/no_such_cube",
            "/kylin/api/cube_desc/no_such_cube",
        ] {
            let v = http.get(path).expect(404);
            assert!(
                v["exception"].as_str().unwrap().contains("no_such_cube"),
                "{v}"
            );
        }
        let r = http.get("/kylin/api/cubes/bad%20name");
        assert_eq!(r.status, 400, "{}", r.text());
    })
    .await;
}

/// The oracle's cells as text, row by row.
fn oracle_rows(batches: &[arrow::array::RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| qilin_tests::cell(c.as_ref(), r))
                    .collect(),
            );
        }
    }
    out
}

/// A REST cell equals an oracle cell: the same text, or the same number.
fn same_cell(got: &Value, want: &str) -> bool {
    let got = match got {
        Value::Null => return want == "NULL",
        Value::String(s) => s.as_str(),
        _ => return false,
    };
    if got == want {
        return true;
    }
    match (got.parse::<f64>(), want.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_answers_like_the_oracle() {
    let server = SsbServer::start_with_http("").await;
    let oracle = qilin_tests::oracle(&server.source).await;
    let queries = qilin_tests::corpus::ssb_queries();
    let http = server.http();
    for name in ["Q1.1", "Q2.1", "Q3.1", "Q4.2"] {
        let sql = queries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .unwrap();
        let want = oracle_rows(&qilin_tests::compare::oracle_query(&oracle, &sql).await);
        let (h, body) = (
            http.clone(),
            json!({"sql": sql, "project": ssb::PROJECT, "offset": 0, "limit": 50000,
                   "acceptPartial": false}),
        );
        let v = call(move || h.post_json("/kylin/api/query", &body).expect(200)).await;
        assert_eq!(v["isException"], false, "{name}: {v}");
        assert_eq!(v["exceptionMessage"], Value::Null);
        assert_eq!(v["cube"], format!("CUBE[name={}]", ssb::CUBE), "{name}");
        assert_eq!(v["pushDown"], false);
        assert!(v["duration"].is_u64());
        let got = v["results"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}: {v}");
        assert!(!want.is_empty(), "{name}: the oracle has rows");
        for (g, w) in got.iter().zip(&want) {
            let g = g.as_array().unwrap();
            assert_eq!(g.len(), w.len(), "{name}");
            for (gc, wc) in g.iter().zip(w) {
                assert!(same_cell(gc, wc), "{name}: got {g:?}, oracle {w:?}");
            }
        }
        let metas = v["columnMetas"].as_array().unwrap();
        assert_eq!(metas.len(), want[0].len());
        for m in metas {
            for key in [
                "label",
                "columnTypeName",
                "displaySize",
                "precision",
                "scale",
                "isNullable",
            ] {
                assert!(!m[key].is_null(), "{name}: {key} missing in {m}");
            }
        }
    }

    // Q2.1's columns: lo_revenue is a number type kylinpy converts, d_year an integer.
    let q21 = &queries.iter().find(|(n, _)| n == "Q2.1").unwrap().1;
    let want = oracle_rows(&qilin_tests::compare::oracle_query(&oracle, q21).await);
    let (h, sql) = (http.clone(), q21.clone());
    let paged = call(move || {
        h.post_json(
            "/kylin/api/query",
            &json!({"sql": sql, "offset": 3, "limit": 5}),
        )
        .expect(200)
    })
    .await;
    let metas = paged["columnMetas"].as_array().unwrap();
    assert_eq!(metas[0]["label"], "lo_revenue");
    assert_eq!(metas[1]["label"], "d_year");
    assert!(
        ["DECIMAL", "BIGINT", "DOUBLE", "INTEGER"]
            .contains(&metas[0]["columnTypeName"].as_str().unwrap()),
        "{metas:?}"
    );
    // offset/limit apply to the ordered result.
    let rows = paged["results"].as_array().unwrap();
    assert_eq!(rows.len(), 5.min(want.len().saturating_sub(3)));
    for (g, w) in rows.iter().zip(&want[3..]) {
        for (gc, wc) in g.as_array().unwrap().iter().zip(w) {
            assert!(same_cell(gc, wc), "paged: got {g}, oracle {w:?}");
        }
    }

    // Dates as YYYY-MM-DD, strings as they are, nulls as null.
    let h = http.clone();
    let v = call(move || {
        h.post_json(
            "/kylin/api/query",
            &json!({"sql": "select d_datekey, d_date, cast(null as varchar) as n, \
                             cast('1994-01-01' as date) as dt, cast(12.5 as decimal(10,2)) as m \
                             from dates order by d_datekey limit 1"}),
        )
        .expect(200)
    })
    .await;
    assert_eq!(v["isException"], false, "{v}");
    let row = &v["results"][0];
    assert_eq!(row[2], Value::Null, "{v}");
    assert_eq!(row[3], "1994-01-01", "{v}");
    assert_eq!(row[4], "12.50", "{v}");
    assert_eq!(v["columnMetas"][3]["columnTypeName"], "DATE");
    assert_eq!(v["columnMetas"][4]["columnTypeName"], "DECIMAL");
    assert_eq!(v["columnMetas"][4]["scale"], 2);
    let want = oracle_rows(
        &qilin_tests::compare::oracle_query(
            &oracle,
            "select d_datekey, d_date from dates order by d_datekey limit 1",
        )
        .await,
    );
    assert!(same_cell(&row[0], &want[0][0]), "{row} vs {want:?}");
    assert!(same_cell(&row[1], &want[0][1]), "{row} vs {want:?}");

    // EXPLAIN names the cube and its cuboid.
    let (h, sql) = (http.clone(), format!("explain {q21}"));
    let v = call(move || {
        h.post_json("/kylin/api/query", &json!({"sql": sql}))
            .expect(200)
    })
    .await;
    assert_eq!(v["isException"], false, "{v}");
    let labels: Vec<&str> = v["columnMetas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["plan_type", "plan"]);
    let text = v["results"].to_string();
    assert!(text.contains(ssb::CUBE), "{text}");
    assert!(text.contains("cuboid"), "{text}");
    assert_eq!(v["cube"], format!("CUBE[name={}]", ssb::CUBE));

    // A second run comes from the result cache and still names the cube.
    let (h, sql) = (http.clone(), q21.clone());
    let v = call(move || {
        h.post_json("/kylin/api/query", &json!({"sql": sql}))
            .expect(200)
    })
    .await;
    assert_eq!(v["storageCacheUsed"], true, "{v}");
    assert_eq!(v["cube"], format!("CUBE[name={}]", ssb::CUBE));

    // SQL errors: HTTP 200, isException with the engine's message, no rows.
    let h = http.clone();
    let v = call(move || {
        h.post_json(
            "/kylin/api/query",
            &json!({"sql": "select no_such_column from lineorder"}),
        )
        .expect(200)
    })
    .await;
    assert_eq!(v["isException"], true, "{v}");
    let msg = v["exceptionMessage"].as_str().unwrap();
    assert!(msg.contains("no_such_column"), "{msg}");
    assert_eq!(v["results"], json!([]));

    // Malformed bodies: 400 naming the problem; an unknown project: 404.
    let h = http.clone();
    call(move || {
        for (body, says) in [
            (&b"{\"sql\": "[..], "malformed request body"),
            (b"{\"project\": \"ssb\"}", "missing field `sql`"),
            (b"{\"sql\": 42}", "sql"),
            (b"{\"sql\": \"select 1\", \"limit\": \"ten\"}", "limit"),
            (b"", "empty"),
            (b"{\"sql\": \"  \"}", "sql is empty"),
        ] {
            let v = h.post_raw("/kylin/api/query", body).expect(400);
            let e = v["exception"].as_str().unwrap();
            assert!(e.contains(says), "{}: {e}", String::from_utf8_lossy(body));
        }
        let v = h
            .post_json(
                "/kylin/api/query",
                &json!({"sql": "select 1", "project": "nope"}),
            )
            .expect(404);
        assert!(v["exception"].as_str().unwrap().contains("nope"), "{v}");
        // kylinpy's DSN without a database sends project "default".
        let v = h
            .post_json(
                "/kylin/api/query",
                &json!({"sql": "select 1 as one", "project": "default"}),
            )
            .expect(200);
        assert_eq!(v["results"], json!([["1"]]), "{v}");
        // GET is not the query method.
        assert_eq!(h.get("/kylin/api/query").status, 405);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_is_reported() {
    // A store without the table index: a detail query is pushed down to the source tables.
    let port = qilin_tests::cluster::free_port();
    let server = SsbServer::start_without_table_index(&format!(
        "kylin.query.pushdown.enabled=true\nkylin.server.http-port={port}\n"
    ))
    .await;
    let http = server.http();
    let v = call(move || {
        http.post_json(
            "/kylin/api/query",
            &json!({"sql": "select lo_orderkey from lineorder order by lo_orderkey limit 3"}),
        )
        .expect(200)
    })
    .await;
    assert_eq!(v["isException"], false, "{v}");
    assert_eq!(v["pushDown"], true, "{v}");
    assert_eq!(v["cube"], "");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_node_serves_the_catalog() {
    let store = qilin_tests::server::shared_ssb_store(qilin_tests::server::SCALE).await;
    let source = qilin_tests::server::shared_ssb_source_dir(qilin_tests::server::SCALE).await;
    let port = qilin_tests::cluster::free_port();
    // A copy of the store: the daemon writes (lease) into its metadata.
    let dir = tempfile::tempdir().unwrap();
    qilin_tests::server::copy_dir(&store, dir.path());
    let props = qilin_tests::server::ssb_properties(
        dir.path(),
        &source,
        &format!("kylin.server.mode=job\nkylin.server.http-port={port}\n"),
    );
    let node = tokio::task::spawn_blocking(move || ServerProcess::job_daemon("job", &props))
        .await
        .unwrap();
    let addr = node.http_addr().expect("qilin-jobs http on … line");
    assert_eq!(addr, format!("127.0.0.1:{port}"));
    call(move || {
        let v = Http::new(&addr).get("/health").expect(200);
        assert_eq!(v["mode"], "job");
        let http = Http::basic(&addr, "ADMIN", "KYLIN");
        let cube = http
            .get(&format!("/kylin/api/cubes/{}", ssb::CUBE))
            .expect(200);
        assert_eq!(cube["status"], "READY");
        let v = http.get("/kylin/api/projects").expect(200);
        assert_eq!(v[0]["name"], ssb::PROJECT);
        assert_eq!(Http::new(&addr).get("/kylin/api/projects").status, 401);
        // The query endpoint and the console are the query server's.
        assert_eq!(
            http.post_json("/kylin/api/query", &json!({"sql": "select 1"}))
                .status,
            404
        );
    })
    .await;
    drop(node);
}
