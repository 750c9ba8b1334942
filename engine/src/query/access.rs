//! Queries as one caller sees the data ([`Access`]): a session whose catalog holds only the
//! projects the caller sees, without its denied tables, and with its partly denied tables
//! behind a provider that hides the denied columns (so `SELECT *`, `information_schema` and the
//! planner never see them); and row filters put above every scan of a filtered table before
//! the cube rewrite, which then answers from a cube only when it can apply them (a filter on a
//! dimension) and refuses otherwise, exactly as for a filter the query wrote itself.
//!
//! A view depends only on the snapshot and [`Access::fingerprint`], so callers who see the same
//! data share it (and the engine's caches, which are keyed by the fingerprint too).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, Session, TableProvider,
};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError, SchemaError, TableReference};
use datafusion::datasource::TableType;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::catalog::{Snapshot, CATALOG};
use super::folding::{FoldedCatalog, FoldedSchema};
use super::keys::ForeignKey;
use super::TableInfo;
use crate::error::{Error, Result};
use crate::security::Access;

/// The session one fingerprint plans in (see the module documentation).
pub(crate) struct View {
    pub state: SessionState,
    /// [`Access::fingerprint`] of the callers it serves; part of every cache key.
    pub fingerprint: String,
}

impl View {
    pub fn new(snap: &Snapshot, access: &Access) -> Result<View> {
        let catalog = MemoryCatalogProvider::new();
        for p in snap
            .projects
            .iter()
            .filter(|p| access.sees_project(&p.name))
        {
            let schema = MemorySchemaProvider::new();
            for t in &p.tables {
                let Some(provider) = snap.providers.get(&(p.name.clone(), t.name.clone())) else {
                    continue;
                };
                let provider = match access.restriction(&p.name, &t.name) {
                    Some(r) if r.denied => continue,
                    Some(r) if !r.denied_columns.is_empty() => {
                        Arc::new(HidingTable::new(provider.clone(), |c| r.denies_column(c)))
                            as Arc<dyn TableProvider>
                    }
                    _ => provider.clone(),
                };
                schema.register_table(t.name.clone(), provider)?;
            }
            catalog.register_schema(&p.name, Arc::new(FoldedSchema(Arc::new(schema))))?;
        }
        let list = MemoryCatalogProviderList::new();
        list.register_catalog(
            CATALOG.to_string(),
            Arc::new(FoldedCatalog(Arc::new(catalog))),
        );
        // The snapshot's session (configuration, functions, memory pool) over this catalog.
        let state = SessionStateBuilder::new_from_existing(snap.state.clone())
            .with_catalog_list(Arc::new(list))
            .build();
        Ok(View {
            state,
            fingerprint: access.fingerprint(),
        })
    }
}

/// A table without some of its columns: they are absent from its schema, and scans map the
/// visible columns' positions onto the inner table's.
#[derive(Debug)]
struct HidingTable {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// For each visible column, its index in the inner table.
    visible: Vec<usize>,
}

impl HidingTable {
    fn new(inner: Arc<dyn TableProvider>, hidden: impl Fn(&str) -> bool) -> HidingTable {
        let all = inner.schema();
        let visible: Vec<usize> = (0..all.fields().len())
            .filter(|&i| !hidden(all.field(i).name()))
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(
            visible
                .iter()
                .map(|&i| all.field(i).clone())
                .collect::<Vec<_>>(),
            all.metadata().clone(),
        ));
        HidingTable {
            inner,
            schema,
            visible,
        }
    }
}

#[async_trait]
impl TableProvider for HidingTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            None => self.visible.clone(),
            Some(p) => p
                .iter()
                .map(|&i| {
                    self.visible.get(i).copied().ok_or_else(|| {
                        DataFusionError::Internal(format!("column {i} is out of range"))
                    })
                })
                .collect::<datafusion::error::Result<_>>()?,
        };
        // Filters name columns, which keep their names in the inner table.
        self.inner
            .scan(state, Some(&projection), filters, limit)
            .await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}

/// The project and table a scan reads, as stored (`None` for `information_schema` and what
/// the snapshot does not know).
fn scanned<'s>(snap: &'s Snapshot, name: &TableReference) -> Option<(&'s str, &'s str)> {
    let resolved = name.clone().resolve(CATALOG, &snap.default_project);
    if resolved.schema.as_ref() == INFORMATION_SCHEMA {
        return None;
    }
    let project = snap.project(&resolved.schema)?;
    let table = project
        .tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(&resolved.table))?;
    Some((project.name.as_str(), table.name.as_str()))
}

