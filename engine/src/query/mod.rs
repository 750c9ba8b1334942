//! The query path: SQL written against the source tables → DataFusion logical plan → cube
//! rewrite (the aggregate over the model's join tree becomes a scan of the best cuboid plus a
//! re-aggregation) → execution. Queries no cube answers are pushed down to the raw tables when
//! `kylin.query.pushdown.enabled`, and fail with [`Error::NoRealization`] otherwise.
//!
//! Results stream ([`QueryEngine::execute_stream`]): nothing is collected in the server, so a
//! detail query's first batch leaves before its input is read whole, within a memory pool of
//! `kylin.query.max-memory-mb` shared by all queries.
//!
//! Everything a server needs is on [`QueryEngine`]; it holds no per-client state. The `*_as`
//! methods run as one caller ([`Access`]): only its projects, its denied tables and columns
//! refused by name, its row filters applied on every path (see `access`).

mod access;
mod cache;
mod canonical;
mod catalog;
mod cuboid_scan;
mod dense_aggregate;
mod dimension_filter;
mod folding;
pub mod history;
mod keys;
mod lookup;
mod percentile;
mod pruning;
mod rewrite;
mod segments;
mod sketch;
mod string_filter;
mod string_ids;
mod warm;

pub use crate::uncovered::Uncovered;
pub use catalog::{version_text, CATALOG};
pub use keys::{ForeignKey, PrimaryKey};
pub use pruning::prune_blocks;
pub use warm::{WarmReport, WarmUp};

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::{Stream, TryStreamExt};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::metadata::managers::Metadata;
use crate::security::Access;
use crate::storage::SegmentStore;
use access::View;
use cache::LruCache;
use catalog::Snapshot;
use cuboid_scan::{BlocksRead, CuboidScanExec};
use history::{CuboidUse, QueryHistory};
use rewrite::{Outcome, Realized, Stored};
use segments::{CachedSegments, SegmentReader};

/// A query's result, collected (see [`QueryEngine::execute`]).
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Served from the result cache.
    pub cached: bool,
    /// Who answered: see [`Answer`].
    pub answer: Answer,
}

/// Who answered a query (what Kylin's query API reports as `cube` and `pushDown`); a cached
/// result keeps what its first run said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The cubes whose cuboids or table index answered, each once, in plan order; empty for
    /// pushdown and for statements that read no table.
    pub cubes: Vec<String>,
    /// Run on the source tables (`kylin.query.pushdown.enabled`).
    pub pushdown: bool,
    /// Per cuboid-answered aggregate, the cuboid it wanted and the one it read (what the
    /// query history records).
    pub cuboids: Vec<CuboidUse>,
}

impl Answer {
    fn cubes(realized: &[rewrite::Realized], snap: &Snapshot) -> Answer {
        let mut cubes: Vec<String> = Vec::new();
        for r in realized {
            if !cubes.contains(&r.cube) {
                cubes.push(r.cube.clone());
            }
        }
        Answer {
            cubes,
            pushdown: false,
            cuboids: history::cuboid_uses(realized, snap),
        }
    }

    /// The aggregate that read the cuboid largest beyond its need, when one read a much
    /// larger cuboid than it wanted (see [`CuboidUse::fallback`]).
    pub fn fallback(&self) -> Option<&CuboidUse> {
        self.cuboids
            .iter()
            .filter(|u| u.fallback)
            .max_by_key(|u| u.chosen_rows.saturating_sub(u.wanted_rows))
    }
}

