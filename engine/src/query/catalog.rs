//! A consistent view of the metadata store at one version: projects and their source tables
//! (registered with DataFusion as catalog `qilin`, one schema per project), and the READY
//! segments of every cube. A new snapshot is built when the store's version moves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::common::DFSchema;
use datafusion::common::ScalarValue;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{create_udf, ColumnarValue, Expr, ScalarUDF, Volatility};
use datafusion::prelude::SessionConfig;

use super::canonical::canonical;
use super::folding::{FoldedCatalog, FoldedSchema};
use super::keys::{foreign_keys, ForeignKey};
use super::{dense_aggregate, percentile, sketch};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metadata::managers::Metadata;
use crate::model::{descriptor_signature, table_schema, CubeLayout, Segment, TableDesc};
use crate::source::table_provider;

/// The one catalog name clients see; projects are its schemas.
pub const CATALOG: &str = "qilin";

/// A cube that can answer queries: its layout and READY segments.
#[derive(Debug)]
pub(crate) struct Realization {
    pub layout: Arc<CubeLayout>,
    pub segments: Vec<Segment>,
    /// Canonical text of each measure's input (see `canonical`), `None` for COUNT(*).
    pub measure_inputs: Vec<Option<String>>,
}

#[derive(Debug)]
pub(crate) struct ProjectCatalog {
    pub name: String,
    pub tables: Vec<TableDesc>,
    pub realizations: Vec<Realization>,
}

pub(crate) struct Snapshot {
    pub version: u64,
    pub default_project: String,
    pub projects: Vec<ProjectCatalog>,
    /// Source tables as DataFusion providers, by (project, table).
    pub providers: HashMap<(String, String), Arc<dyn TableProvider>>,
    pub state: SessionState,
    /// `state` with one partition, for plans a cube answers: they read a few blocks, and
    /// splitting that into partitions costs more in planning and task hand-offs than it
    /// gains; concurrency comes from concurrent queries. Pushdown keeps `state`.
    pub cube_state: SessionState,
    /// The foreign keys the models' joins declare (see `keys`).
    pub foreign_keys: Vec<ForeignKey>,
}

