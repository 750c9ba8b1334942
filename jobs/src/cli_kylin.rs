//! `qilin-jobs import-kylin DIR --location TABLE=PATH ... [--skip-unsupported] [--dry-run]`.

use std::path::{Path, PathBuf};

use qilin_engine::admin::kylin::{self, ImportOptions};
use qilin_engine::config::Config;
use qilin_engine::metadata::managers::Metadata;

#[derive(clap::Args)]
pub struct ImportKylinArgs {
    /// A Kylin 2.x/3.x metadata directory, as `metastore.sh backup` writes it (project/,
    /// table/, model_desc/, cube_desc/).
    dir: PathBuf,
    /// Where a table's files are: TABLE=PATH or DB.TABLE=PATH, PATH relative to
    /// kylin.source.url or absolute. Once per table the models use.
    #[arg(long = "location", value_name = "TABLE=PATH", value_parser = parse_location)]
    locations: Vec<(String, String)>,
    /// Import without what Qilin cannot represent (TOP_N measures, streaming tables, ...),
    /// listing it, instead of failing.
    #[arg(long)]
    skip_unsupported: bool,
    /// Map and validate only; write nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_location(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((t, p)) if !t.trim().is_empty() && !p.trim().is_empty() => {
            Ok((t.trim().to_string(), p.trim().to_string()))
        }
        _ => Err(format!("expected TABLE=PATH, got {s:?}")),
    }
}

pub fn run(meta: &Metadata, config: &Config, args: ImportKylinArgs) -> anyhow::Result<()> {
    let opts = ImportOptions {
        locations: args.locations,
        skip_unsupported: args.skip_unsupported,
        source_url: PathBuf::from(&config.stores.source_url),
        max_cuboids_per_group: config.cube.max_cuboids_per_group,
    };
    let dir: &Path = &args.dir;
    let out = if args.dry_run {
        kylin::plan(dir, &opts)?
    } else {
        kylin::import(meta, dir, &opts)?
    };
    for s in &out.skipped {
        eprintln!("skipped: {s}");
    }
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    let verb = if args.dry_run {
        "would import"
    } else {
        "imported"
    };
    for p in &out.projects {
        let tables: Vec<&str> = out
            .tables
            .iter()
            .filter(|t| t.project == p.name)
            .map(|t| t.name.as_str())
            .collect();
        println!("{verb} project {} (tables {})", p.name, tables.join(", "));
    }
    for m in &out.models {
        println!("{verb} model {} (fact table {})", m.name, m.fact_table);
    }
    for c in &out.cubes {
        println!(
            "{verb} cube {} ({} dimensions, {} measures); build it with `qilin-jobs build --cube {}`",
            c.name,
            c.dimensions.len(),
            c.measures.len(),
            c.name
        );
    }
    Ok(())
}