/// `plan` with the caller's row filters directly above every scan of a filtered table
/// (subqueries included; above the alias when the scan has one, so the predicate is qualified
/// as the query's own predicates on that table are). `state` parses the filters.
pub(crate) fn with_row_filters(
    plan: LogicalPlan,
    snap: &Snapshot,
    state: &SessionState,
    access: &Access,
) -> Result<LogicalPlan> {
    if !access.has_restrictions() {
        return Ok(plan);
    }
    match plan {
        LogicalPlan::Explain(mut e) => {
            let inner = with_row_filters(e.plan.as_ref().clone(), snap, state, access)?;
            e.plan = Arc::new(inner);
            return Ok(LogicalPlan::Explain(e));
        }
        LogicalPlan::Analyze(mut a) => {
            let inner = with_row_filters(a.input.as_ref().clone(), snap, state, access)?;
            a.input = Arc::new(inner);
            return Ok(LogicalPlan::Analyze(a));
        }
        _ => {}
    }
    let mut failure: Option<Error> = None;
    let filtered = plan.transform_down_with_subqueries(|node| {
        let scan = match &node {
            LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
                LogicalPlan::TableScan(t) => t,
                _ => return Ok(Transformed::no(node)),
            },
            LogicalPlan::TableScan(t) => t,
            _ => return Ok(Transformed::no(node)),
        };
        let Some((project, table)) = scanned(snap, &scan.table_name) else {
            return Ok(Transformed::no(node));
        };
        let filters = match access.restriction(project, table) {
            Some(r) if !r.row_filters.is_empty() => &r.row_filters,
            _ => return Ok(Transformed::no(node)),
        };
        let schema: &DFSchema = node.schema();
        let parsed: std::result::Result<Vec<Expr>, DataFusionError> = filters
            .iter()
            .map(|f| state.create_logical_expr(f, schema))
            .collect();
        let node = Arc::new(node);
        let filter = parsed.and_then(|p| {
            let predicate = conjunction(p).expect("at least one row filter");
            Filter::try_new(predicate, node.clone())
        });
        let filter = match filter {
            Ok(f) => f,
            Err(e) => {
                // Fail closed: rows the caller may not see never leave unfiltered.
                failure = Some(Error::PermissionDenied(format!(
                    "the row filter on table {project}.{table} cannot be applied for user {}: {}",
                    access.user,
                    e.find_root()
                )));
                let node = Arc::unwrap_or_clone(node);
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Stop));
            }
        };
        // The scan below is filtered once; do not descend to it again.
        Ok(Transformed::new(
            LogicalPlan::Filter(filter),
            true,
            TreeNodeRecursion::Jump,
        ))
    });
    let filtered = filtered.map_err(super::from_datafusion)?.data;
    match failure {
        Some(e) => Err(e),
        None => Ok(filtered),
    }
}

/// A planning error naming a column the caller may not read in one of `tables` (project,
/// table as stored): PERMISSION_DENIED naming it, rather than "no field named".
pub(crate) fn denied_column(
    e: &DataFusionError,
    access: &Access,
    tables: &[(String, String)],
) -> Option<Error> {
    let DataFusionError::SchemaError(schema_error, _) = e.find_root() else {
        return None;
    };
    let SchemaError::FieldNotFound { field, .. } = schema_error.as_ref() else {
        return None;
    };
    let field: &Column = field;
    tables
        .iter()
        .filter(|(_, t)| match &field.relation {
            // A qualifier may be an alias: only the column name is compared then.
            Some(r) => r.table().eq_ignore_ascii_case(t) || !tables_named(tables, r.table()),
            None => true,
        })
        .find(|(p, t)| {
            access
                .restriction(p, t)
                .is_some_and(|r| r.denies_column(&field.name))
        })
        .map(|(p, t)| {
            Error::PermissionDenied(format!(
                "column {p}.{t}.{} is denied to user {}",
                field.name, access.user
            ))
        })
}

fn tables_named(tables: &[(String, String)], name: &str) -> bool {
    tables.iter().any(|(_, t)| t.eq_ignore_ascii_case(name))
}

/// The source tables of `snap` as `access` sees them: its projects, without denied tables and
/// columns.
pub(crate) fn tables(snap: &Snapshot, access: &Access) -> Result<Vec<TableInfo>> {
    let mut out = Vec::new();
    for p in snap
        .projects
        .iter()
        .filter(|p| access.sees_project(&p.name))
    {
        for t in &p.tables {
            let schema = crate::model::table_schema(t)?;
            let schema = match access.restriction(&p.name, &t.name) {
                Some(r) if r.denied => continue,
                Some(r) if !r.denied_columns.is_empty() => Arc::new(Schema::new_with_metadata(
                    schema
                        .fields()
                        .iter()
                        .filter(|f| !r.denies_column(f.name()))
                        .cloned()
                        .collect::<Vec<_>>(),
                    schema.metadata().clone(),
                )),
                _ => schema,
            };
            out.push(TableInfo {
                project: p.name.clone(),
                name: t.name.clone(),
                schema,
            });
        }
    }
    Ok(out)
}

