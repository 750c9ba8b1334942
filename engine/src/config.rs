//! Configuration: `kylin.properties` (Java properties syntax) plus environment overrides.
//!
//! Every key can be overridden by an environment variable named after it: upper-cased, with
//! `.` and `-` turned into `_` (`kylin.metadata.url` → `KYLIN_METADATA_URL`). Unknown keys in
//! the file are warned about (a typo should not pass silently); a malformed value stops start-up
//! with the key named.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Errors while loading configuration. Each names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config key {key}: invalid value {value:?}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
}

/// One known key, declared once: its name, an optional alias (older Kylin name), its default
/// and the line that documents it. The README's configuration table and
/// `conf/kylin.properties` list exactly these keys (a test checks both); the typed value of
/// each is parsed in [`Config::from_values`].
pub struct KeySpec {
    pub key: &'static str,
    pub alias: Option<&'static str>,
    pub default: &'static str,
    /// The README table's "meaning" cell (Markdown).
    pub doc: &'static str,
}

/// Every key Qilin reads.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        key: "kylin.metadata.url",
        alias: None,
        default: "data/meta",
        doc: "metadata store: a local directory, or `TABLE@hbase://HOST:PORT` (see [HBase storage](#hbase-storage))",
    },
    KeySpec {
        key: "kylin.storage.url",
        alias: None,
        default: "data/segments",
        doc: "segment storage: a local directory, or `TABLE@hbase://HOST:PORT`",
    },
    KeySpec {
        key: "kylin.source.url",
        alias: None,
        default: "data/source",
        doc: "directory that source table locations are resolved against",
    },
    KeySpec {
        key: "kylin.server.mode",
        alias: None,
        default: "all",
        doc: "`all` \\| `query` \\| `job`",
    },
    KeySpec {
        key: "kylin.rest.servers",
        alias: Some("kylin.server.cluster-servers"),
        default: "",
        doc: "`host:port,…` of instances to notify; alias `kylin.server.cluster-servers`",
    },
    KeySpec {
        key: "kylin.server.host",
        alias: None,
        default: "127.0.0.1",
        doc: "address the query server binds",
    },
    KeySpec {
        key: "kylin.server.port",
        alias: None,
        default: "7070",
        doc: "port the query server binds",
    },
    KeySpec {
        key: "kylin.server.tls.cert",
        alias: None,
        default: "",
        doc: "PEM certificate chain: Flight SQL and the HTTP server speak TLS only (set with `kylin.server.tls.key`); see [TLS](#tls)",
    },
    KeySpec {
        key: "kylin.server.tls.key",
        alias: None,
        default: "",
        doc: "PEM private key of `kylin.server.tls.cert`",
    },
    KeySpec {
        key: "kylin.server.tls.client-ca",
        alias: None,
        default: "",
        doc: "PEM CA of the cluster's node certificates: client certificates it signed are accepted (optional for ordinary clients, required on notifications), nodes verify each other against it and present their own certificate when notifying",
    },
    KeySpec {
        key: "kylin.security.allow-plaintext",
        alias: None,
        default: "false",
        doc: "let a server bind a non-loopback `kylin.server.host` without TLS",
    },
    KeySpec {
        key: "kylin.sample.scale",
        alias: None,
        default: "0.1",
        doc: "SSB scale factor of the sample",
    },
    KeySpec {
        key: "kylin.query.pushdown.enabled",
        alias: None,
        default: "false",
        doc: "run queries no cube answers on the raw tables",
    },
    KeySpec {
        key: "kylin.cube.aggrgroup.max-combination",
        alias: None,
        default: "4096",
        doc: "most cuboids one aggregation group may produce",
    },
    KeySpec {
        key: "kylin.storage.block-rows",
        alias: None,
        default: "8192",
        doc: "rows per stored block (unit of pruning and checksums)",
    },
    KeySpec {
        key: "kylin.query.default-project",
        alias: None,
        default: "ssb",
        doc: "project of unqualified table names (the only project, if there is one)",
    },
    KeySpec {
        key: "kylin.query.cache-enabled",
        alias: None,
        default: "true",
        doc: "result cache on/off",
    },
    KeySpec {
        key: "kylin.query.plan-cache-enabled",
        alias: None,
        default: "true",
        doc: "keep plans by (metadata version, SQL text): a repeated statement skips parsing, the cube rewrite and logical optimization (only parameterless statements that call no `now()`/`random()`-like function keep their rewritten plan); results are still computed",
    },
    KeySpec {
        key: "kylin.query.cache-max-bytes",
        alias: None,
        default: "268435456",
        doc: "result cache bound (Arrow memory); a result larger than an eighth of it is streamed without being cached",
    },
    KeySpec {
        key: "kylin.query.max-concurrent",
        alias: None,
        default: "64",
        doc: "queries executing at once; more wait up to 2 s, then get `ResourceExhausted`",
    },
    KeySpec {
        key: "kylin.query.max-memory-mb",
        alias: None,
        default: "2048",
        doc: "DataFusion memory pool shared by all executing queries, in MiB; sorts, aggregations and joins that pass it spill to the system temporary directory where DataFusion can, and a query that still needs more fails with `ResourceExhausted` naming this key; `0` = unbounded",
    },
    KeySpec {
        key: "kylin.query.history.enabled",
        alias: None,
        default: "true",
        doc: "record, per cube-answered aggregate of each query run, the cuboid it wanted and the one it read (`/query_history/<project>/<cube>/current.jsonl` in the metadata store; read by `qilin-jobs cube optimize`)",
    },
    KeySpec {
        key: "kylin.query.history.max-bytes",
        alias: None,
        default: "1048576",
        doc: "size of a cube's current query-history file before it is rotated to `<millis>.jsonl` next to it (at least 1024)",
    },
    KeySpec {
        key: "kylin.query.history.max-files",
        alias: None,
        default: "20",
        doc: "rotated query-history files kept per cube (older ones are deleted; at least 1)",
    },
    KeySpec {
        key: "kylin.query.dense-aggregation.enabled",
        alias: None,
        default: "true",
        doc: "re-aggregate by array index when every group key is an integer or a date (string keys grouped by id included) instead of hashing; past 4M array entries or when the memory pool refuses the array, a query goes on with hash aggregation by itself. Off: hash aggregation always",
    },
    KeySpec {
        key: "kylin.query.warm-up.enabled",
        alias: None,
        default: "true",
        doc: "warm the query server in the background at start and whenever a segment turns READY: the catalog, one statement per cube, the statements the query history recorded most often (replayed, results dropped), every manifest, and decoded blocks of the lookup snapshots and of the cuboids queries most likely read (most read in the query history, then the smallest); queries are answered meanwhile",
    },
    KeySpec {
        key: "kylin.query.warm-up.max-bytes",
        alias: None,
        default: "268435456",
        doc: "decoded block bytes one warm-up fills the block cache with at most (capped at half of `kylin.query.block-cache-mb`)",
    },
    KeySpec {
        key: "kylin.query.block-cache-mb",
        alias: None,
        default: "auto",
        doc: "decoded cuboid blocks kept in memory, in MiB (least recently used dropped first): queries that read the same columns again skip reading and decoding them; `auto` = a quarter of the machine's memory (of the cgroup's memory limit where that is lower), at least 1024; `0` = no cache",
    },
    KeySpec {
        key: "kylin.security.users",
        alias: None,
        default: "",
        doc: "`USER:PASSWORD,…`: global admins imported (hashed) into the metadata store on start when absent there; empty = `ADMIN:KYLIN`, loopback only",
    },
    KeySpec {
        key: "kylin.security.token-secret",
        alias: None,
        default: "",
        doc: "HMAC key of bearer tokens, shared by a cluster; empty = random per process (loopback only)",
    },
    KeySpec {
        key: "kylin.security.token-ttl-seconds",
        alias: None,
        default: "43200",
        doc: "bearer token lifetime",
    },
    KeySpec {
        key: "kylin.security.audit.max-bytes",
        alias: None,
        default: "1048576",
        doc: "size of the audit log's current file (`/audit/current.jsonl` in the metadata store) before it is rotated to `/audit/<millis>.jsonl` (at least 1024)",
    },
    KeySpec {
        key: "kylin.security.audit.max-files",
        alias: None,
        default: "10",
        doc: "rotated audit files kept (older ones are deleted; at least 1)",
    },
    KeySpec {
        key: "kylin.sample.auto-create",
        alias: None,
        default: "true",
        doc: "`qilin-server` on an empty local store creates and builds the SSB sample first",
    },
    KeySpec {
        key: "kylin.job.heartbeat-seconds",
        alias: None,
        default: "5",
        doc: "how often a running job records that it is alive",
    },
    KeySpec {
        key: "kylin.job.orphan-timeout-seconds",
        alias: None,
        default: "60",
        doc: "a job on another host whose heartbeat is older is taken over",
    },
    KeySpec {
        key: "kylin.job.lease-seconds",
        alias: None,
        default: "15",
        doc: "job-engine lease: renewed every third of it; a standby takes over after it lapses (3–3600)",
    },
    KeySpec {
        key: "kylin.job.build-threads",
        alias: None,
        default: "0",
        doc: "cuboid plans a build or a segment merge runs at the same time, and the base cuboid's scan and aggregation partitions; `0` = one per CPU core of the job engine; with `kylin.job.engine=ballista`, set it to the cluster's cores",
    },
    KeySpec {
        key: "kylin.job.aggregation-memory-mb",
        alias: None,
        default: "2048",
        doc: "estimated memory a build's aggregations may hold together (16–1048576); past it they spill sorted runs to disk and merge them back, so builds of any size run in bounded memory",
    },
    KeySpec {
        key: "kylin.job.spill-dir",
        alias: None,
        default: "",
        doc: "where build aggregations spill (a temporary directory per aggregation, removed after it); empty = the system temporary directory",
    },
    KeySpec {
        key: "kylin.job.engine",
        alias: None,
        default: "local",
        doc: "where the cuboid plans of builds, merges and `cube optimize` run: `local` (the job engine's own DataFusion runtime) or `ballista` (a Qilin Ballista cluster at `kylin.job.ballista.scheduler`; see [Distributed builds](#distributed-builds-on-datafusion-ballista))",
    },
    KeySpec {
        key: "kylin.job.ballista.scheduler",
        alias: None,
        default: "",
        doc: "`HOST:PORT` of the `qilin-ballista scheduler` that builds and merges run on when `kylin.job.engine=ballista` (required then)",
    },
    KeySpec {
        key: "kylin.job.ballista.force-remote-read",
        alias: None,
        default: "false",
        doc: "Ballista executors read every shuffle partition over the network, even one on their own disk (`ballista.shuffle.force_remote_read`; for one-host tests)",
    },
    KeySpec {
        key: "kylin.server.poll-seconds",
        alias: None,
        default: "5",
        doc: "on an HBase store, how often a query server checks the store-wide version",
    },
    KeySpec {
        key: "kylin.server.http-port",
        alias: Some("kylin.server.metrics-port"),
        default: "7080",
        doc: "the instance's HTTP server: web console, REST API, `/health` and `/metrics` (Prometheus); `0` = off; alias `kylin.server.metrics-port`",
    },
];

