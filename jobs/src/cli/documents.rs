//! `qilin-jobs project|model|cube ...`: projects, models and cubes as JSON documents (see
//! `qilin_engine::admin::documents`). Changes are written to the metadata store, then the
//! instances in `kylin.rest.servers` are told, so they reload at once instead of at their
//! next poll.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use qilin_cluster::notify::Notifier;
use qilin_engine::admin::documents as docs;
use qilin_engine::config::Config;
use qilin_engine::model::{CubeDesc, ProjectDesc};

use crate::JobEngine;

/// The catalog's document commands, flattened into `qilin-jobs`' own.
#[derive(Subcommand)]
pub enum DocumentsCommand {
    /// Create, list or drop projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Put, get, list or drop models (JSON files).
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Put, get, list, drop or plan cubes (JSON files).
    Cube {
        #[command(subcommand)]
        command: CubeCommand,
    },
}

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Create an empty project.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Projects with their numbers of tables, models and cubes.
    List,
    /// Drop a project that has no tables, models or cubes left.
    Drop { name: String },
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Create or replace a model from a JSON file, validated against the project's tables
    /// and against every cube built on it.
    Put {
        /// The project; the file may then leave out "project" (and must not name another).
        #[arg(long)]
        project: Option<String>,
        file: PathBuf,
    },
    /// Print a model's JSON as stored.
    Get { name: String },
    /// Models, with their cubes.
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Drop a model that no cube uses.
    Drop { name: String },
}

