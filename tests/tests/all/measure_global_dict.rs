//! Exact COUNT(DISTINCT) of a string column through the global dictionary (the sample's
//! `c_name_distinct`): answers equal the oracle through Flight SQL and across two merged
//! segments on both backends, the dictionary gives every value exactly one id and survives
//! segment deletion, and a build killed after writing a dictionary chunk but before
//! committing it leaves the dictionary intact; the resumed build completes it.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use qilin_engine::config::Config;
use qilin_engine::dict::{dict_name, GlobalDict, ABORT_BEFORE_COMMIT_ENV};
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::{SegmentRange, SegmentStatus};
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_engine::storage::{LocalSegmentStore, SegmentStore};
use qilin_jobs::JobStatus;
use qilin_tests::compare::{compare, explain_text, oracle_query, run_query, Expect};
use qilin_tests::server::SsbServer;
use qilin_tests::{on_both_backends, oracle, quiet, shared_ssb_source, Backend, TestEnv};

const SF: f64 = 0.01;

/// COUNT(DISTINCT c_name) globally, grouped by dimensions, filtered, and next to other
/// measures.
const QUERIES: &[&str] = &[
    "select count(distinct c_name) from lineorder join customer on lo_custkey = c_custkey",
    "select d_year, count(distinct c_name) from lineorder \
     join customer on lo_custkey = c_custkey join dates on lo_orderdate = d_datekey \
     group by d_year",
    "select c_region, c_nation, count(distinct c_name) as n from lineorder \
     join customer on lo_custkey = c_custkey group by c_region, c_nation",
    "select s_region, count(distinct c_name), sum(lo_revenue) from lineorder \
     join customer on lo_custkey = c_custkey join supplier on lo_suppkey = s_suppkey \
     where c_region = 'ASIA' group by s_region",
];

/// The sample's dictionary of customer.c_name.
fn c_name_dict() -> String {
    dict_name(ssb::PROJECT, "customer", "c_name")
}

/// Every c_name the joined source holds.
async fn source_names(source: &Path) -> HashSet<String> {
    let ctx = oracle(source).await;
    let batches = oracle_query(
        &ctx,
        "select distinct c_name from lineorder join customer on lo_custkey = c_custkey",
    )
    .await;
    let mut out = HashSet::new();
    for b in &batches {
        let col = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        out.extend(col.as_string::<i32>().iter().flatten().map(String::from));
    }
    out
}

/// Asserts the stored dictionary gives each source value exactly one id and that the ids
/// are exactly `0..n`; returns it.
fn assert_one_id_per_value(store: &dyn SegmentStore, names: &HashSet<String>) -> GlobalDict {
    let d = GlobalDict::load(store, &c_name_dict()).expect("load the dictionary");
    let mut ids: Vec<u64> = d.entries().map(|(_, id)| id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..names.len() as u64).collect::<Vec<_>>(),
        "ids are unique and dense"
    );
    assert_eq!(d.len(), names.len() as u64);
    for n in names {
        assert!(d.id(n.as_bytes()).is_some(), "{n} has no id");
    }
    d
}

