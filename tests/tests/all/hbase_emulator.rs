//! The HBase Thrift1 emulator (`hbase-thrift-emulator`), over a real socket with the
//! `hbase-thrift` generated client (buffered transport, binary protocol), as Qilin's HBase
//! client talks to HBase.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Barrier};

use hbase_thrift::hbase::{
    AlreadyExists, BatchMutation, ColumnDescriptor, IOError, IllegalArgument, Mutation,
    THbaseSyncClient, TRowResult, TScan,
};
use qilin_tests::hbase_emulator_process::EmulatorProcess;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol,
    TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};

type Client = qilin_tests::hbase_raw::RawClient;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hbase-thrift-emulator"))
}

fn emulator() -> EmulatorProcess {
    EmulatorProcess::start(exe(), None, 0)
}

fn client(addr: &str) -> Client {
    qilin_tests::hbase_raw::raw_client(addr)
}

fn no_attrs() -> BTreeMap<Vec<u8>, Vec<u8>> {
    BTreeMap::new()
}

/// A family with only its name set: HBase (and the emulator) use the IDL defaults for the
/// rest (`ColumnDescriptor::default()` would send 0 / "" values that HBase refuses).
fn family(name: &str) -> ColumnDescriptor {
    ColumnDescriptor::new(
        name.as_bytes().to_vec(),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )
}

/// A scan with nothing set (`TScan::default()` sets `timestamp: Some(0)`, which matches no
/// cells in HBase).
fn empty_scan() -> TScan {
    TScan::new(None, None, None, None, None, None, None, None, None, None)
}

fn create(c: &mut Client, table: &str, families: &[&str]) {
    c.create_table(table.into(), families.iter().map(|f| family(f)).collect())
        .unwrap_or_else(|e| panic!("create {table}: {e}"));
}

fn put(column: &str, value: &[u8]) -> Mutation {
    Mutation {
        is_delete: Some(false),
        column: Some(column.as_bytes().to_vec()),
        value: Some(value.to_vec()),
        write_to_w_a_l: Some(true),
    }
}

fn delete(column: &str) -> Mutation {
    Mutation {
        is_delete: Some(true),
        column: Some(column.as_bytes().to_vec()),
        value: None,
        write_to_w_a_l: Some(true),
    }
}

fn mutate(c: &mut Client, table: &str, row: &[u8], ms: Vec<Mutation>) {
    c.mutate_row(table.into(), row.to_vec(), ms, no_attrs())
        .unwrap_or_else(|e| panic!("mutateRow {table}/{row:?}: {e}"));
}

/// The IOError message of a failed call (panics on any other outcome).
fn io_error<T: std::fmt::Debug>(r: thrift::Result<T>) -> String {
    match r {
        Err(thrift::Error::User(u)) => match u.downcast_ref::<IOError>() {
            Some(e) => e.message.clone().unwrap_or_default(),
            None => panic!("expected an IOError, got {u:?}"),
        },
        other => panic!("expected an IOError, got {other:?}"),
    }
}

fn illegal_argument<T: std::fmt::Debug>(r: thrift::Result<T>) -> String {
    match r {
        Err(thrift::Error::User(u)) => match u.downcast_ref::<IllegalArgument>() {
            Some(e) => e.message.clone().unwrap_or_default(),
            None => panic!("expected an IllegalArgument, got {u:?}"),
        },
        other => panic!("expected an IllegalArgument, got {other:?}"),
    }
}

/// A row result as `(row, [(column, value)])`.
fn simple(r: &TRowResult) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let cols = r
        .columns
        .as_ref()
        .expect("columns")
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                v.value.clone().unwrap(),
            )
        })
        .collect();
    (r.row.clone().unwrap(), cols)
}

fn rows_of(results: &[TRowResult]) -> Vec<Vec<u8>> {
    results.iter().map(|r| r.row.clone().unwrap()).collect()
}

