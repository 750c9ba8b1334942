//! Who may see and do what, through Flight SQL (issue 17): users, project roles, table,
//! column and row rules set up with the security actions as the default global admin, then
//! exercised as each user through the Python ADBC driver, pyarrow.flight and the Rust client:
//! a QUERY user cannot build and sees only its projects (GetDbSchemas, GetTables,
//! information_schema; NOT_FOUND for the others), a denied column is refused by name and
//! absent from `SELECT *`, row filters give the SSB answers of the oracle with the filter
//! added (cube path and pushdown), users with different filters never share a cached
//! result, API keys outlive tokens and their revocation reaches every node, the audit log
//! records it all, and hostile input is refused with a clear error, changing nothing.
//!
//! Every server here runs over a private copy of the SSB metadata (rules are written).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::ipc::reader::FileReader;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use arrow_flight::{Action, FlightInfo};
use futures::TryStreamExt;
use qilin_engine::sample::ssb;
use qilin_tests::cluster::{free_port, SharedStore};
use qilin_tests::compare::{
    compare, explain_text, has_order_by, oracle_query, run_query, status, Client, Expect,
};
use qilin_tests::corpus::ssb_queries;
use qilin_tests::server::{base64_standard, client, connect, try_connect, SsbServer};
use serde_json::{json, Value};
use tonic::Code;

const INSTALL_HINT: &str =
    "./scripts/test installs tests/requirements.txt (adbc-driver-flightsql, pyarrow) into its venv";

/// Counts, revenue and customers per region: each row filter changes it differently.
const REGION_SQL: &str = "select c_region, count(*) as n, sum(lo_revenue) as revenue \
    from lineorder, customer where lo_custkey = c_custkey group by c_region order by c_region";

fn password(user: &str) -> String {
    format!("{user}-Pa55word")
}

/// One action; its first result as JSON (`null` when it returned none), or the status.
async fn action(c: &mut Client, kind: &str, body: Value) -> Result<Value, tonic::Status> {
    let mut results = c
        .do_action(Action {
            r#type: kind.into(),
            body: body.to_string().into_bytes().into(),
        })
        .await
        .map_err(status)?;
    let first = results.try_next().await?;
    Ok(first.map_or(Value::Null, |r| {
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{kind}: not JSON: {e}"))
    }))
}

async fn ok(c: &mut Client, kind: &str, body: Value) -> Value {
    action(c, kind, body.clone())
        .await
        .unwrap_or_else(|e| panic!("{kind} {body}: {e}"))
}

/// The status of an action that must fail with `code`, its message containing `needle`.
async fn refused(c: &mut Client, kind: &str, body: Value, code: Code, needle: &str) {
    let e = action(c, kind, body.clone())
        .await
        .expect_err(&format!("{kind} {body} should fail"));
    assert_eq!(e.code(), code, "{kind} {body}: {e}");
    assert!(
        e.message().contains(needle),
        "{kind} {body}: {:?} does not name {needle:?}",
        e.message()
    );
}

/// Runs the DoGet of a catalog command's FlightInfo.
async fn fetch(c: &mut Client, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for e in info.endpoint {
        let stream = c.do_get(e.ticket.expect("ticket")).await.expect("do_get");
        out.extend(stream.try_collect::<Vec<_>>().await.expect("batches"));
    }
    out
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name(column).expect(column);
        let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).unwrap();
        let s = col.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..s.len()).map(|i| s.value(i).to_string()));
    }
    out
}

/// `sql` with `predicate` ANDed to its WHERE clause (the SSB queries have one, before
/// GROUP BY): what the oracle answers for a user with that row filter.
fn with_filter(sql: &str, predicate: &str) -> String {
    let at = sql
        .to_ascii_lowercase()
        .find(" group by ")
        .unwrap_or_else(|| panic!("no GROUP BY in {sql}"));
    format!("{} and {predicate}{}", &sql[..at], &sql[at..])
}