fn assert_from_cube(explain: &[RecordBatch], sql: &str) {
    let text = explain_text(explain);
    assert!(
        text.contains("cube ssb_cube") && text.contains("c_name_distinct"),
        "{sql}: not answered from the cube's c_name_distinct:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_distinct_of_a_string_matches_the_oracle_through_flight_sql() {
    let ssb = SsbServer::start("").await;
    let ctx = oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    for sql in QUERIES {
        let want = oracle_query(&ctx, sql).await;
        let got = run_query(&mut client, sql)
            .await
            .unwrap_or_else(|s| panic!("{sql}: {:?}: {}", s.code(), s.message()));
        compare(&got, &want, &Expect::default()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let plan = run_query(&mut client, &format!("EXPLAIN {sql}"))
            .await
            .unwrap_or_else(|s| panic!("EXPLAIN {sql}: {}", s.message()));
        assert_from_cube(&plan, sql);
    }
}

on_both_backends!(
    two_segments_merged_are_exact_and_the_dictionary_outlives_them,
    the_dictionary_commit_is_check_and_put,
);

/// The store's dictionary contract on each backend: the manifest swap is check-and-put, a
/// stale writer reloads and adds only what is missing, segments never list or drop it.
async fn the_dictionary_commit_is_check_and_put(backend: Backend) {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let env = TestEnv::on(backend, &source);
    let store = env.engine.segment_store().clone();
    let s = store.as_ref();
    assert_eq!(s.get_dict_manifest("p.t.c").unwrap(), None);
    assert!(s.swap_dict_manifest("p.t.c", None, b"m1").unwrap());
    assert!(
        !s.swap_dict_manifest("p.t.c", None, b"m2").unwrap(),
        "exists"
    );
    assert!(
        !s.swap_dict_manifest("p.t.c", Some(b"zz"), b"m2").unwrap(),
        "stale"
    );
    assert!(s.swap_dict_manifest("p.t.c", Some(b"m1"), b"m2").unwrap());
    assert_eq!(
        s.get_dict_manifest("p.t.c").unwrap().as_deref(),
        Some(&b"m2"[..])
    );
    s.put_dict_object("p.t.c", "chunk", b"bytes").unwrap();
    assert_eq!(s.get_dict_object("p.t.c", "chunk").unwrap(), b"bytes");
    assert!(matches!(
        s.get_dict_object("p.t.c", "nope"),
        Err(qilin_engine::Error::NotFound { .. })
    ));
    assert!(s.put_dict_object("../x", "chunk", b"").is_err());
    assert!(s.put_dict_object("p.t.c", "a/b", b"").is_err());

    let mut a = GlobalDict::load(s, "q.t.c").unwrap();
    let mut b = GlobalDict::load(s, "q.t.c").unwrap();
    assert_eq!(a.grow(s, [&b"x"[..], b"y"]).unwrap(), 2);
    // b still holds the empty dictionary: its swap loses, it reloads and adds only "z".
    assert_eq!(b.grow(s, [&b"y"[..], b"z"]).unwrap(), 1);
    assert_eq!(b.id(b"y"), a.id(b"y"));
    assert_eq!(b.id(b"z"), Some(2));
    assert!(env.segment_ids().is_empty(), "dictionaries are no segments");
    let again = GlobalDict::load(s, "q.t.c").unwrap();
    assert_eq!(again.len(), 3);
}

async fn two_segments_merged_are_exact_and_the_dictionary_outlives_them(backend: Backend) {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let env = TestEnv::on(backend, &source);
    env.install_sample(SF).await;
    let store = env.engine.segment_store().clone();

    env.build("1992-01-01..1995-01-01").await.unwrap();
    let first = GlobalDict::load(store.as_ref(), &c_name_dict()).unwrap();
    assert!(!first.is_empty());
    let first_ids: Vec<(Vec<u8>, u64)> = first.entries().map(|(v, id)| (v.to_vec(), id)).collect();
    env.build("1995-01-01..1999-01-01").await.unwrap();
    // Ids given by the first build never change.
    let second = GlobalDict::load(store.as_ref(), &c_name_dict()).unwrap();
    for (v, id) in &first_ids {
        assert_eq!(second.id(v), Some(*id));
    }

    let query = QueryEngine::new(
        &env.config,
        Metadata::new(env.meta().store().clone()),
        store.clone(),
    );
    let ctx = oracle(&source).await;
    let check = |when: &'static str| {
        let (query, ctx) = (&query, &ctx);
        async move {
            for sql in QUERIES {
                let want = oracle_query(ctx, sql).await;
                let got = query.execute(sql, None).await.unwrap().batches;
                compare(&got, &want, &Expect::default())
                    .unwrap_or_else(|e| panic!("{when}: {sql}: {e}"));
                let explain = query
                    .execute(&format!("EXPLAIN {sql}"), None)
                    .await
                    .unwrap();
                assert_from_cube(&explain.batches, sql);
            }
        }
    };
    check("two segments").await;

    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let job = env.engine.submit_merge(ssb::CUBE, range).unwrap();
    let job = env.engine.run(&job.id, quiet()).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeed);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(inst.segments.len(), 1);
    assert_eq!(inst.segments[0].status, SegmentStatus::Ready);
    check("merged").await;

    // The merge deleted the halves; deleting every segment keeps the dictionary too.
    let names = source_names(&source).await;
    let before = assert_one_id_per_value(store.as_ref(), &names)
        .manifest()
        .clone();
    for id in env.segment_ids() {
        store.delete_segment(&id).unwrap();
    }
    assert!(env.segment_ids().is_empty(), "no segment is listed");
    let after = assert_one_id_per_value(store.as_ref(), &names);
    assert_eq!(after.manifest(), &before);
}

