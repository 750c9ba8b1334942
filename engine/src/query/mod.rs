//! The query path: SQL written against the source tables → DataFusion logical plan → cube
//! rewrite (the aggregate over the model's join tree becomes a scan of the best cuboid plus a
//! re-aggregation) → execution. Queries no cube answers are pushed down to the raw tables when
//! `kylin.query.pushdown.enabled`, and fail with [`Error::NoRealization`] otherwise.
//!
//! Everything a server needs is on [`QueryEngine`]; it holds no per-client state.

mod cache;
mod canonical;
mod catalog;
/// For tests elsewhere in the crate: which segments a snapshot of the store queries.
#[cfg(test)]
pub(crate) use catalog::load as load_catalog;
mod cuboid_scan;
mod folding;
mod pruning;
mod rewrite;
mod segments;
mod sketch;

pub use crate::uncovered::Uncovered;
pub use catalog::CATALOG;
pub use pruning::prune_blocks;

use std::borrow::Cow;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::metadata::managers::Metadata;
use crate::storage::SegmentStore;
use cache::LruCache;
use catalog::Snapshot;
use cuboid_scan::{BlocksRead, CuboidScanExec};
use rewrite::{Outcome, Realized, Stored};
use segments::{CachedSegments, SegmentReader};

/// A query's result.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Served from the result cache.
    pub cached: bool,
}

/// What a client learns when it prepares a statement.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    /// The result schema.
    pub schema: SchemaRef,
    /// One field per parameter (`$1`, `$2`, ... or `?` in order), typed when the planner can tell.
    pub parameters: SchemaRef,
}

/// A source table as clients see it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The project (a schema of catalog [`CATALOG`]).
    pub project: String,
    pub name: String,
    pub schema: SchemaRef,
}

/// Plans and runs SQL over the cubes of a metadata store. Cheap to share (`Arc`); safe to call
/// from many tasks at once. It keeps no per-client state: only caches keyed by immutable data
/// (segment blocks) or by the metadata version (catalog snapshot, results).
pub struct QueryEngine {
    config: Config,
    meta: Metadata,
    /// Manifests and decoded blocks of the segment store, cached.
    segments: Arc<CachedSegments>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Serializes snapshot reloads so a version change triggers one reload, not one per query.
    reload: Mutex<()>,
    results: LruCache<String, QueryOutput>,
    /// Planned statements by (snapshot version, SQL text): a GetFlightInfo and the DoGet that
    /// follows it, and every repetition of a dashboard's query, plan once.
    plans: LruCache<(u64, String), LogicalPlan>,
    /// Rewritten and optimized plans of parameterless queries a cube answers, by the same key:
    /// a repeated query goes straight to physical planning and execution.
    rewritten: LruCache<(u64, String), LogicalPlan>,
    /// On a remote (HBase) store, queries do not read the store version each time: the
    /// snapshot moves on only through [`QueryEngine::refresh`] (polling, notifications).
    follow: bool,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("metadata", &self.meta.store().describe())
            .field("storage", &self.segments.describe())
            .finish()
    }
}

/// Planned statements kept (charged a rough size each, see [`QueryEngine::plan`]).
const PLAN_CACHE_BYTES: u64 = 64 << 20;

impl QueryEngine {
    /// A query engine over stores the process opened (once, shared with its other parts).
    pub fn new(config: &Config, meta: Metadata, store: Arc<dyn SegmentStore>) -> Self {
        let plan_cache_bytes = if config.query.plan_cache_enabled {
            PLAN_CACHE_BYTES
        } else {
            0
        };
        QueryEngine {
            config: config.clone(),
            meta,
            segments: Arc::new(CachedSegments::new(store)),
            snapshot: RwLock::new(None),
            reload: Mutex::new(()),
            results: LruCache::new(if config.query.cache_enabled {
                config.query.cache_max_bytes
            } else {
                0
            }),
            plans: LruCache::new(plan_cache_bytes),
            rewritten: LruCache::new(plan_cache_bytes),
            follow: crate::hbase::url::is_hbase_url(&config.stores.metadata_url),
        }
    }