/// What a server instance does (Kylin's `kylin.server.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    All,
    Query,
    Job,
}

impl FromStr for ServerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(ServerMode::All),
            "query" => Ok(ServerMode::Query),
            "job" => Ok(ServerMode::Job),
            _ => Err("expected all, query or job".into()),
        }
    }
}

impl fmt::Display for ServerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerMode::All => "all",
            ServerMode::Query => "query",
            ServerMode::Job => "job",
        })
    }
}

/// Where builds aggregate and write cuboids (`kylin.job.engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildEngine {
    /// The job engine's own threads.
    Local,
    /// A Qilin Ballista cluster (`kylin.job.ballista.scheduler`).
    Ballista,
}

impl FromStr for BuildEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(BuildEngine::Local),
            "ballista" => Ok(BuildEngine::Ballista),
            _ => Err("expected local or ballista".into()),
        }
    }
}

/// The effective configuration of one process, split by subsystem so that each component
/// is handed only its part (the query engine [`QueryConfig`], the job engine [`JobsConfig`],
/// and so on).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the values came from, for messages.
    pub source: String,
    pub stores: StoresConfig,
    pub cube: CubeConfig,
    pub query: QueryConfig,
    pub jobs: JobsConfig,
    pub security: SecurityConfig,
    pub cluster: ClusterConfig,
    pub sample: SampleConfig,
    /// Every effective key → value (file, then environment), including defaults.
    pub values: BTreeMap<String, String>,
}