fn value(c: &mut Client, table: &str, row: &[u8], column: &str) -> Option<Vec<u8>> {
    let cells = c
        .get(table.into(), row.to_vec(), column.into(), no_attrs())
        .expect("get");
    assert!(cells.len() <= 1, "one version per cell: {cells:?}");
    cells.into_iter().next().map(|c| c.value.unwrap())
}

#[test]
fn table_admin_round_trip_and_errors() {
    let emu = emulator();
    let mut c = client(&emu.addr);
    assert_eq!(c.get_table_names().unwrap(), Vec::<Vec<u8>>::new());
    create(&mut c, "t1", &["b:", "a"]);
    create(&mut c, "t2", &["f"]);
    assert_eq!(
        c.get_table_names().unwrap(),
        vec![b"t1".to_vec(), b"t2".to_vec()]
    );
    let descriptors = c.get_column_descriptors("t1".into()).unwrap();
    assert_eq!(
        descriptors.keys().cloned().collect::<Vec<_>>(),
        vec![b"a:".to_vec(), b"b:".to_vec()]
    );
    let a = &descriptors[&b"a:".to_vec()];
    assert_eq!(a.name.as_deref(), Some(&b"a:"[..]));
    // Fields left out get the IDL defaults, as in HBase.
    assert_eq!(a.max_versions, Some(3));
    assert_eq!(a.compression.as_deref(), Some("NONE"));
    assert_eq!(a.bloom_filter_type.as_deref(), Some("NONE"));
    assert_eq!(a.time_to_live, Some(i32::MAX));
    // Zero values sent explicitly are refused, as in HBase.
    let m = illegal_argument(c.create_table(
        "t0".into(),
        vec![ColumnDescriptor {
            name: Some(b"f".to_vec()),
            ..ColumnDescriptor::default()
        }],
    ));
    assert!(m.contains("compression"), "{m}");
    let regions = c.get_table_regions("t1".into()).unwrap();
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].start_key.as_deref(), Some(&b""[..]));
    assert_eq!(regions[0].end_key.as_deref(), Some(&b""[..]));
    assert_eq!(regions[0].port, Some(i32::from(emu.port())));

    // Errors like HBase's.
    match c.create_table("t1".into(), vec![family("x")]) {
        Err(thrift::Error::User(u)) => assert!(u.downcast_ref::<AlreadyExists>().is_some()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    illegal_argument(c.create_table("t3".into(), vec![]));
    let m = io_error(c.get_row("nope".into(), b"r".to_vec(), no_attrs()));
    assert!(m.contains("TableNotFoundException: nope"), "{m}");
    io_error(c.get_column_descriptors("nope".into()));
    io_error(c.delete_table("nope".into()));
    let m = io_error(c.delete_table("t1".into()));
    assert!(m.contains("TableNotDisabledException"), "{m}");

    // Disabled tables refuse reads and writes, and can then be deleted.
    mutate(&mut c, "t2", b"r", vec![put("f:q", b"v")]);
    assert!(c.is_table_enabled("t2".into()).unwrap());
    c.disable_table("t2".into()).unwrap();
    assert!(!c.is_table_enabled("t2".into()).unwrap());
    let m = io_error(c.get_row("t2".into(), b"r".to_vec(), no_attrs()));
    assert!(m.contains("TableNotEnabledException"), "{m}");
    io_error(c.mutate_row(
        "t2".into(),
        b"r".to_vec(),
        vec![put("f:q", b"w")],
        no_attrs(),
    ));
    io_error(c.disable_table("t2".into()));
    c.enable_table("t2".into()).unwrap();
    assert_eq!(value(&mut c, "t2", b"r", "f:q"), Some(b"v".to_vec()));
    c.disable_table("t2".into()).unwrap();
    c.delete_table("t2".into()).unwrap();
    assert_eq!(c.get_table_names().unwrap(), vec![b"t1".to_vec()]);
    io_error(c.is_table_enabled("t2".into()));
    // The name is free again, and the new table is empty.
    create(&mut c, "t2", &["f"]);
    assert_eq!(
        c.get_row("t2".into(), b"r".to_vec(), no_attrs()).unwrap(),
        vec![]
    );
}

#[test]
fn puts_gets_and_deletes() {
    let emu = emulator();
    let mut c = client(&emu.addr);
    create(&mut c, "t", &["a", "b"]);
    mutate(
        &mut c,
        "t",
        b"r1",
        vec![put("a:x", b"1"), put("a:y", b"2"), put("b:z", b"3")],
    );
    c.mutate_rows(
        "t".into(),
        vec![
            BatchMutation::new(b"r2".to_vec(), vec![put("a:x", b"4")]),
            BatchMutation::new(b"r3".to_vec(), vec![put("b:z", b"5")]),
        ],
        no_attrs(),
    )
    .unwrap();

    assert_eq!(value(&mut c, "t", b"r1", "a:y"), Some(b"2".to_vec()));
    assert_eq!(value(&mut c, "t", b"r1", "a:nope"), None);
    assert_eq!(value(&mut c, "t", b"nope", "a:x"), None);
    let row = c.get_row("t".into(), b"r1".to_vec(), no_attrs()).unwrap();
    assert_eq!(row.len(), 1);
    assert_eq!(
        simple(&row[0]),
        (
            b"r1".to_vec(),
            vec![
                ("a:x".into(), b"1".to_vec()),
                ("a:y".into(), b"2".to_vec()),
                ("b:z".into(), b"3".to_vec()),
            ]
        )
    );
    assert_eq!(row[0].sorted_columns, None);
    // "family:" is the whole family; "family:qualifier" one column.
    let row = c
        .get_row_with_columns(
            "t".into(),
            b"r1".to_vec(),
            vec![b"a:".to_vec(), b"b:z".to_vec()],
            no_attrs(),
        )
        .unwrap();
    assert_eq!(simple(&row[0]).1.len(), 3);
    let row = c
        .get_row_with_columns(
            "t".into(),
            b"r1".to_vec(),
            vec![b"a:y".to_vec()],
            no_attrs(),
        )
        .unwrap();
    assert_eq!(simple(&row[0]).1, vec![("a:y".into(), b"2".to_vec())]);
    // A row without the requested columns is left out.
    let rows = c
        .get_rows_with_columns(
            "t".into(),
            vec![
                b"r1".to_vec(),
                b"r2".to_vec(),
                b"r3".to_vec(),
                b"r9".to_vec(),
            ],
            vec![b"a:x".to_vec()],
            no_attrs(),
        )
        .unwrap();
    assert_eq!(rows_of(&rows), vec![b"r1".to_vec(), b"r2".to_vec()]);
    assert_eq!(simple(&rows[1]).1, vec![("a:x".into(), b"4".to_vec())]);
    let rows = c
        .get_rows("t".into(), vec![b"r3".to_vec(), b"r1".to_vec()], no_attrs())
        .unwrap();
    assert_eq!(rows_of(&rows), vec![b"r3".to_vec(), b"r1".to_vec()]);
    // An unknown family is an error, for writes and reads.
    let m = io_error(c.mutate_row(
        "t".into(),
        b"r1".to_vec(),
        vec![put("zz:q", b"v")],
        no_attrs(),
    ));
    assert!(m.contains("NoSuchColumnFamilyException"), "{m}");
    io_error(c.get_row_with_columns(
        "t".into(),
        b"r1".to_vec(),
        vec![b"zz:".to_vec()],
        no_attrs(),
    ));

    // Timestamps: now by default, the given one for the *Ts variants; latest version only.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    mutate(&mut c, "t", b"r4", vec![put("a:x", b"now")]);
    let cell = c
        .get("t".into(), b"r4".to_vec(), b"a:x".to_vec(), no_attrs())
        .unwrap()
        .remove(0);
    assert!(cell.timestamp.unwrap() >= before, "{cell:?}");
    c.mutate_row_ts(
        "t".into(),
        b"r5".to_vec(),
        vec![put("a:x", b"old")],
        42,
        no_attrs(),
    )
    .unwrap();
    c.mutate_row_ts(
        "t".into(),
        b"r5".to_vec(),
        vec![put("a:x", b"new")],
        43,
        no_attrs(),
    )
    .unwrap();
    let cells = c
        .get("t".into(), b"r5".to_vec(), b"a:x".to_vec(), no_attrs())
        .unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].value.as_deref(), Some(&b"new"[..]));
    assert_eq!(cells[0].timestamp, Some(43));
    let rows = c
        .get_row_ts("t".into(), b"r5".to_vec(), 43, no_attrs())
        .unwrap();
    assert_eq!(rows, vec![], "the time bound is exclusive");

    // Values of several MB.
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    mutate(
        &mut c,
        "t",
        b"big",
        vec![put("a:c0", &big), put("a:c1", &big[..2 * 1024 * 1024])],
    );
    assert_eq!(
        value(&mut c, "t", b"big", "a:c0").as_deref(),
        Some(&big[..])
    );
    assert_eq!(
        value(&mut c, "t", b"big", "a:c1").as_deref(),
        Some(&big[..2 * 1024 * 1024])
    );

    // Deletes: a column, a family, a whole row.
    mutate(&mut c, "t", b"r1", vec![delete("a:x")]);
    assert_eq!(value(&mut c, "t", b"r1", "a:x"), None);
    assert_eq!(value(&mut c, "t", b"r1", "a:y"), Some(b"2".to_vec()));
    c.delete_all("t".into(), b"r1".to_vec(), b"a".to_vec(), no_attrs())
        .unwrap();
    let row = c.get_row("t".into(), b"r1".to_vec(), no_attrs()).unwrap();
    assert_eq!(simple(&row[0]).1, vec![("b:z".into(), b"3".to_vec())]);
    c.delete_all_row("t".into(), b"r1".to_vec(), no_attrs())
        .unwrap();
    assert_eq!(
        c.get_row("t".into(), b"r1".to_vec(), no_attrs()).unwrap(),
        vec![]
    );
    assert_eq!(value(&mut c, "t", b"r2", "a:x"), Some(b"4".to_vec()));
}