    /// Whether the metadata version is followed by [`QueryEngine::refresh`] calls (remote
    /// store) rather than read on every query (local store, where that is one small file read).
    pub fn follows_version(&self) -> bool {
        self.follow
    }

    /// The metadata version the current snapshot was loaded at, if one is loaded.
    pub fn snapshot_version(&self) -> Option<u64> {
        self.snapshot
            .read()
            .expect("snapshot lock")
            .as_ref()
            .map(|s| s.version)
    }

    /// Reads the store version and reloads the catalog snapshot when the store moved on
    /// (dropping cached results, which are keyed by the old version anyway). Returns whether
    /// it reloaded. Blocking: call it off the async workers.
    pub fn refresh(&self) -> Result<bool> {
        let version = self.meta.store().store_version()?;
        if self.snapshot_version() == Some(version) {
            return Ok(false);
        }
        self.load_snapshot(version)?;
        self.results.clear();
        self.plans.clear();
        self.rewritten.clear();
        Ok(true)
    }

    fn load_snapshot(&self, version: u64) -> Result<Arc<Snapshot>> {
        let _one_reload = self.reload.lock().expect("reload lock");
        if let Some(s) = self.snapshot.read().expect("snapshot lock").as_ref() {
            if s.version == version {
                return Ok(s.clone());
            }
        }
        let snap = Arc::new(catalog::load(&self.meta, &self.config, version)?);
        *self.snapshot.write().expect("snapshot lock") = Some(snap.clone());
        Ok(snap)
    }

    /// The snapshot of the store's current version, reloaded when the store moved on; on a
    /// followed (remote) store, the last snapshot loaded.
    fn current(&self) -> Result<Arc<Snapshot>> {
        if self.follow {
            if let Some(s) = self.snapshot.read().expect("snapshot lock").as_ref() {
                return Ok(s.clone());
            }
        }
        let version = self.meta.store().store_version()?;
        if let Some(s) = self.snapshot.read().expect("snapshot lock").as_ref() {
            if s.version == version {
                return Ok(s.clone());
            }
        }
        self.load_snapshot(version)
    }

    /// What cuboid scans read from.
    fn reader(&self) -> Arc<dyn SegmentReader> {
        self.segments.clone()
    }