/// Batches as execution produces them; an error ends the stream.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// A query's result as it is computed (see [`QueryEngine::execute_stream`]): nothing is
/// collected, so the first batch is available before the input is read whole, and dropping
/// the stream stops execution (a client that stops reading stops the scan).
pub struct QueryStream {
    /// The result schema; every batch has it (nullability included) and it equals what
    /// [`QueryEngine::prepare`] announces.
    pub schema: SchemaRef,
    pub batches: BatchStream,
    /// Served from the result cache.
    pub cached: bool,
    /// Who answered: see [`Answer`].
    pub answer: Answer,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .field("cached", &self.cached)
            .field("answer", &self.answer)
            .finish()
    }
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
    /// Results by (version, normalized SQL, parameters); only results under
    /// `cacheable_result_bytes` enter it (see [`Remember`]).
    results: Arc<LruCache<String, QueryOutput>>,
    cacheable_result_bytes: u64,
    /// Memory pool and spill directory of query execution (`kylin.query.max-memory-mb`),
    /// shared by every snapshot's sessions.
    runtime: Arc<RuntimeEnv>,
    /// Planned statements by (snapshot version, SQL text): a GetFlightInfo and the DoGet that
    /// follows it, and every repetition of a dashboard's query, plan once.
    plans: LruCache<PlanKey, LogicalPlan>,
    /// Rewritten and optimized plans of parameterless queries a cube answers, by the same key:
    /// a repeated query goes straight to physical planning and execution.
    rewritten: LruCache<PlanKey, (LogicalPlan, SchemaRef, Answer)>,
    /// Sessions of restricted callers by (snapshot version, [`Access::fingerprint`]).
    views: LruCache<(u64, String), Arc<View>>,
    /// On a remote (HBase) store, queries do not read the store version each time: the
    /// snapshot moves on only through [`QueryEngine::refresh`] (polling, notifications).
    follow: bool,
    /// The query history (`kylin.query.history.enabled`).
    history: Option<Arc<QueryHistory>>,
    /// Statements parsed and planned, and plans rewritten (see [`QueryEngine::planning`]).
    parsed: AtomicU64,
    rewritten_count: AtomicU64,
    /// Client statements being planned or streamed (not the warm-up's own): the background
    /// warm-up waits for them between its steps (see `warm`).
    client_queries: Arc<AtomicUsize>,
}

/// How much planning the engine has done since it started: a statement prepared, described
/// and run (CreatePreparedStatement, GetFlightInfo, DoGet) must count one of each, and a
/// repetition of it none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanningCounts {
    /// Statements parsed and planned (plan-cache misses).
    pub statements: u64,
    /// Plans put through the cube rewrite and logical optimization.
    pub rewrites: u64,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("metadata", &self.meta.store().describe())
            .field("storage", &self.segments.describe())
            .finish()
    }
}

/// One client statement counted in [`QueryEngine::client_queries`] while alive.
struct ClientQuery(Arc<AtomicUsize>);

impl ClientQuery {
    fn begin(count: &Arc<AtomicUsize>) -> ClientQuery {
        count.fetch_add(1, Ordering::Relaxed);
        ClientQuery(count.clone())
    }
}

impl Drop for ClientQuery {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a run goes into the query history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recording {
    On,
    /// The warm start's replays of recorded statements.
    Off,
}

/// Plans by (snapshot version, [`Access::fingerprint`] of a restricted caller or empty for
/// the unrestricted path, SQL text).
type PlanKey = (u64, String, String);

/// Sessions of restricted callers kept (each holds a small catalog of shared providers).
const VIEWS_KEPT: u64 = 64;

/// A restricted caller: its access and the session its fingerprint plans in.
#[derive(Clone, Copy)]
struct Scope<'a> {
    access: &'a Access,
    view: &'a View,
}

/// Planned statements kept (charged a rough size each, see [`QueryEngine::plan`]).
const PLAN_CACHE_BYTES: u64 = 64 << 20;

/// A result enters the result cache only when it is at most this fraction of the cache's
/// bound: larger results stream through without a copy being kept.
const CACHEABLE_FRACTION_OF_CACHE: u64 = 8;

/// The execution environment of queries: a memory pool of `kylin.query.max-memory-mb`
/// (fair between spilling operators; an allocation failure names the largest consumers) and
/// DataFusion's disk manager, which spills to the system temporary directory.
pub(crate) fn runtime_env(config: &Config) -> Arc<RuntimeEnv> {
    let mut builder = RuntimeEnvBuilder::new();
    if config.query.max_memory_mb > 0 {
        let bytes = usize::try_from(config.query.max_memory_mb.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX);
        let top = std::num::NonZeroUsize::new(3).expect("non-zero");
        builder = builder.with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(bytes),
            top,
        )));
    }
    // Building fails only for configured spill directories that cannot be created; the
    // system temporary directory and the default caches need nothing created up front.
    builder
        .build_arc()
        .expect("a runtime over the system temporary directory")
}