fn read_ipc(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    FileReader::try_new(file, None)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Creates the users of these tests (as the default global admin): each with its password,
/// `erin` in group `americas`.
async fn create_users(admin: &mut Client, users: &[&str]) {
    for u in users {
        let groups: Vec<&str> = if *u == "erin" {
            vec!["americas"]
        } else {
            vec![]
        };
        let created = ok(
            admin,
            "qilin.user.create",
            json!({"name": u, "password": password(u), "groups": groups}),
        )
        .await;
        assert_eq!(created["name"], *u, "{created}");
        assert!(created.get("password").is_none() && !created.to_string().contains("Pa55"));
    }
}

async fn grant(admin: &mut Client, role: &str, who: Value) {
    let mut body = json!({"project": ssb::PROJECT, "role": role});
    for (k, v) in who.as_object().unwrap() {
        body[k] = v.clone();
    }
    ok(admin, "qilin.grant", body).await;
}

async fn rule(admin: &mut Client, table: &str, who: Value, kind: &str, extra: Value) -> String {
    let mut body = json!({"project": ssb::PROJECT, "table": table, "type": kind});
    for (k, v) in who
        .as_object()
        .unwrap()
        .iter()
        .chain(extra.as_object().unwrap())
    {
        body[k] = v.clone();
    }
    let added = ok(admin, "qilin.acl.add", body).await;
    added["id"].as_str().expect("rule id").to_string()
}

/// A second project `hidden` with one table (the SSB customers again), seen by admins only.
async fn hidden_project(admin: &mut Client) {
    ok(
        admin,
        "qilin.project.create",
        json!({"name": "hidden", "description": "admins only"}),
    )
    .await;
    ok(
        admin,
        "qilin.table.add",
        json!({"project": "hidden", "name": "cust",
               "location": format!("{}/customer.parquet", ssb::SOURCE_DIR)}),
    )
    .await;
}

/// The Python side: runs `plan` as the users it names; the parsed `results.json` and the
/// directory of result files.
async fn run_python(uri: String, plan: Value) -> (Value, tempfile::TempDir) {
    let probe = Command::new(qilin_tests::python())
        .args(["-c", "import adbc_driver_flightsql.dbapi, pyarrow.flight"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); {INSTALL_HINT}", qilin_tests::python()));
    assert!(
        probe.status.success(),
        "the Python ADBC driver or pyarrow is missing: {INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let out = tempfile::tempdir().expect("temp dir");
    let plan_path = out.path().join("plan.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/access_adbc.py");
    let dir = out.path().join("out");
    let d = dir.clone();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(qilin_tests::python())
            .arg(&script)
            .arg(&uri)
            .arg(&plan_path)
            .arg(&d)
            .output()
            .expect("run access_adbc.py")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_ne!(run.status.code(), Some(3), "{INSTALL_HINT}: {stderr}");
    assert!(run.status.success(), "access_adbc.py failed: {stderr}");
    let results = std::fs::read(dir.join("results.json")).expect("results.json");
    (serde_json::from_slice(&results).unwrap(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_users_see_only_their_projects_columns_and_rows() {
    // Pushdown on: a row filter on a column no cube dimension covers is answered from the
    // source files, with the filter applied.
    let (server, _dir, _meta) =
        SsbServer::start_private("kylin.query.pushdown.enabled=true\n").await;
    let mut admin = server.client().await;
    hidden_project(&mut admin).await;
    create_users(&mut admin, &["bob", "carol", "dave", "erin", "frank"]).await;
    for u in ["bob", "carol", "dave", "frank"] {
        grant(&mut admin, "QUERY", json!({"user": u})).await;
    }
    grant(&mut admin, "QUERY", json!({"group": "americas"})).await;
    let filters = [
        ("carol", "c_region = 'ASIA'"),
        ("frank", "c_mktsegment = 'BUILDING'"),
    ];
    for (u, f) in filters {
        rule(
            &mut admin,
            "customer",
            json!({"user": u}),
            "row_filter",
            json!({"filter": f}),
        )
        .await;
    }
    rule(
        &mut admin,
        "customer",
        json!({"group": "americas"}),
        "row_filter",
        json!({"filter": "c_region = 'AMERICA'"}),
    )
    .await;
    rule(
        &mut admin,
        "customer",
        json!({"user": "dave"}),
        "deny_column",
        json!({"column": "c_phone"}),
    )
    .await;
    rule(
        &mut admin,
        "part",
        json!({"user": "dave"}),
        "deny_table",
        json!({}),
    )
    .await;

    // What each user should see of the row-filtered queries (None: everything).
    let row_users: [(&str, Option<&str>); 5] = [
        ("carol", Some("c_region = 'ASIA'")),
        ("erin", Some("c_region = 'AMERICA'")),
        ("bob", None),
        // Again after the others: a cached result of theirs must not come back.
        ("carol", Some("c_region = 'ASIA'")),
        ("frank", Some("c_mktsegment = 'BUILDING'")),
    ];
    let mut queries: Vec<(String, String)> = ssb_queries()
        .into_iter()
        .filter(|(n, _)| n.starts_with("Q3."))
        .map(|(n, s)| (n.replace('.', "_"), s))
        .collect();
    assert_eq!(queries.len(), 4, "SSB Q3.1-Q3.4");
    // Q3.1 on America: rows for erin's filter, none for carol's.
    let america = queries[0].1.replace("'ASIA'", "'AMERICA'");
    assert_ne!(america, queries[0].1);
    queries.push(("Q3_1_america".into(), america));
    queries.push(("regions".into(), REGION_SQL.into()));
    let mut runs = Vec::new();
    let mut expected = Vec::new();
    for (round, (user, filter)) in row_users.iter().enumerate() {
        for (name, sql) in &queries {
            let label = format!("r{round}_{user}_{name}");
            runs.push(json!([label, user, sql]));
            let want = filter.map_or_else(|| sql.clone(), |f| with_filter(sql, f));
            expected.push((label, want, sql.clone()));
        }
    }
    let q31 = &queries[0].1;
    for user in ["carol", "erin", "frank"] {
        runs.push(json!([
            format!("explain_{user}"),
            user,
            format!("EXPLAIN {q31}")
        ]));
    }
    let more = [
        ("dave_star", "dave", "select * from customer limit 3"),
        ("dave_phone", "dave", "select c_name, c_phone from customer"),
        ("dave_part", "dave", "select count(*) from ssb.part"),
        (
            "dave_columns",
            "dave",
            "select column_name from information_schema.columns \
             where table_schema = 'ssb' and table_name = 'customer'",
        ),
        (
            "bob_schemas",
            "bob",
            "select distinct table_schema from information_schema.tables",
        ),
        ("bob_hidden", "bob", "select count(*) from hidden.cust"),
        ("admin_hidden", "ADMIN", "select count(*) from hidden.cust"),
    ];
    for (label, user, sql) in more {
        runs.push(json!([label, user, sql]));
    }
    let mut passwords = json!({"ADMIN": "KYLIN"});
    for u in ["bob", "carol", "dave", "erin", "frank"] {
        passwords[u] = password(u).into();
    }
    let build = json!({"cube": ssb::CUBE});
    let plan = json!({
        "passwords": passwords,
        "runs": runs,
        "objects": ["bob", "dave", "ADMIN"],
        "actions": [
            ["bob_build", "bob", "qilin.build", build],
            ["bob_projects", "bob", "qilin.project.list", {}],
            ["bob_hidden_models", "bob", "qilin.model.list", {"project": "hidden"}],
            ["bob_grant", "bob", "qilin.grant",
             {"project": "ssb", "role": "ADMIN", "user": "bob"}],
        ],
    });
    let (results, out) = run_python(server.process.uri(), plan).await;
    let dir = out.path().join("out");
    let run = |label: &str| -> &Value {
        results["runs"]
            .get(label)
            .unwrap_or_else(|| panic!("no result for {label}: {results}"))
    };
    let batches = |label: &str| -> Vec<RecordBatch> {
        assert!(
            run(label).get("rows").is_some(),
            "{label} failed: {}",
            run(label)
        );
        read_ipc(&dir.join(format!("{label}.arrow")))
    };
    let error = |label: &str| -> String {
        run(label)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{label} should have failed: {}", run(label)))
            .to_string()
    };

    // Row filters: every answer equals the oracle with the user's filter added.
    let ctx = qilin_tests::oracle(&server.source).await;
    let mut failures = Vec::new();
    for (label, want_sql, sql) in &expected {
        let got = batches(label);
        let want = oracle_query(&ctx, want_sql).await;
        let expect = Expect {
            ordered: has_order_by(sql),
            approx: vec![],
        };
        if let Err(e) = compare(&got, &want, &expect) {
            failures.push(format!("{label}: {e}\n    {want_sql}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The filters really differ (so the cache test above means something).
    let regions = |label: &str| strings(&batches(label), "c_region");
    assert_eq!(regions("r0_carol_regions"), ["ASIA"]);
    assert_eq!(regions("r1_erin_regions"), ["AMERICA"]);
    assert_eq!(regions("r2_bob_regions").len(), 5);
    assert_eq!(regions("r3_carol_regions"), ["ASIA"]);
    let rows = |label: &str| run(label)["rows"].as_u64().unwrap_or(0);
    assert!(rows("r0_carol_Q3_1") > 0 && rows("r1_erin_Q3_1_america") > 0);
    assert_eq!(rows("r1_erin_Q3_1") + rows("r0_carol_Q3_1_america"), 0);
    assert!(rows("r4_frank_Q3_1") < rows("r2_bob_Q3_1"));
    // c_region is a dimension: still the cube; c_mktsegment is not: pushed down.
    for (user, cube) in [("carol", true), ("erin", true), ("frank", false)] {
        let text = explain_text(&batches(&format!("explain_{user}"))).to_lowercase();
        let plan_types = strings(&batches(&format!("explain_{user}")), "plan_type");
        let uses_cuboid = plan_types.iter().any(|t| t == "cuboid");
        assert_eq!(uses_cuboid, cube, "{user}'s EXPLAIN:\n{text}");
        assert!(
            !cube || text.contains(ssb::CUBE),
            "{user}'s EXPLAIN:\n{text}"
        );
    }

    // A denied column: absent from SELECT * and information_schema, refused by name.
    let star = batches("dave_star");
    let columns: Vec<String> = star[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().to_lowercase())
        .collect();
    assert!(
        columns.contains(&"c_name".to_string()) && !columns.contains(&"c_phone".to_string()),
        "{columns:?}"
    );
    let listed = strings(&batches("dave_columns"), "column_name");
    assert!(
        listed.iter().any(|c| c == "c_name") && !listed.iter().any(|c| c == "c_phone"),
        "{listed:?}"
    );
    let e = error("dave_phone");
    assert!(
        e.contains("c_phone") && e.contains("PermissionDenied"),
        "{e}"
    );
    let e = error("dave_part");
    assert!(e.contains("part") && e.contains("PermissionDenied"), "{e}");

    // Projects: bob sees ssb only, anywhere he looks; the other one is NOT_FOUND to him.
    let schemas = strings(&batches("bob_schemas"), "table_schema");
    assert!(
        schemas.contains(&"ssb".to_string()) && !schemas.contains(&"hidden".to_string()),
        "{schemas:?}"
    );
    let e = error("bob_hidden");
    assert!(e.contains("NotFound"), "{e}");
    let counted: usize = batches("admin_hidden").iter().map(|b| b.num_rows()).sum();
    assert_eq!(counted, 1, "the hidden project's table answers its admin");
    let objects = &results["objects"];
    assert_eq!(objects["bob"]["schemas"], json!(["ssb"]), "{objects}");
    let admin_schemas = objects["ADMIN"]["schemas"].as_array().unwrap();
    assert!(admin_schemas.contains(&json!("hidden")), "{objects}");
    let dave_tables = objects["dave"]["tables"].as_object().unwrap();
    assert!(!dave_tables.contains_key("ssb.part"), "{objects}");
    let customer: Vec<&str> = dave_tables["ssb.customer"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        customer.contains(&"c_name") && !customer.contains(&"c_phone"),
        "{customer:?}"
    );

    // Actions: a QUERY user cannot build or grant; lists leave other projects out.
    let actions = &results["actions"];
    let build = actions["bob_build"]["error"].as_str().unwrap_or_default();
    assert!(
        build.contains("OPERATION") && actions["bob_build"]["kind"] == "FlightUnauthorizedError",
        "{actions}"
    );
    let projects = &actions["bob_projects"]["result"][0];
    let names: Vec<&str> = projects
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["ssb"], "{projects}");
    let models = actions["bob_hidden_models"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        models.contains("hidden") && actions["bob_hidden_models"]["kind"] != "",
        "{actions}"
    );
    let grant = actions["bob_grant"]["error"].as_str().unwrap_or_default();
    assert!(grant.contains("ADMIN"), "{actions}");

    // The audit log saw the refusals, with user and outcome.
    let events = ok(&mut admin, "qilin.audit", json!({"limit": 1000})).await;
    let events = events.as_array().expect("events");
    let has = |user: &str, action: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e["user"] == user && e["action"] == action && e["outcome"] == outcome)
    };
    assert!(has("bob", "cube.build", "denied"), "{events:?}");
    assert!(has("bob", "grant", "denied"), "{events:?}");
    assert!(has("dave", "query", "denied"), "{events:?}");
    assert!(has("ADMIN", "acl.add", "ok"), "{events:?}");
    assert!(has("ADMIN", "user.create", "ok"), "{events:?}");
    assert!(
        !events.iter().any(|e| e.to_string().contains("Pa55word")),
        "a password reached the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_their_roles_and_refusals_change_nothing() {
    let (server, _dir, _meta) = SsbServer::start_private("").await;
    let addr = server.process.addr.clone();
    let mut admin = server.client().await;
    hidden_project(&mut admin).await;
    create_users(&mut admin, &["bob", "olga", "mona", "padma"]).await;
    for (u, role) in [
        ("bob", "QUERY"),
        ("olga", "OPERATION"),
        ("mona", "MANAGEMENT"),
        ("padma", "ADMIN"),
    ] {
        grant(&mut admin, role, json!({"user": u})).await;
    }
    let mut bob = connect(&addr, "bob", &password("bob")).await;
    let mut olga = connect(&addr, "olga", &password("olga")).await;
    let mut mona = connect(&addr, "mona", &password("mona")).await;
    let mut padma = connect(&addr, "padma", &password("padma")).await;

    // Building needs OPERATION in the cube's project.
    let build = json!({"cube": ssb::CUBE, "start": "2030-01-01", "end": "2030-02-01"});
    refused(
        &mut bob,
        "qilin.build",
        build.clone(),
        Code::PermissionDenied,
        "OPERATION",
    )
    .await;
    let job = ok(&mut olga, "qilin.build", build).await;
    assert_eq!(job["cube"], ssb::CUBE, "{job}");

    // Tables, models and cubes need MANAGEMENT; reading needs QUERY.
    let table = json!({"project": "ssb", "name": "customers_again",
                       "location": format!("{}/customer.parquet", ssb::SOURCE_DIR)});
    refused(
        &mut olga,
        "qilin.table.add",
        table.clone(),
        Code::PermissionDenied,
        "MANAGEMENT",
    )
    .await;
    ok(&mut mona, "qilin.table.add", table).await;
    ok(
        &mut mona,
        "qilin.table.drop",
        json!({"project": "ssb", "name": "customers_again"}),
    )
    .await;
    refused(
        &mut bob,
        "qilin.cube.drop",
        json!({"name": ssb::CUBE}),
        Code::PermissionDenied,
        "MANAGEMENT",
    )
    .await;
    let cube = ok(&mut bob, "qilin.cube.get", json!({"name": ssb::CUBE})).await;
    assert_eq!(cube["name"], ssb::CUBE);
    // Projects are global admins' business.
    refused(
        &mut padma,
        "qilin.project.create",
        json!({"name": "mine"}),
        Code::PermissionDenied,
        "global admin",
    )
    .await;
    // Another project: NOT_FOUND, never PERMISSION_DENIED, and absent from every list.
    for (kind, body, name) in [
        ("qilin.table.list", json!({"project": "hidden"}), "hidden"),
        (
            "qilin.table.show",
            json!({"project": "hidden", "name": "cust"}),
            "hidden",
        ),
        ("qilin.cube.list", json!({"project": "hidden"}), "hidden"),
        (
            "qilin.table.drop",
            json!({"project": "hidden", "name": "cust"}),
            "hidden",
        ),
    ] {
        refused(&mut mona, kind, body, Code::NotFound, name).await;
    }
    let projects = ok(&mut bob, "qilin.project.list", json!({})).await;
    assert_eq!(projects.as_array().unwrap().len(), 1, "{projects}");
    let all = ok(&mut admin, "qilin.project.list", json!({})).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // Metadata calls: one catalog, one schema, its tables only.
    let info = bob
        .get_db_schemas(CommandGetDbSchemas::default())
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut bob, info).await, "db_schema_name"),
        ["ssb"]
    );
    let info = bob.get_tables(CommandGetTables::default()).await.unwrap();
    let schemas = strings(&fetch(&mut bob, info).await, "db_schema_name");
    assert!(
        !schemas.is_empty() && schemas.iter().all(|s| s == "ssb"),
        "{schemas:?}"
    );
    let info = admin.get_tables(CommandGetTables::default()).await.unwrap();
    let schemas = strings(&fetch(&mut admin, info).await, "db_schema_name");
    assert!(schemas.contains(&"hidden".to_string()), "{schemas:?}");

    // Grants need project ADMIN; a grant naming an unknown user or project changes nothing.
    let grants = ok(&mut admin, "qilin.grant.list", json!({})).await;
    refused(
        &mut bob,
        "qilin.grant",
        json!({"project": "ssb", "role": "QUERY", "user": "mona"}),
        Code::PermissionDenied,
        "ADMIN",
    )
    .await;
    refused(
        &mut padma,
        "qilin.grant",
        json!({"project": "ssb", "role": "QUERY", "user": "nobody"}),
        Code::NotFound,
        "nobody",
    )
    .await;
    refused(
        &mut padma,
        "qilin.grant",
        json!({"project": "hidden", "role": "QUERY", "user": "bob"}),
        Code::NotFound,
        "hidden",
    )
    .await;
    refused(
        &mut admin,
        "qilin.grant",
        json!({"project": "nope", "role": "QUERY", "user": "bob"}),
        Code::NotFound,
        "nope",
    )
    .await;
    refused(
        &mut admin,
        "qilin.grant",
        json!({"project": "ssb", "role": "OWNER", "user": "bob"}),
        Code::InvalidArgument,
        "OWNER",
    )
    .await;
    refused(
        &mut admin,
        "qilin.grant",
        json!({"project": "ssb", "role": "QUERY", "user": "bob", "group": "g"}),
        Code::InvalidArgument,
        "exactly one",
    )
    .await;
    assert_eq!(ok(&mut admin, "qilin.grant.list", json!({})).await, grants);
    // padma administers ssb: she may grant there, and sees only ssb's grants.
    ok(
        &mut padma,
        "qilin.grant",
        json!({"project": "ssb", "role": "QUERY", "user": "olga"}),
    )
    .await;
    ok(
        &mut padma,
        "qilin.grant",
        json!({"project": "ssb", "role": "OPERATION", "user": "olga"}),
    )
    .await;
    let listed = ok(&mut padma, "qilin.grant.list", json!({})).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["project"] == "ssb"),
        "{listed}"
    );
    // Bad rules: unknown column, a filter that is no predicate over the table.
    let rules = ok(&mut admin, "qilin.acl.list", json!({})).await;
    refused(
        &mut padma,
        "qilin.acl.add",
        json!({"project": "ssb", "table": "customer", "user": "bob",
               "type": "deny_column", "column": "c_nope"}),
        Code::NotFound,
        "c_nope",
    )
    .await;
    let e = action(
        &mut padma,
        "qilin.acl.add",
        json!({"project": "ssb", "table": "customer", "user": "bob",
               "type": "row_filter", "filter": "lo_revenue > 0"}),
    )
    .await
    .expect_err("a filter over another table's column");
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::NotFound),
        "{e}"
    );
    assert_eq!(ok(&mut admin, "qilin.acl.list", json!({})).await, rules);

    // Users: global admins only (a user may change its own password).
    refused(
        &mut padma,
        "qilin.user.create",
        json!({"name": "eve", "password": "x"}),
        Code::PermissionDenied,
        "global admin",
    )
    .await;
    let users = ok(&mut admin, "qilin.user.list", json!({})).await;
    refused(
        &mut admin,
        "qilin.user.create",
        json!({"name": "eve", "password": "x".repeat(2000)}),
        Code::InvalidArgument,
        "password",
    )
    .await;
    refused(
        &mut admin,
        "qilin.user.create",
        json!({"name": "../eve", "password": "x"}),
        Code::InvalidArgument,
        "eve",
    )
    .await;
    assert_eq!(ok(&mut admin, "qilin.user.list", json!({})).await, users);
    assert!(!users.to_string().contains("Pa55"), "{users}");
    ok(
        &mut bob,
        "qilin.user.passwd",
        json!({"name": "bob", "password": "new-Pa55word"}),
    )
    .await;
    refused(
        &mut bob,
        "qilin.user.passwd",
        json!({"name": "olga", "password": "x"}),
        Code::PermissionDenied,
        "global admin",
    )
    .await;
    let e = try_connect(&addr, "bob", &password("bob"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("unauthenticated")
            || e.to_string().contains("password"),
        "{e}"
    );
    let mut bob = connect(&addr, "bob", "new-Pa55word").await;
    run_query(&mut bob, "select count(*) from dates")
        .await
        .unwrap();

    // Hostile credentials: UNAUTHENTICATED, nothing else.
    let big = "x".repeat(9 * 1024);
    for header in [
        "Basic !!!not base64!!!".to_string(),
        format!("Basic {}", base64_standard(b"no colon here")),
        format!("Basic {}", base64_standard(format!("bob:{big}").as_bytes())),
        format!("Bearer {big}"),
        "Bearer qk_forged_0123456789abcdef0123456789abcdef".to_string(),
        "Digest realm=x".to_string(),
    ] {
        let e = query_with_header(&addr, &header).await.unwrap_err();
        assert_eq!(
            e.code(),
            Code::Unauthenticated,
            "{}: {e}",
            &header[..20.min(header.len())]
        );
    }
    // A key that expires: accepted, then refused.
    let key = ok(
        &mut admin,
        "qilin.apikey.create",
        json!({"user": "bob", "expires": "2s"}),
    )
    .await;
    let secret = key["key"].as_str().expect("the key, once").to_string();
    query_with_header(&addr, &format!("Bearer {secret}"))
        .await
        .expect("a fresh key works");
    let listed = ok(&mut bob, "qilin.apikey.list", json!({})).await;
    assert!(
        !listed.to_string().contains(&secret),
        "a listing shows the secret"
    );
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match query_with_header(&addr, &format!("Bearer {secret}")).await {
            Err(e) if e.code() == Code::Unauthenticated => break,
            r => assert!(Instant::now() < deadline, "the key still works: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    refused(
        &mut bob,
        "qilin.apikey.create",
        json!({"user": "olga"}),
        Code::PermissionDenied,
        "global admin",
    )
    .await;
    refused(
        &mut admin,
        "qilin.apikey.create",
        json!({"user": "bob", "expires": "yesterday"}),
        Code::InvalidArgument,
        "expires",
    )
    .await;

    // A disabled user's token stops working at once.
    ok(&mut admin, "qilin.user.disable", json!({"name": "bob"})).await;
    let e = run_query(&mut bob, "select count(*) from dates")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");

    // The audit log: admins only; it names users and outcomes.
    refused(
        &mut padma,
        "qilin.audit",
        json!({}),
        Code::PermissionDenied,
        "global admin",
    )
    .await;
    let events = ok(&mut admin, "qilin.audit", json!({"limit": 1000})).await;
    let events = events.as_array().expect("events");
    let has = |user: &str, action: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e["user"] == user && e["action"] == action && e["outcome"] == outcome)
    };
    assert!(has("bob", "cube.build", "denied"), "{events:?}");
    assert!(has("olga", "cube.build", "ok"), "{events:?}");
    assert!(has("mona", "table.add", "ok"), "{events:?}");
    assert!(has("mona", "table.drop", "denied"), "{events:?}");
    assert!(has("padma", "grant", "ok"), "{events:?}");
    assert!(has("padma", "grant", "failed"), "{events:?}");
    assert!(has("ADMIN", "user.disable", "ok"), "{events:?}");
    assert!(has("bob", "sign-in", "ok"), "{events:?}");
    assert!(has("bob", "sign-in", "denied"), "{events:?}");
    let bobs = ok(
        &mut admin,
        "qilin.audit",
        json!({"user": "bob", "limit": 3}),
    )
    .await;
    let bobs = bobs.as_array().unwrap();
    assert!(
        bobs.len() <= 3 && bobs.iter().all(|e| e["user"] == "bob"),
        "{bobs:?}"
    );
    let text = serde_json::to_string(events).unwrap();
    assert!(
        !text.contains("Pa55word") && !text.contains(&secret),
        "a secret reached the audit log"
    );
}

/// The schemas GetDbSchemas lists to `c`, or the status it failed with.
async fn schemas_of(c: &mut Client) -> Result<Vec<String>, tonic::Status> {
    let info = c
        .get_db_schemas(CommandGetDbSchemas::default())
        .await
        .map_err(status)?;
    let mut out = Vec::new();
    for e in info.endpoint {
        let s = c.do_get(e.ticket.expect("ticket")).await.map_err(status)?;
        out.extend(s.try_collect::<Vec<_>>().await.map_err(status)?);
    }
    Ok(strings(&out, "db_schema_name"))
}

/// A query sent with exactly this `authorization` header (no handshake).
async fn query_with_header(addr: &str, header: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
    let mut c = client(addr).await;
    c.set_header("authorization", header);
    run_query(&mut c, "select count(*) from dates").await
}

/// Two query nodes on one shared store, each following it on its own (no notifications
/// between them, a 2 s poll interval), tokens living 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_outlives_its_token_and_revocation_reaches_every_node() {
    const POLL: Duration = Duration::from_secs(2);
    let store = SharedStore::new().await;
    let exe = qilin_tests::server_exe();
    let node = |label: &str| {
        let port = free_port();
        let props = format!(
            "{}kylin.server.mode=query\nkylin.server.port={port}\nkylin.rest.servers=\n\
             kylin.server.poll-seconds={}\nkylin.security.token-ttl-seconds=2\n",
            store.base_properties(),
            POLL.as_secs()
        );
        qilin_tests::cluster::Node::on_port(label, &exe, &props, port)
    };
    let (a, b) = (node("a"), node("b"));
    let mut admin = connect(&a.addr, "ADMIN", "KYLIN").await;
    create_users(&mut admin, &["tool"]).await;
    grant(&mut admin, "QUERY", json!({"user": "tool"})).await;
    let created = ok(&mut admin, "qilin.apikey.create", json!({"user": "tool"})).await;
    let key = created["key"].as_str().expect("key").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    let bearer = format!("Bearer {key}");
    let basic = format!(
        "Basic {}",
        base64_standard(format!("tool:{key}").as_bytes())
    );

    // The token from a password handshake dies after 2 s; the key does not.
    let mut tool = connect(&a.addr, "tool", &password("tool")).await;
    assert_eq!(schemas_of(&mut tool).await.unwrap(), ["ssb"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match schemas_of(&mut tool).await {
            Err(e) if e.code() == Code::Unauthenticated => break,
            r => assert!(Instant::now() < deadline, "the token still works: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in [&a, &b] {
        for h in [&bearer, &basic] {
            let mut c = client(&n.addr).await;
            c.set_header("authorization", h.as_str());
            assert_eq!(schemas_of(&mut c).await.unwrap(), ["ssb"], "{}", n.addr);
        }
        // The key as the handshake's password gives a token too.
        connect(&n.addr, "tool", &key).await;
    }

    // Revoked on A: refused there at once, on B within one poll interval.
    let mut admin = connect(&a.addr, "ADMIN", "KYLIN").await;
    let revoked = ok(&mut admin, "qilin.apikey.revoke", json!({"id": id})).await;
    assert_eq!(revoked["revoked"], true, "{revoked}");
    let mut ca = client(&a.addr).await;
    ca.set_header("authorization", bearer.as_str());
    assert_eq!(
        schemas_of(&mut ca).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let revoked_at = Instant::now();
    let mut cb = client(&b.addr).await;
    cb.set_header("authorization", bearer.as_str());
    loop {
        match schemas_of(&mut cb).await {
            Err(e) if e.code() == Code::Unauthenticated => break,
            r => assert!(
                revoked_at.elapsed() < POLL + Duration::from_millis(1500),
                "node B still accepts the revoked key after {:?}: {r:?}",
                revoked_at.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "node B refused the revoked key after {:?}",
        revoked_at.elapsed()
    );
    let e = try_connect(&b.addr, "tool", &key).await.unwrap_err();
    assert!(!e.to_string().is_empty());

    let events = ok(&mut admin, "qilin.audit", json!({"limit": 1000})).await;
    let events = events.as_array().expect("events");
    assert!(
        events.iter().any(|e| e["user"] == "ADMIN"
            && e["action"] == "apikey.revoke"
            && e["outcome"] == "ok"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["user"] == "tool" && e["action"] == "sign-in" && e["outcome"] == "ok"),
        "{events:?}"
    );
    assert!(!serde_json::to_string(events).unwrap().contains(&key));
}