/// Where metadata, segments and source files live (`kylin.metadata.url`, `kylin.storage.url`,
/// `kylin.source.url`, `kylin.storage.block-rows`).
#[derive(Debug, Clone)]
pub struct StoresConfig {
    pub metadata_url: String,
    pub storage_url: String,
    pub source_url: String,
    /// Rows per stored block (the unit of pruning and checksums).
    pub block_rows: usize,
}

/// Limits of cube descriptors (`kylin.cube.*`).
#[derive(Debug, Clone)]
pub struct CubeConfig {
    pub max_cuboids_per_group: u64,
}

/// The query engine (`kylin.query.*`).
#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub pushdown_enabled: bool,
    pub default_project: String,
    pub cache_enabled: bool,
    /// Keep plans of repeated statements (parsing, rewrite and logical optimization skipped).
    pub plan_cache_enabled: bool,
    pub cache_max_bytes: u64,
    /// Queries executing at once; more get ResourceExhausted.
    pub max_concurrent: usize,
    /// Memory pool of query execution in MiB (0 = unbounded).
    pub max_memory_mb: u64,
    /// Record the query history (wanted and chosen cuboid per cube-answered aggregate).
    pub history_enabled: bool,
    /// Bytes of a cube's current query-history file before it is rotated.
    pub history_max_bytes: u64,
    /// Rotated query-history files kept per cube.
    pub history_max_files: usize,
    /// Re-aggregate by array index over integer keys (`query::dense_aggregate`).
    pub dense_aggregation_enabled: bool,
    /// Warm caches in the background at start and when segments turn READY.
    pub warm_up_enabled: bool,
    /// Decoded block bytes one warm-up decodes at most.
    pub warm_up_max_bytes: u64,
    /// Bound of the decoded-block cache in bytes (`kylin.query.block-cache-mb`, resolved).
    pub block_cache_bytes: u64,
}