/// For tests elsewhere in the crate: which segments a snapshot of the store queries.
#[cfg(test)]
pub(crate) fn load_catalog(meta: &Metadata, config: &Config, version: u64) -> Result<Snapshot> {
    catalog::load(meta, config, version, runtime_env(config))
}

impl QueryEngine {
    /// A query engine over stores the process opened (once, shared with its other parts).
    pub fn new(config: &Config, meta: Metadata, store: Arc<dyn SegmentStore>) -> Self {
        let plan_cache_bytes = if config.query.plan_cache_enabled {
            PLAN_CACHE_BYTES
        } else {
            0
        };
        let result_cache_bytes = if config.query.cache_enabled {
            config.query.cache_max_bytes
        } else {
            0
        };
        QueryEngine {
            config: config.clone(),
            segments: Arc::new(CachedSegments::new(store, config.query.block_cache_bytes)),
            snapshot: RwLock::new(None),
            reload: Mutex::new(()),
            results: Arc::new(LruCache::new(result_cache_bytes)),
            cacheable_result_bytes: result_cache_bytes / CACHEABLE_FRACTION_OF_CACHE,
            runtime: runtime_env(config),
            plans: LruCache::new(plan_cache_bytes),
            rewritten: LruCache::new(plan_cache_bytes),
            views: LruCache::new(VIEWS_KEPT),
            follow: crate::hbase::url::is_hbase_url(&config.stores.metadata_url),
            history: config
                .query
                .history_enabled
                .then(|| QueryHistory::new(meta.store().clone(), config)),
            meta,
            parsed: AtomicU64::new(0),
            rewritten_count: AtomicU64::new(0),
            client_queries: Arc::default(),
        }
    }

    /// Planning done so far (for status pages and tests).
    pub fn planning(&self) -> PlanningCounts {
        PlanningCounts {
            statements: self.parsed.load(Ordering::Relaxed),
            rewrites: self.rewritten_count.load(Ordering::Relaxed),
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
        self.views.clear();
        Ok(true)
    }

    fn load_snapshot(&self, version: u64) -> Result<Arc<Snapshot>> {
        let _one_reload = self.reload.lock().expect("reload lock");
        if let Some(s) = self.snapshot.read().expect("snapshot lock").as_ref() {
            if s.version == version {
                return Ok(s.clone());
            }
        }
        let snap = Arc::new(catalog::load(
            &self.meta,
            &self.config,
            version,
            self.runtime.clone(),
        )?);
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
    /// A restricted caller (`scope`) plans in its view, with its checks and row filters.
    async fn plan(
        &self,
        snap: &Snapshot,
        scope: Option<Scope<'_>>,
        sql: &str,
    ) -> Result<LogicalPlan> {
        let key = plan_key(snap, scope, sql);
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan);
        }
        let plan = self.plan_uncached(snap, scope, sql).await?;
        // A plan is a tree of a few hundred nodes at most; charge it a generous fixed size.
        self.plans
            .insert(key, plan.clone(), 16 * 1024 + 2 * sql.len() as u64);
        Ok(plan)
    }

