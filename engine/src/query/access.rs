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
        for p in snap.projects.iter().filter(|p| access.sees_project(&p.name)) {
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
        list.register_catalog(CATALOG.to_string(), Arc::new(FoldedCatalog(Arc::new(catalog))));
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
        let predicate = match parsed {
            Ok(p) => conjunction(p).expect("at least one row filter"),
            Err(e) => {
                // Fail closed: rows the caller may not see never leave unfiltered.
                failure = Some(Error::PermissionDenied(format!(
                    "the row filter on table {project}.{table} cannot be applied for user {}: {}",
                    access.user,
                    e.find_root()
                )));
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Stop));
            }
        };
        let filter = Filter::try_new(predicate, Arc::new(node))?;
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
        .find(|(p, t)| access.restriction(p, t).is_some_and(|r| r.denies_column(&field.name)))
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
    for p in snap.projects.iter().filter(|p| access.sees_project(&p.name)) {
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
    let sees = |project: &str, table: &str, columns: &[String]| match access
        .restriction(project, table)
    {
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
