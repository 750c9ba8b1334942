//! Projects, models and cubes as JSON documents end to end: `qilin-jobs project|model|cube`
//! (put, get, list, drop, plan; segments of an earlier descriptor turning STALE until
//! refreshed) and the same operations as Flight actions on a running `qilin-server`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::Action;
use futures::TryStreamExt;
use qilin_engine::metadata::{managers::Metadata, LocalResourceStore};
use qilin_engine::model::desc::to_json;
use qilin_engine::sample::ssb;
use qilin_tests::cluster::{eventually, free_port, SECRET};
use qilin_tests::compare::{status, Client};
use qilin_tests::server::{client, connect, shared_ssb_source_dir, ssb_properties, ServerProcess};
use tonic::Code;

const SCALE: f64 = 0.01;

/// The shipped example documents (`conf/examples/ssb`).
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conf/examples/ssb")
        .join(name)
}

/// A store with project `ssb` and the SSB tables registered (no model, no cube), over the
/// shared SSB source.
struct Store {
    dir: tempfile::TempDir,
    source: PathBuf,
    conf: PathBuf,
}

impl Store {
    async fn new(create_project: bool) -> Store {
        let source = shared_ssb_source_dir(SCALE).await;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("kylin.properties");
        std::fs::write(&conf, ssb_properties(dir.path(), &source, "")).unwrap();
        let store = Store { dir, source, conf };
        if create_project {
            store.meta().save_project(&ssb::project()).unwrap();
        }
        store
    }

    fn meta(&self) -> Metadata {
        Metadata::new(Arc::new(
            LocalResourceStore::open(self.dir.path().join("meta")).unwrap(),
        ))
    }