    async fn plan_uncached(
        &self,
        snap: &Snapshot,
        scope: Option<Scope<'_>>,
        sql: &str,
    ) -> Result<LogicalPlan> {
        self.parsed.fetch_add(1, Ordering::Relaxed);
        let state = scope.map_or(&snap.state, |s| &s.view.state);
        let sql = positional_placeholders(sql);
        let statement = state
            .sql_to_statement(&sql, &datafusion::config::Dialect::Generic)
            .map_err(from_datafusion)?;
        if !is_query(&statement) {
            return Err(Error::Sql(
                "only queries (SELECT, WITH, VALUES, EXPLAIN, SHOW TABLES, SHOW COLUMNS) are \
                 supported"
                    .into(),
            ));
        }
        let references = state
            .resolve_table_references(&statement)
            .map_err(from_datafusion)?;
        // The tables the statement names, (project, table) as stored.
        let mut named: Vec<(String, String)> = Vec::new();
        for r in references {
            let resolved = r.clone().resolve(CATALOG, &snap.default_project);
            if resolved.catalog.as_ref() != CATALOG {
                return Err(Error::NotFound {
                    kind: "catalog",
                    name: resolved.catalog.to_string(),
                });
            }
            if resolved.schema.as_ref() == INFORMATION_SCHEMA {
                continue;
            }
            // A project the caller does not see is reported as if it did not exist.
            let Some(project) = snap
                .project(&resolved.schema)
                .filter(|p| scope.is_none_or(|s| s.access.sees_project(&p.name)))
            else {
                return Err(Error::NotFound {
                    kind: "project",
                    name: resolved.schema.to_string(),
                });
            };
            // Table names are found ignoring case (see `folding`).
            let Some((_, table)) = snap
                .providers
                .keys()
                .find(|(p, t)| p == &project.name && t.eq_ignore_ascii_case(&resolved.table))
            else {
                return Err(Error::NotFound {
                    kind: "table",
                    name: format!("{r} (in project {})", project.name),
                });
            };
            if let Some(s) = scope {
                if s.access
                    .restriction(&project.name, table)
                    .is_some_and(|r| r.denied)
                {
                    return Err(Error::PermissionDenied(format!(
                        "table {}.{table} is denied to user {}",
                        project.name, s.access.user
                    )));
                }
                named.push((project.name.clone(), table.clone()));
            }
        }
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) => {
                let denied = scope.and_then(|s| access::denied_column(&e, s.access, &named));
                return Err(denied.unwrap_or_else(|| from_datafusion(e)));
            }
        };
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| Error::Sql(format!("only queries are supported: {e}")))?;
        match scope {
            Some(s) => access::with_row_filters(plan, snap, state, s.access),
            None => Ok(plan),
        }
    }

    /// Plans `sql` without running it: result schema and parameter schema.
    pub async fn prepare(&self, sql: &str) -> Result<PreparedQuery> {
        let snap = self.current()?;
        let plan = self.plan(&snap, None, sql).await?;
        prepared(&plan)
    }

    /// [`QueryEngine::prepare`] as `access` sees the catalog (see
    /// [`QueryEngine::execute_stream_as`]).
    pub async fn prepare_as(&self, access: &Access, sql: &str) -> Result<PreparedQuery> {
        if access.admin {
            return self.prepare(sql).await;
        }
        let snap = self.current()?;
        let view = self.view(&snap, access)?;
        let scope = Scope {
            access,
            view: &view,
        };
        let plan = self.plan(&snap, Some(scope), sql).await?;
        prepared(&plan)
    }

    /// The session `access` plans in at `snap`, made once per fingerprint.
    fn view(&self, snap: &Snapshot, access: &Access) -> Result<Arc<View>> {
        let key = (snap.version, access.fingerprint());
        if let Some(v) = self.views.get(&key) {
            return Ok(v);
        }
        let view = Arc::new(View::new(snap, access)?);
        self.views.insert(key, view.clone(), 1);
        Ok(view)
    }
}

