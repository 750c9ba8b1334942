//! Who may see and do what over the REST API (issue 17): project roles (a QUERY user's 403 on
//! a rebuild naming OPERATION, other projects 404 and absent from every list), row filters and
//! denied tables and columns through `POST /kylin/api/query` (answers equal the oracle with the
//! filter added; two users with different filters never share a cached result), the security
//! administration endpoints (`/qilin/api/users`, grants, rules, API keys, audit) and hostile
//! input (malformed Basic, oversized credentials, forged keys, grants naming unknown users or
//! projects: a clear 4xx and nothing changed). Every server runs over a private copy of the
//! SSB metadata: these tests write users and rules.

use std::path::PathBuf;
use std::time::Duration;

use qilin_engine::admin::documents::create_project;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::ProjectDesc;
use qilin_engine::sample::ssb;
use qilin_tests::cluster::{eventually, free_port};
use qilin_tests::http::{Http, Reply};
use qilin_tests::server::{ServerProcess, SsbServer};
use serde_json::{json, Value};

/// Runs a blocking HTTP exchange off the async workers.
async fn call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("HTTP exchange")
}

/// A server with HTTP over a private metadata copy that also holds an empty project `other`.
async fn server() -> (SsbServer, tempfile::TempDir, PathBuf) {
    let port = free_port();
    let (props, dir, meta_dir) =
        SsbServer::private_meta_properties(&format!("kylin.server.http-port={port}\n")).await;
    let meta = Metadata::new(
        qilin_engine::metadata::open_store(meta_dir.to_str().unwrap()).expect("private store"),
    );
    create_project(
        &meta,
        &ProjectDesc {
            name: "other".into(),
            description: "a project ssb users do not see".into(),
        },
    )
    .expect("create project other");
    let source = qilin_tests::server::shared_ssb_source_dir(qilin_tests::server::SCALE).await;
    let exe = qilin_tests::server_exe();
    let process = call(move || ServerProcess::start(&exe, &props)).await;
    (SsbServer { process, source }, dir, meta_dir)
}

/// The loopback default global admin.
fn admin(addr: &str) -> Http {
    Http::basic(addr, "ADMIN", "KYLIN")
}

/// Creates user `name` (password `name`-pw) through the admin endpoint.
fn add_user(addr: &str, name: &str, groups: &[&str]) -> Http {
    let v = admin(addr)
        .post_json(
            "/qilin/api/users",
            &json!({"name": name, "password": format!("{name}-pw"), "groups": groups}),
        )
        .expect(200);
    assert_eq!(v["name"], name, "{v}");
    assert_eq!(v["admin"], false, "{v}");
    assert!(
        v.get("password").is_none() && !v.to_string().contains("$argon2"),
        "{v}"
    );
    Http::basic(addr, name, &format!("{name}-pw"))
}

fn grant(addr: &str, project: &str, who: Value, role: &str) {
    let mut body = who;
    body["role"] = json!(role);
    let v = admin(addr)
        .post_json(&format!("/qilin/api/projects/{project}/grants"), &body)
        .expect(200);
    assert_eq!(v["role"], role, "{v}");
}

fn rule(addr: &str, body: Value) -> Value {
    admin(addr)
        .post_json(
            &format!("/qilin/api/projects/{}/rules", ssb::PROJECT),
            &body,
        )
        .expect(200)
}