#[test]
fn scanners_in_unsigned_byte_order() {
    let emu = emulator();
    let mut c = client(&emu.addr);
    create(&mut c, "t", &["f", "g"]);
    let keys: Vec<Vec<u8>> = vec![
        vec![0xFF, 0xFF],
        b"b".to_vec(),
        vec![0x00],
        b"a\xff".to_vec(),
        vec![0x00, 0x01],
        b"a".to_vec(),
        vec![0xFF],
        b"ab".to_vec(),
    ];
    for k in &keys {
        mutate(&mut c, "t", k, vec![put("f:q", k), put("g:q", b"g")]);
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted[0], vec![0x00]);
    assert_eq!(sorted[7], vec![0xFF, 0xFF]);

    // A full scan from the empty start row, in batches.
    let id = c
        .scanner_open("t".into(), vec![], vec![b"f:q".to_vec()], no_attrs())
        .unwrap();
    let mut seen = Vec::new();
    let mut batches = Vec::new();
    loop {
        let batch = c.scanner_get_list(id, 3).unwrap();
        if batch.is_empty() {
            break;
        }
        batches.push(batch.len());
        for r in &batch {
            let (row, cols) = simple(r);
            assert_eq!(cols, vec![("f:q".to_string(), row.clone())]);
            seen.push(row);
        }
    }
    assert_eq!(seen, sorted);
    assert_eq!(batches, vec![3, 3, 2]);
    assert_eq!(c.scanner_get(id).unwrap(), vec![]);
    c.scanner_close(id).unwrap();
    illegal_argument(c.scanner_get(id));
    illegal_argument(c.scanner_get_list(id, 5));
    illegal_argument(c.scanner_close(id));

    // The stop row is exclusive.
    let id = c
        .scanner_open_with_stop("t".into(), b"a".to_vec(), b"b".to_vec(), vec![], no_attrs())
        .unwrap();
    let rows = c.scanner_get_list(id, 100).unwrap();
    assert_eq!(
        rows_of(&rows),
        vec![b"a".to_vec(), b"ab".to_vec(), b"a\xff".to_vec()]
    );
    assert_eq!(
        simple(&rows[0]).1.len(),
        2,
        "all columns when none are named"
    );
    c.scanner_close(id).unwrap();
    let id = c
        .scanner_open_with_stop("t".into(), vec![0x00, 0x01], vec![0xFF], vec![], no_attrs())
        .unwrap();
    assert_eq!(c.scanner_get_list(id, 100).unwrap().len(), 5);

    // Prefix scans.
    let id = c
        .scanner_open_with_prefix("t".into(), vec![0xFF], vec![], no_attrs())
        .unwrap();
    assert_eq!(
        rows_of(&c.scanner_get_list(id, 100).unwrap()),
        vec![vec![0xFF], vec![0xFF, 0xFF]]
    );
    let scan = TScan {
        start_row: Some(vec![0x00]),
        stop_row: Some(b"b".to_vec()),
        columns: Some(vec![b"g:".to_vec()]),
        filter_string: Some(b"PrefixFilter('a')".to_vec()),
        caching: Some(2),
        ..empty_scan()
    };
    let id = c
        .scanner_open_with_scan("t".into(), scan, no_attrs())
        .unwrap();
    let rows = c.scanner_get_list(id, 100).unwrap();
    assert_eq!(
        rows_of(&rows),
        vec![b"a".to_vec(), b"ab".to_vec(), b"a\xff".to_vec()]
    );
    assert_eq!(simple(&rows[0]).1, vec![("g:q".to_string(), b"g".to_vec())]);

    // Sorted columns when asked for.
    let scan = TScan {
        start_row: Some(b"b".to_vec()),
        stop_row: Some(b"b\x00".to_vec()),
        sort_columns: Some(true),
        ..empty_scan()
    };
    let id = c
        .scanner_open_with_scan("t".into(), scan, no_attrs())
        .unwrap();
    let rows = c.scanner_get(id).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].columns, None);
    let names: Vec<Vec<u8>> = rows[0]
        .sorted_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|col| col.column_name.clone().unwrap())
        .collect();
    assert_eq!(names, vec![b"f:q".to_vec(), b"g:q".to_vec()]);

    // A scanner reads the live table: rows written after it opened show up.
    let id = c
        .scanner_open("t".into(), vec![], vec![], no_attrs())
        .unwrap();
    assert_eq!(
        rows_of(&c.scanner_get_list(id, 2).unwrap()),
        sorted[..2].to_vec()
    );
    mutate(&mut c, "t", b"aa", vec![put("f:q", b"late")]);
    let rest = rows_of(&c.scanner_get_list(id, 100).unwrap());
    assert_eq!(rest.len(), 7);
    assert!(rest.contains(&b"aa".to_vec()));

    // Unsupported scan options are refused, not ignored (the call declares only IOError,
    // so the refusal arrives as an application exception, as from HBase).
    let reversed = TScan {
        reversed: Some(true),
        ..empty_scan()
    };
    assert!(c
        .scanner_open_with_scan("t".into(), reversed, no_attrs())
        .is_err());
    let filtered = TScan {
        filter_string: Some(b"KeyOnlyFilter()".to_vec()),
        ..empty_scan()
    };
    assert!(c
        .scanner_open_with_scan("t".into(), filtered, no_attrs())
        .is_err());
    io_error(c.scanner_open("nope".into(), vec![], vec![], no_attrs()));
    // The connection is still usable after those errors.
    assert_eq!(value(&mut c, "t", b"aa", "f:q"), Some(b"late".to_vec()));
}

