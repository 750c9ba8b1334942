//! Shared support for Qilin's end-to-end tests: a throw-away installation (metadata, segments
//! and source data in a temp dir) and an oracle that runs SQL with DataFusion directly on the
//! raw Parquet files, independent of Qilin's own source handling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use qilin_engine::config::Config;
use qilin_engine::metadata::{managers::Metadata, open_store};
use qilin_engine::model::SegmentRange;
use qilin_engine::sample::ssb;
use qilin_engine::storage::open_segment_store;
use qilin_jobs::{Job, JobEngine, Observer};

pub mod bi_corpus;
pub mod cluster;
pub mod compare;
pub mod corpus;
pub mod hbase_emulator;
pub mod hbase_emulator_process;
pub mod hbase_raw;
pub mod http;
pub mod nginx;
pub mod process;
pub mod random_queries;
pub mod server;
pub mod tls;

/// Declares `NAME::local` and `NAME::hbase` tests that run `async fn NAME(backend: Backend)`
/// on each backend (one test corpus, parametrized by backend).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$name($crate::Backend::Local).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hbase() {
                super::$name($crate::Backend::HBase).await
            }
        }
    )*};
}

/// The `hbase-thrift-emulator` binary (see [`workspace_exe`]).
pub fn emulator_exe() -> PathBuf {
    workspace_exe("hbase-thrift-emulator")
}

/// The `qilin-server` binary (see [`workspace_exe`]).
pub fn server_exe() -> PathBuf {
    workspace_exe("qilin-server")
}

/// The Python interpreter the tests run client scripts with: `$QILIN_PYTHON` (what
/// `scripts/test` sets to its virtual environment's python), else `python3` from `PATH`.
pub fn python() -> String {
    std::env::var("QILIN_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The Python interpreter of Superset's client stack (flightsql-dbapi on SQLAlchemy < 2,
/// `tests/requirements-superset.txt`): `$QILIN_SUPERSET_PYTHON`, which `scripts/test` sets to
/// its second virtual environment, else `None`.
pub fn superset_python() -> Option<String> {
    std::env::var("QILIN_SUPERSET_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
}

/// A binary of this workspace next to the running test executable
/// (`<target>/<profile>/deps/x` → `<target>/<profile>/NAME`). Cargo builds only a package's
/// own binaries for its integration tests, so when the tests run under Cargo (which sets
/// `CARGO`) the first call runs `cargo build --workspace --bins` for the same target dir and
/// profile (a no-op after `scripts/test` built them), so `cargo test` never runs stale
/// binaries of other packages. `QILIN_TEST_NO_BUILD=1` skips that.
pub fn workspace_exe(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in <target>/<profile>/deps");
    build_workspace_bins(profile);
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// `cargo build --workspace --bins` into `profile_dir` (`<target>/<profile>`), once per
/// process, when run by Cargo.
fn build_workspace_bins(profile_dir: &Path) {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let Ok(cargo) = std::env::var("CARGO") else {
            return;
        };
        if std::env::var_os("QILIN_TEST_NO_BUILD").is_some() {
            return;
        }
        let (Some(target), Some(dir_name)) = (profile_dir.parent(), profile_dir.file_name()) else {
            return;
        };
        let profile = match dir_name.to_str() {
            Some("debug") => "dev",
            Some(other) => other,
            None => return,
        };
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = std::process::Command::new(cargo)
            .args(["build", "--workspace", "--bins", "--profile", profile])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", target)
            .status()
            .expect("run cargo build --workspace --bins");
        assert!(
            status.success(),
            "cargo build --workspace --bins failed ({status})"
        );
    });
}

/// Where a test installation keeps its metadata and segments. The build-side test corpus
/// runs on both (see [`on_both_backends!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Directories in the installation's temp dir.
    Local,
    /// Two tables in a private `hbase-thrift-emulator` process.
    HBase,
}

/// A complete installation in a temp dir (source data shared), on either backend.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The `kylin.properties` text `config` was read from.
    pub properties: String,
    pub engine: JobEngine,
    pub backend: Backend,
    /// The emulator behind the HBase backend.
    pub hbase: Option<hbase_emulator_process::EmulatorProcess>,
}

impl TestEnv {
    /// A fresh local installation whose source dir is `source` (shared between envs to save
    /// time).
    pub fn new(source: &Path) -> TestEnv {
        Self::on(Backend::Local, source)
    }

    /// A fresh installation on `backend`.
    pub fn on(backend: Backend, source: &Path) -> TestEnv {
        Self::with_properties(backend, source, "")
    }

    /// A fresh installation on `backend` with extra `kylin.properties` lines.
    pub fn with_properties(backend: Backend, source: &Path, extra: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let (hbase, metadata_url, storage_url) = match backend {
            Backend::Local => (
                None,
                dir.path().join("meta").display().to_string(),
                dir.path().join("segments").display().to_string(),
            ),
            Backend::HBase => {
                let emulator = hbase_emulator_process::EmulatorProcess::start(
                    &emulator_exe(),
                    Some(&dir.path().join("hbase.snapshot")),
                    0,
                );
                let meta = format!("qilin_metadata@hbase://{}", emulator.addr);
                let segs = format!("qilin_segments@hbase://{}", emulator.addr);
                (Some(emulator), meta, segs)
            }
        };
        let props = format!(
            "kylin.metadata.url={metadata_url}\nkylin.storage.url={storage_url}\nkylin.source.url={}\nkylin.storage.block-rows=1000\n{extra}",
            source.display()
        );
        let config = Config::from_parts(&props, "test", |_| None).expect("test config");
        let store = open_store(&config.stores.metadata_url).expect("meta store");
        let segments = open_segment_store(&config.stores.storage_url).expect("segment store");
        let engine = JobEngine::new(Metadata::new(store), segments, config.clone());
        TestEnv {
            dir,
            config,
            properties: props,
            engine,
            backend,
            hbase,
        }
    }

