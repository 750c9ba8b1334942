//! The contract every metadata store and segment store keeps, checked on both backends (local
//! directories and HBase through the Thrift emulator): versions and check-and-put with exactly
//! one winner under a race, listing, deletes, hostile paths, checksums; blocks larger than one
//! HBase cell, manifests, segment listing and deletion.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use hbase_thrift::hbase::THbaseSyncClient;
use qilin_engine::metadata::{Resource, ResourceStore};
use qilin_engine::storage::SegmentStore;
use qilin_engine::Error;
use qilin_tests::{hbase_raw, on_both_backends, shared_ssb_source, Backend, TestEnv};

on_both_backends!(
    resources_have_versions_and_check_and_put,
    racing_writers_have_exactly_one_winner,
    hostile_paths_are_refused,
    a_corrupt_resource_is_named,
    blocks_manifests_and_segment_lifecycle,
);

async fn env(backend: Backend) -> TestEnv {
    let src = shared_ssb_source(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    TestEnv::on(backend, &src)
}

fn store(env: &TestEnv) -> Arc<dyn ResourceStore> {
    env.meta().store().clone()
}

async fn resources_have_versions_and_check_and_put(backend: Backend) {
    let env = env(backend).await;
    let s = store(&env);
    assert_eq!(s.get("/cube/a.json").unwrap(), None);
    let v0 = s.store_version().unwrap();
    assert_eq!(s.check_and_put("/cube/a.json", b"1", None).unwrap(), 1);
    assert!(matches!(
        s.check_and_put("/cube/a.json", b"again", None),
        Err(Error::Conflict {
            actual: Some(1),
            ..
        })
    ));
    assert_eq!(s.put("/cube/a.json", b"2").unwrap(), 2);
    s.put("/cube/b.json", b"x").unwrap();
    s.put("/cube/sub/deeper.json", b"not listed under /cube")
        .unwrap();
    s.put("/model_desc/m.json", b"y").unwrap();
    assert_eq!(
        s.get("/cube/a.json").unwrap(),
        Some(Resource {
            data: b"2".to_vec(),
            version: 2
        })
    );
    assert_eq!(
        s.list("/cube").unwrap(),
        vec!["/cube/a.json", "/cube/b.json"]
    );
    assert_eq!(s.list("/nothing").unwrap(), Vec::<String>::new());
    assert!(s.store_version().unwrap() >= v0 + 5);
    let err = s.check_and_put("/cube/a.json", b"3", Some(1)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: Some(1),
                actual: Some(2),
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        s.check_and_delete("/cube/a.json", Some(1)),
        Err(Error::Conflict { .. })
    ));
    let before = s.store_version().unwrap();
    s.check_and_delete("/cube/a.json", Some(2)).unwrap();
    assert!(s.store_version().unwrap() > before);
    assert_eq!(s.get("/cube/a.json").unwrap(), None);
    assert_eq!(s.list("/cube").unwrap(), vec!["/cube/b.json"]);
    // Deleting what is not there is fine without an expected version.
    s.check_and_delete("/cube/a.json", None).unwrap();
    // Re-created after a delete: must-not-exist succeeds, versions only grow.
    let v = s.check_and_put("/cube/a.json", b"new", None).unwrap();
    assert!(v >= 1);
    assert_eq!(s.get("/cube/a.json").unwrap().unwrap().data, b"new");
    // Big resources round-trip.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.put("/table/big.json", &big).unwrap();
    assert_eq!(s.get("/table/big.json").unwrap().unwrap().data, big);
}

async fn racing_writers_have_exactly_one_winner(backend: Backend) {
    let env = env(backend).await;
    let s = store(&env);
    s.put("/cube/race.json", b"start").unwrap();
    for _round in 0..10 {
        let base = s.get("/cube/race.json").unwrap().unwrap().version;
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let s = s.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    s.check_and_put("/cube/race.json", format!("w{i}").as_bytes(), Some(base))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, Error::Conflict { .. }), "{e}");
            }
        }
        let now = s.get("/cube/race.json").unwrap().unwrap();
        assert_eq!(now.version, base + 1);
        assert_eq!(now.data, format!("w{}", winners[0]).into_bytes());
    }
}