#[test]
fn check_and_put() {
    let emu = emulator();
    let mut c = client(&emu.addr);
    create(&mut c, "t", &["f"]);
    // An empty expected value: the column must not exist.
    assert!(c
        .check_and_put(
            "t".into(),
            b"r".to_vec(),
            b"f:q".to_vec(),
            vec![],
            put("f:q", b"v1"),
            no_attrs()
        )
        .unwrap());
    assert_eq!(value(&mut c, "t", b"r", "f:q"), Some(b"v1".to_vec()));
    assert!(!c
        .check_and_put(
            "t".into(),
            b"r".to_vec(),
            b"f:q".to_vec(),
            vec![],
            put("f:q", b"v2"),
            no_attrs()
        )
        .unwrap());
    // Mismatch: nothing changes.
    assert!(!c
        .check_and_put(
            "t".into(),
            b"r".to_vec(),
            b"f:q".to_vec(),
            b"other".to_vec(),
            put("f:q", b"v2"),
            no_attrs()
        )
        .unwrap());
    assert_eq!(value(&mut c, "t", b"r", "f:q"), Some(b"v1".to_vec()));
    // Match: the put applies (to another column, too).
    assert!(c
        .check_and_put(
            "t".into(),
            b"r".to_vec(),
            b"f:q".to_vec(),
            b"v1".to_vec(),
            put("f:other", b"x"),
            no_attrs()
        )
        .unwrap());
    assert_eq!(value(&mut c, "t", b"r", "f:other"), Some(b"x".to_vec()));
    io_error(c.check_and_put(
        "t".into(),
        b"r".to_vec(),
        b"f:q".to_vec(),
        vec![],
        put("zz:q", b"v"),
        no_attrs(),
    ));
    io_error(c.check_and_put(
        "nope".into(),
        b"r".to_vec(),
        b"f:q".to_vec(),
        vec![],
        put("f:q", b"v"),
        no_attrs(),
    ));

    // A race: 8 connections try to take the same lock cell from the same expected value.
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            let addr = emu.addr.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = client(&addr);
                barrier.wait();
                let won = c
                    .check_and_put(
                        "t".into(),
                        b"lock".to_vec(),
                        b"f:owner".to_vec(),
                        vec![],
                        put("f:owner", &[b'0' + i]),
                        no_attrs(),
                    )
                    .unwrap();
                (i, won)
            })
        })
        .collect();
    let winners: Vec<u8> = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|(_, won)| *won)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    assert_eq!(
        value(&mut c, "t", b"lock", "f:owner"),
        Some(vec![b'0' + winners[0]])
    );
}

