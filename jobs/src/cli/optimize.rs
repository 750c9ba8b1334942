//! `qilin-jobs cube optimize`: the cube planner (see `qilin_engine::planner`). Reads the
//! cube's query history, proposes cuboids to add (by rows saved × queries per byte, within
//! `--budget-bytes`) and unused ones to drop; `--apply` adds the proposed ones to the
//! descriptor's `mandatory_dimension_set_list` and runs the job that builds them into every
//! READY segment from its stored base cuboid.

use anyhow::bail;
use qilin_engine::admin::documents as docs;
use qilin_engine::build::extend::missing_cuboids;
use qilin_engine::config::Config;
use qilin_engine::model::descriptor_signature;
use qilin_engine::planner::{self, Plan};

use crate::JobEngine;

#[derive(clap::Args)]
pub struct OptimizeArgs {
    #[arg(long)]
    pub cube: String,
    /// The project whose query history is read (default: the cube's).
    #[arg(long)]
    pub project: Option<String>,
    /// Bytes the added cuboids may take over all READY segments (default: a quarter of the
    /// cube's cuboid bytes now).
    #[arg(long)]
    pub budget_bytes: Option<u64>,
    /// Add the proposed cuboids to the descriptor and build them into every READY segment.
    #[arg(long)]
    pub apply: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How many drop proposals the table shows (`--json` has them all).
const DROPS_SHOWN: usize = 20;

pub async fn run(engine: &JobEngine, config: &Config, args: OptimizeArgs) -> anyhow::Result<()> {
    let meta = engine.metadata();
    let max = config.cube.max_cuboids_per_group;
    let desc = meta.cube_desc(&args.cube)?;
    let own = meta.model(&desc.model)?.project;
    let project = args.project.clone().unwrap_or_else(|| own.clone());
    if !project.eq_ignore_ascii_case(&own) {
        bail!("cube {} is in project {own}, not {project}", args.cube);
    }
    let layout = meta.cube_layout(&args.cube, max)?;
    let (inst, _) = meta.cube_instance(&args.cube)?;
    let history = planner::read_history_counted(meta.store().as_ref(), &project, &args.cube)?;
    if history.skipped > 0 {
        eprintln!(
            "warning: {} unreadable history line(s) skipped",
            history.skipped
        );
    }
    let records = history.records;
    let store = engine.segment_store().clone();
    let (l, i, budget) = (layout.clone(), inst.clone(), args.budget_bytes);
    let plan = tokio::task::spawn_blocking(move || {
        planner::plan(&l, &i, store.as_ref(), &records, budget)
    })
    .await??;

    if !args.apply {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", text(&plan));
        }
        return Ok(());
    }

    let mut desc = desc;
    let mut new_sets = 0;
    for set in plan.added_sets() {
        let same = |s: &Vec<String>| {
            s.len() == set.len()
                && s.iter()
                    .all(|d| set.iter().any(|x| x.eq_ignore_ascii_case(d)))
        };
        if !desc.mandatory_dimension_set_list.iter().any(same) {
            desc.mandatory_dimension_set_list.push(set);
            new_sets += 1;
        }
    }
    if new_sets > 0 {
        let put = docs::put_cube(meta, &desc, max)?;
        eprintln!(
            "cube {}: {new_sets} dimension set(s) added to mandatory_dimension_set_list ({} cuboids)",
            put.cube, put.cuboids
        );
        super::documents::notify_peers(engine, config, &format!("cube put {}", put.cube)).await;
    }
    // Build whatever a READY segment lacks, the cuboids just added or left over by an
    // earlier run.
    let layout = meta.cube_layout(&args.cube, max)?;
    let signature = descriptor_signature(&layout);
    let (inst, _) = meta.cube_instance(&args.cube)?;
    let lacking = inst
        .ready_segments()
        .filter(|s| s.built_under(&signature))
        .filter(|s| !missing_cuboids(&layout, &s.cuboids).is_empty())
        .count();
    let job = if lacking > 0 {
        let job = engine.submit_optimize(&args.cube)?;
        eprintln!(
            "submitted job {} (optimize cube {}: build the new cuboids of {lacking} READY \
             segment(s) from their base cuboids)",
            job.id, args.cube
        );
        Some(job)
    } else {
        None
    };
    if args.json {
        let mut v = serde_json::to_value(&plan)?;
        v["job"] = serde_json::json!(job.as_ref().map(|j| j.id.clone()));
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", text(&plan));
    }
    match job {
        Some(job) => {
            println!("job {}", job.id);
            crate::run_job(engine, config, &job.id).await
        }
        None => {
            eprintln!("nothing to build: every READY segment has every cuboid of the cube");
            Ok(())
        }
    }
}

fn text(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cube {}: {} history record(s), {} usable, {} dimension set(s) wanted; {} READY \
         segment(s), {} bytes of cuboids",
        plan.cube,
        plan.records,
        plan.records_used,
        plan.wanted_sets,
        plan.ready_segments,
        plan.cube_bytes
    );
    let _ = writeln!(out, "\nADD ({} proposed)", plan.add.len());
    let _ = writeln!(
        out,
        "{:<60}  {:>12}  {:>12}  {:>8}  {:>14}  {:>14}",
        "DIMENSIONS", "EST_ROWS", "EST_BYTES", "QUERIES", "ROWS_SAVED", "READS_TODAY"
    );
    for a in &plan.add {
        let _ = writeln!(
            out,
            "{:<60}  {:>12}  {:>12}  {:>8}  {:>14}  {:>14}",
            a.dimensions.join(","),
            a.est_rows,
            a.est_bytes,
            a.queries,
            a.rows_saved,
            a.reads_today_rows
        );
    }
    let bytes: u64 = plan.add.iter().map(|a| a.est_bytes).sum();
    let saved: u64 = plan.add.iter().map(|a| a.rows_saved).sum();
    let _ = writeln!(
        out,
        "total: {} cuboid(s), {bytes} bytes of the {} budget, {saved} rows fewer read by the \
         recorded queries",
        plan.add.len(),
        plan.budget_bytes
    );
    let drop_bytes: u64 = plan.drop.iter().map(|d| d.bytes).sum();
    let _ = writeln!(
        out,
        "\nDROP ({} built cuboid(s) no recorded query chose and no kept cuboid builds from; \
         {drop_bytes} bytes; only proposed: add them to cuboid_black_list by hand)",
        plan.drop.len()
    );
    if !plan.drop.is_empty() {
        let _ = writeln!(out, "{:<60}  {:>12}  {:>12}", "DIMENSIONS", "ROWS", "BYTES");
    }
    for d in plan.drop.iter().take(DROPS_SHOWN) {
        let _ = writeln!(
            out,
            "{:<60}  {:>12}  {:>12}",
            format!("[{}]", d.dimensions.join(",")),
            d.rows,
            d.bytes
        );
    }
    if plan.drop.len() > DROPS_SHOWN {
        let _ = writeln!(
            out,
            "... and {} more (see --json)",
            plan.drop.len() - DROPS_SHOWN
        );
    }
    let _ = writeln!(out, "\nrows estimated from: {}", plan.estimate);
    out
}