/// `qilin-jobs sample` aborts (the test hook) right after writing the first dictionary chunk;
/// nothing is committed; rerun, the job resumes and the dictionary ends complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_killed_while_the_dictionary_grows_resumes_with_one_id_per_value() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kylin.properties");
    std::fs::write(
        &conf,
        format!(
            "kylin.metadata.url={0}/meta\nkylin.storage.url={0}/segments\nkylin.source.url={0}/source\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let sample = |abort: bool| {
        let mut c = Command::new(qilin_tests::workspace_exe("qilin-jobs"));
        c.arg("--conf")
            .arg(&conf)
            .args(["sample", "--scale", &SF.to_string()])
            .stdin(Stdio::null());
        if abort {
            c.env(ABORT_BEFORE_COMMIT_ENV, "1");
        } else {
            c.env_remove(ABORT_BEFORE_COMMIT_ENV);
        }
        c.output().unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();

    let out = sample(true);
    assert!(!out.status.success(), "the hook aborts the build");
    assert!(
        text(&out.stderr).contains(ABORT_BEFORE_COMMIT_ENV),
        "{}",
        text(&out.stderr)
    );
    let segments = dir.path().join("segments");
    let store = LocalSegmentStore::open(&segments).unwrap();
    let dict_dir = segments.join("_dict").join(c_name_dict());
    let mut chunks: Vec<String> = std::fs::read_dir(&dict_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    chunks.sort();
    assert!(!chunks.is_empty(), "the chunk was written");
    assert!(!chunks.contains(&"manifest".to_string()), "{chunks:?}");
    assert_eq!(
        store.get_dict_manifest(&c_name_dict()).unwrap(),
        None,
        "nothing committed"
    );
    let empty = GlobalDict::load(&store, &c_name_dict()).unwrap();
    assert!(empty.is_empty(), "the uncommitted chunk gives no ids");

    let out = sample(false);
    assert!(
        out.status.success(),
        "rerun: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("resuming job"),
        "{}",
        text(&out.stderr)
    );
    let config =
        Config::from_parts(&std::fs::read_to_string(&conf).unwrap(), "test", |_| None).unwrap();
    let meta = Metadata::new(Arc::new(
        qilin_engine::metadata::LocalResourceStore::open(&config.stores.metadata_url).unwrap(),
    ));
    let (inst, _) = meta.cube_instance(ssb::CUBE).unwrap();
    assert_eq!(inst.ready_segments().count(), 1);

    let source = dir.path().join("source");
    let names = source_names(&source).await;
    let d = assert_one_id_per_value(&store, &names);
    // The same new values make the same chunk: the resumed build rewrote the uncommitted one.
    let committed: Vec<&str> = d
        .manifest()
        .chunks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for c in &chunks {
        assert!(
            committed.contains(&c.as_str()),
            "chunk {c} left behind (committed: {committed:?})"
        );
    }
}