impl Snapshot {
    pub fn project(&self, name: &str) -> Option<&ProjectCatalog> {
        self.projects
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// What `SELECT version()` answers.
pub fn version_text() -> String {
    format!(
        "Qilin {} (Apache DataFusion {})",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    )
}

/// `version()`: Qilin's version and DataFusion's, instead of DataFusion's alone.
fn version_udf() -> ScalarUDF {
    let text = version_text();
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// The session every query plans in: catalog `qilin`, default schema = the default project,
/// `information_schema` (which reads the catalog, not source data), executing in `runtime`
/// (the engine's memory pool and spill directory, shared by every snapshot).
fn session_state(
    default_project: &str,
    runtime: Arc<RuntimeEnv>,
    dense_aggregation: bool,
) -> SessionState {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, default_project)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    // A sort reserves this much up front for merging its spilled runs (10 MiB by default,
    // per partition): under a small memory budget, reserve a sixteenth of it instead.
    if let MemoryLimit::Finite(budget) = runtime.memory_pool.memory_limit() {
        let sort = &mut config.options_mut().execution.sort_spill_reservation_bytes;
        *sort = (*sort).min(budget / 16);
    }
    // Read strings as Utf8, the type stored in cuboids, so both paths yield one type.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features();
    if dense_aggregation {
        // Re-aggregation by dimension ids: an array index, not a hash table (last, after
        // DataFusion has placed and combined its aggregations).
        builder = builder.with_physical_optimizer_rule(Arc::new(dense_aggregate::DenseAggregation));
    }
    let mut state = builder.build();
    let _ = state.register_udf(Arc::new(version_udf()));
    for udaf in [
        sketch::hll_count(),
        sketch::bitmap_count(),
        sketch::top_n(),
        percentile::tdigest_merge(),
        // `percentile_approx` must plan on the source tables too (pushdown).
        percentile::approx_percentile_cont_with_alias(),
    ] {
        // Registration makes the functions visible by name (for EXPLAIN output and debugging).
        let _ = state.register_udaf(udaf);
    }
    let _ = state.register_udf(percentile::tdigest_quantile());
    state
}

/// Reads the whole metadata store into a snapshot. Cubes whose descriptors no longer resolve
/// are skipped with a warning, so one broken cube does not take every query down.
pub(crate) fn load(
    meta: &Metadata,
    config: &Config,
    version: u64,
    runtime: Arc<RuntimeEnv>,
) -> Result<Snapshot> {
    let source_url = Path::new(&config.stores.source_url);
    let mut projects = Vec::new();
    for p in meta.projects()? {
        projects.push(ProjectCatalog {
            tables: meta.tables(&p.name)?,
            name: p.name,
            realizations: Vec::new(),
        });
    }
    // The configured default project, or the only project when there is exactly one.
    let default_project = if projects
        .iter()
        .any(|p| p.name == config.query.default_project)
        || projects.len() != 1
    {
        config.query.default_project.clone()
    } else {
        projects[0].name.clone()
    };
    let state = session_state(
        &default_project,
        runtime,
        config.query.dense_aggregation_enabled,
    );
    let catalog = Arc::new(MemoryCatalogProvider::new());
    let mut providers = HashMap::new();
    for p in &projects {
        let schema = Arc::new(MemorySchemaProvider::new());
        for t in &p.tables {
            match table_provider(t, source_url) {
                Ok(provider) => {
                    schema.register_table(t.name.clone(), provider.clone())?;
                    providers.insert((p.name.clone(), t.name.clone()), provider);
                }
                Err(e) => log::warn!("table {}.{} is not queryable: {e}", p.name, t.name),
            }
        }
        catalog.register_schema(&p.name, Arc::new(FoldedSchema(schema)))?;
    }
    state
        .catalog_list()
        .register_catalog(CATALOG.to_string(), Arc::new(FoldedCatalog(catalog)));

    for desc in meta.cube_descs()? {
        let layout = match meta.cube_layout(&desc.name, config.cube.max_cuboids_per_group) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                log::warn!("cube {} cannot answer queries: {e}", desc.name);
                continue;
            }
        };
        // Only segments built under the current layout: a query never mixes segments of
        // different descriptors (stale ones wait for a refresh).
        let signature = descriptor_signature(&layout);
        let segments: Vec<Segment> = match meta.cube_instance(&desc.name) {
            Ok((instance, _)) => {
                let (current, stale): (Vec<&Segment>, Vec<&Segment>) = instance
                    .ready_segments()
                    .partition(|s| s.built_under(&signature));
                if !stale.is_empty() {
                    log::info!(
                        "cube {}: {} READY segment(s) built under an earlier descriptor are \
                         not queried until refreshed: {}",
                        desc.name,
                        stale.len(),
                        stale
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                current.into_iter().cloned().collect()
            }
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let Some(project) = projects.iter_mut().find(|p| p.name == layout.model.project) else {
            log::warn!(
                "cube {}: project {} does not exist",
                desc.name,
                layout.model.project
            );
            continue;
        };
        let measure_inputs = match measure_inputs(&state, &layout) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("cube {} cannot answer queries: {e}", desc.name);
                continue;
            }
        };
        project.realizations.push(Realization {
            layout,
            segments,
            measure_inputs,
        });
    }
    let foreign_keys = foreign_keys(&meta.models()?, |project, table| {
        projects
            .iter()
            .find(|p| p.name == project)
            .and_then(|p| p.tables.iter().find(|t| t.name.eq_ignore_ascii_case(table)))
            .map_or_else(|| table.to_string(), |t| t.name.clone())
    });
    let mut cube_state = state.clone();
    cube_state
        .config_mut()
        .options_mut()
        .execution
        .target_partitions = 1;
    Ok(Snapshot {
        version,
        default_project,
        projects,
        providers,
        state,
        cube_state,
        foreign_keys,
    })
}

/// Canonical text of every measure input; computed columns are parsed as SQL over the
/// model's tables (each under its alias) so that `sum(lo_extendedprice * lo_discount)` in a
/// query matches measure `SUM(v_revenue)`.
fn measure_inputs(state: &SessionState, layout: &CubeLayout) -> Result<Vec<Option<String>>> {
    let fact = &layout.model.fact_table;
    let table = |name: &str| {
        layout
            .tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::NotFound {
                kind: "table",
                name: name.to_string(),
            })
    };
    let mut schema =
        DFSchema::try_from_qualified_schema(fact.as_str(), table_schema(table(fact)?)?.as_ref())?;
    for j in &layout.joins {
        let lookup = DFSchema::try_from_qualified_schema(
            j.alias.as_str(),
            table_schema(table(&j.table)?)?.as_ref(),
        )?;
        schema = schema.join(&lookup)?;
    }
    layout
        .measures
        .iter()
        .map(|m| {
            let Some(input) = &m.input else {
                return Ok(None);
            };
            let expr: Expr = match &input.expression {
                Some(sql) => state.create_logical_expr(sql, &schema)?,
                None => Expr::Column(datafusion::common::Column::new(
                    Some(input.table.as_str()),
                    input.column.as_str(),
                )),
            };
            Ok(canonical(&expr, &|c| {
                Some((
                    c.relation
                        .as_ref()
                        .map(|r| r.table().to_string())
                        .unwrap_or_else(|| fact.clone()),
                    c.name.clone(),
                ))
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;

    #[test]
    fn dense_aggregation_runs_last_and_only_when_enabled() {
        let rule_names = |enabled| {
            let runtime = RuntimeEnvBuilder::new().build_arc().unwrap();
            session_state("ssb", runtime, enabled)
                .physical_optimizers()
                .iter()
                .map(|r| r.name().to_string())
                .collect::<Vec<_>>()
        };
        let on = rule_names(true);
        assert_eq!(on.last().map(String::as_str), Some("dense_aggregation"));
        let off = rule_names(false);
        assert!(!off.iter().any(|n| n == "dense_aggregation"), "{off:?}");
        assert_eq!(on.len(), off.len() + 1);
    }
}