    fn register_tables(&self) {
        let meta = self.meta();
        for t in ssb::tables(&self.source).unwrap() {
            meta.save_table(&t).unwrap();
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(qilin_tests::workspace_exe("qilin-jobs"))
            .arg("--conf")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    /// Segment directories (not `_dict`: global dictionaries outlive segments and cubes).
    fn segment_dirs(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("segments"))
            .map(|d| {
                d.filter(|e| e.as_ref().map(|e| e.file_name() != "_dict").unwrap_or(true))
                    .count()
            })
            .unwrap_or(0)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn ok(out: Output) -> (String, String) {
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{o}\nstderr:\n{e}",
        out.status
    );
    (o, e)
}

fn fails_with(out: Output, needles: &[&str]) {
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {e}");
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in stderr: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

/// The example cube without its last measure: another layout.
fn smaller_cube() -> String {
    let mut cube = ssb::cube();
    cube.measures.pop();
    String::from_utf8(to_json(&cube)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_puts_gets_plans_and_drops_documents() {
    let store = Store::new(false).await;
    let model_file = example("ssb_model.json");
    let cube_file = example("ssb_cube.json");
    let (model_file, cube_file) = (model_file.to_str().unwrap(), cube_file.to_str().unwrap());

    let (_, err) = ok(store.run(&["project", "create", "ssb", "--description", "SSB"]));
    assert!(err.contains("created project ssb"), "{err}");
    fails_with(
        store.run(&["project", "create", "ssb"]),
        &["project ssb already exists"],
    );
    // No tables yet: the model names one the project does not have.
    fails_with(
        store.run(&["model", "put", model_file]),
        &["model ssb_model", "lineorder"],
    );
    store.register_tables();

    // Bad files: syntax (file, line), unknown field (file, path), unknown column (cube).
    let broken = store.write("broken.json", "{\"name\": \"m\",\n \"project\": ");
    fails_with(
        store.run(&["model", "put", &broken]),
        &["broken.json", "line 2"],
    );
    let unknown = store.write(
        "unknown.json",
        &text(&std::fs::read(model_file).unwrap())
            .replace("\"join\": \"inner\"", "\"join\": \"inner\", \"colour\": 1"),
    );
    fails_with(
        store.run(&["model", "put", &unknown]),
        &["unknown.json", "lookups[0]", "colour"],
    );
    fails_with(
        store.run(&["model", "put", "/no/such/file.json"]),
        &["cannot read /no/such/file.json"],
    );
    fails_with(
        store.run(&["model", "put", "--project", "other", model_file]),
        &["\"ssb\"", "other"],
    );

    let (_, err) = ok(store.run(&["model", "put", "--project", "ssb", model_file]));
    assert!(err.contains("created model ssb_model"), "{err}");
    let bad_cube = store.write(
        "bad_cube.json",
        &text(&std::fs::read(cube_file).unwrap()).replace("\"c_city\"", "\"c_town\""),
    );
    fails_with(
        store.run(&["cube", "put", &bad_cube]),
        &["cube ssb_cube", "c_town"],
    );
    fails_with(
        store.run(&["cube", "get", "ssb_cube"]),
        &["cube ssb_cube not found"],
    );

    // The plan validates and estimates without writing.
    let (plan, _) = ok(store.run(&["cube", "plan", cube_file]));
    assert!(
        plan.contains("149 cuboids") && plan.contains("customer.c_city"),
        "{plan}"
    );
    let (json, _) = ok(store.run(&["cube", "plan", cube_file, "--json"]));
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan["total_cuboids"], 149);
    let fact_rows = plan["fact_rows"].as_u64().unwrap();
    assert!(fact_rows > 50_000, "{fact_rows}");
    let base = &plan["cuboids"][0];
    assert_eq!(
        base["rows"].as_u64(),
        Some(fact_rows),
        "the base cuboid is capped by the fact rows"
    );
    fails_with(store.run(&["cube", "plan", &bad_cube]), &["c_town"]);
    fails_with(store.run(&["cube", "get", "ssb_cube"]), &["not found"]);

    // Put, get: what get prints is the file (plus a newline), and putting it back changes
    // nothing.
    let (_, err) = ok(store.run(&["cube", "put", cube_file]));
    assert!(
        err.contains("created cube ssb_cube") && err.contains("149 cuboids"),
        "{err}"
    );
    let (got, _) = ok(store.run(&["cube", "get", "ssb_cube"]));
    assert_eq!(
        got,
        format!("{}\n", text(&std::fs::read(cube_file).unwrap()))
    );
    let again = store.write("again.json", &got);
    ok(store.run(&["cube", "put", &again]));
    assert_eq!(ok(store.run(&["cube", "get", "ssb_cube"])).0, got);
    let (got_model, _) = ok(store.run(&["model", "get", "ssb_model"]));
    assert_eq!(
        got_model.trim_end(),
        text(&std::fs::read(model_file).unwrap())
    );

    let (list, _) = ok(store.run(&["cube", "list", "--project", "ssb"]));
    assert!(list.contains("ssb_cube") && list.contains("149"), "{list}");
    let (list, _) = ok(store.run(&["model", "list"]));
    assert!(
        list.contains("ssb_model") && list.contains("lineorder") && list.contains("ssb_cube"),
        "{list}"
    );
    let (list, _) = ok(store.run(&["project", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("ssb ") && l.contains("SSB")),
        "{list}"
    );
    fails_with(
        store.run(&["cube", "list", "--project", "nope"]),
        &["project nope not found"],
    );

    // Two segments, then a descriptor change: both turn STALE, merge refuses them, a
    // refresh rebuilds one under the new descriptor.
    for (s, e) in [("1992-01-01", "1993-01-01"), ("1993-01-01", "1994-01-01")] {
        ok(store.run(&["build", "--cube", "ssb_cube", "--start", s, "--end", e]));
    }
    let smaller = store.write("smaller.json", &smaller_cube());
    let (_, err) = ok(store.run(&["cube", "put", &smaller]));
    assert!(
        err.contains("updated cube ssb_cube")
            && err.contains("2 READY segment(s)")
            && err.contains("refresh --cube ssb_cube --segment 19920101000000_19930101000000"),
        "{err}"
    );
    let (segs, _) = ok(store.run(&["segments", "--cube", "ssb_cube"]));
    assert_eq!(segs.matches("STALE").count(), 2, "{segs}");
    fails_with(
        store.run(&[
            "merge",
            "--cube",
            "ssb_cube",
            "--start",
            "1992-01-01",
            "--end",
            "1994-01-01",
        ]),
        &[
            "19920101000000_19930101000000",
            "earlier descriptor",
            "refresh",
        ],
    );
    ok(store.run(&[
        "refresh",
        "--cube",
        "ssb_cube",
        "--segment",
        "19920101000000_19930101000000",
    ]));
    let (segs, _) = ok(store.run(&["segments", "--cube", "ssb_cube"]));
    assert_eq!(segs.matches("STALE").count(), 1, "{segs}");
    assert_eq!(segs.matches("READY").count(), 1, "{segs}");

    // Drops: refused while something depends on the object, then in order.
    fails_with(
        store.run(&["model", "drop", "ssb_model"]),
        &["used by cube ssb_cube"],
    );
    fails_with(
        store.run(&["project", "drop", "ssb"]),
        &["project ssb still has cube ssb_cube"],
    );
    assert_eq!(store.segment_dirs(), 2);
    let (_, err) = ok(store.run(&["cube", "drop", "ssb_cube"]));
    assert!(
        err.contains("dropped cube ssb_cube and 2 segment(s)"),
        "{err}"
    );
    assert_eq!(store.segment_dirs(), 0, "the segments' data is deleted");
    fails_with(
        store.run(&["cube", "drop", "ssb_cube"]),
        &["cube ssb_cube not found"],
    );
    ok(store.run(&["model", "drop", "ssb_model"]));
    fails_with(
        store.run(&["project", "drop", "ssb"]),
        &["project ssb still has table"],
    );
}

/// Calls a catalog action; the result body, or the status.
async fn action(
    c: &mut Client,
    kind: &str,
    body: serde_json::Value,
) -> Result<Vec<u8>, tonic::Status> {
    let mut results = c
        .do_action(Action {
            r#type: kind.into(),
            body: serde_json::to_vec(&body).unwrap().into(),
        })
        .await
        .map_err(status)?;
    let first = results.try_next().await?.expect("one result");
    Ok(first.body.to_vec())
}

async fn action_json(c: &mut Client, kind: &str, body: serde_json::Value) -> serde_json::Value {
    let bytes = action(c, kind, body)
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{kind}: result is not JSON: {e}"))
}

fn code_of(r: Result<Vec<u8>, tonic::Status>) -> (Code, String) {
    let e = r.expect_err("an error");
    (e.code(), e.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_actions_manage_documents_and_notify_peers() {
    let store = Store::new(true).await;
    store.register_tables();
    // B is told by A: its own polling is slowed down so only the notification explains a
    // quick reload.
    let (port_a, port_b) = (free_port(), free_port());
    let extra = |peers: &str| {
        format!(
            "kylin.server.mode=query\nkylin.security.token-secret={SECRET}\n\
             kylin.rest.servers={peers}\nkylin.server.poll-seconds=60\n"
        )
    };
    let props = |peers: &str| ssb_properties(store.dir.path(), &store.source, &extra(peers));
    let exe = qilin_tests::server_exe();
    let (pa, pb) = (
        props(&format!("127.0.0.1:{port_a},127.0.0.1:{port_b}")),
        props(""),
    );
    let exe_b = exe.clone();
    let b = tokio::task::spawn_blocking(move || ServerProcess::on_port("b", &exe_b, &pb, port_b))
        .await
        .unwrap();
    let a = tokio::task::spawn_blocking(move || ServerProcess::on_port("a", &exe, &pa, port_a))
        .await
        .unwrap();
    let mut c = connect(&a.addr, "ADMIN", "KYLIN").await;

    // Unauthenticated callers are refused like for any other call.
    let mut anonymous = client(&a.addr).await;
    let e = anonymous
        .do_action(Action {
            r#type: "qilin.project.list".into(),
            body: "{}".into(),
        })
        .await
        .map_err(status)
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // ListActions names them.
    let token = c.token().expect("a token").clone();
    let mut request = tonic::Request::new(arrow_flight::Empty {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let listed: Vec<String> = c
        .inner_mut()
        .list_actions(request)
        .await
        .unwrap()
        .into_inner()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.r#type)
        .collect();
    for t in [
        "qilin.build",
        "qilin.model.put",
        "qilin.cube.plan",
        "qilin.project.drop",
    ] {
        assert!(listed.iter().any(|l| l == t), "{t} not in {listed:?}");
    }

    let projects = action_json(&mut c, "qilin.project.list", serde_json::json!({})).await;
    assert_eq!(projects[0]["name"], "ssb");
    assert_eq!(projects[0]["tables"], 5);
    let (code, msg) = code_of(
        action(
            &mut c,
            "qilin.project.create",
            serde_json::json!({"name": "ssb"}),
        )
        .await,
    );
    assert_eq!(code, Code::AlreadyExists, "{msg}");
    let created = action_json(
        &mut c,
        "qilin.project.create",
        serde_json::json!({"project": {"name": "scratch", "description": "tmp"}}),
    )
    .await;
    assert_eq!(created["description"], "tmp");
    action_json(
        &mut c,
        "qilin.project.drop",
        serde_json::json!({"name": "scratch"}),
    )
    .await;

    // Bad input: INVALID_ARGUMENT naming what is wrong; unknown objects NOT_FOUND.
    let mut model: serde_json::Value = serde_json::to_value(ssb::model()).unwrap();
    model.as_object_mut().unwrap().remove("project");
    let mut bad = model.clone();
    bad["lookups"][1]["colour"] = "red".into();
    let (code, msg) = code_of(
        action(
            &mut c,
            "qilin.model.put",
            serde_json::json!({"project": "ssb", "model": bad}),
        )
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(
        msg.contains("lookups[1]") && msg.contains("colour"),
        "{msg}"
    );
    let (code, msg) =
        code_of(action(&mut c, "qilin.model.put", serde_json::json!({"modle": {}})).await);
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("modle"), "{msg}");
    let e = match c
        .do_action(Action {
            r#type: "qilin.cube.put".into(),
            body: "{not json".into(),
        })
        .await
    {
        Ok(mut s) => s.try_next().await.expect_err("an error"),
        Err(e) => status(e),
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("qilin.cube.put body"), "{e:?}");
    let (code, msg) = code_of(
        action(
            &mut c,
            "qilin.model.get",
            serde_json::json!({"name": "nope"}),
        )
        .await,
    );
    assert_eq!(code, Code::NotFound, "{msg}");
    let (code, msg) = code_of(
        action(
            &mut c,
            "qilin.cube.put",
            serde_json::json!({"cube": ssb::cube()}),
        )
        .await,
    );
    assert_eq!(code, Code::NotFound, "the model does not exist yet: {msg}");
    let (code, _) = code_of(action(&mut c, "qilin.nothing", serde_json::json!({})).await);
    assert_eq!(code, Code::InvalidArgument);

    // Put the model and cube; get returns them as stored.
    let put = action_json(
        &mut c,
        "qilin.model.put",
        serde_json::json!({"project": "ssb", "model": model}),
    )
    .await;
    assert_eq!(put["created"], true);
    let mut bad_cube = serde_json::to_value(ssb::cube()).unwrap();
    bad_cube["dimensions"][6]["column"] = "c_town".into();
    let (code, msg) = code_of(
        action(
            &mut c,
            "qilin.cube.put",
            serde_json::json!({"cube": bad_cube}),
        )
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("c_town"), "{msg}");
    let plan = action_json(
        &mut c,
        "qilin.cube.plan",
        serde_json::json!({"cube": ssb::cube()}),
    )
    .await;
    assert_eq!(plan["total_cuboids"], 149);
    assert_eq!(plan["aggregation_groups"].as_array().unwrap().len(), 5);
    assert!(plan["text"].as_str().unwrap().contains("149 cuboids"));

    let put = action_json(
        &mut c,
        "qilin.cube.put",
        serde_json::json!({"cube": ssb::cube()}),
    )
    .await;
    assert_eq!(
        (put["created"].clone(), put["cuboids"].clone()),
        (true.into(), 149.into())
    );
    let got = action(
        &mut c,
        "qilin.cube.get",
        serde_json::json!({"name": "ssb_cube"}),
    )
    .await
    .unwrap();
    assert_eq!(got, to_json(&ssb::cube()));
    let got_model = action(
        &mut c,
        "qilin.model.get",
        serde_json::json!({"name": "ssb_model"}),
    )
    .await
    .unwrap();
    assert_eq!(got_model, to_json(&ssb::model()));
    let cubes = action_json(
        &mut c,
        "qilin.cube.list",
        serde_json::json!({"project": "ssb"}),
    )
    .await;
    assert_eq!(cubes[0]["name"], "ssb_cube");
    let models = action_json(&mut c, "qilin.model.list", serde_json::json!({})).await;
    assert_eq!(models[0]["cubes"][0], "ssb_cube");

    // B was told: it logged the notification long before its 60 s poll.
    eventually(
        Duration::from_secs(10),
        "B to be notified of the cube",
        || {
            let out = b.output();
            (out.contains("notified by") && out.contains("cube put ssb_cube")).then_some(())
        },
    )
    .await;
    let (code, msg) = code_of(
        action(
            &mut c,
            "qilin.model.drop",
            serde_json::json!({"name": "ssb_model"}),
        )
        .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("used by cube ssb_cube"), "{msg}");
    let dropped = action_json(
        &mut c,
        "qilin.cube.drop",
        serde_json::json!({"name": "ssb_cube"}),
    )
    .await;
    assert_eq!(dropped["cube"], "ssb_cube");
    let (code, _) = code_of(
        action(
            &mut c,
            "qilin.cube.get",
            serde_json::json!({"name": "ssb_cube"}),
        )
        .await,
    );
    assert_eq!(code, Code::NotFound);
    action_json(
        &mut c,
        "qilin.model.drop",
        serde_json::json!({"name": "ssb_model"}),
    )
    .await;
}