#[test]
fn atomic_increment() {
    let emu = emulator();
    let mut c = client(&emu.addr);
    create(&mut c, "t", &["f"]);
    assert_eq!(
        c.atomic_increment("t".into(), b"r".to_vec(), b"f:n".to_vec(), 5)
            .unwrap(),
        5
    );
    assert_eq!(
        c.atomic_increment("t".into(), b"r".to_vec(), b"f:n".to_vec(), -7)
            .unwrap(),
        -2
    );
    assert_eq!(
        value(&mut c, "t", b"r", "f:n"),
        Some((-2i64).to_be_bytes().to_vec())
    );
    // An existing 8-byte big-endian value counts on from there.
    mutate(&mut c, "t", b"r", vec![put("f:m", &100i64.to_be_bytes())]);
    assert_eq!(
        c.atomic_increment("t".into(), b"r".to_vec(), b"f:m".to_vec(), 1)
            .unwrap(),
        101
    );
    mutate(&mut c, "t", b"r", vec![put("f:s", b"abc")]);
    let m = illegal_argument(c.atomic_increment("t".into(), b"r".to_vec(), b"f:s".to_vec(), 1));
    assert!(m.contains("3 bytes"), "{m}");
    io_error(c.atomic_increment("t".into(), b"r".to_vec(), b"zz:n".to_vec(), 1));
    io_error(c.atomic_increment("nope".into(), b"r".to_vec(), b"f:n".to_vec(), 1));
}