fn names(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x[key].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

/// The message of a refused call with `status`.
fn refused(r: &Reply, status: u16) -> String {
    let v = r.expect(status);
    v["exception"].as_str().unwrap_or_default().to_string()
}

fn sql(name: &str) -> String {
    qilin_tests::corpus::ssb_queries()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no SSB query {name}"))
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

/// Runs `sql` over REST as `http`: the answer's JSON (200, no exception).
async fn rest_query(http: &Http, sql: &str) -> Value {
    let (h, body) = (
        http.clone(),
        json!({"sql": sql, "project": ssb::PROJECT, "limit": 50000}),
    );
    let v = call(move || h.post_json("/kylin/api/query", &body).expect(200)).await;
    assert_eq!(v["isException"], false, "{sql}: {v}");
    v
}

/// The REST answer equals the oracle's rows (in order: every query here orders its rows).
fn assert_rows(what: &str, v: &Value, want: &[Vec<String>]) {
    let got = v["results"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: {v}");
    for (g, w) in got.iter().zip(want) {
        let g = g.as_array().unwrap();
        assert_eq!(g.len(), w.len(), "{what}");
        for (gc, wc) in g.iter().zip(w) {
            assert!(same_cell(gc, wc), "{what}: got {g:?}, oracle {w:?}");
        }
    }
}

/// `sql` with `filter` ANDed into its WHERE clause (before GROUP BY).
fn with_filter(sql: &str, filter: &str) -> String {
    let at = sql.find(" group by").expect("a grouped query");
    format!("{} and {filter}{}", &sql[..at], &sql[at..])
}

const REGIONS: &str = "select c_region, sum(lo_revenue) as revenue from lineorder, customer \
                       where lo_custkey = c_custkey group by c_region order by c_region";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_hide_projects_and_guard_builds_and_jobs() {
    let (server, _dir, _meta) = server().await;
    let addr = server.http_addr();
    call(move || {
        let alice = add_user(&addr, "alice", &[]);
        let bob = add_user(&addr, "bob", &["builders"]);
        let carol = add_user(&addr, "carol", &[]);
        grant(&addr, ssb::PROJECT, json!({"user": "alice"}), "QUERY");
        grant(
            &addr,
            ssb::PROJECT,
            json!({"group": "builders"}),
            "OPERATION",
        );
        grant(&addr, "other", json!({"user": "carol"}), "QUERY");

        // Sign-in answers with the caller's roles (Kylin's authorities; the console's flags).
        let who = alice
            .post_raw("/kylin/api/user/authentication", b"")
            .expect(200);
        assert_eq!(who["userDetails"]["username"], "alice");
        assert_eq!(
            who["userDetails"]["authorities"][0]["authority"],
            "ROLE_ANALYST"
        );
        assert_eq!(who["can_operate"], false, "{who}");
        assert_eq!(who["admin"], false);
        assert_eq!(who["projects"], json!({"ssb": "QUERY"}));
        let who = bob
            .post_raw("/kylin/api/user/authentication", b"")
            .expect(200);
        assert_eq!(who["can_operate"], true, "{who}");
        let who = admin(&addr)
            .post_raw("/kylin/api/user/authentication", b"")
            .expect(200);
        assert_eq!(
            who["userDetails"]["authorities"][0]["authority"],
            "ROLE_ADMIN"
        );
        assert_eq!(who["admin"], true);
        // The token works like the password.
        let alice_token = Http::bearer(
            &addr,
            alice.post_raw("/kylin/api/user/authentication", b"").json()["token"]
                .as_str()
                .unwrap(),
        );

        // Lists show only the projects one holds a role in.
        let all = admin(&addr).get("/kylin/api/projects").expect(200);
        assert_eq!(names(&all, "name"), vec!["other", ssb::PROJECT]);
        for h in [&alice, &alice_token, &bob] {
            let v = h.get("/kylin/api/projects").expect(200);
            assert_eq!(names(&v, "name"), vec![ssb::PROJECT]);
            assert_eq!(
                h.get("/kylin/api/cubes")
                    .expect(200)
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
        }
        let v = carol.get("/kylin/api/projects").expect(200);
        assert_eq!(names(&v, "name"), vec!["other"]);
        for path in [
            "/kylin/api/cubes",
            "/kylin/api/models",
            "/kylin/api/tables_and_columns",
            "/kylin/api/jobs",
        ] {
            let v = carol.get(path).expect(200);
            assert_eq!(v, json!([]), "{path}");
        }
        // Another project's objects are 404, as if they did not exist (not 403, which would
        // confirm they do).
        for path in [
            format!("/kylin/api/cubes/{}", ssb::CUBE),
            format!("/kylin/api/cube_desc/{}", ssb::CUBE),
            format!("/kylin/api/cube_desc/{}/desc", ssb::CUBE),
            format!("/kylin/api/tables_and_columns?project={}", ssb::PROJECT),
            format!("/kylin/api/models?projectName={}", ssb::PROJECT),
            format!("/kylin/api/cubes?projectName={}", ssb::PROJECT),
            format!("/qilin/api/projects/{}/grants", ssb::PROJECT),
        ] {
            let r = carol.get(&path);
            assert_eq!(r.status, 404, "{path}: {}", r.text());
        }
        let msg = refused(&carol.get(&format!("/kylin/api/cubes/{}", ssb::CUBE)), 404);
        assert!(
            msg.contains(&format!("cube {} not found", ssb::CUBE)),
            "{msg}"
        );
        let r = carol.post_json(
            "/kylin/api/query",
            &json!({"sql": "select 1", "project": ssb::PROJECT}),
        );
        assert_eq!(r.status, 404, "{}", r.text());
        // Unqualified names resolve in the default project ssb, which carol does not see.
        let v = carol
            .post_json(
                "/kylin/api/query",
                &json!({"sql": "select count(*) from lineorder"}),
            )
            .expect(200);
        assert_eq!(v["isException"], true, "{v}");
        assert!(
            v["exceptionMessage"]
                .as_str()
                .unwrap()
                .contains("not found"),
            "{v}"
        );
        let r = carol.put_json(
            &format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE),
            &json!({"startTime": 0, "endTime": 0, "buildType": "BUILD"}),
        );
        assert_eq!(r.status, 404, "{}", r.text());

        // A QUERY user may not build: 403 naming the role needed.
        let rebuild = json!({
            "startTime": 883_612_800_000i64, // 1998-01-01
            "endTime": 915_148_800_000i64,   // 1999-01-01
            "buildType": "REFRESH",
        });
        let path = format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE);
        let msg = refused(&alice.put_json(&path, &rebuild), 403);
        assert!(msg.contains("OPERATION"), "{msg}");
        assert!(msg.contains("alice"), "{msg}");
        // OPERATION through a group may: a BUILD of a new range is submitted (PENDING: no
        // job daemon runs on this query node).
        let build = json!({
            "startTime": 915_148_800_000i64, // 1999-01-01
            "endTime": 946_684_800_000i64,   // 2000-01-01
            "buildType": "BUILD",
        });
        let job = bob.put_json(&path, &build).expect(200);
        assert_eq!(job["job_status"], "PENDING", "{job}");
        assert_eq!(job["submitter"], "bob");
        let id = job["uuid"].as_str().unwrap().to_string();

        // Jobs: visible to the project's users, 404 to others; discarding needs OPERATION.
        let ids = names(&alice.get("/kylin/api/jobs").expect(200), "uuid");
        assert!(ids.contains(&id), "{ids:?}");
        assert_eq!(
            alice.get(&format!("/kylin/api/jobs/{id}")).expect(200)["uuid"],
            id.as_str()
        );
        assert_eq!(carol.get(&format!("/kylin/api/jobs/{id}")).status, 404);
        let r = carol.put_json(&format!("/kylin/api/jobs/{id}/cancel"), &json!({}));
        assert_eq!(r.status, 404, "{}", r.text());
        let msg = refused(
            &alice.put_json(&format!("/kylin/api/jobs/{id}/cancel"), &json!({})),
            403,
        );
        assert!(msg.contains("OPERATION"), "{msg}");
        let msg = refused(
            &alice.put_json(&format!("/kylin/api/jobs/{id}/resume"), &json!({})),
            403,
        );
        assert!(msg.contains("OPERATION"), "{msg}");
        let v = bob
            .put_json(&format!("/kylin/api/jobs/{id}/cancel"), &json!({}))
            .expect(200);
        assert_eq!(v["job_status"], "DISCARDED", "{v}");

        // Administration needs a global admin (users, audit) or ADMIN in the project.
        for path in ["/qilin/api/users", "/qilin/api/audit"] {
            let msg = refused(&alice.get(path), 403);
            assert!(msg.contains("global admin"), "{path}: {msg}");
        }
        let msg = refused(
            &bob.get(&format!("/qilin/api/projects/{}/grants", ssb::PROJECT)),
            403,
        );
        assert!(msg.contains("ADMIN"), "{msg}");
        let r = bob.post_json(
            &format!("/qilin/api/projects/{}/grants", ssb::PROJECT),
            &json!({"user": "bob", "role": "ADMIN"}),
        );
        assert_eq!(r.status, 403, "{}", r.text());
        // A project ADMIN grants in its project (and only there).
        grant(&addr, ssb::PROJECT, json!({"user": "carol"}), "ADMIN");
        let v = carol
            .post_json(
                &format!("/qilin/api/projects/{}/grants", ssb::PROJECT),
                &json!({"user": "alice", "role": "OPERATION"}),
            )
            .expect(200);
        assert_eq!(v["user"], "alice");
        let grants = carol
            .get(&format!("/qilin/api/projects/{}/grants", ssb::PROJECT))
            .expect(200);
        let alice_role = grants
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["user"] == "alice")
            .map(|g| g["role"].clone());
        assert_eq!(alice_role, Some(json!("OPERATION")), "{grants}");
        assert_eq!(
            alice.post_raw("/kylin/api/user/authentication", b"").json()["can_operate"],
            true
        );

        // The audit log has the refusals and the changes, with user and outcome.
        let events = admin(&addr).get("/qilin/api/audit?limit=10000").expect(200);
        let has = |user: &str, action: &str, outcome: &str| {
            events
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["user"] == user && e["action"] == action && e["outcome"] == outcome)
        };
        assert!(has("alice", "cube.refresh", "denied"), "{events}");
        assert!(has("bob", "cube.build", "ok"), "{events}");
        assert!(has("alice", "job.discard", "denied"), "{events}");
        assert!(has("bob", "job.discard", "ok"), "{events}");
        assert!(has("carol", "cube.read", "denied"), "{events}");
        assert!(has("ADMIN", "user.create", "ok"), "{events}");
        assert!(has("ADMIN", "grant", "ok"), "{events}");
        assert!(has("carol", "grant", "ok"), "{events}");
        assert!(has("bob", "grant", "denied"), "{events}");
        let alice_only = admin(&addr).get("/qilin/api/audit?user=alice").expect(200);
        assert!(!alice_only.as_array().unwrap().is_empty());
        assert!(
            alice_only
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["user"] == "alice"),
            "{alice_only}"
        );
        let two = admin(&addr).get("/qilin/api/audit?limit=2").expect(200);
        assert_eq!(two.as_array().unwrap().len(), 2);
        let e = &two[0];
        for key in ["time", "user", "instance", "action", "target", "outcome"] {
            assert!(!e[key].is_null(), "{key} in {e}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_filters_and_denied_columns_apply_to_rest_queries() {
    let (server, _dir, _meta) = server().await;
    let addr = server.http_addr();
    let oracle = qilin_tests::oracle(&server.source).await;
    let (dave, erin) = {
        let addr = addr.clone();
        call(move || {
            let dave = add_user(&addr, "dave", &[]);
            let erin = add_user(&addr, "erin", &["europe"]);
            grant(&addr, ssb::PROJECT, json!({"user": "dave"}), "QUERY");
            grant(&addr, ssb::PROJECT, json!({"group": "europe"}), "QUERY");
            let r = rule(
                &addr,
                json!({"table": "customer", "user": "dave", "type": "row_filter",
                       "filter": "c_region = 'ASIA'"}),
            );
            assert_eq!(r["type"], "row_filter", "{r}");
            assert_eq!(r["user"], "dave");
            assert!(!r["id"].as_str().unwrap().is_empty());
            rule(
                &addr,
                json!({"table": "customer", "group": "europe", "type": "row_filter",
                       "filter": "c_region = 'EUROPE'"}),
            );
            rule(
                &addr,
                json!({"table": "customer", "user": "dave", "type": "deny_column",
                       "column": "c_phone"}),
            );
            rule(
                &addr,
                json!({"table": "part", "user": "dave", "type": "deny_table"}),
            );
            let rules = admin(&addr)
                .get(&format!("/qilin/api/projects/{}/rules", ssb::PROJECT))
                .expect(200);
            assert_eq!(rules.as_array().unwrap().len(), 4, "{rules}");
            (dave, erin)
        })
        .await
    };

    // SSB Q3.x as dave equal the oracle with his filter added, answered by the cube.
    for name in ["Q3.1", "Q3.2", "Q3.3", "Q3.4"] {
        let q = sql(name);
        let want = oracle_rows(
            &qilin_tests::compare::oracle_query(&oracle, &with_filter(&q, "c_region = 'ASIA'"))
                .await,
        );
        let v = rest_query(&dave, &q).await;
        assert_rows(&format!("dave {name}"), &v, &want);
        assert_eq!(v["cube"], format!("CUBE[name={}]", ssb::CUBE), "{name}");
    }

    // Revenue by region: each user sees only its rows, the admin all five; run in turns on
    // the same server, so a cached answer crossing users would show.
    let all = oracle_rows(&qilin_tests::compare::oracle_query(&oracle, REGIONS).await);
    assert_eq!(all.len(), 5, "{all:?}");
    let only = |region: &str| -> Vec<Vec<String>> {
        all.iter().filter(|r| r[0] == region).cloned().collect()
    };
    let admin_http = admin(&addr);
    for round in 0..2 {
        for (who, http, want) in [
            ("dave", &dave, only("ASIA")),
            ("erin", &erin, only("EUROPE")),
            ("ADMIN", &admin_http, all.clone()),
        ] {
            let v = rest_query(http, REGIONS).await;
            assert_rows(&format!("{who} regions, round {round}"), &v, &want);
        }
    }

    // A denied column: refused by name (403), absent from SELECT * and from the catalog.
    let (d, a) = (dave.clone(), addr.clone());
    call(move || {
        for q in [
            "select c_phone from customer",
            "select c_name, c_phone from ssb.customer where c_custkey = 1",
        ] {
            let msg = refused(&d.post_json("/kylin/api/query", &json!({"sql": q})), 403);
            assert!(msg.contains("c_phone"), "{q}: {msg}");
        }
        let msg = refused(
            &d.post_json(
                "/kylin/api/query",
                &json!({"sql": "select count(*) from part"}),
            ),
            403,
        );
        assert!(msg.contains("part"), "{msg}");
        let v = d
            .post_json(
                "/kylin/api/query",
                &json!({"sql": "select * from customer", "limit": 3}),
            )
            .expect(200);
        assert_eq!(v["isException"], false, "{v}");
        let labels = names(&v["columnMetas"], "label");
        assert!(labels.contains(&"c_name".to_string()), "{labels:?}");
        assert!(!labels.iter().any(|l| l == "c_phone"), "{labels:?}");
        // Every row dave sees is an ASIA customer.
        let region = v["columnMetas"]
            .as_array()
            .unwrap()
            .iter()
            .position(|m| m["label"] == "c_region")
            .unwrap();
        for row in v["results"].as_array().unwrap() {
            assert_eq!(row[region], "ASIA", "{row}");
        }
        let tables = d
            .get(&format!(
                "/kylin/api/tables_and_columns?project={}",
                ssb::PROJECT
            ))
            .expect(200);
        let listed = names(&tables, "table_NAME");
        assert!(!listed.contains(&"part".to_string()), "{listed:?}");
        assert_eq!(listed.len(), ssb::TABLES.len() - 1, "{listed:?}");
        let customer = tables
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table_NAME"] == "customer")
            .unwrap();
        let columns = names(&customer["columns"], "column_NAME");
        assert!(!columns.contains(&"c_phone".to_string()), "{columns:?}");
        assert!(columns.contains(&"c_region".to_string()), "{columns:?}");
        let projects = d.get("/kylin/api/projects").expect(200);
        let listed: Vec<&str> = projects[0]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(!listed.contains(&"part"), "{listed:?}");

        // The refused queries are audited as dave's, denied.
        let events = admin(&a)
            .get("/qilin/api/audit?user=dave&limit=1000")
            .expect(200);
        let denied = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "query" && e["outcome"] == "denied")
            .count();
        assert!(denied >= 3, "{events}");

        // Removing the row filter: dave sees every region again.
        let rules = admin(&a)
            .get(&format!("/qilin/api/projects/{}/rules", ssb::PROJECT))
            .expect(200);
        let id = rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["user"] == "dave" && r["type"] == "row_filter")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .unwrap();
        let removed = admin(&a)
            .request("DELETE", &format!("/qilin/api/rules/{id}"), None)
            .expect(200);
        assert_eq!(removed["id"], id.as_str());
        let r = admin(&a).request("DELETE", &format!("/qilin/api/rules/{id}"), None);
        assert_eq!(r.status, 404, "{}", r.text());
    })
    .await;
    let v = rest_query(&dave, REGIONS).await;
    assert_rows("dave regions without his filter", &v, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_refuse_hostile_input_and_change_nothing() {
    let (server, _dir, _meta) = server().await;
    let addr = server.http_addr();
    call(move || {
        let adm = admin(&addr);
        let frank = add_user(&addr, "frank", &[]);
        grant(&addr, ssb::PROJECT, json!({"user": "frank"}), "QUERY");
        let users = || names(&adm.get("/qilin/api/users").expect(200), "name");
        let grants = || {
            adm.get(&format!("/qilin/api/projects/{}/grants", ssb::PROJECT))
                .expect(200)
        };
        let rules = || {
            adm.get(&format!("/qilin/api/projects/{}/rules", ssb::PROJECT))
                .expect(200)
        };
        let (users0, grants0, rules0) = (users(), grants(), rules());
        assert!(users0.contains(&"frank".to_string()), "{users0:?}");

        // Users: taken names, bad names, empty or oversized passwords, unknown fields.
        for (body, status) in [
            (json!({"name": "frank", "password": "x"}), 409),
            (json!({"name": "a b/c", "password": "x"}), 400),
            (json!({"name": "", "password": "x"}), 400),
            (json!({"name": "gina", "password": ""}), 400),
            (json!({"name": "gina", "password": "p".repeat(5000)}), 400),
            (json!({"name": "gina", "password": "x", "groups": ["bad group!"]}), 400),
            (json!({"name": "gina", "password": "x", "role": "ADMIN"}), 400),
            (json!({"name": "gina"}), 400),
        ] {
            let r = adm.post_json("/qilin/api/users", &body);
            assert_eq!(r.status, status, "{body}: {}", r.text());
            assert!(!r.json()["exception"].as_str().unwrap().is_empty());
        }
        let r = adm.post_raw("/qilin/api/users", b"{not json");
        assert_eq!(r.status, 400, "{}", r.text());
        let r = frank.post_json(
            "/qilin/api/users",
            &json!({"name": "gina", "password": "x"}),
        );
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(users(), users0, "nothing created");

        // Grants naming an unknown user, group-less body, bad role, unknown project.
        for (project, body, status) in [
            (ssb::PROJECT, json!({"user": "nobody", "role": "QUERY"}), 404),
            (ssb::PROJECT, json!({"role": "QUERY"}), 400),
            (
                ssb::PROJECT,
                json!({"user": "frank", "group": "g", "role": "QUERY"}),
                400,
            ),
            (ssb::PROJECT, json!({"user": "frank", "role": "OWNER"}), 400),
            ("nope", json!({"user": "frank", "role": "QUERY"}), 404),
        ] {
            let r = adm.post_json(&format!("/qilin/api/projects/{project}/grants"), &body);
            assert_eq!(r.status, status, "{project} {body}: {}", r.text());
        }
        let r = adm.request(
            "DELETE",
            &format!("/qilin/api/projects/{}/grants?user=nobody", ssb::PROJECT),
            None,
        );
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(grants(), grants0, "no grant changed");

        // Rules on unknown tables and columns, filters that are not predicates.
        for body in [
            json!({"table": "nope", "user": "frank", "type": "deny_table"}),
            json!({"table": "customer", "user": "frank", "type": "deny_column", "column": "nope"}),
            json!({"table": "customer", "user": "nobody", "type": "deny_table"}),
        ] {
            let r = adm.post_json(&format!("/qilin/api/projects/{}/rules", ssb::PROJECT), &body);
            assert_eq!(r.status, 404, "{body}: {}", r.text());
        }
        for body in [
            json!({"table": "customer", "user": "frank", "type": "row_filter", "filter": "c_region = "}),
            json!({"table": "customer", "user": "frank", "type": "row_filter", "filter": "nope = 1"}),
            json!({"table": "customer", "user": "frank", "type": "row_filter"}),
            json!({"table": "customer", "user": "frank", "type": "hide"}),
        ] {
            let r = adm.post_json(&format!("/qilin/api/projects/{}/rules", ssb::PROJECT), &body);
            assert!(
                r.status == 400 || r.status == 404,
                "{body}: {} {}",
                r.status,
                r.text()
            );
        }
        assert_eq!(rules(), rules0, "no rule added");

        // Credentials: malformed Basic, oversized headers, forged tokens and keys → 401.
        for header in [
            "Basic !!!".to_string(),
            "Basic ZnJhbms=".to_string(), // "frank": no colon
            format!("Basic {}", "QUJD".repeat(4000)),
            format!("Bearer {}", "x".repeat(20_000)),
            "Bearer qk_forged_secret".to_string(),
            "Bearer qk_0123456789abcdef_0123456789abcdef0123456789abcdef".to_string(),
            "Digest x".to_string(),
        ] {
            let mut h = Http::new(&addr);
            h.authorization = Some(header.clone());
            let r = h.get("/kylin/api/projects");
            assert_eq!(r.status, 401, "{}: {}", &header[..header.len().min(40)], r.text());
        }
        let r = Http::basic(&addr, "frank", "qk_forged_secret").get("/kylin/api/projects");
        assert_eq!(r.status, 401, "{}", r.text());

        // A user changes its own password, not its role; an admin disables and enables.
        let r = frank.put_json("/qilin/api/users/frank", &json!({"admin": true}));
        assert_eq!(r.status, 403, "{}", r.text());
        let r = frank.put_json("/qilin/api/users/frank", &json!({"password": ""}));
        assert_eq!(r.status, 400, "{}", r.text());
        frank
            .put_json("/qilin/api/users/frank", &json!({"password": "new-pw"}))
            .expect(200);
        assert_eq!(frank.get("/kylin/api/projects").status, 401);
        let frank = Http::basic(&addr, "frank", "new-pw");
        frank.get("/kylin/api/projects").expect(200);
        let r = adm.put_json("/qilin/api/users/nobody", &json!({"disabled": true}));
        assert_eq!(r.status, 404, "{}", r.text());
        let v = adm
            .put_json("/qilin/api/users/frank", &json!({"disabled": true}))
            .expect(200);
        assert_eq!(v["disabled"], true);
        assert_eq!(frank.get("/kylin/api/projects").status, 401);
        adm.put_json("/qilin/api/users/frank", &json!({"disabled": false}))
            .expect(200);
        frank.get("/kylin/api/projects").expect(200);

        let r = Http::basic(&addr, "frank", "wrong").post_raw("/kylin/api/user/authentication", b"");
        assert_eq!(r.status, 401, "{}", r.text());

        // API keys: one's own, shown once, working as the Basic password and as a bearer
        // token; revoked → 401 at once on this instance.
        let created = frank
            .post_json("/qilin/api/apikeys", &json!({"expires": "30d"}))
            .expect(200);
        let key = created["key"].as_str().unwrap().to_string();
        let id = created["id"].as_str().unwrap().to_string();
        assert!(key.starts_with("qk_"), "{created}");
        assert_eq!(created["user"], "frank");
        assert!(created["expires"].is_string(), "{created}");
        let listed = frank.get("/qilin/api/apikeys").expect(200);
        assert_eq!(names(&listed, "id"), vec![id.clone()]);
        assert!(!listed.to_string().contains(&key), "the secret is shown once");
        for h in [
            Http::basic(&addr, "frank", &key),
            Http::bearer(&addr, &key),
        ] {
            let v = h.get("/kylin/api/projects").expect(200);
            assert_eq!(names(&v, "name"), vec![ssb::PROJECT]);
        }
        // Another user's name with frank's key is refused.
        assert_eq!(
            Http::basic(&addr, "ADMIN", &key).get("/kylin/api/projects").status,
            401
        );
        // A key for someone else needs a global admin; bad expiry texts are 400.
        let r = frank.post_json("/qilin/api/apikeys", &json!({"user": "ADMIN"}));
        assert_eq!(r.status, 403, "{}", r.text());
        for bad in ["yesterday", "2001-01-01", "-5d"] {
            let r = frank.post_json("/qilin/api/apikeys", &json!({"expires": bad}));
            assert_eq!(r.status, 400, "{bad}: {}", r.text());
        }
        let r = frank.get("/qilin/api/apikeys?user=ADMIN");
        assert_eq!(r.status, 403, "{}", r.text());
        let all_keys = adm.get("/qilin/api/apikeys").expect(200);
        assert_eq!(names(&all_keys, "id"), vec![id.clone()]);
        let r = adm.request("DELETE", "/qilin/api/apikeys/nope", None);
        assert_eq!(r.status, 404, "{}", r.text());
        let v = frank
            .request("DELETE", &format!("/qilin/api/apikeys/{id}"), None)
            .expect(200);
        assert_eq!(v["revoked"], true, "{v}");
        assert_eq!(Http::bearer(&addr, &key).get("/kylin/api/projects").status, 401);
        assert_eq!(
            Http::basic(&addr, "frank", &key).get("/kylin/api/projects").status,
            401
        );

        // The audit log has the refused sign-ins and the refused changes.
        let events = adm.get("/qilin/api/audit?limit=10000").expect(200);
        let events = events.as_array().unwrap();
        assert!(
            events
                .iter()
                .any(|e| e["action"] == "user.create" && e["outcome"] == "failed"),
            "failed creations audited"
        );
        assert!(
            events
                .iter()
                .any(|e| e["user"] == "frank" && e["action"] == "user.create" && e["outcome"] == "denied"),
            "refused creation audited"
        );
        assert!(
            events
                .iter()
                .any(|e| e["action"] == "grant" && e["outcome"] == "failed"),
            "failed grants audited"
        );
        assert!(
            events
                .iter()
                .any(|e| e["user"] == "frank" && e["action"] == "apikey.revoke" && e["outcome"] == "ok"),
            "revocation audited"
        );
        assert!(
            events.iter().any(|e| e["user"] == "frank"
                && e["action"] == "authenticate"
                && e["outcome"] == "denied"),
            "refused credentials audited: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["user"] == "frank" && e["action"] == "sign-in" && e["outcome"] == "denied"),
            "refused sign-ins audited: {events:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_keys_expire() {
    let (server, _dir, _meta) = server().await;
    let addr = server.http_addr();
    let key = {
        let addr = addr.clone();
        call(move || {
            add_user(&addr, "hank", &[]);
            grant(&addr, ssb::PROJECT, json!({"user": "hank"}), "QUERY");
            let v = admin(&addr)
                .post_json(
                    "/qilin/api/apikeys",
                    &json!({"user": "hank", "expires": "2s"}),
                )
                .expect(200);
            assert_eq!(v["user"], "hank");
            v["key"].as_str().unwrap().to_string()
        })
        .await
    };
    let h = Http::bearer(&addr, &key);
    assert_eq!(h.get("/kylin/api/projects").status, 200);
    eventually(Duration::from_secs(30), "the 2 s key expires", || {
        (h.get("/kylin/api/projects").status == 401).then_some(())
    })
    .await;
}