    /// Parses and plans `sql` (no rewrite yet), or takes the plan made for the same text at
    /// the same metadata version. Unknown tables are reported by name before planning, and
    /// only queries are accepted.
    async fn plan(&self, snap: &Snapshot, sql: &str) -> Result<LogicalPlan> {
        let key = (snap.version, sql.to_string());
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan);
        }
        let plan = self.plan_uncached(snap, sql).await?;
        // A plan is a tree of a few hundred nodes at most; charge it a generous fixed size.
        self.plans
            .insert(key, plan.clone(), 16 * 1024 + 2 * sql.len() as u64);
        Ok(plan)
    }

    async fn plan_uncached(&self, snap: &Snapshot, sql: &str) -> Result<LogicalPlan> {
        let sql = positional_placeholders(sql);
        let statement = snap
            .state
            .sql_to_statement(&sql, &datafusion::config::Dialect::Generic)
            .map_err(from_datafusion)?;
        if !is_query(&statement) {
            return Err(Error::Sql(
                "only queries (SELECT, WITH, VALUES, EXPLAIN) are supported".into(),
            ));
        }
        let references = snap
            .state
            .resolve_table_references(&statement)
            .map_err(from_datafusion)?;
        for r in references {
            let resolved = r.clone().resolve(CATALOG, &snap.default_project);
            if resolved.catalog.as_ref() != CATALOG {
                return Err(Error::NotFound {
                    kind: "catalog",
                    name: resolved.catalog.to_string(),
                });
            }
            let Some(project) = snap.project(&resolved.schema) else {
                return Err(Error::NotFound {
                    kind: "project",
                    name: resolved.schema.to_string(),
                });
            };
            // Table names are found ignoring case (see `folding`).
            if !snap
                .providers
                .keys()
                .any(|(p, t)| p == &project.name && t.eq_ignore_ascii_case(&resolved.table))
            {
                return Err(Error::NotFound {
                    kind: "table",
                    name: format!("{r} (in project {})", project.name),
                });
            }
        }
        let plan = snap
            .state
            .statement_to_plan(statement)
            .await
            .map_err(from_datafusion)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| Error::Sql(format!("only queries are supported: {e}")))?;
        Ok(plan)
    }

    /// Plans `sql` without running it: result schema and parameter schema.
    pub async fn prepare(&self, sql: &str) -> Result<PreparedQuery> {
        let snap = self.current()?;
        let plan = self.plan(&snap, sql).await?;
        let schema = match &plan {
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => explain_schema(),
            p => Arc::new(p.schema().as_arrow().clone()),
        };
        let mut params: Vec<(usize, Field)> = plan
            .get_parameter_types()
            .map_err(from_datafusion)?
            .into_iter()
            .map(|(name, dt)| {
                let n = name
                    .trim_start_matches('$')
                    .parse::<usize>()
                    .unwrap_or(usize::MAX);
                (n, Field::new(name, dt.unwrap_or(DataType::Null), true))
            })
            .collect();
        params.sort_by_key(|(n, _)| *n);
        Ok(PreparedQuery {
            schema,
            parameters: Arc::new(Schema::new(
                params.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
            )),
        })
    }

    /// Runs `sql`, binding the first row of `params` (if any) to its placeholders. `EXPLAIN
    /// <query>` returns rows naming the cube, cuboid, segments and blocks read (or pushdown).
    pub async fn execute(&self, sql: &str, params: Option<&RecordBatch>) -> Result<QueryOutput> {
        let snap = self.current()?;
        let values = param_values(params)?;
        let cache_key = self.config.query.cache_enabled.then(|| {
            format!(
                "{}\u{0}{}\u{0}{:?}",
                snap.version,
                normalize_sql(sql),
                values
            )
        });
        if let Some(k) = &cache_key {
            if let Some(mut hit) = self.results.get(k) {
                hit.cached = true;
                return Ok(hit);
            }
        }
        let rewrite_key = values.is_empty().then(|| (snap.version, sql.to_string()));
        if let Some(optimized) = rewrite_key.as_ref().and_then(|k| self.rewritten.get(k)) {
            let out = run_optimized(&snap.cube_state, &optimized).await?;
            return Ok(self.remember_result(cache_key, out));
        }
        let plan = self.plan(&snap, sql).await?;
        let (explain, plan) = match plan {
            LogicalPlan::Explain(e) => (true, e.plan.as_ref().clone()),
            LogicalPlan::Analyze(a) => (true, a.input.as_ref().clone()),
            p => (false, p),
        };
        let plan = bind(plan, values)?;
        // `now()` and the like are folded into constants by the optimizer, with the time the
        // statement started: such a plan is not reusable.
        let time_dependent = calls_non_immutable_functions(&plan);
        let rewrite_key = rewrite_key.filter(|_| !time_dependent);
        let out = match rewrite::rewrite(plan.clone(), &snap, &self.reader())? {
            Outcome::Answered { plan, realized } if explain => {
                let state = statement_state(&snap.state, time_dependent);
                let optimized = state.optimize(&plan).map_err(from_datafusion)?;
                let physical = state
                    .query_planner()
                    .create_physical_plan(&optimized, state.as_ref())
                    .await
                    .map_err(from_datafusion)?;
                let blocks = blocks_read(&realized, &physical)?;
                explain_output(explain_rows(&realized, &blocks), &optimized)?
            }
            Outcome::Answered { plan, .. } => {
                let cube_state = statement_state(&snap.cube_state, time_dependent);
                let optimized = cube_state.optimize(&plan).map_err(from_datafusion)?;
                if let Some(k) = rewrite_key {
                    // A plan is a tree of a few hundred nodes at most; charge a generous size.
                    self.rewritten
                        .insert(k, optimized.clone(), 16 * 1024 + 2 * sql.len() as u64);
                }
                run_optimized(&cube_state, &optimized).await?
            }
            Outcome::Uncovered(reason) if explain => {
                let verdict = if self.config.query.pushdown_enabled {
                    format!("pushdown to the source tables: {reason}")
                } else {
                    format!("no realization found: {reason}")
                };
                explain_output(vec![("realization".into(), verdict)], &plan)?
            }
            Outcome::Uncovered(_) if self.config.query.pushdown_enabled => {
                let state = statement_state(&snap.state, time_dependent);
                let optimized = state.optimize(&plan).map_err(from_datafusion)?;
                run_optimized(&state, &optimized).await?
            }
            Outcome::Uncovered(reason) => return Err(Error::NoRealization(reason)),
        };
        Ok(self.remember_result(cache_key, out))
    }

    /// Puts a fresh result into the result cache (when it is on) and returns it.
    fn remember_result(&self, cache_key: Option<String>, out: QueryOutput) -> QueryOutput {
        if let Some(k) = cache_key {
            let bytes: usize = out.batches.iter().map(|b| b.get_array_memory_size()).sum();
            self.results.insert(k, out.clone(), bytes as u64);
        }
        out
    }

    /// Plans `sql` and applies the cube rewrite without running anything: the planner's plan
    /// and, when cubes answer every table the query reads, the rewritten plan.
    pub async fn plan_and_rewrite(&self, sql: &str) -> Result<(LogicalPlan, Option<LogicalPlan>)> {
        let snap = self.current()?;
        let plan = self.plan(&snap, sql).await?;
        let rewritten = self.rewrite_plan_in(&snap, plan.clone()).await?;
        Ok((plan, rewritten))
    }

    /// Applies the cube rewrite to a logical plan (`None`: some table is not answered).
    pub async fn rewrite_plan(&self, plan: LogicalPlan) -> Result<Option<LogicalPlan>> {
        let snap = self.current()?;
        self.rewrite_plan_in(&snap, plan).await
    }

    async fn rewrite_plan_in(
        &self,
        snap: &Snapshot,
        plan: LogicalPlan,
    ) -> Result<Option<LogicalPlan>> {
        Ok(match rewrite::rewrite(plan, snap, &self.reader())? {
            Outcome::Answered { plan, .. } => Some(plan),
            Outcome::Uncovered(_) => None,
        })
    }

    /// Every source table of every project.
    pub fn tables(&self) -> Result<Vec<TableInfo>> {
        let snap = self.current()?;
        let mut out = Vec::new();
        for p in &snap.projects {
            for t in &p.tables {
                out.push(TableInfo {
                    project: p.name.clone(),
                    name: t.name.clone(),
                    schema: crate::model::table_schema(t)?,
                });
            }
        }
        Ok(out)
    }

    /// The project unqualified table names resolve in.
    pub fn default_project(&self) -> Result<String> {
        Ok(self.current()?.default_project.clone())
    }

    /// The metadata store's version (grows on every change).
    pub fn metadata_version(&self) -> Result<u64> {
        self.meta.store().store_version()
    }

    /// Drops cached metadata and results; the next query reloads from the store.
    pub fn invalidate(&self) {
        *self.snapshot.write().expect("snapshot lock") = None;
        self.segments.clear();
        self.results.clear();
        self.plans.clear();
        self.rewritten.clear();
    }
}

