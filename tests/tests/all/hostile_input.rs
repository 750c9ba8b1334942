//! Hostile or malformed input gets an error that names the problem, never a panic: bad names,
//! broken descriptor JSON, models and cubes that do not fit their tables.

use std::path::Path;

use qilin_engine::model::*;
use qilin_engine::sample::ssb;
use qilin_engine::Error;
use qilin_tests::{on_both_backends, shared_ssb_source, Backend, TestEnv};

on_both_backends!(
    hostile_names_are_refused,
    broken_descriptor_json_is_reported_with_its_path,
    invalid_models_and_cubes_name_the_problem,
);

async fn env(backend: Backend) -> TestEnv {
    let src = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let env = TestEnv::on(backend, &src);
    env.install_sample(0.01).await;
    env
}

fn expect_err<T: std::fmt::Debug>(r: qilin_engine::Result<T>, needles: &[&str]) -> Error {
    let e = r.expect_err("must fail");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
    assert!(msg.len() < 400, "message too long: {msg}");
    e
}

async fn hostile_names_are_refused(backend: Backend) {
    let env = env(backend).await;
    let meta = env.meta();
    let long = "x".repeat(10_000);
    for bad in ["../x", "", long.as_str(), "a/b", "..", "x\0y"] {
        let e = expect_err(
            meta.save_project(&ProjectDesc {
                name: bad.into(),
                description: String::new(),
            }),
            &["invalid project name"],
        );
        assert!(matches!(e, Error::InvalidName { .. }));
        expect_err(meta.cube_instance(bad), &["invalid cube name"]);
        expect_err(meta.model(bad), &["invalid model name"]);
        let mut t = ssb::tables(Path::new(&env.config.stores.source_url))
            .unwrap()
            .remove(0);
        t.name = bad.into();
        expect_err(meta.save_table(&t), &["invalid table name"]);
        let mut c = ssb::cube();
        c.name = bad.into();
        expect_err(meta.save_cube(&c, 4096), &["invalid cube name"]);
    }
    // Nothing was written for any of them.
    assert_eq!(meta.projects().unwrap().len(), 1);
}

async fn broken_descriptor_json_is_reported_with_its_path(backend: Backend) {
    let env = env(backend).await;
    let store = env.meta().store();
    store
        .put(
            "/model_desc/broken.json",
            b"{\"name\": \"broken\", \"project\": ",
        )
        .unwrap();
    expect_err(
        env.meta().model("broken"),
        &["/model_desc/broken.json", "malformed JSON"],
    );
    store
        .put(
            "/cube_desc/typo.json",
            br#"{"name":"typo","model":"ssb_model","dimension":[]}"#,
        )
        .unwrap();
    expect_err(
        env.meta().cube_desc("typo"),
        &["/cube_desc/typo.json", "dimension"],
    );
    let e = from_json::<CubeDesc>("cube descriptor upload", b"\xff\xfe").unwrap_err();
    assert!(e.to_string().contains("cube descriptor upload"), "{e}");
}

async fn invalid_models_and_cubes_name_the_problem(backend: Backend) {
    let env = env(backend).await;
    let meta = env.meta();

    let mut m = ssb::model();
    m.name = "m1".into();
    m.lookups[0].primary_key = vec!["d_nosuch".into()];
    expect_err(meta.save_model(&m), &["model m1", "d_nosuch"]);

    let mut m = ssb::model();
    m.name = "m2".into();
    m.fact_table = "nosuch_table".into();
    expect_err(meta.save_model(&m), &["nosuch_table"]);

    let mut m = ssb::model();
    m.name = "m3".into();
    m.computed_columns[0].expression = "lo_extendedprice * * 2".into();
    expect_err(meta.save_model(&m), &["v_revenue", "cannot parse"]);

    let mut m = ssb::model();
    m.name = "m4".into();
    m.computed_columns[0].expression = "lo_extendedprice * c_nosuch".into();
    expect_err(meta.save_model(&m), &["v_revenue", "c_nosuch"]);

    let mut c = ssb::cube();
    c.name = "c1".into();
    c.dimensions.push(DimensionDesc {
        name: None,
        column: Some("p_color".into()),
        table: None,
        derived: vec![],
    });
    expect_err(
        meta.save_cube(&c, 4096),
        &["cube c1", "p_color is in no aggregation group"],
    );

    let mut c = ssb::cube();
    c.name = "c2".into();
    c.measures.push(MeasureDesc::simple(
        "bad",
        MeasureFunction::Sum,
        Some("c_city"),
        None,
    ));
    expect_err(meta.save_cube(&c, 4096), &["measure bad", "numeric"]);

    let mut c = ssb::cube();
    c.name = "c3".into();
    c.aggregation_groups[1].hierarchies.clear();
    expect_err(
        meta.save_cube(&c, 64),
        &[
            "aggregation group 2",
            "256 cuboids",
            "kylin.cube.aggrgroup.max-combination",
            "64",
        ],
    );

    let mut c = ssb::cube();
    c.name = "c4".into();
    // (A bitmap of a text column is fine now: it goes through the global dictionary.)
    c.measures.push(MeasureDesc::simple(
        "top_without_by",
        MeasureFunction::TopN,
        Some("lo_revenue"),
        None,
    ));
    expect_err(
        meta.save_cube(&c, 4096),
        &["top_without_by", "TOP_N needs \"by\""],
    );

    let mut c = ssb::cube();
    c.name = "c5".into();
    c.model = "nosuch_model".into();
    let e = expect_err(meta.save_cube(&c, 4096), &["model nosuch_model not found"]);
    assert!(matches!(e, Error::NotFound { .. }));

    // The sample cube itself is fine and none of the failures left a descriptor behind.
    assert_eq!(
        meta.cube_descs()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec![ssb::CUBE]
    );
    assert_eq!(meta.models().unwrap().len(), 1);
}
