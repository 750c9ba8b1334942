//! Re-encodes the blocks of a stored segment in the current block format and reports, per
//! cuboid, bytes per row before (the stored blocks) and after, and decode time of both.
//!
//! `cargo run --release -p qilin-engine --example block_sizes -- SEGMENT_DIR [--stride N]
//! [--columns] [--cuboids A,B,..] [--source-bytes N]`
//!
//! SEGMENT_DIR is one segment's directory of a local store (per-cuboid subdirectories with
//! `manifest.json` and `N.arrow` blocks). `--stride N` re-encodes every N-th block only and
//! scales; `--columns` adds bytes per row per column (each column encoded alone).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qilin_engine::storage::block::{
    decode_block, decode_block_columns, encode_block, encode_block_ipc,
};
use qilin_engine::storage::{BlockMeta, CuboidManifest};

struct Args {
    dir: PathBuf,
    stride: usize,
    columns: bool,
    cuboids: Option<Vec<String>>,
    source_bytes: Option<u64>,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        dir: PathBuf::new(),
        stride: 1,
        columns: false,
        cuboids: None,
        source_bytes: None,
    };
    while let Some(s) = it.next() {
        match s.as_str() {
            "--stride" => a.stride = it.next().and_then(|v| v.parse().ok()).expect("--stride N"),
            "--columns" => a.columns = true,
            "--cuboids" => a.cuboids = it.next().map(|v| v.split(',').map(String::from).collect()),
            "--source-bytes" => a.source_bytes = it.next().and_then(|v| v.parse().ok()),
            _ => a.dir = PathBuf::from(s),
        }
    }
    a
}

fn meta_of(bytes: &[u8], rows: u32) -> BlockMeta {
    BlockMeta {
        rows,
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(bytes),
        min: vec![],
        max: vec![],
        nulls: vec![],
        sections: None,
    }
}

#[derive(Default)]
struct Totals {
    rows: u64,
    old: u64,
    new: u64,
    old_sampled: u64,
    old_decode: Duration,
    new_decode: Duration,
    old_proj: Duration,
    new_proj: Duration,
}

fn main() {
    let a = args();
    let mut cuboids: Vec<(String, CuboidManifest)> = std::fs::read_dir(&a.dir)
        .expect("segment dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.json").exists())
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let m: CuboidManifest =
                serde_json::from_slice(&std::fs::read(e.path().join("manifest.json")).unwrap())
                    .unwrap();
            (name, m)
        })
        .filter(|(n, _)| a.cuboids.as_ref().is_none_or(|c| c.contains(n)))
        .collect();
    cuboids.sort_by_key(|(_, m)| std::cmp::Reverse(m.bytes()));
    println!(
        "{:>22} {:>9} {:>4} {:>10} {:>10} {:>7} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "cuboid",
        "rows",
        "dims",
        "old MB",
        "new MB",
        "old B/r",
        "new B/r",
        "ratio",
        "old dec",
        "new dec",
        "old proj",
        "new proj"
    );
    let mut all = Totals::default();
    for (name, m) in &cuboids {
        let t = cuboid(&a.dir.join(name), m, a.stride, a.columns);
        let scale = t.old as f64 / t.old_sampled.max(1) as f64;
        let new = (t.new as f64 * scale) as u64;
        let ms = |d: Duration| d.as_secs_f64() * 1e3 * scale;
        println!(
            "{:>22} {:>9} {:>4} {:>10.1} {:>10.1} {:>7.2} {:>7.2} {:>6.2} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms",
            name, t.rows, m.dimensions.len(), t.old as f64 / 1e6, new as f64 / 1e6,
            t.old as f64 / t.rows.max(1) as f64, new as f64 / t.rows.max(1) as f64,
            new as f64 / t.old.max(1) as f64, ms(t.old_decode), ms(t.new_decode), ms(t.old_proj), ms(t.new_proj)
        );
        all.rows += t.rows;
        all.old += t.old;
        all.new += new;
        all.old_decode += t.old_decode.mul_f64(scale);
        all.new_decode += t.new_decode.mul_f64(scale);
        all.old_proj += t.old_proj.mul_f64(scale);
        all.new_proj += t.new_proj.mul_f64(scale);
    }
    println!(
        "{:>22} {:>9} {:>4} {:>10.1} {:>10.1} {:>7.2} {:>7.2} {:>6.2} {:>7.0}ms {:>7.0}ms {:>7.0}ms {:>7.0}ms",
        "total", all.rows, "", all.old as f64 / 1e6, all.new as f64 / 1e6,
        all.old as f64 / all.rows as f64, all.new as f64 / all.rows as f64, all.new as f64 / all.old as f64,
        all.old_decode.as_secs_f64() * 1e3, all.new_decode.as_secs_f64() * 1e3,
        all.old_proj.as_secs_f64() * 1e3, all.new_proj.as_secs_f64() * 1e3
    );
    if let Some(src) = a.source_bytes {
        println!(
            "cube / source: before {:.2}x, after {:.2}x ({} source bytes)",
            all.old as f64 / src as f64,
            all.new as f64 / src as f64,
            src
        );
    }
}

fn cuboid(dir: &Path, m: &CuboidManifest, stride: usize, columns: bool) -> Totals {
    let mut t = Totals {
        rows: m.rows,
        old: m.bytes(),
        ..Totals::default()
    };
    let mut per_col: Vec<(String, u64, u64)> = Vec::new();
    let mut sampled_rows = 0u64;
    for (i, meta) in m.blocks.iter().enumerate().step_by(stride.max(1)) {
        let old = std::fs::read(dir.join(format!("{i}.arrow"))).expect("block");
        t.old_sampled += old.len() as u64;
        let start = Instant::now();
        let batch = decode_block(&old, meta, "s", m.cuboid, i as u32).expect("old block decodes");
        t.old_decode += start.elapsed();
        let new = encode_block(&batch).expect("encodes");
        t.new += new.len() as u64;
        let nm = meta_of(&new, meta.rows);
        let start = Instant::now();
        let again = decode_block(&new, &nm, "s", m.cuboid, i as u32).expect("new block decodes");
        t.new_decode += start.elapsed();
        if again != batch {
            assert_eq!(again.num_columns(), batch.num_columns());
            for c in 0..batch.num_columns() {
                assert!(
                    again.column(c) == batch.column(c),
                    "column {c} of block {i} of {}",
                    dir.display()
                );
            }
        }
        // A typical query's projection: the first dimension and the first measure.
        let proj = [0, m.dimensions.len().min(batch.num_columns() - 1)];
        let start = Instant::now();
        decode_block_columns(&old, meta, "s", m.cuboid, i as u32, Some(&proj)).unwrap();
        t.old_proj += start.elapsed();
        let start = Instant::now();
        decode_block_columns(&new, &nm, "s", m.cuboid, i as u32, Some(&proj)).unwrap();
        t.new_proj += start.elapsed();
        sampled_rows += batch.num_rows() as u64;
        if columns {
            if per_col.is_empty() {
                per_col = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), 0, 0))
                    .collect();
            }
            for (c, slot) in per_col.iter_mut().enumerate() {
                let one = batch.project(&[c]).unwrap();
                slot.1 += encode_block_ipc(&one).unwrap().len() as u64;
                slot.2 += encode_block(&one).unwrap().len() as u64;
            }
        }
    }
    if columns {
        let r = sampled_rows.max(1) as f64;
        for (name, ipc, pq) in per_col {
            println!(
                "    {name:>24} ipc {:>7.2} B/row  parquet {:>7.2} B/row",
                ipc as f64 / r,
                pq as f64 / r
            );
        }
    }
    t
}