/// Whether `plan` (subqueries included) calls a function whose result is not fixed by its
/// arguments (`now()`, `current_date`, `random()`).
fn calls_non_immutable_functions(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            let _ = e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.func.signature().volatility != Volatility::Immutable {
                        found = true;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The session a statement plans in: for a time-dependent one a copy whose execution start
/// time is now (the optimizer replaces `now()` and `current_date` with that time, and without
/// one leaves them to fail at execution); otherwise the snapshot's own.
fn statement_state(state: &SessionState, time_dependent: bool) -> Cow<'_, SessionState> {
    if !time_dependent {
        return Cow::Borrowed(state);
    }
    let mut state = state.clone();
    state.mark_start_execution();
    Cow::Owned(state)
}

/// Plans an already optimized logical plan physically in `state` and runs it.
async fn run_optimized(state: &SessionState, plan: &LogicalPlan) -> Result<QueryOutput> {
    let physical = state
        .query_planner()
        .create_physical_plan(plan, state)
        .await
        .map_err(from_datafusion)?;
    let schema = physical.schema();
    let batches = datafusion::physical_plan::collect(physical, state.task_ctx())
        .await
        .map_err(from_datafusion)?;
    Ok(QueryOutput {
        schema: batches.first().map(|b| b.schema()).unwrap_or(schema),
        batches,
        cached: false,
    })
}

fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("plan_type", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]))
}