#[derive(Subcommand)]
pub enum CubeCommand {
    /// Create or replace a cube from a JSON file. Segments built under an earlier
    /// descriptor stay but are not queried until refreshed.
    Put { file: PathBuf },
    /// Print a cube's JSON as stored.
    Get { name: String },
    /// Cubes with their cuboid and segment counts.
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Drop a cube, its segments and their data (refused while one of its jobs runs).
    Drop { name: String },
    /// The cube planner: propose cuboids to add (and unused ones to drop) from the query
    /// history; `--apply` adds them and builds them into every READY segment.
    Optimize(super::optimize::OptimizeArgs),
    /// Validate a cube file and estimate its cuboids' rows and bytes from the source
    /// tables, without writing anything.
    Plan {
        file: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    engine: &JobEngine,
    config: &Config,
    command: DocumentsCommand,
) -> anyhow::Result<()> {
    let meta = engine.metadata();
    let max = config.cube.max_cuboids_per_group;
    let changed = match command {
        DocumentsCommand::Project { command } => match command {
            ProjectCommand::Create { name, description } => {
                docs::create_project(
                    meta,
                    &ProjectDesc {
                        name: name.clone(),
                        description,
                    },
                )?;
                eprintln!("created project {name}");
                format!("project created {name}")
            }
            ProjectCommand::List => {
                println!(
                    "{:<24}  {:>6}  {:>6}  {:>5}  DESCRIPTION",
                    "PROJECT", "TABLES", "MODELS", "CUBES"
                );
                for p in docs::list_projects(meta)? {
                    println!(
                        "{:<24}  {:>6}  {:>6}  {:>5}  {}",
                        p.name, p.tables, p.models, p.cubes, p.description
                    );
                }
                return Ok(());
            }
            ProjectCommand::Drop { name } => {
                docs::drop_project(meta, &name)?;
                eprintln!("dropped project {name}");
                format!("project dropped {name}")
            }
        },
        DocumentsCommand::Model { command } => match command {
            ModelCommand::Put { project, file } => {
                let bytes = read(&file)?;
                let model = docs::parse_model(&what("model", &file), &bytes, project.as_deref())?;
                let put = docs::put_model(meta, &model, max)?;
                eprintln!(
                    "{} model {} (project {}){}",
                    if put.created { "created" } else { "updated" },
                    put.model,
                    put.project,
                    if put.cubes.is_empty() {
                        String::new()
                    } else {
                        format!("; cubes still valid: {}", put.cubes.join(", "))
                    }
                );
                warn_stale(&put.stale_segments);
                format!("model put {}", put.model)
            }
            ModelCommand::Get { name } => {
                print_json(&docs::get_model(meta, &name)?);
                return Ok(());
            }
            ModelCommand::List { project } => {
                println!(
                    "{:<24}  {:<16}  {:<20}  {:>7}  CUBES",
                    "MODEL", "PROJECT", "FACT TABLE", "LOOKUPS"
                );
                for m in docs::list_models(meta, project.as_deref())? {
                    println!(
                        "{:<24}  {:<16}  {:<20}  {:>7}  {}",
                        m.name,
                        m.project,
                        m.fact_table,
                        m.lookups,
                        m.cubes.join(", ")
                    );
                }
                return Ok(());
            }
            ModelCommand::Drop { name } => {
                docs::drop_model(meta, &name)?;
                eprintln!("dropped model {name}");
                format!("model dropped {name}")
            }
        },
        DocumentsCommand::Cube { command } => match command {
            CubeCommand::Put { file } => {
                let cube: CubeDesc = docs::parse_document(&what("cube", &file), &read(&file)?)?;
                let put = docs::put_cube(meta, &cube, max)?;
                eprintln!(
                    "{} cube {} (model {}, {} cuboids)",
                    if put.created { "created" } else { "updated" },
                    put.cube,
                    put.model,
                    put.cuboids
                );
                warn_stale(&put.stale_segments);
                format!("cube put {}", put.cube)
            }
            CubeCommand::Get { name } => {
                print_json(&docs::get_cube(meta, &name)?);
                return Ok(());
            }
            CubeCommand::List { project } => {
                println!(
                    "{:<24}  {:<24}  {:<16}  {:>7}  {:>8}  {:>5}  {:>5}",
                    "CUBE", "MODEL", "PROJECT", "CUBOIDS", "SEGMENTS", "READY", "STALE"
                );
                for c in docs::list_cubes(meta, project.as_deref(), max)? {
                    println!(
                        "{:<24}  {:<24}  {:<16}  {:>7}  {:>8}  {:>5}  {:>5}{}",
                        c.name,
                        c.model,
                        c.project.as_deref().unwrap_or("?"),
                        c.cuboids.map_or("-".to_string(), |n| n.to_string()),
                        c.segments,
                        c.ready_segments,
                        c.stale_segments,
                        c.problem.map(|p| format!("  ({p})")).unwrap_or_default()
                    );
                }
                return Ok(());
            }
            CubeCommand::Drop { name } => {
                let dropped = docs::drop_cube(meta, engine.segment_store().as_ref(), &name)?;
                eprintln!(
                    "dropped cube {name} and {} segment(s)",
                    dropped.segments.len()
                );
                if !dropped.leftover_data.is_empty() {
                    eprintln!(
                        "warning: the data of segment(s) {} could not be deleted (see the log)",
                        dropped.leftover_data.join(", ")
                    );
                }
                format!("cube dropped {name}")
            }
            CubeCommand::Optimize(args) => {
                return super::optimize::run(engine, config, args).await;
            }
            CubeCommand::Plan { file, json } => {
                let cube: CubeDesc = docs::parse_document(&what("cube", &file), &read(&file)?)?;
                let source = PathBuf::from(&config.stores.source_url);
                let plan = docs::plan_cube(meta, &source, &cube, max).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                } else {
                    print!("{}", plan.to_text());
                }
                return Ok(());
            }
        },
    };
    notify_peers(engine, config, &changed).await;
    Ok(())
}

/// How parse errors name the file: `model file conf/m.json`.
fn what(kind: &str, file: &Path) -> String {
    format!("{kind} file {}", file.display())
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// The stored JSON, then a newline (which `put` ignores, so the round trip is exact).
fn print_json(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.write_all(b"\n");
}

fn warn_stale(stale: &[docs::StaleSegment]) {
    if stale.is_empty() {
        return;
    }
    eprintln!(
        "{} READY segment(s) were built under an earlier descriptor; queries skip them until \
         they are refreshed:",
        stale.len()
    );
    for s in stale {
        eprintln!(
            "  qilin-jobs refresh --cube {} --segment {}",
            s.cube, s.segment
        );
    }
}

/// Tells the peers in `kylin.rest.servers` (a peer that cannot be reached catches up by
/// polling the store version).
pub(crate) async fn notify_peers(engine: &JobEngine, config: &Config, what: &str) {
    if let Some(n) = Notifier::from_config(config, None) {
        let version = engine.metadata().store().store_version().unwrap_or(0);
        for (peer, e) in n.notify_all(what, version).await {
            eprintln!("warning: could not notify {peer} ({e}); it catches up by polling");
        }
    }
}