/// Sends one call written by hand (to leave arguments out) and returns the protocol, at the
/// start of the reply's result struct, after checking the reply header.
fn raw_call(
    addr: &str,
    name: &str,
    write_args: impl FnOnce(&mut dyn TOutputProtocol),
) -> TBinaryInputProtocol<TcpStream> {
    let mut buf = Vec::new();
    {
        let mut o = TBinaryOutputProtocol::new(&mut buf, true);
        o.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, 7))
            .unwrap();
        o.write_struct_begin(&TStructIdentifier::new("args"))
            .unwrap();
        write_args(&mut o);
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.write_message_end().unwrap();
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(&buf).unwrap();
    stream.flush().unwrap();
    let mut i = TBinaryInputProtocol::new(stream, true);
    let reply = i.read_message_begin().unwrap();
    assert_eq!(reply.name, name);
    assert_eq!(reply.message_type, TMessageType::Reply, "{reply:?}");
    assert_eq!(reply.sequence_number, 7);
    i.read_struct_begin().unwrap();
    i
}

fn write_binary(o: &mut dyn TOutputProtocol, id: i16, value: &[u8]) {
    o.write_field_begin(&TFieldIdentifier::new("f", TType::String, id))
        .unwrap();
    o.write_bytes(value).unwrap();
    o.write_field_end().unwrap();
}