/// What [`QueryEngine::prepare`] reports of a planned statement.
fn prepared(plan: &LogicalPlan) -> Result<PreparedQuery> {
    let schema = announced_schema(plan);
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

impl QueryEngine {
    /// Runs `sql` and collects its result (for callers that want every batch at once: tests,
    /// the CLI); see [`QueryEngine::execute_stream`].
    pub async fn execute(&self, sql: &str, params: Option<&RecordBatch>) -> Result<QueryOutput> {
        let stream = self.execute_stream(sql, params).await?;
        let batches = stream.batches.try_collect().await?;
        Ok(QueryOutput {
            schema: stream.schema,
            batches,
            cached: stream.cached,
            answer: stream.answer,
        })
    }

    /// Runs `sql`, binding the first row of `params` (if any) to its placeholders, and returns
    /// its result as a stream: planned, rewritten, optimized and started, but not collected, so
    /// a detail query's first batch is available before its input is read whole and dropping
    /// the stream stops the scan. Errors of execution arrive in the stream. `EXPLAIN <query>`
    /// returns rows naming the cube, cuboid, segments and blocks read (or pushdown).
    pub async fn execute_stream(
        &self,
        sql: &str,
        params: Option<&RecordBatch>,
    ) -> Result<QueryStream> {
        let snap = self.current()?;
        self.execute_stream_in(&snap, None, sql, params, Recording::On)
            .await
    }

    /// [`QueryEngine::execute`] as `access` sees the data (see
    /// [`QueryEngine::execute_stream_as`]).
    pub async fn execute_as(
        &self,
        access: &Access,
        sql: &str,
        params: Option<&RecordBatch>,
    ) -> Result<QueryOutput> {
        let stream = self.execute_stream_as(access, sql, params).await?;
        let batches = stream.batches.try_collect().await?;
        Ok(QueryOutput {
            schema: stream.schema,
            batches,
            cached: stream.cached,
            answer: stream.answer,
        })
    }

    /// [`QueryEngine::execute_stream`] as `access` sees the data: only its projects (any
    /// other is NotFound, as if it did not exist), a denied table or column refused by name
    /// (PermissionDenied), its row filters applied on every path (a cube answers only when it
    /// can apply them), and every cache keyed by [`Access::fingerprint`]. A global admin takes
    /// the unrestricted path unchanged.
    pub async fn execute_stream_as(
        &self,
        access: &Access,
        sql: &str,
        params: Option<&RecordBatch>,
    ) -> Result<QueryStream> {
        if access.admin {
            return self.execute_stream(sql, params).await;
        }
        let snap = self.current()?;
        let view = self.view(&snap, access)?;
        let scope = Scope {
            access,
            view: &view,
        };
        self.execute_stream_in(&snap, Some(scope), sql, params, Recording::On)
            .await
    }

    /// Runs `sql`; a client's statement (`Recording::On`) counts in `client_queries` from
    /// here until its stream is dropped.
    async fn execute_stream_in(
        &self,
        snap: &Snapshot,
        scope: Option<Scope<'_>>,
        sql: &str,
        params: Option<&RecordBatch>,
        recording: Recording,
    ) -> Result<QueryStream> {
        let running =
            (recording == Recording::On).then(|| ClientQuery::begin(&self.client_queries));
        let mut out = self
            .execute_stream_counted(snap, scope, sql, params, recording)
            .await?;
        if let Some(running) = running {
            out.batches = Box::pin(futures::StreamExt::inspect(out.batches, move |_| {
                let _ = &running;
            }));
        }
        Ok(out)
    }

    /// Whether client statements are running (see `client_queries`).
    pub(crate) fn clients_running(&self) -> bool {
        self.client_queries.load(Ordering::Relaxed) > 0
    }

    async fn execute_stream_counted(
        &self,
        snap: &Snapshot,
        scope: Option<Scope<'_>>,
        sql: &str,
        params: Option<&RecordBatch>,
        recording: Recording,
    ) -> Result<QueryStream> {
        let started = Instant::now();
        let values = param_values(params)?;
        // What the history keeps of this run: nothing for the warm start's own replays (they
        // would count themselves), the text only of statements that can run again as written.
        let record = match recording {
            Recording::On => Some(values.is_empty().then_some(sql)),
            Recording::Off => None,
        };
        let cache_key = self.config.query.cache_enabled.then(|| match scope {
            None => format!(
                "{}\u{0}{}\u{0}{:?}",
                snap.version,
                normalize_sql(sql),
                values
            ),
            // A separator the unrestricted keys never hold after the version.
            Some(s) => format!(
                "{}\u{1}{}\u{0}{}\u{0}{:?}",
                snap.version,
                s.view.fingerprint,
                normalize_sql(sql),
                values
            ),
        });
        if let Some(k) = &cache_key {
            if let Some(hit) = self.results.get(k) {
                return Ok(QueryStream {
                    schema: hit.schema,
                    batches: Box::pin(futures::stream::iter(hit.batches.into_iter().map(Ok))),
                    cached: true,
                    answer: hit.answer,
                });
            }
        }
        let rewrite_key = values.is_empty().then(|| plan_key(snap, scope, sql));
        if let Some((optimized, announced, answer)) =
            rewrite_key.as_ref().and_then(|k| self.rewritten.get(k))
        {
            let (schema, stream) = start_optimized(&snap.cube_state, &optimized).await?;
            let stream = conform(announced, schema, stream);
            let run = record.map(|sql| (started, sql));
            return Ok(self.remember(cache_key, stream, answer, run));
        }
        let plan = self.plan(snap, scope, sql).await?;
        let announced = announced_schema(&plan);
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
        let mut answer = Answer::default();
        self.rewritten_count.fetch_add(1, Ordering::Relaxed);
        let (schema, stream) = match rewrite::rewrite(plan.clone(), snap, &self.reader())? {
            Outcome::Answered { plan, realized } if explain => {
                answer = Answer::cubes(&realized, snap);
                let state = statement_state(&snap.state, time_dependent);
                let optimized = state.optimize(&plan).map_err(from_datafusion)?;
                let physical = state
                    .query_planner()
                    .create_physical_plan(&optimized, state.as_ref())
                    .await
                    .map_err(from_datafusion)?;
                let blocks = blocks_read(&realized, &physical)?;
                explain_output(explain_rows(&realized, &blocks, &answer), &optimized)?
            }
            Outcome::Answered { plan, realized } => {
                answer = Answer::cubes(&realized, snap);
                let cube_state = statement_state(&snap.cube_state, time_dependent);
                let optimized = cube_state.optimize(&plan).map_err(from_datafusion)?;
                if let Some(k) = rewrite_key {
                    // A plan is a tree of a few hundred nodes at most; charge a generous size.
                    self.rewritten.insert(
                        k,
                        (optimized.clone(), announced.clone(), answer.clone()),
                        16 * 1024 + 2 * sql.len() as u64,
                    );
                }
                start_optimized(&cube_state, &optimized).await?
            }
            Outcome::Uncovered(reason) if explain => {
                if self.config.query.pushdown_enabled {
                    // The plan that would run (a LIMIT shows as the scan's `fetch`).
                    let state = statement_state(&snap.state, time_dependent);
                    let optimized = state.optimize(&plan).map_err(from_datafusion)?;
                    let verdict = format!("pushdown to the source tables: {reason}");
                    explain_output(vec![("realization".into(), verdict)], &optimized)?
                } else {
                    let verdict = format!("no realization found: {reason}");
                    explain_output(vec![("realization".into(), verdict)], &plan)?
                }
            }
            Outcome::Uncovered(_) if self.config.query.pushdown_enabled => {
                answer.pushdown = true;
                let state = statement_state(&snap.state, time_dependent);
                let optimized = state.optimize(&plan).map_err(from_datafusion)?;
                start_optimized(&state, &optimized).await?
            }
            Outcome::Uncovered(reason) => return Err(Error::NoRealization(reason)),
        };
        let stream = conform(announced, schema, stream);
        // EXPLAIN runs nothing: no history.
        let run = record.filter(|_| !explain).map(|sql| (started, sql));
        Ok(self.remember(cache_key, stream, answer, run))
    }

    /// A fresh result's stream, copied into the result cache as it passes when the cache is
    /// on (see [`Remember`]), and recorded in the query history when it ends if the query
    /// ran on cuboids and is to be recorded (`run`: when it started, and its replayable text).
    fn remember(
        &self,
        cache_key: Option<String>,
        (schema, stream): (SchemaRef, BatchStream),
        answer: Answer,
        run: Option<(Instant, Option<&str>)>,
    ) -> QueryStream {
        let stream = match (&self.history, run) {
            (Some(h), Some((started, sql))) if !answer.cuboids.is_empty() => history::recorded(
                stream,
                h.clone(),
                answer.cuboids.clone(),
                started,
                sql.map(str::to_string),
            ),
            _ => stream,
        };
        let batches: BatchStream = match cache_key {
            Some(key) if self.cacheable_result_bytes > 0 => Box::pin(Remember {
                inner: stream,
                key: Some(key),
                schema: schema.clone(),
                kept: Vec::new(),
                bytes: 0,
                bound: self.cacheable_result_bytes,
                cache: self.results.clone(),
                answer: answer.clone(),
            }),
            _ => stream,
        };
        QueryStream {
            schema,
            batches,
            cached: false,
            answer,
        }
    }

    /// [`QueryEngine::tables`] as `access` sees them: its projects only, denied tables and
    /// columns left out.
    pub fn tables_as(&self, access: &Access) -> Result<Vec<TableInfo>> {
        if access.admin {
            return self.tables();
        }
        access::tables(&*self.current()?, access)
    }

    /// Plans `sql` and applies the cube rewrite without running anything: the planner's plan
    /// and, when cubes answer every table the query reads, the rewritten plan.
    pub async fn plan_and_rewrite(&self, sql: &str) -> Result<(LogicalPlan, Option<LogicalPlan>)> {
        let snap = self.current()?;
        let plan = self.plan(&snap, None, sql).await?;
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

    /// The projects `access` sees (holds a role in), as stored, tables or not.
    pub fn projects_as(&self, access: &Access) -> Result<Vec<String>> {
        Ok(self
            .current()?
            .projects
            .iter()
            .filter(|p| access.sees_project(&p.name))
            .map(|p| p.name.clone())
            .collect())
    }

    /// The foreign keys the models' joins declare: each lookup's primary key referenced by
    /// the fact (or, in a snowflake, an earlier lookup) columns joined to it, by real table
    /// names, each once.
    pub fn foreign_keys(&self) -> Result<Vec<ForeignKey>> {
        Ok(self.current()?.foreign_keys.clone())
    }

    /// The primary keys of lookup tables (those the models' joins reference).
    pub fn primary_keys(&self) -> Result<Vec<PrimaryKey>> {
        Ok(keys::primary_keys(&self.current()?.foreign_keys))
    }

    /// [`QueryEngine::foreign_keys`] as `access` sees them: those of its projects whose
    /// tables and columns it may read.
    pub fn foreign_keys_as(&self, access: &Access) -> Result<Vec<ForeignKey>> {
        if access.admin {
            return self.foreign_keys();
        }
        Ok(access::foreign_keys(&self.current()?.foreign_keys, access))
    }

    /// [`QueryEngine::primary_keys`] as `access` sees them (see
    /// [`QueryEngine::foreign_keys_as`]).
    pub fn primary_keys_as(&self, access: &Access) -> Result<Vec<PrimaryKey>> {
        Ok(keys::primary_keys(&self.foreign_keys_as(access)?))
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
        self.views.clear();
    }
}

/// The key of `sql`'s plans at `snap` for `scope` (see [`PlanKey`]).
fn plan_key(snap: &Snapshot, scope: Option<Scope<'_>>, sql: &str) -> PlanKey {
    let fingerprint = scope.map_or_else(String::new, |s| s.view.fingerprint.clone());
    (snap.version, fingerprint, sql.to_string())
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

/// Plans an already optimized logical plan physically in `state` and starts it: the result
/// schema and the stream of its batches (partitions merged).
async fn start_optimized(
    state: &SessionState,
    plan: &LogicalPlan,
) -> Result<(SchemaRef, BatchStream)> {
    let physical = state
        .query_planner()
        .create_physical_plan(plan, state)
        .await
        .map_err(from_datafusion)?;
    let schema = physical.schema();
    let stream: SendableRecordBatchStream =
        datafusion::physical_plan::execute_stream(physical, state.task_ctx())
            .map_err(from_datafusion)?;
    Ok((schema, Box::pin(stream.map_err(from_datafusion))))
}

/// Passes a result's batches through, keeping a copy for the result cache while the result
/// stays within `bound` bytes; the copy enters the cache when the stream ends without error.
/// A larger result, an error or a stream dropped early leaves the cache alone.
struct Remember {
    inner: BatchStream,
    /// `None` once the result is known not to be cached.
    key: Option<String>,
    schema: SchemaRef,
    kept: Vec<RecordBatch>,
    bytes: u64,
    bound: u64,
    cache: Arc<LruCache<String, QueryOutput>>,
    answer: Answer,
}

impl Stream for Remember {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        match &item {
            Some(Ok(batch)) if this.key.is_some() => {
                this.bytes += batch.get_array_memory_size() as u64;
                if this.bytes > this.bound {
                    this.key = None;
                    this.kept = Vec::new();
                } else {
                    this.kept.push(batch.clone());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => this.key = None,
            None => {
                if let Some(key) = this.key.take() {
                    let out = QueryOutput {
                        schema: this.schema.clone(),
                        batches: std::mem::take(&mut this.kept),
                        cached: false,
                        answer: this.answer.clone(),
                    };
                    this.cache.insert(key, out, this.bytes);
                }
            }
        }
        Poll::Ready(item)
    }
}

/// The result schema of a planned statement, as [`QueryEngine::prepare`] announces it.
fn announced_schema(plan: &LogicalPlan) -> SchemaRef {
    match plan {
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => explain_schema(),
        p => Arc::new(p.schema().as_arrow().clone()),
    }
}

/// A result stream under the schema its statement announced. Optimization can make a
/// column's nullability more precise than planning said (`version()` folded into a non-null
/// constant), and clients (ADBC) refuse a stream whose schema differs from the announced one:
/// batches whose types match are relabelled with the announced schema, which fails only if a
/// column announced non-nullable holds nulls. A stream whose types differ (a parameter the
/// planner could not type before binding) keeps its own schema rather than be cast.
fn conform(
    announced: SchemaRef,
    schema: SchemaRef,
    stream: BatchStream,
) -> (SchemaRef, BatchStream) {
    let same_types = schema.fields().len() == announced.fields().len()
        && schema
            .fields()
            .iter()
            .zip(announced.fields())
            .all(|(a, b)| a.data_type() == b.data_type());
    if schema == announced || !same_types {
        return (schema, stream);
    }
    let target = announced.clone();
    let stream = stream.and_then(move |batch| {
        let target = target.clone();
        async move {
            let options = datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                target,
                batch.columns().to_vec(),
                &options,
            )?)
        }
    });
    (announced, Box::pin(stream))
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

fn explain_rows(
    realized: &[Realized],
    blocks: &[BlocksRead],
    answer: &Answer,
) -> Vec<(String, String)> {
    // `answer.cuboids` lists the cuboid-answered aggregates in `realized`'s order.
    let mut uses = answer.cuboids.iter();
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
        if let Some(u) = uses.next().filter(|u| u.fallback) {
            rows.push(("fallback".into(), u.fallback_text()));
        }
        if let Some(t) = &r.top_n {
            rows.push(("top_n".into(), t.clone()));
        }
        rows.push(("segments".into(), r.segments.join(", ")));
        rows.push(("blocks".into(), format!("read {} of {}", b.read, b.total)));
        let filters = r.table.string_filters();
        if !filters.is_empty() {
            let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
            rows.push((
                "scan_filters".into(),
                format!(
                    "{} (on the strings of keys grouped by id, in the scan)",
                    filters.join(" AND ")
                ),
            ));
        }
        if !r.derived_tables.is_empty() {
            rows.push((
                "derived".into(),
                format!("joined lookup tables {}", r.derived_tables.join(", ")),
            ));
        }
        if !r.extended.is_empty() {
            rows.push((
                "extended".into(),
                format!(
                    "{} (EXTENDED_COLUMN, no lookup join)",
                    r.extended.join(", ")
                ),
            ));
        }
    }
    rows
}

fn explain_output(
    mut rows: Vec<(String, String)>,
    plan: &LogicalPlan,
) -> Result<(SchemaRef, BatchStream)> {
    rows.push(("logical_plan".into(), plan.display_indent().to_string()));
    let schema = explain_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
        ],
    )?;
    Ok((schema, Box::pin(futures::stream::iter([Ok(batch)]))))
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

/// A read-only query, possibly under EXPLAIN, or `SHOW TABLES` / `SHOW COLUMNS` (queries on
/// `information_schema`); DDL, DML and session statements are refused before anything
/// resolves their table names.
fn is_query(statement: &DFStatement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement;
    match statement {
        DFStatement::Statement(s) => {
            matches!(
                s.as_ref(),
                Statement::Query(_) | Statement::ShowTables { .. } | Statement::ShowColumns { .. }
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
    if let DataFusionError::ResourcesExhausted(detail) = root {
        return Error::Overloaded(format!(
            "the query needs more memory than kylin.query.max-memory-mb allows (after spilling \
             where it could): {detail}"
        ));
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