/// Blocks read of blocks stored, per realized aggregate, from the pruning predicates of the
/// cuboid scans in the physical plan (reads manifests, no blocks). A scan the optimizer
/// removed (a filter that is never true) reads nothing.
fn blocks_read(realized: &[Realized], plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<BlocksRead>> {
    let mut scans: Vec<&CuboidScanExec> = Vec::new();
    let mut stack = vec![plan];
    while let Some(p) = stack.pop() {
        if let Some(scan) = p.downcast_ref::<CuboidScanExec>() {
            scans.push(scan);
        }
        stack.extend(p.children());
    }
    realized
        .iter()
        .map(
            |r| match scans.iter().find(|s| s.table_id() == r.table.id()) {
                Some(scan) => scan.blocks_read(),
                None => Ok(BlocksRead {
                    read: 0,
                    total: r.table.scan_all().blocks_read()?.total,
                }),
            },
        )
        .collect()
}

fn explain_rows(realized: &[Realized], blocks: &[BlocksRead]) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if realized.is_empty() {
        rows.push((
            "realization".into(),
            "none needed: the query reads no table".into(),
        ));
    }
    for (r, b) in realized.iter().zip(blocks) {
        match &r.stored {
            Some(Stored::Snapshot {
                project,
                table,
                segment,
            }) => {
                rows.push((
                    "realization".into(),
                    format!("snapshot of {project}.{table} (segment {segment})"),
                ));
                rows.push(("blocks".into(), format!("read {} of {}", b.read, b.total)));
                continue;
            }
            Some(Stored::TableIndex) => {
                rows.push((
                    "realization".into(),
                    format!("table index of cube {}", r.cube),
                ));
                rows.push(("segments".into(), r.segments.join(", ")));
                rows.push(("blocks".into(), format!("read {} of {}", b.read, b.total)));
                continue;
            }
            None => {}
        }
        rows.push(("realization".into(), format!("cube {}", r.cube)));
        rows.push((
            "cuboid".into(),
            format!(
                "cuboid {} [{}] with {} rows",
                r.cuboid,
                r.dimensions.join(", "),
                r.cuboid_rows
            ),
        ));
        rows.push(("segments".into(), r.segments.join(", ")));
        rows.push(("blocks".into(), format!("read {} of {}", b.read, b.total)));
        if !r.derived_tables.is_empty() {
            rows.push((
                "derived".into(),
                format!("joined lookup tables {}", r.derived_tables.join(", ")),
            ));
        }
    }
    rows
}

fn explain_output(mut rows: Vec<(String, String)>, plan: &LogicalPlan) -> Result<QueryOutput> {
    rows.push(("logical_plan".into(), plan.display_indent().to_string()));
    let schema = explain_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
        ],
    )?;
    Ok(QueryOutput {
        schema,
        batches: vec![batch],
        cached: false,
    })
}

/// The first row of a parameter batch as scalars.
fn param_values(params: Option<&RecordBatch>) -> Result<Vec<ScalarValue>> {
    let Some(batch) = params else {
        return Ok(Vec::new());
    };
    if batch.num_columns() == 0 {
        return Ok(Vec::new());
    }
    if batch.num_rows() != 1 {
        return Err(Error::Sql(format!(
            "a query takes one row of parameters; {} were bound",
            batch.num_rows()
        )));
    }
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(from_datafusion))
        .collect()
}

