//! `qilin-jobs table ...` end to end: add, list, show, reload and drop a CSV source table, and
//! bad input that exits 1 naming the flag, file or field at fault.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use qilin_engine::metadata::{managers::Metadata, LocalResourceStore};
use qilin_engine::model::ProjectDesc;

struct Install {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Install {
    fn new() -> Install {
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
        let store = LocalResourceStore::open(dir.path().join("meta")).unwrap();
        Metadata::new(Arc::new(store))
            .save_project(&ProjectDesc {
                name: "shop".into(),
                description: String::new(),
            })
            .unwrap();
        Install { dir, conf }
    }

    fn source_file(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join("source").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
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
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn ok(out: &Output) -> (String, String) {
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{o}\nstderr:\n{e}",
        out.status
    );
    (o, e)
}

fn fails_with(out: &Output, needles: &[&str]) {
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {e}");
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in stderr: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

const SALES: [&str; 4] = ["--project", "shop", "--name", "sales"];

#[test]
fn tables_are_added_listed_shown_reloaded_and_dropped() {
    let inst = Install::new();
    inst.source_file("sales/day=2024-01-01/a.csv", "id;item\n1;pen\n2;ink\n");
    inst.source_file("sales/day=2024-01-02/b.csv", "id;item\n3;pad\n");

    let add = |extra: &[&str]| {
        let mut args = vec!["table", "add"];
        args.extend(SALES);
        args.extend(["--location", "sales", "--format", "csv"]);
        args.extend(extra);
        inst.run(&args)
    };
    let (json, err) = ok(&add(&["--csv-delimiter", ";"]));
    assert!(
        err.contains("table shop.sales added: 2 columns and 1 partition columns"),
        "{err}"
    );
    let stored: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        stored["columns"],
        serde_json::json!([
            {"name": "id", "data_type": "bigint"},
            {"name": "item", "data_type": "varchar"}
        ])
    );
    assert_eq!(
        stored["partition_columns"],
        serde_json::json!([{"name": "day", "data_type": "date"}])
    );
    assert_eq!(stored["csv_delimiter"], ";");
    fails_with(
        &add(&["--csv-delimiter", ";"]),
        &["table shop.sales already exists"],
    );

    let (list, _) = ok(&inst.run(&["table", "list", "--project", "shop"]));
    let row = list.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("sales")
            && row.contains("csv")
            && row.contains(" 3 ")
            && row.ends_with("sales"),
        "{list}"
    );
    let (show, _) = ok(&inst.run(&[&["table", "show"][..], &SALES].concat()));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&show).unwrap(),
        stored
    );

    // A new column in every file; reload reports it and saves it.
    inst.source_file("sales/day=2024-01-01/a.csv", "id;item;qty\n1;pen;2\n");
    inst.source_file("sales/day=2024-01-02/b.csv", "id;item;qty\n3;pad;1\n");
    let (report, err) = ok(&inst.run(&[&["table", "reload"][..], &SALES].concat()));
    assert!(
        err.contains("table shop.sales reloaded: 1 added, 0 removed, 0 changed"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        report["added"],
        serde_json::json!([{"name": "qty", "data_type": "bigint"}])
    );
    let (show, _) = ok(&inst.run(&[&["table", "show"][..], &SALES].concat()));
    assert!(show.contains("\"qty\""), "{show}");

    let (_, err) = ok(&inst.run(&[&["table", "drop"][..], &SALES].concat()));
    assert!(err.contains("table shop.sales dropped"), "{err}");
    fails_with(
        &inst.run(&[&["table", "show"][..], &SALES].concat()),
        &["table shop.sales not found"],
    );
}

#[test]
fn bad_table_input_exits_1_naming_what_is_wrong() {
    let inst = Install::new();
    inst.source_file("raw.dat", "1|a\n");
    let schema = inst.dir.path().join("schema.json");
    std::fs::write(&schema, r#"[{"name": "id", "type": "bigint"}]"#).unwrap();
    let add = |extra: &[&str]| {
        let mut args = vec!["table", "add", "--project", "shop", "--name", "raw"];
        args.extend(extra);
        inst.run(&args)
    };
    fails_with(
        &add(&["--location", "raw.dat", "--format", "orc"]),
        &["--format \"orc\"", "parquet or csv"],
    );
    fails_with(
        &add(&[
            "--location",
            "raw.dat",
            "--format",
            "csv",
            "--csv-header",
            "no",
        ]),
        &["--csv-header \"no\"", "true or false"],
    );
    fails_with(
        &add(&[
            "--location",
            "raw.dat",
            "--format",
            "csv",
            "--csv-delimiter",
            "||",
        ]),
        &["--csv-delimiter \"||\""],
    );
    let schema_arg = schema.to_str().unwrap();
    fails_with(
        &add(&[
            "--location",
            "raw.dat",
            "--format",
            "csv",
            "--schema",
            schema_arg,
        ]),
        &["--schema file", "schema.json", "unknown field `type`"],
    );
    fails_with(
        &add(&["--location", "nowhere/"]),
        &["nowhere", "no *.parquet file"],
    );
    fails_with(
        &inst.run(&["table", "list", "--project", "nope"]),
        &["project nope not found"],
    );
    let (list, _) = ok(&inst.run(&["table", "list", "--project", "shop"]));
    assert_eq!(list.lines().count(), 1, "only the header: {list}");

    // The same file read with its declared schema.
    std::fs::write(
        &schema,
        r#"[{"name": "id", "data_type": "bigint"}, {"name": "tag", "data_type": "varchar"}]"#,
    )
    .unwrap();
    let (json, _) = ok(&add(&[
        "--location",
        "raw.dat",
        "--format",
        "csv",
        "--csv-delimiter",
        "|",
        "--csv-header",
        "false",
        "--schema",
        schema_arg,
    ]));
    assert!(
        json.contains("\"tag\"") && json.contains("\"csv_header\": false"),
        "{json}"
    );
}
