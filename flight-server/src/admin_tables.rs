//! Flight `DoAction`s on source tables, each a JSON body answered with JSON:
//! - `qilin.table.add`: an `AddTable` (`project`, `name`, `location`, optional `format`,
//!   `csv_delimiter`, `csv_header`, `schema`) → the stored table;
//! - `qilin.table.reload`: `{project, name}` (optional `schema`) → the reload report;
//! - `qilin.table.list`: `{project}` → the project's tables;
//! - `qilin.table.show`: `{project, name}` → the table;
//! - `qilin.table.drop`: `{project, name}` → the dropped table.
//!
//! The work is `qilin_engine::admin::tables`; a body that does not parse is the client's
//! error (INVALID_ARGUMENT) naming the action.

use std::path::Path;

use qilin_engine::admin::tables::{self, AddTable, TableRef};
use qilin_engine::error::{Error, Result};
use qilin_engine::metadata::managers::Metadata;
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub const TABLE_ADD: &str = "qilin.table.add";
pub const TABLE_RELOAD: &str = "qilin.table.reload";
pub const TABLE_LIST: &str = "qilin.table.list";
pub const TABLE_SHOW: &str = "qilin.table.show";
pub const TABLE_DROP: &str = "qilin.table.drop";

/// The body of `qilin.table.list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectRef {
    project: String,
}

/// Runs a `qilin.table.*` action; `None` for any other action type.
pub async fn table_action(
    meta: &Metadata,
    source_root: &Path,
    action_type: &str,
    body: &[u8],
) -> Option<Result<serde_json::Value>> {
    let result = match action_type {
        TABLE_ADD => match parse::<AddTable>(action_type, body) {
            Ok(req) => json(tables::add(meta, source_root, &req).await),
            Err(e) => Err(e),
        },
        TABLE_RELOAD => match parse::<TableRef>(action_type, body) {
            Ok(req) => json(tables::reload(meta, source_root, &req).await),
            Err(e) => Err(e),
        },
        TABLE_LIST => parse::<ProjectRef>(action_type, body)
            .and_then(|r| json(tables::list(meta, &r.project))),
        TABLE_SHOW => parse::<TableRef>(action_type, body)
            .and_then(|r| json(tables::show(meta, &r.project, &r.name))),
        TABLE_DROP => parse::<TableRef>(action_type, body)
            .and_then(|r| json(tables::drop(meta, &r.project, &r.name))),
        _ => return None,
    };
    Some(result)
}

fn parse<T: DeserializeOwned>(action_type: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("{action_type} body"), e.to_string()))
}

fn json<T: serde::Serialize>(r: Result<T>) -> Result<serde_json::Value> {
    r.map(|v| serde_json::to_value(v).expect("descriptors and reports always serialize"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use qilin_engine::error::ErrorKind;
    use qilin_engine::metadata::LocalResourceStore;
    use qilin_engine::model::ProjectDesc;

    use super::*;

    #[tokio::test]
    async fn table_actions_add_list_show_reload_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("items.csv"), "id,label\n1,a\n2,b\n").unwrap();
        let meta = Metadata::new(Arc::new(
            LocalResourceStore::open(dir.path().join("meta")).unwrap(),
        ));
        meta.save_project(&ProjectDesc {
            name: "p".into(),
            description: String::new(),
        })
        .unwrap();
        let run = |action: &'static str, body: &'static str| {
            let meta = meta.clone();
            let source = source.clone();
            async move {
                table_action(&meta, &source, action, body.as_bytes())
                    .await
                    .expect("a table action")
            }
        };

        let added = run(
            TABLE_ADD,
            r#"{"project": "p", "name": "items", "location": "items.csv"}"#,
        )
        .await
        .unwrap();
        assert_eq!(added["format"], "csv");
        assert_eq!(
            added["columns"],
            serde_json::json!([
                {"name": "id", "data_type": "bigint"},
                {"name": "label", "data_type": "varchar"}
            ])
        );
        let listed = run(TABLE_LIST, r#"{"project": "p"}"#).await.unwrap();
        assert_eq!(listed, serde_json::json!([added.clone()]));
        let shown = run(TABLE_SHOW, r#"{"project": "p", "name": "items"}"#)
            .await
            .unwrap();
        assert_eq!(shown, added);

        std::fs::write(source.join("items.csv"), "id,price\n1,2.5\n").unwrap();
        let report = run(TABLE_RELOAD, r#"{"project": "p", "name": "items"}"#)
            .await
            .unwrap();
        assert_eq!(
            report["added"],
            serde_json::json!([{"name": "price", "data_type": "double"}])
        );
        assert_eq!(
            report["removed"],
            serde_json::json!([{"name": "label", "data_type": "varchar"}])
        );

        let dropped = run(TABLE_DROP, r#"{"project": "p", "name": "items"}"#)
            .await
            .unwrap();
        assert_eq!(dropped["name"], "items");
        let err = run(TABLE_SHOW, r#"{"project": "p", "name": "items"}"#)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

        let err = run(
            TABLE_ADD,
            r#"{"project": "p", "name": "x", "locaton": "y"}"#,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::User, "{err}");
        assert!(
            err.to_string().contains("qilin.table.add body") && err.to_string().contains("locaton"),
            "{err}"
        );
        assert!(table_action(&meta, &source, "qilin.build", b"{}")
            .await
            .is_none());
    }
}