/// The job engine (`kylin.job.*`).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    pub heartbeat_seconds: u64,
    pub orphan_timeout_seconds: u64,
    /// Lease of the one job engine; renewed every third of it.
    pub lease_seconds: u64,
    /// Cuboids a build aggregates at the same time (0 = one per CPU core).
    pub build_threads: usize,
    /// Memory budget of a build's aggregations together, in MiB, before they spill.
    pub aggregation_memory_mb: u64,
    /// Where build aggregations spill (empty = the system temporary directory).
    pub spill_dir: String,
    /// Where builds aggregate and write cuboids.
    pub engine: BuildEngine,
    /// `HOST:PORT` of the Ballista scheduler (non-empty when `engine` is Ballista).
    pub ballista_scheduler: String,
    /// `ballista.shuffle.force_remote_read` of the builds submitted to Ballista.
    pub ballista_force_remote_read: bool,
}

/// Users and tokens (`kylin.security.*`).
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Configured users (name, password); empty means the loopback-only default ADMIN/KYLIN.
    pub users: Vec<(String, String)>,
    /// HMAC key of tokens and cluster notifications; empty when not configured.
    pub token_secret: String,
    pub token_ttl_seconds: u64,
    /// Bytes of the audit log's current file before it is rotated.
    pub audit_max_bytes: u64,
    /// Rotated audit files kept.
    pub audit_max_files: usize,
}

/// This instance in its cluster (`kylin.server.*`, `kylin.rest.servers`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub mode: ServerMode,
    /// `host:port` of every instance to notify.
    pub rest_servers: Vec<String>,
    pub host: String,
    pub port: u16,
    /// Store-version polling period of query servers on a remote store.
    pub poll_seconds: u64,
    /// The HTTP server's port: console, REST API, health, metrics (0 = off).
    pub http_port: u16,
    /// `kylin.server.tls.*`: both servers speak TLS only when set.
    pub tls: Option<TlsFiles>,
    /// `kylin.security.allow-plaintext`: a non-loopback host may serve without TLS.
    pub allow_plaintext: bool,
}

/// The PEM files of `kylin.server.tls.*` (read and checked by `qilin_cluster::tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA of node (client) certificates, for mutual TLS between nodes.
    pub client_ca: Option<PathBuf>,
}

/// The SSB sample created on first start (`kylin.sample.*`).
#[derive(Debug, Clone)]
pub struct SampleConfig {
    pub scale: f64,
    pub auto_create: bool,
}

/// The default config file location, relative to the working directory.
pub const DEFAULT_CONF_PATH: &str = "conf/kylin.properties";