    /// Another job engine over this installation's stores, configured with `extra`
    /// `kylin.properties` lines on top of this installation's (a later line wins).
    pub fn engine_with(&self, extra: &str) -> (Config, JobEngine) {
        let config = Config::from_parts(&format!("{}\n{extra}", self.properties), "test", |_| None)
            .expect("test config");
        let store = open_store(&config.stores.metadata_url).expect("meta store");
        let engine = JobEngine::new(
            Metadata::new(store),
            self.engine.segment_store().clone(),
            config.clone(),
        );
        (config, engine)
    }

    /// Ids of the segments that have stored data, sorted.
    pub fn segment_ids(&self) -> Vec<String> {
        self.engine
            .segment_store()
            .list_segments()
            .expect("list segments")
    }

    /// Damages a stored block behind Qilin's back: locally one byte in the middle of each
    /// column chunk, in HBase its cell.
    pub fn corrupt_block(&self, segment: &str, cuboid: u64, block: u32) {
        match &self.hbase {
            None => {
                let file = PathBuf::from(&self.config.stores.storage_url)
                    .join(segment)
                    .join(cuboid.to_string())
                    .join(format!("{block}.arrow"));
                let mut bytes = std::fs::read(&file).expect("read block file");
                // One byte in the middle of every column chunk: a local store reads only the
                // chunks a query decodes, and each must meet the damage.
                let (_, chunks) = qilin_engine::storage::parquet_block::sections(&bytes)
                    .expect("a Parquet block");
                for (at, len) in chunks {
                    bytes[(at + len / 2) as usize] ^= 0xA5;
                }
                std::fs::write(&file, bytes).expect("write block file");
            }
            Some(emulator) => hbase_raw::corrupt_cell(
                &emulator.addr,
                "qilin_segments",
                &qilin_engine::storage::hbase::row_key(segment, cuboid, block),
                b"b:d0",
            ),
        }
    }

    pub fn meta(&self) -> &Metadata {
        self.engine.metadata()
    }

    pub fn segments_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.stores.storage_url)
    }

    /// Generates (if needed) and registers the SSB sample at `scale`.
    pub async fn install_sample(&self, scale: f64) {
        ssb::install(
            self.meta(),
            Path::new(&self.config.stores.source_url),
            scale,
            self.config.cube.max_cuboids_per_group,
        )
        .await
        .expect("install SSB sample");
    }

    /// Submits and runs a build of `range`, returning the finished job.
    pub async fn build(&self, range: &str) -> qilin_engine::Result<Job> {
        let (s, e) = range
            .split_once("..")
            .expect("range like 1992-01-01..1995-01-01");
        let sub = self
            .engine
            .submit_build(ssb::CUBE, Some(SegmentRange::parse(s, e)?))?;
        self.engine.run(&sub.job().id, quiet()).await
    }
}

pub fn quiet() -> Observer {
    Arc::new(|_: &Job| {})
}

/// The raw SSB tables registered directly from their Parquet files.
pub async fn oracle(source: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for t in ssb::TABLES {
        let p = source.join(ssb::SOURCE_DIR).join(format!("{t}.parquet"));
        ctx.register_parquet(
            t,
            p.to_str().expect("utf-8 path"),
            ParquetReadOptions::default(),
        )
        .await
        .expect("register raw table");
    }
    ctx
}

/// A cell as text for comparisons (`NULL` for nulls; strings of any string type alike).
pub fn cell(col: &dyn Array, row: usize) -> String {
    if col.is_null(row) {
        return "NULL".into();
    }
    match col.data_type() {
        DataType::Utf8View => col.as_string_view().value(row).to_string(),
        _ => array_value_to_string(col, row).unwrap_or_else(|e| format!("<{e}>")),
    }
}

/// Rows keyed by their first `key_cols` cells.
pub fn rows_by_key(batches: &[RecordBatch], key_cols: usize) -> BTreeMap<Vec<String>, Vec<String>> {
    let mut out = BTreeMap::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b.columns().iter().map(|c| cell(c.as_ref(), r)).collect();
            let (k, v) = cells.split_at(key_cols);
            let prev = out.insert(k.to_vec(), v.to_vec());
            assert!(prev.is_none(), "duplicate group {k:?}");
        }
    }
    out
}

/// A directory (under `base`, normally `env!("CARGO_TARGET_TMPDIR")`) with the SSB sample
/// data at `scale`: generated once and reused by later tests and runs (the generator is
/// deterministic). A file lock serializes generation between threads and processes.
pub async fn shared_ssb_source(base: &Path, scale: f64) -> PathBuf {
    let dir = base.join(format!("ssb-source-{scale}"));
    let marker = dir.join(ssb::SOURCE_DIR).join("SCALE");
    std::fs::create_dir_all(base).expect("create test tmp dir");
    let lock =
        std::fs::File::create(base.join(format!("ssb-source-{scale}.lock"))).expect("lock file");
    lock.lock().expect("lock");
    if !marker.exists() {
        let tmp = base.join(format!("ssb-source-{scale}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        qilin_engine::sample::ssbgen::generate_ssb(scale, &tmp.join(ssb::SOURCE_DIR))
            .await
            .expect("generate SSB");
        std::fs::write(tmp.join(ssb::SOURCE_DIR).join("SCALE"), scale.to_string()).expect("marker");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).expect("publish generated data");
    }
    dir
}