/// The foreign keys whose project, tables and columns `access` all sees.
pub(crate) fn foreign_keys(keys: &[ForeignKey], access: &Access) -> Vec<ForeignKey> {
    let sees =
        |project: &str, table: &str, columns: &[String]| match access.restriction(project, table) {
            Some(r) => !r.denied && !columns.iter().any(|c| r.denies_column(c)),
            None => true,
        };
    keys.iter()
        .filter(|k| {
            access.sees_project(&k.project)
                && sees(&k.project, &k.pk_table, &k.pk_columns)
                && sees(&k.project, &k.fk_table, &k.fk_columns)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;
    use crate::admin::documents::create_project;
    use crate::config::Config;
    use crate::error::ErrorKind;
    use crate::metadata::local::LocalResourceStore;
    use crate::metadata::managers::Metadata;
    use crate::model::{ColumnDesc, ProjectDesc, SourceFormat, TableDesc};
    use crate::query::QueryEngine;
    use crate::security::{ProjectRole, TableRestriction};

    /// Projects `shop` (`sales(day, store_id, item, qty)`, `store(s_id, city, region)`) and
    /// `hr` (`salary(name, amount)`), no cube, pushdown on.
    fn engine() -> (tempfile::TempDir, QueryEngine) {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        let files = [
            (
                "sales.csv",
                "day,store_id,item,qty\n1,1,apple,3\n1,2,pear,1\n2,3,apple,2\n2,1,plum,5\n",
            ),
            (
                "store.csv",
                "s_id,city,region\n1,Lyon,south\n2,Nice,south\n3,Lille,north\n",
            ),
            ("salary.csv", "name,amount\nann,10\n"),
        ];
        for (name, text) in files {
            std::fs::write(source.join(name), text).unwrap();
        }
        let meta = Metadata::new(Arc::new(
            LocalResourceStore::open(dir.path().join("meta")).unwrap(),
        ));
        let table = |project: &str, name: &str, cols: &[(&str, &str)]| TableDesc {
            project: project.into(),
            name: name.into(),
            location: format!("{name}.csv"),
            format: SourceFormat::Csv,
            columns: cols
                .iter()
                .map(|(n, t)| ColumnDesc {
                    name: n.to_string(),
                    data_type: t.to_string(),
                })
                .collect(),
            csv_delimiter: None,
            csv_header: None,
            partition_columns: vec![],
        };
        for p in ["shop", "hr"] {
            create_project(
                &meta,
                &ProjectDesc {
                    name: p.into(),
                    description: String::new(),
                },
            )
            .unwrap();
        }
        let tables = [
            table(
                "shop",
                "sales",
                &[
                    ("day", "integer"),
                    ("store_id", "integer"),
                    ("item", "varchar"),
                    ("qty", "bigint"),
                ],
            ),
            table(
                "shop",
                "store",
                &[
                    ("s_id", "integer"),
                    ("city", "varchar"),
                    ("region", "varchar"),
                ],
            ),
            table("hr", "salary", &[("name", "varchar"), ("amount", "bigint")]),
        ];
        for t in &tables {
            meta.save_table(t).unwrap();
        }
        let text = format!(
            "kylin.metadata.url={0}/meta\nkylin.storage.url={0}/segments\n\
             kylin.source.url={0}/source\nkylin.query.pushdown.enabled=true\n\
             kylin.query.default-project=shop\n",
            dir.path().display()
        );
        let config = Config::from_parts(&text, "test", |_| None).unwrap();
        let segments = crate::storage::open_segment_store(&config.stores.storage_url).unwrap();
        let engine = QueryEngine::new(&config, meta, segments);
        (dir, engine)
    }

    /// A QUERY user of `shop` with `tables` restrictions.
    fn user(name: &str, tables: &[(&str, TableRestriction)]) -> Access {
        Access {
            user: name.into(),
            admin: false,
            projects: BTreeMap::from([("shop".to_string(), ProjectRole::Query)]),
            tables: tables
                .iter()
                .map(|(t, r)| (("shop".to_string(), t.to_string()), r.clone()))
                .collect(),
        }
    }

    fn rows_filter(f: &str) -> TableRestriction {
        TableRestriction {
            row_filters: vec![f.into()],
            ..Default::default()
        }
    }

    async fn text(engine: &QueryEngine, access: &Access, sql: &str) -> String {
        let out = engine.execute_as(access, sql, None).await.unwrap();
        pretty_format_batches(&out.batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn a_client_statement_holds_the_warm_up_until_its_stream_is_dropped() {
        let (_dir, engine) = engine();
        let bob = user("bob", &[]);
        assert!(!engine.clients_running());
        let started = std::time::Instant::now();
        engine.pause_for_clients();
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        // Planned and streaming, not yet read: the warm-up waits for it, bounded.
        let stream = engine
            .execute_stream_as(&bob, "SELECT * FROM sales", None)
            .await
            .unwrap();
        assert!(engine.clients_running());
        let started = std::time::Instant::now();
        engine.pause_for_clients();
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(200)
                && waited < std::time::Duration::from_secs(2),
            "{waited:?}"
        );
        // Read to the end, it still counts until dropped (a client may stop reading).
        let batches: Vec<_> = futures::TryStreamExt::try_collect(stream.batches)
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        assert!(
            !engine.clients_running(),
            "the collected stream was dropped"
        );
        // A failed statement leaves no count behind; the warm-up's own statements never count.
        assert!(engine
            .execute_stream_as(&bob, "SELECT nope FROM sales", None)
            .await
            .is_err());
        assert!(!engine.clients_running());
        let snap = engine.current().unwrap();
        let own = engine
            .execute_stream_in(
                &snap,
                None,
                "SELECT * FROM shop.sales",
                None,
                super::super::Recording::Off,
            )
            .await
            .unwrap();
        assert!(!engine.clients_running());
        drop(own);
    }

    #[tokio::test]
    async fn other_projects_do_not_exist_for_the_caller() {
        let (_dir, engine) = engine();
        let bob = user("bob", &[]);
        for sql in ["SELECT * FROM hr.salary", "SELECT * FROM HR.salary"] {
            let e = engine.execute_as(&bob, sql, None).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
            assert!(e.to_string().contains("project"), "{e}");
        }
        // Its own project works, unqualified and qualified; information_schema lists only it.
        assert!(text(&engine, &bob, "SELECT count(*) AS n FROM sales")
            .await
            .contains("| 4 |"));
        let schemas = text(
            &engine,
            &bob,
            "SELECT DISTINCT table_schema FROM information_schema.tables \
             WHERE table_schema <> 'information_schema'",
        )
        .await;
        assert!(
            schemas.contains("shop") && !schemas.contains("hr"),
            "{schemas}"
        );
        assert_eq!(engine.projects_as(&bob).unwrap(), ["shop"]);
        let tables = engine.tables_as(&bob).unwrap();
        assert!(tables.iter().all(|t| t.project == "shop"));
        assert_eq!(tables.len(), 2);
        // The admin path still sees everything.
        let admin = Access::unrestricted("ADMIN");
        assert_eq!(engine.tables_as(&admin).unwrap().len(), 3);
        assert!(text(&engine, &admin, "SELECT name FROM hr.salary")
            .await
            .contains("ann"));

        // Without the default project, unqualified names are NotFound too.
        let mut hr_only = bob.clone();
        hr_only.projects = BTreeMap::from([("hr".to_string(), ProjectRole::Query)]);
        let e = engine
            .execute_as(&hr_only, "SELECT * FROM sales", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(text(&engine, &hr_only, "SELECT name FROM hr.salary")
            .await
            .contains("ann"));
    }

    #[tokio::test]
    async fn denied_tables_and_columns_are_refused_by_name_and_hidden() {
        let (_dir, engine) = engine();
        let denied = TableRestriction {
            denied: true,
            ..Default::default()
        };
        let no_qty = TableRestriction {
            denied_columns: ["QTY".to_string()].into(),
            ..Default::default()
        };
        let bob = user("bob", &[("store", denied), ("sales", no_qty)]);
        let e = engine
            .execute_as(&bob, "SELECT city FROM store", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(
            e.to_string()
                .contains("table shop.store is denied to user bob"),
            "{e}"
        );
        for sql in [
            "SELECT sum(qty) FROM sales",
            "SELECT s.qty FROM sales s",
            "SELECT item FROM sales WHERE sales.qty > 1",
        ] {
            let e = engine.execute_as(&bob, sql, None).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{sql}: {e}");
            assert!(e.to_string().contains("shop.sales.qty"), "{sql}: {e}");
        }
        let out = engine
            .execute_as(&bob, "SELECT * FROM sales", None)
            .await
            .unwrap();
        let names: Vec<&str> = out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["day", "store_id", "item"]);
        assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        let prepared = engine
            .prepare_as(&bob, "SELECT * FROM sales")
            .await
            .unwrap();
        assert_eq!(prepared.schema.fields().len(), 3);
        let columns = text(
            &engine,
            &bob,
            "SELECT table_name, column_name FROM information_schema.columns",
        )
        .await;
        assert!(
            !columns.contains("qty") && !columns.contains("city"),
            "{columns}"
        );
        assert!(columns.contains("store_id"), "{columns}");
        let tables = engine.tables_as(&bob).unwrap();
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].schema.fields().len(), 3);
        // An unknown column is still the ordinary error.
        let e = engine
            .execute_as(&bob, "SELECT nope FROM sales", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::User, "{e}");
    }

    #[tokio::test]
    async fn row_filters_apply_everywhere_and_never_share_a_cache() {
        let (_dir, engine) = engine();
        let south = user("ann", &[("store", rows_filter("region = 'south'"))]);
        let north = user("bob", &[("store", rows_filter("region = 'north'"))]);
        let sql = "SELECT count(*) AS n FROM sales JOIN store ON store_id = s_id";
        for _ in 0..2 {
            assert!(text(&engine, &south, sql).await.contains("| 3 |"));
            assert!(text(&engine, &north, sql).await.contains("| 1 |"));
        }
        let admin = Access::unrestricted("ADMIN");
        assert!(text(&engine, &admin, sql).await.contains("| 4 |"));
        // Aliases, subqueries, self joins and EXPLAIN.
        let cities = text(
            &engine,
            &north,
            "SELECT a.city FROM store a, store b WHERE a.s_id = b.s_id AND a.s_id IN \
             (SELECT s_id FROM store)",
        )
        .await;
        assert!(
            cities.contains("Lille") && !cities.contains("Lyon"),
            "{cities}"
        );
        let cte = text(
            &engine,
            &north,
            "WITH s AS (SELECT city FROM store) SELECT city FROM s \
             UNION ALL SELECT city FROM shop.store WHERE s_id > 1",
        )
        .await;
        assert_eq!(cte.matches("Lille").count(), 2, "{cte}");
        assert!(!cte.contains("Nice") && !cte.contains("Lyon"), "{cte}");
        let explain = text(&engine, &north, &format!("EXPLAIN {sql}")).await;
        assert!(explain.contains("north"), "{explain}");
        // Several filters AND; a filter on a column the caller may not read fails closed.
        let both = user(
            "cy",
            &[(
                "store",
                TableRestriction {
                    row_filters: vec!["region = 'south'".into(), "city <> 'Nice'".into()],
                    ..Default::default()
                },
            )],
        );
        assert!(text(&engine, &both, sql).await.contains("| 2 |"));
        let hidden = user(
            "dee",
            &[(
                "store",
                TableRestriction {
                    denied_columns: ["region".to_string()].into(),
                    row_filters: vec!["region = 'south'".into()],
                    ..Default::default()
                },
            )],
        );
        let e = engine.execute_as(&hidden, sql, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        // So does a filter that is not a predicate, or not SQL at all.
        for bad in ["city", "region = ", "nope = 1"] {
            let odd = user("eve", &[("store", rows_filter(bad))]);
            let e = engine.execute_as(&odd, sql, None).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{bad}: {e}");
            assert!(e.to_string().contains("shop.store"), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_of_hidden_tables_and_columns_are_left_out() {
        let key = |fk_table: &str, fk: &str| ForeignKey {
            project: "shop".into(),
            pk_table: "store".into(),
            pk_columns: vec!["s_id".into()],
            fk_table: fk_table.into(),
            fk_columns: vec![fk.into()],
        };
        let keys = vec![key("sales", "store_id"), key("returns", "store_id")];
        let no_returns = user(
            "bob",
            &[(
                "returns",
                TableRestriction {
                    denied: true,
                    ..Default::default()
                },
            )],
        );
        assert_eq!(foreign_keys(&keys, &no_returns), vec![keys[0].clone()]);
        let no_fk = user(
            "bob",
            &[(
                "sales",
                TableRestriction {
                    denied_columns: ["store_id".to_string()].into(),
                    ..Default::default()
                },
            )],
        );
        assert_eq!(foreign_keys(&keys, &no_fk), vec![keys[1].clone()]);
        let mut elsewhere = no_fk.clone();
        elsewhere.projects.clear();
        assert!(foreign_keys(&keys, &elsewhere).is_empty());
    }
}