async fn hostile_paths_are_refused(backend: Backend) {
    let env = env(backend).await;
    let s = store(&env);
    for p in [
        "",
        "cube/a",
        "/../x",
        "/cube/../../etc/passwd",
        "/cube//a",
        "/.lock",
        "/a b",
        "#store_version",
    ] {
        let err = s.put(p, b"x").unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{p}: {err}");
        assert!(s.get(p).is_err(), "{p}");
    }
    let long = format!("/{}", "a".repeat(10_000));
    assert!(s.get(&long).is_err());
}

async fn a_corrupt_resource_is_named(backend: Backend) {
    let env = env(backend).await;
    let s = store(&env);
    s.put("/cube/a.json", b"hello").unwrap();
    match &env.hbase {
        None => {
            let f = std::path::Path::new(&env.config.stores.metadata_url).join("res/cube/a.json");
            let mut bytes = std::fs::read(&f).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&f, bytes).unwrap();
        }
        Some(emulator) => {
            // Damage the content cell the version cell points to.
            let row = hbase_raw::raw_client(&emulator.addr)
                .get_row(
                    "qilin_metadata".into(),
                    b"/cube/a.json".to_vec(),
                    BTreeMap::new(),
                )
                .unwrap();
            let columns = row[0].columns.clone().unwrap();
            let content = columns
                .keys()
                .find(|c| c.starts_with(b"r:c."))
                .expect("a content cell");
            hbase_raw::corrupt_cell(&emulator.addr, "qilin_metadata", b"/cube/a.json", content);
        }
    }
    let err = s.get("/cube/a.json").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains("/cube/a.json") && msg.contains("checksum"),
        "{msg}"
    );
}

async fn blocks_manifests_and_segment_lifecycle(backend: Backend) {
    let env = env(backend).await;
    let store: &dyn SegmentStore = env.engine.segment_store().as_ref();
    let seg = "0a1b2c3d-0000-4000-8000-000000000001";
    let other = "0a1b2c3d-0000-4000-8000-00000000000";
    // A 5 MiB block spans several HBase cells; an empty one is allowed too.
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    store.put_block(seg, 7, 0, &big).unwrap();
    store.put_block(seg, 7, 1, b"").unwrap();
    for b in 0..40 {
        store
            .put_block(seg, 3, b, format!("block {b}").as_bytes())
            .unwrap();
    }
    store.put_manifest(seg, 7, b"{\"m\":7}").unwrap();
    store.put_block(other, 7, 0, b"other segment").unwrap();
    store.sync_segment(seg).unwrap();

    assert_eq!(store.get_block(seg, 7, 0).unwrap(), big);
    assert_eq!(store.get_block(seg, 7, 1).unwrap(), b"");
    for b in 0..40 {
        assert_eq!(
            store.get_block(seg, 3, b).unwrap(),
            format!("block {b}").into_bytes()
        );
    }
    assert_eq!(store.get_manifest(seg, 7).unwrap(), b"{\"m\":7}");
    let mut both = vec![seg.to_string(), other.to_string()];
    both.sort();
    assert_eq!(store.list_segments().unwrap(), both);

    let missing = store.get_block(seg, 7, 2).unwrap_err();
    assert!(
        matches!(missing, Error::NotFound { .. })
            && missing
                .to_string()
                .contains(&format!("block 2 of cuboid 7 in segment {seg}")),
        "{missing}"
    );
    let missing = store.get_manifest(seg, 3).unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
    assert!(matches!(
        store.put_block("../etc", 1, 0, b"x"),
        Err(Error::InvalidName { .. })
    ));

    store.delete_segment(seg).unwrap();
    store.delete_segment(seg).unwrap(); // idempotent
    assert_eq!(store.list_segments().unwrap(), vec![other.to_string()]);
    assert!(matches!(
        store.get_block(seg, 3, 5),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get_manifest(seg, 7),
        Err(Error::NotFound { .. })
    ));
    // The segment whose id is a prefix of the deleted one is untouched.
    assert_eq!(store.get_block(other, 7, 0).unwrap(), b"other segment");
}