impl Config {
    /// Loads `path` (or the defaults alone when `path` is `None`) and applies environment
    /// overrides from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let source = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into());
        Self::from_parts(&text, &source, |k| std::env::var(k).ok())
    }

    /// What the binaries' `--conf PATH` means: that file, except that the default path
    /// ([`DEFAULT_CONF_PATH`]) may be absent, in which case the built-in defaults apply. An
    /// explicitly named file that cannot be read is an error.
    pub fn load_for_cli(path: &Path) -> Result<Config, ConfigError> {
        if path == Path::new(DEFAULT_CONF_PATH) && !path.exists() {
            Self::load(None)
        } else {
            Self::load(Some(path))
        }
    }

    /// Builds a config from properties text and an environment lookup (tests pass a map).
    pub fn from_parts(
        text: &str,
        source: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut values: BTreeMap<String, String> = KEYS
            .iter()
            .map(|k| (k.key.to_string(), k.default.to_string()))
            .collect();
        for (key, value) in parse_properties(text) {
            let canonical = KEYS
                .iter()
                .find(|k| k.key == key || k.alias == Some(key.as_str()))
                .map(|k| k.key.to_string());
            match canonical {
                Some(k) => {
                    values.insert(k, value);
                }
                None => {
                    log::warn!("{source}: unknown config key {key} (ignored)");
                    values.insert(key, value);
                }
            }
        }
        for spec in KEYS {
            for name in std::iter::once(spec.key).chain(spec.alias) {
                if let Some(v) = env(&env_var_name(name)) {
                    values.insert(spec.key.to_string(), v);
                }
            }
        }
        Self::from_values(values, source)
    }

    fn from_values(values: BTreeMap<String, String>, source: &str) -> Result<Config, ConfigError> {
        let get = |k: &str| {
            values
                .get(k)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let non_empty = |k: &str| -> Result<String, ConfigError> {
            let v = get(k);
            if v.is_empty() {
                Err(invalid(k, &v, "must not be empty"))
            } else {
                Ok(v)
            }
        };
        let server_port: u16 = parse_key(&get, "kylin.server.port")?;
        let block_rows: usize = parse_key(&get, "kylin.storage.block-rows")?;
        if block_rows == 0 {
            return Err(invalid(
                "kylin.storage.block-rows",
                "0",
                "must be at least 1",
            ));
        }
        let sample_scale: f64 = parse_key(&get, "kylin.sample.scale")?;
        if !(sample_scale > 0.0 && sample_scale <= 1000.0) {
            return Err(invalid(
                "kylin.sample.scale",
                &get("kylin.sample.scale"),
                "must be in (0, 1000]",
            ));
        }
        let rest_servers = get("kylin.rest.servers")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(s.to_string()),
                _ => Err(invalid(
                    "kylin.rest.servers",
                    s,
                    "each entry must be host:port",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let users = get("kylin.security.users")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.split_once(':') {
                Some((u, p)) if !u.trim().is_empty() && !p.is_empty() => {
                    Ok((u.trim().to_string(), p.to_string()))
                }
                _ => Err(invalid(
                    "kylin.security.users",
                    "(hidden)",
                    "each entry must be USER:PASSWORD",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let audit_max_bytes: u64 = parse_key(&get, "kylin.security.audit.max-bytes")?;
        if audit_max_bytes < 1024 {
            return Err(invalid(
                "kylin.security.audit.max-bytes",
                &audit_max_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        let audit_max_files: usize = parse_key(&get, "kylin.security.audit.max-files")?;
        if audit_max_files == 0 {
            return Err(invalid(
                "kylin.security.audit.max-files",
                "0",
                "must be at least 1",
            ));
        }
        let history_max_bytes: u64 = parse_key(&get, "kylin.query.history.max-bytes")?;
        if history_max_bytes < 1024 {
            return Err(invalid(
                "kylin.query.history.max-bytes",
                &history_max_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        let history_max_files: usize = parse_key(&get, "kylin.query.history.max-files")?;
        if history_max_files == 0 {
            return Err(invalid(
                "kylin.query.history.max-files",
                "0",
                "must be at least 1",
            ));
        }
        let job_lease_seconds: u64 = parse_key(&get, "kylin.job.lease-seconds")?;
        if !(3..=3600).contains(&job_lease_seconds) {
            return Err(invalid(
                "kylin.job.lease-seconds",
                &job_lease_seconds.to_string(),
                "must be from 3 to 3600",
            ));
        }
        let aggregation_memory_mb: u64 = parse_key(&get, "kylin.job.aggregation-memory-mb")?;
        if !(16..=1 << 20).contains(&aggregation_memory_mb) {
            return Err(invalid(
                "kylin.job.aggregation-memory-mb",
                &aggregation_memory_mb.to_string(),
                "must be from 16 to 1048576",
            ));
        }
        let build_engine: BuildEngine = parse_key(&get, "kylin.job.engine")?;
        let ballista_scheduler = get("kylin.job.ballista.scheduler").trim().to_string();
        if build_engine == BuildEngine::Ballista && ballista_scheduler.is_empty() {
            return Err(invalid(
                "kylin.job.ballista.scheduler",
                "",
                "required when kylin.job.engine=ballista (HOST:PORT of `qilin-ballista scheduler`)",
            ));
        }
        let poll_seconds: u64 = parse_key(&get, "kylin.server.poll-seconds")?;
        if poll_seconds == 0 {
            return Err(invalid(
                "kylin.server.poll-seconds",
                "0",
                "must be at least 1",
            ));
        }
        let max_concurrent_queries: usize = parse_key(&get, "kylin.query.max-concurrent")?;
        if max_concurrent_queries == 0 {
            return Err(invalid(
                "kylin.query.max-concurrent",
                "0",
                "must be at least 1",
            ));
        }
        Ok(Config {
            source: source.to_string(),
            stores: StoresConfig {
                metadata_url: non_empty("kylin.metadata.url")?,
                storage_url: non_empty("kylin.storage.url")?,
                source_url: non_empty("kylin.source.url")?,
                block_rows,
            },
            cube: CubeConfig {
                max_cuboids_per_group: parse_key(&get, "kylin.cube.aggrgroup.max-combination")?,
            },
            query: QueryConfig {
                pushdown_enabled: parse_bool(&get, "kylin.query.pushdown.enabled")?,
                default_project: non_empty("kylin.query.default-project")?,
                cache_enabled: parse_bool(&get, "kylin.query.cache-enabled")?,
                plan_cache_enabled: parse_bool(&get, "kylin.query.plan-cache-enabled")?,
                cache_max_bytes: parse_key(&get, "kylin.query.cache-max-bytes")?,
                max_concurrent: max_concurrent_queries,
                max_memory_mb: parse_key(&get, "kylin.query.max-memory-mb")?,
                history_enabled: parse_bool(&get, "kylin.query.history.enabled")?,
                history_max_bytes,
                history_max_files,
                dense_aggregation_enabled: parse_bool(
                    &get,
                    "kylin.query.dense-aggregation.enabled",
                )?,
                warm_up_enabled: parse_bool(&get, "kylin.query.warm-up.enabled")?,
                warm_up_max_bytes: parse_key(&get, "kylin.query.warm-up.max-bytes")?,
                block_cache_bytes: parse_block_cache(&get, "kylin.query.block-cache-mb")?,
            },
            jobs: JobsConfig {
                heartbeat_seconds: parse_key(&get, "kylin.job.heartbeat-seconds")?,
                orphan_timeout_seconds: parse_key(&get, "kylin.job.orphan-timeout-seconds")?,
                lease_seconds: job_lease_seconds,
                build_threads: parse_key(&get, "kylin.job.build-threads")?,
                aggregation_memory_mb,
                spill_dir: get("kylin.job.spill-dir"),
                engine: build_engine,
                ballista_scheduler,
                ballista_force_remote_read: parse_bool(
                    &get,
                    "kylin.job.ballista.force-remote-read",
                )?,
            },
            security: SecurityConfig {
                users,
                token_secret: get("kylin.security.token-secret"),
                token_ttl_seconds: parse_key(&get, "kylin.security.token-ttl-seconds")?,
                audit_max_bytes,
                audit_max_files,
            },
            cluster: ClusterConfig {
                mode: parse_key(&get, "kylin.server.mode")?,
                rest_servers,
                host: non_empty("kylin.server.host")?,
                port: server_port,
                poll_seconds,
                http_port: parse_key(&get, "kylin.server.http-port")?,
                tls: tls_files(&get)?,
                allow_plaintext: parse_bool(&get, "kylin.security.allow-plaintext")?,
            },
            sample: SampleConfig {
                scale: sample_scale,
                auto_create: parse_bool(&get, "kylin.sample.auto-create")?,
            },
            values,
        })
    }
}

/// `kylin.server.tls.cert` and `.key` both set (TLS) or neither; a client CA only with them.
fn tls_files(get: &impl Fn(&str) -> String) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |k: &str| Some(get(k)).filter(|v| !v.is_empty()).map(PathBuf::from);
    let (cert, key, client_ca) = (
        path("kylin.server.tls.cert"),
        path("kylin.server.tls.key"),
        path("kylin.server.tls.client-ca"),
    );
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => Err(invalid(
            "kylin.server.tls.client-ca",
            &get("kylin.server.tls.client-ca"),
            "needs kylin.server.tls.cert and kylin.server.tls.key",
        )),
        (Some(_), None) => Err(invalid(
            "kylin.server.tls.key",
            "",
            "must be set with kylin.server.tls.cert (both or neither)",
        )),
        (None, Some(_)) => Err(invalid(
            "kylin.server.tls.cert",
            "",
            "must be set with kylin.server.tls.key (both or neither)",
        )),
    }
}

/// `kylin.metadata.url` → `KYLIN_METADATA_URL`.
pub fn env_var_name(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_key<T: FromStr>(get: &impl Fn(&str) -> String, key: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    let v = get(key);
    v.parse::<T>().map_err(|e| invalid(key, &v, &e.to_string()))
}

/// `auto` or a size in MiB, as bytes.
fn parse_block_cache(get: &impl Fn(&str) -> String, key: &str) -> Result<u64, ConfigError> {
    let v = get(key);
    if v.eq_ignore_ascii_case("auto") {
        return Ok(auto_block_cache_bytes(machine_memory_bytes()));
    }
    let mb: u64 = v.parse().map_err(|e: std::num::ParseIntError| {
        invalid(key, &v, &format!("expected `auto` or MiB: {e}"))
    })?;
    mb.checked_mul(1 << 20)
        .ok_or_else(|| invalid(key, &v, "too large"))
}

/// The decoded-block cache of `kylin.query.block-cache-mb=auto`: a quarter of the memory the
/// process may use, at least 1 GiB (the fixed size before the key existed; also what an
/// unknown memory size gets). At SF 10 one base-cuboid column decodes to up to 480 MB, so a
/// fixed 1 GiB cache dropped a query's columns before its next run read them.
fn auto_block_cache_bytes(memory: Option<u64>) -> u64 {
    const FLOOR: u64 = 1 << 30;
    memory.map_or(FLOOR, |m| (m / 4).max(FLOOR))
}

/// The memory this process may use: the machine's (`/proc/meminfo`), or its cgroup's limit
/// (`/sys/fs/cgroup/memory.max`, cgroup v2) where lower; `None` where neither can be read.
fn machine_memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kb| kb.trim().parse::<u64>().ok())
                .map(|kb| kb.saturating_mul(1024))
        });
    // "max" (no limit) does not parse and leaves the machine's total.
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    match (total, limit) {
        (Some(t), Some(l)) => Some(t.min(l)),
        (t, l) => t.or(l),
    }
}

fn parse_bool(get: &impl Fn(&str) -> String, key: &str) -> Result<bool, ConfigError> {
    let v = get(key);
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(invalid(key, &v, "expected true or false")),
    }
}

/// Parses Java properties text: `#`/`!` comments, `key=value`, `key: value` or `key value`,
/// backslash line continuations and the escapes `\t \n \r \\ \uXXXX`.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if logical.is_empty() && (trimmed.is_empty() || trimmed.starts_with(['#', '!'])) {
            continue;
        }
        let continued = ends_with_odd_backslashes(trimmed);
        logical.push_str(if continued {
            &trimmed[..trimmed.len() - 1]
        } else {
            trimmed
        });
        if continued && lines.clone().next().is_some() {
            continue;
        }
        if let Some(pair) = split_key_value(&logical) {
            out.push(pair);
        }
        logical.clear();
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> Option<(String, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut key_end = chars.len();
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '=' | ':' | ' ' | '\t' => {
                key_end = i;
                break;
            }
            _ => i += 1,
        }
    }
    let key: String = chars[..key_end.min(chars.len())].iter().collect();
    let mut rest = key_end;
    while rest < chars.len() && matches!(chars[rest], ' ' | '\t') {
        rest += 1;
    }
    if rest < chars.len() && matches!(chars[rest], '=' | ':') {
        rest += 1;
    }
    while rest < chars.len() && matches!(chars[rest], ' ' | '\t') {
        rest += 1;
    }
    let value: String = chars[rest.min(chars.len())..].iter().collect();
    let key = unescape(&key);
    if key.is_empty() {
        return None;
    }
    Some((key, unescape(value.trim_end())))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    _ => out.push('u'),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(text, "test", |k| env.get(k).cloned())
    }

    #[test]
    fn the_block_cache_is_sized_in_mib_or_from_the_machine() {
        let c = load("kylin.query.block-cache-mb=4096", &[]).unwrap();
        assert_eq!(c.query.block_cache_bytes, 4096 << 20);
        assert_eq!(
            load("kylin.query.block-cache-mb=0", &[])
                .unwrap()
                .query
                .block_cache_bytes,
            0
        );
        let auto = load("", &[]).unwrap().query.block_cache_bytes;
        assert_eq!(auto, auto_block_cache_bytes(machine_memory_bytes()));
        assert!(auto >= 1 << 30, "auto is at least 1 GiB, got {auto}");
        assert_eq!(auto_block_cache_bytes(Some(24 << 30)), 6 << 30);
        assert_eq!(auto_block_cache_bytes(Some(2 << 30)), 1 << 30);
        assert_eq!(auto_block_cache_bytes(None), 1 << 30);
        for bad in ["-1", "1.5", "lots", "18446744073709551615"] {
            let err = load(&format!("kylin.query.block-cache-mb={bad}"), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("kylin.query.block-cache-mb"), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.stores.metadata_url, "data/meta");
        assert_eq!(c.stores.storage_url, "data/segments");
        assert_eq!(c.stores.source_url, "data/source");
        assert_eq!(c.cluster.mode, ServerMode::All);
        assert_eq!(c.cluster.host, "127.0.0.1");
        assert_eq!(c.cluster.port, 7070);
        assert!(c.cluster.rest_servers.is_empty());
        assert!(!c.query.pushdown_enabled);
    }

    #[test]
    fn properties_syntax_is_java_like() {
        let text =
            "# comment\n! also comment\n  kylin.server.port = 8080\nkylin.server.host:0.0.0.0\n\
                    kylin.metadata.url /tmp/a\\\n   b\nkylin.source.url=C:\\\\data\\u0041\n";
        let c = load(text, &[]).unwrap();
        assert_eq!(c.cluster.port, 8080);
        assert_eq!(c.cluster.host, "0.0.0.0");
        assert_eq!(c.stores.metadata_url, "/tmp/ab");
        assert_eq!(c.stores.source_url, "C:\\dataA");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load(
            "kylin.metadata.url=/from/file\n",
            &[
                ("KYLIN_METADATA_URL", "/from/env"),
                ("KYLIN_SERVER_MODE", "query"),
            ],
        )
        .unwrap();
        assert_eq!(c.stores.metadata_url, "/from/env");
        assert_eq!(c.cluster.mode, ServerMode::Query);
        assert_eq!(
            env_var_name("kylin.cube.aggrgroup.max-combination"),
            "KYLIN_CUBE_AGGRGROUP_MAX_COMBINATION"
        );
    }

    #[test]
    fn cluster_servers_is_an_alias_of_rest_servers() {
        let c = load("kylin.server.cluster-servers=a:7070, b:7071\n", &[]).unwrap();
        assert_eq!(c.cluster.rest_servers, vec!["a:7070", "b:7071"]);
        let c = load("", &[("KYLIN_SERVER_CLUSTER_SERVERS", "c:1")]).unwrap();
        assert_eq!(c.cluster.rest_servers, vec!["c:1"]);
    }

    #[test]
    fn metrics_port_is_an_alias_of_http_port() {
        assert_eq!(load("", &[]).unwrap().cluster.http_port, 7080);
        let c = load("kylin.server.metrics-port=9100\n", &[]).unwrap();
        assert_eq!(c.cluster.http_port, 9100);
        let c = load("kylin.server.http-port=0\n", &[]).unwrap();
        assert_eq!(c.cluster.http_port, 0);
        let c = load("", &[("KYLIN_SERVER_METRICS_PORT", "9101")]).unwrap();
        assert_eq!(c.cluster.http_port, 9101);
    }

    #[test]
    fn malformed_values_name_the_key() {
        for (text, key) in [
            ("kylin.server.port=70x0", "kylin.server.port"),
            ("kylin.server.port=70000", "kylin.server.port"),
            ("kylin.server.mode=both", "kylin.server.mode"),
            (
                "kylin.query.pushdown.enabled=maybe",
                "kylin.query.pushdown.enabled",
            ),
            ("kylin.rest.servers=host-without-port", "kylin.rest.servers"),
            ("kylin.metadata.url=", "kylin.metadata.url"),
            ("kylin.storage.block-rows=0", "kylin.storage.block-rows"),
            ("kylin.job.engine=spark", "kylin.job.engine"),
            ("kylin.job.engine=ballista", "kylin.job.ballista.scheduler"),
        ] {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn tls_needs_both_cert_and_key() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.cluster.tls, None);
        assert!(!c.cluster.allow_plaintext);
        let c = load(
            "kylin.server.tls.cert=/c.pem\nkylin.server.tls.key=/k.pem\nkylin.security.allow-plaintext=true\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.cluster.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
                client_ca: None
            })
        );
        assert!(c.cluster.allow_plaintext);
        for (text, key) in [
            ("kylin.server.tls.cert=/c.pem\n", "kylin.server.tls.key"),
            ("kylin.server.tls.key=/k.pem\n", "kylin.server.tls.cert"),
            (
                "kylin.server.tls.client-ca=/ca.pem\n",
                "kylin.server.tls.client-ca",
            ),
        ] {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_kept_but_not_fatal() {
        let c = load("kylin.typo.key=1\n", &[]).unwrap();
        assert_eq!(
            c.values.get("kylin.typo.key").map(String::as_str),
            Some("1")
        );
    }

    /// The README's configuration table, row by row as [`readme_row`] renders each key.
    fn readme_rows() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("## Configuration")
            .expect("README has a Configuration section");
        let section = &readme[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        section[..end]
            .lines()
            .filter(|l| l.starts_with("| `kylin."))
            .map(str::to_string)
            .collect()
    }

    fn readme_row(k: &KeySpec) -> String {
        let default = if k.default.is_empty() {
            "(empty)".to_string()
        } else {
            format!("`{}`", k.default)
        };
        format!("| `{}` | {default} | {} |", k.key, k.doc)
    }

    #[test]
    fn readme_documents_exactly_the_known_keys() {
        let want: Vec<String> = KEYS.iter().map(readme_row).collect();
        let got = readme_rows();
        for row in &want {
            assert!(
                got.contains(row),
                "README lacks (or words differently) {row}"
            );
        }
        for row in &got {
            assert!(want.contains(row), "README documents an unknown key: {row}");
        }
    }

    #[test]
    fn shipped_properties_set_exactly_the_known_keys_to_their_defaults() {
        let shipped = parse_properties(include_str!("../../conf/kylin.properties"));
        let keys: Vec<&str> = shipped.iter().map(|(k, _)| k.as_str()).collect();
        for k in KEYS {
            let v = shipped.iter().find(|(key, _)| key == k.key);
            assert_eq!(
                v.map(|(_, v)| v.as_str()),
                Some(k.default),
                "conf/kylin.properties must set {} to its default",
                k.key
            );
        }
        for k in keys {
            assert!(
                KEYS.iter().any(|spec| spec.key == k),
                "conf/kylin.properties sets unknown key {k}"
            );
        }
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = Config::load(Some(Path::new("/nonexistent/kylin.properties"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kylin.properties"));
    }
}