/// The `success` field (id 0) of a result struct.
fn success_field(i: &mut dyn TInputProtocol, ttype: TType) {
    let f = i.read_field_begin().unwrap();
    assert_eq!((f.id, f.field_type), (Some(0), ttype), "{f:?}");
}

#[test]
fn absent_arguments_are_tolerated() {
    let emu = emulator();
    let mut c = client(&emu.addr);
    create(&mut c, "t", &["f"]);
    mutate(&mut c, "t", b"r1", vec![put("f:q", b"v")]);

    // getRow(tableName, row) without `attributes` (field 3).
    let mut i = raw_call(&emu.addr, "getRow", |o| {
        write_binary(o, 1, b"t");
        write_binary(o, 2, b"r1");
    });
    success_field(&mut i, TType::List);
    let list = i.read_list_begin().unwrap();
    assert_eq!(list.size, 1);
    let row = TRowResult::read_from_in_protocol(&mut i).unwrap();
    assert_eq!(
        simple(&row),
        (b"r1".to_vec(), vec![("f:q".to_string(), b"v".to_vec())])
    );

    // checkAndPut without `value` (field 5) nor `attributes`: "must not exist".
    let check_and_put = |expect: bool| {
        let mut i = raw_call(&emu.addr, "checkAndPut", |o| {
            write_binary(o, 1, b"t");
            write_binary(o, 2, b"r2");
            write_binary(o, 3, b"f:q");
            o.write_field_begin(&TFieldIdentifier::new("mput", TType::Struct, 6))
                .unwrap();
            put("f:q", b"first").write_to_out_protocol(o).unwrap();
            o.write_field_end().unwrap();
        });
        success_field(&mut i, TType::Bool);
        assert_eq!(i.read_bool().unwrap(), expect);
    };
    check_and_put(true);
    check_and_put(false);
    assert_eq!(value(&mut c, "t", b"r2", "f:q"), Some(b"first".to_vec()));

    // scannerOpen with only the table name: a full scan of all columns.
    let mut i = raw_call(&emu.addr, "scannerOpen", |o| write_binary(o, 1, b"t"));
    success_field(&mut i, TType::I32);
    let id = i.read_i32().unwrap();
    assert_eq!(
        rows_of(&c.scanner_get_list(id, 10).unwrap()),
        vec![b"r1".to_vec(), b"r2".to_vec()]
    );
}