/// Replaces placeholders with `values`, cast to the types the planner inferred (clients send
/// Python ints as Int64 for an Int32 column, for instance).
fn bind(plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan> {
    let types = plan.get_parameter_types().map_err(from_datafusion)?;
    if types.is_empty() && values.is_empty() {
        return Ok(plan);
    }
    if types.len() != values.len() {
        return Err(Error::Sql(format!(
            "the query has {} parameters; {} values were bound",
            types.len(),
            values.len()
        )));
    }
    let values = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match types.get(&format!("${}", i + 1)) {
            Some(Some(dt)) if v.data_type() != *dt => v.cast_to(dt).map_err(|e| {
                Error::Sql(format!("parameter ${}: cannot use {v} as {dt}: {e}", i + 1))
            }),
            _ => Ok(v),
        })
        .collect::<Result<Vec<_>>>()?;
    plan.with_param_values(values).map_err(from_datafusion)
}

/// A read-only query, possibly under EXPLAIN; DDL, DML and session statements are refused
/// before anything resolves their table names.
fn is_query(statement: &DFStatement) -> bool {
    match statement {
        DFStatement::Statement(s) => {
            matches!(
                s.as_ref(),
                datafusion::sql::sqlparser::ast::Statement::Query(_)
            )
        }
        DFStatement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// `?` placeholders (JDBC, ADBC's DB-API) become `$1, $2, ...`, which DataFusion binds.
fn positional_placeholders(sql: &str) -> String {
    if !sql.contains('?') {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    if !tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p == "?"))
    {
        return sql.to_string();
    }
    let mut n = 0;
    tokens
        .iter()
        .map(|t| match t {
            Token::Placeholder(p) if p == "?" => {
                n += 1;
                format!("${n}")
            }
            t => t.to_string(),
        })
        .collect()
}

/// The result-cache form of a statement: whitespace runs outside quotes collapsed, no
/// trailing semicolon.
fn normalize_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut space = false;
    for ch in sql.trim().trim_end_matches(';').trim_end().chars() {
        match quote {
            Some(q) => {
                out.push(ch);
                if ch == q {
                    quote = None;
                }
            }
            None if ch.is_whitespace() => space = true,
            None => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                }
                out.push(ch);
            }
        }
    }
    out
}

/// DataFusion errors caused by the SQL become [`Error::Sql`] (with the root cause's text);
/// errors of ours that travelled through DataFusion (a corrupt block read during a scan) come
/// back as themselves where they can be rebuilt, and keep their kind otherwise.
fn from_datafusion(e: DataFusionError) -> Error {
    let root = e.find_root();
    if let DataFusionError::External(inner) = root {
        match inner.downcast_ref::<Error>() {
            Some(Error::Corrupt { what, detail }) => {
                return Error::corrupt(what.clone(), detail.clone())
            }
            Some(Error::NotFound { kind, name }) => {
                return Error::NotFound {
                    kind,
                    name: name.clone(),
                }
            }
            Some(Error::Unavailable { what, detail }) => {
                return Error::Unavailable {
                    what: what.clone(),
                    detail: detail.clone(),
                }
            }
            _ => {}
        }
    }
    match crate::error::datafusion_kind(&e) {
        ErrorKind::User => Error::Sql(root.to_string()),
        _ => Error::DataFusion(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plans_calling_now_or_random_are_not_reusable() {
        let ctx = datafusion::prelude::SessionContext::new();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap().into_unoptimized_plan() }
        };
        assert!(calls_non_immutable_functions(&plan("SELECT now()").await));
        assert!(calls_non_immutable_functions(
            &plan("SELECT 1 WHERE random() < 0.5").await
        ));
        assert!(calls_non_immutable_functions(
            &plan("SELECT 1 WHERE 1 IN (SELECT 1 WHERE current_date() IS NOT NULL)").await
        ));
        assert!(!calls_non_immutable_functions(
            &plan("SELECT abs(-1) + 1").await
        ));
    }

    #[test]
    fn question_marks_become_numbered_outside_strings() {
        assert_eq!(
            positional_placeholders("select a from t where a = ? and b = '?' and c = ?"),
            "select a from t where a = $1 and b = '?' and c = $2"
        );
        assert_eq!(positional_placeholders("select 1"), "select 1");
    }

    #[test]
    fn normalization_keeps_literals() {
        assert_eq!(
            normalize_sql("  select  a,\n\tb from t where s = 'x  y' ; "),
            "select a, b from t where s = 'x  y'"
        );
    }
}