#[test]
fn snapshot_survives_kill_9_and_restart_on_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("hbase.snapshot");
    let mut emu = EmulatorProcess::start(exe(), Some(&snapshot), 0);
    let addr = emu.addr.clone();
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    // An open connection while the emulator dies leaves the port in TIME_WAIT on the
    // server side: the restart must still bind it (SO_REUSEADDR).
    let mut c = client(&addr);
    create(&mut c, "t", &["f", "g"]);
    create(&mut c, "gone", &["f"]);
    create(&mut c, "off", &["f"]);
    mutate(&mut c, "t", b"r1", vec![put("f:a", b"1"), put("g:b", &big)]);
    mutate(&mut c, "t", b"r2", vec![put("f:a", b"2")]);
    mutate(&mut c, "t", b"r3", vec![put("f:a", b"3")]);
    c.delete_all_row("t".into(), b"r2".to_vec(), no_attrs())
        .unwrap();
    c.delete_all("t".into(), b"r1".to_vec(), b"f:a".to_vec(), no_attrs())
        .unwrap();
    c.mutate_row_ts(
        "t".into(),
        b"r4".to_vec(),
        vec![put("f:a", b"4")],
        1234,
        no_attrs(),
    )
    .unwrap();
    assert_eq!(
        c.atomic_increment("t".into(), b"n".to_vec(), b"f:c".to_vec(), 41)
            .unwrap(),
        41
    );
    assert!(c
        .check_and_put(
            "t".into(),
            b"lock".to_vec(),
            b"f:o".to_vec(),
            vec![],
            put("f:o", b"me"),
            no_attrs()
        )
        .unwrap());
    c.disable_table("gone".into()).unwrap();
    c.delete_table("gone".into()).unwrap();
    c.disable_table("off".into()).unwrap();

    emu.kill();
    assert!(!emu.is_running());
    emu.restart();
    assert_eq!(emu.addr, addr);
    drop(c);

    let check = |addr: &str| {
        let mut c = client(addr);
        assert_eq!(
            c.get_table_names().unwrap(),
            vec![b"off".to_vec(), b"t".to_vec()]
        );
        assert!(!c.is_table_enabled("off".into()).unwrap());
        let id = c
            .scanner_open("t".into(), vec![], vec![], no_attrs())
            .unwrap();
        let rows = c.scanner_get_list(id, 100).unwrap();
        assert_eq!(
            rows_of(&rows),
            vec![
                b"lock".to_vec(),
                b"n".to_vec(),
                b"r1".to_vec(),
                b"r3".to_vec(),
                b"r4".to_vec()
            ]
        );
        assert_eq!(value(&mut c, "t", b"r1", "g:b"), Some(big.clone()));
        assert_eq!(value(&mut c, "t", b"r1", "f:a"), None);
        assert_eq!(value(&mut c, "t", b"r3", "f:a"), Some(b"3".to_vec()));
        let cells = c
            .get("t".into(), b"r4".to_vec(), b"f:a".to_vec(), no_attrs())
            .unwrap();
        assert_eq!(cells[0].timestamp, Some(1234));
        assert_eq!(value(&mut c, "t", b"lock", "f:o"), Some(b"me".to_vec()));
        assert_eq!(
            c.atomic_increment("t".into(), b"n".to_vec(), b"f:c".to_vec(), 1)
                .unwrap(),
            42
        );
    };
    check(&emu.addr);
    // A second round: the compacted snapshot plus new changes survive too.
    emu.restart();
    let mut c = client(&emu.addr);
    assert_eq!(
        value(&mut c, "t", b"n", "f:c"),
        Some(42i64.to_be_bytes().to_vec())
    );
    c.atomic_increment("t".into(), b"n".to_vec(), b"f:c".to_vec(), -1)
        .unwrap();
    emu.restart();
    check(&emu.addr);
    assert!(emu.output().contains("listening on"));
}

#[test]
fn a_torn_snapshot_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("hbase.snapshot");
    let mut emu = EmulatorProcess::start(exe(), Some(&snapshot), 0);
    let mut c = client(&emu.addr);
    create(&mut c, "t", &["f"]);
    mutate(&mut c, "t", b"r1", vec![put("f:a", b"kept")]);
    mutate(&mut c, "t", b"r2", vec![put("f:a", b"torn")]);
    emu.kill();
    // Simulate a write cut short by the kill: drop the last bytes of the file.
    let len = std::fs::metadata(&snapshot).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&snapshot)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    emu.restart();
    let mut c = client(&emu.addr);
    assert_eq!(value(&mut c, "t", b"r1", "f:a"), Some(b"kept".to_vec()));
    assert_eq!(value(&mut c, "t", b"r2", "f:a"), None);
    // The warning goes to stderr, drained by another thread than the listening line.
    emu.wait_for_output("torn", std::time::Duration::from_secs(10));
}
