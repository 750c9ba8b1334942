//! Criterion micro-benchmarks of the engine's hot paths (the end-to-end SSB comparison is the
//! `qilin-bench` binary; these time single functions on synthetic or tiny sample data).
//!
//! Groups:
//! * `block`: [`encode_block`] and [`decode_block`] (checksum, Parquet pages, strings and
//!   differences back to plain), whole and projected to three columns, against the zstd IPC
//!   blocks of store version 3 (`ipc_*`, the baseline) of one realistic 8192-row cuboid block: five sorted dimensions
//!   (one Int32, four Utf8), nine Int64 measure states and a Binary HLL(12) state column.
//!   Throughput in rows.
//! * `prune`: [`prune_blocks`] (DataFusion's `PruningPredicate` over the typed per-block
//!   statistics the cuboid scan uses: building the predicate, decoding the manifest's stats,
//!   evaluating) over a manifest of 1,000 `BlockMeta` with min/max stats, against the
//!   filters of SSB Q1.1 (`d_year = 1993`, `lo_discount between 1 and 3`, `lo_quantity <
//!   25`) and of Q3.3 (ORs of string equalities). Throughput in blocks.
//! * `aggregate`: [`Aggregator`] in `Mode::Merge` folding 100,000 rows of a six-dimension
//!   parent cuboid (in 8192-row batches, as the build streams stored blocks) into the
//!   three-dimension child `[d_year, c_region, s_region]` (160 groups), then `finish`; once
//!   with the SUM, COUNT, MIN and MAX states only, once with an HLL(12) state as well.
//!   Throughput in parent rows.
//! * `hll`: merging 1,000 HyperLogLog(12) sketches, sparse (~20 values each) and dense
//!   (~3,000 values each), from memory and from their serialized bytes
//!   ([`HyperLogLog::merge_bytes`], what a query's `qilin_hll_count` does per cuboid row).
//!   Throughput in sketches.
//! * `tdigest`: PERCENTILE's t-digest (compression 100): `update_100000` adds 100,000 values
//!   to one digest (throughput in values); `from_bytes_merge_1000` merges 1,000 serialized
//!   digests of 5 values (base cuboid rows) or 3,000 values each and estimates p99
//!   ([`TDigest::merge_bytes`], what `qilin_tdigest_merge` does per cuboid row; throughput in
//!   digests). The state sizes are printed to stderr.
//! * `topn`: the TOP_N state ([`TopNCounter`], capacity 5000 = n 100 × 50): `update` folds
//!   100,000 raw `{value, by}` rows (2,000 distinct `by` texts) into 160 groups through
//!   [`TopNStates::update_raw`], throughput in rows; `merge_1000` merges 1,000 serialized
//!   states of 200 keys each ([`TopNCounter::merge_bytes`], what `qilin_topn` does per cuboid
//!   row), throughput in states. The serialized sizes of a 200-key and a full state are
//!   printed once.
//! * `query`: [`QueryEngine::plan_and_rewrite`] of SSB queries against the SSB sample cube
//!   built at scale 0.01 into a temp dir (once, on first use; block-rows 1000 as in the
//!   tests). `cold` makes every SQL text unique (a trailing comment) so each call parses,
//!   plans and rewrites; `plan_cached` repeats the same text, so the call costs the
//!   metadata-version check, the plan-cache hit and the cube rewrite (plan construction: the
//!   rewrite reads no manifests, the cuboid scan prunes when it runs); `rewrite_only` is
//!   [`QueryEngine::rewrite_plan`] of the planned statement (version check and rewrite).
//!
//! * `global_dict`: the global dictionary of exact COUNT_DISTINCT on strings
//!   ([`GlobalDict`]): `grow_100k` assigns ids to 100,000 new 20-byte strings and commits
//!   them to a local segment store (sort, chunk encode, fsync, manifest swap);
//!   `load_100k` reads that dictionary back; `map_ids_8192` maps one 8192-row string batch
//!   to ids (the build's per-batch cost); `bitmap_update_8192` adds those ids to 160 group
//!   bitmaps (the raw aggregation); `bitmap_merge_1000` unions 1,000 serialized bitmaps of
//!   ~1,000 dictionary ids each (segment merge, child cuboid, query). State and dictionary
//!   sizes are printed once. Throughput in values, rows or bitmaps.
//!
//! Run everything (a few minutes; numbers are noisy on a loaded machine):
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/qilin/target
//! cargo bench -p qilin-bench --bench micro
//! ```
//!
//! or one group / benchmark by a filter on its id: `cargo bench -p qilin-bench --bench micro
//! -- hll/` or `-- 'query/cold/Q1.1'`. Reports land in `$CARGO_TARGET_DIR/criterion`, and a
//! later run prints the change against the previous one.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Column;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{lit, Expr};
use qilin_engine::build::aggregate::{Aggregator, Mode};
use qilin_engine::config::Config;
use qilin_engine::dict::GlobalDict;
use qilin_engine::measure::bitmap::DistinctBitmap;
use qilin_engine::measure::hll::HyperLogLog;
use qilin_engine::measure::tdigest::TDigest;
use qilin_engine::measure::topn::{TopNCounter, TopNStates};
use qilin_engine::measure::GroupStates;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::metadata::open_store;
use qilin_engine::model::StateKind;
use qilin_engine::query::{prune_blocks, QueryEngine};
use qilin_engine::sample::ssb;
use qilin_engine::storage::block::{
    checksum, decode_block, decode_block_columns, encode_block, encode_block_ipc, write_cuboid,
};
use qilin_engine::storage::{
    open_segment_store, BlockMeta, CuboidManifest, LocalSegmentStore, SegmentStore,
};
use qilin_jobs::{Job, JobEngine, JobStatus};
use serde_json::Value;

// The allocator of the production binaries, so allocation-heavy paths time as they run there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A deterministic SplitMix64 stream: the data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REGIONS: [&str; 5] = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"];

/// SSB-like names: nation `n` (0..25) lies in region `n / 5`.
fn nation(n: u64) -> String {
    format!("NATION {n:02}")
}

fn city(n: u64, c: u64) -> String {
    format!("NATION {n:02}C{c}")
}

/// A serialized HLL(12) state of `values` random customer keys.
fn hll_state(rng: &mut Rng, values: u64) -> Vec<u8> {
    let mut h = HyperLogLog::new(12).expect("precision 12");
    for _ in 0..values {
        h.add_i64(rng.below(30_000) as i64);
    }
    h.to_bytes()
}

fn i64_column(rows: usize, rng: &mut Rng, max: u64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        (0..rows).map(|_| rng.below(max) as i64),
    ))
}

// ---------------------------------------------------------------------------------------
// block

const BLOCK_ROWS: usize = 8192;

/// A block row's key: year, customer nation, supplier city, part brand (as numbers).
type BlockKey = (i32, u64, u64, u64);

/// One cuboid block `[d_year, c_region, c_nation, s_city, p_brand]` + measures, sorted by the
/// dimensions (distinct keys, as in a stored cuboid).
fn cuboid_block(rows: usize) -> RecordBatch {
    let mut rng = Rng(1);
    let mut keys: Vec<BlockKey> = (0..rows)
        .map(|_| {
            (
                1992 + rng.below(7) as i32,
                rng.below(25),
                rng.below(250),
                rng.below(1000),
            )
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    while keys.len() < rows {
        // Top up with keys of a year no random key used; they sort last.
        let i = keys.len() as u64;
        keys.push((1999, i % 25, i % 250, i));
    }
    let strings = |f: &dyn Fn(&BlockKey) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(keys.iter().map(f)))
    };
    let mut fields = vec![
        Field::new("d_year", DataType::Int32, true),
        Field::new("c_region", DataType::Utf8, true),
        Field::new("c_nation", DataType::Utf8, true),
        Field::new("s_city", DataType::Utf8, true),
        Field::new("p_brand", DataType::Utf8, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| k.0))),
        strings(&|k| REGIONS[(k.1 / 5) as usize].to_string()),
        strings(&|k| nation(k.1)),
        strings(&|k| city(k.2 / 10, k.2 % 10)),
        strings(&|k| format!("MFGR#{}{}{}", 1 + k.3 % 5, 1 + k.3 / 5 % 5, k.3 / 25)),
    ];
    for (name, max) in [
        ("row_count", 50),
        ("lo_revenue_sum", 50_000_000),
        ("lo_supplycost_sum", 1_000_000),
        ("v_revenue_sum", 500_000_000),
        ("v_profit_sum", 40_000_000),
        ("lo_quantity_sum", 2_500),
        ("lo_extendedprice_sum", 50_000_000),
        ("lo_extendedprice_min", 100_000),
        ("lo_extendedprice_max", 10_000_000),
    ] {
        fields.push(Field::new(name, DataType::Int64, true));
        columns.push(i64_column(rows, &mut rng, max));
    }
    fields.push(Field::new("lo_custkey_hll", DataType::Binary, true));
    let states: Vec<Vec<u8>> = (0..rows)
        .map(|_| {
            let n = 1 + rng.below(8);
            hll_state(&mut rng, n)
        })
        .collect();
    columns.push(Arc::new(BinaryArray::from_iter_values(states.iter())));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("block batch")
}

fn bench_block(c: &mut Criterion) {
    let batch = cuboid_block(BLOCK_ROWS);
    // Written through the real writer, so the meta (size, CRC, stats) is the stored one.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalSegmentStore::open(dir.path()).expect("segment store");
    let manifest = write_cuboid(
        &store,
        "0b1ec",
        7,
        &batch.schema(),
        std::slice::from_ref(&batch),
        5,
        BLOCK_ROWS,
    )
    .expect("write cuboid");
    assert_eq!(manifest.blocks.len(), 1);
    let meta = manifest.blocks[0].clone();
    let bytes = store.get_block("0b1ec", 7, 0).expect("stored block");
    assert_eq!(
        decode_block(&bytes, &meta, "0b1ec", 7, 0).expect("decodes"),
        batch
    );
    eprintln!(
        "block: {} rows, {} columns, {} bytes of Arrow memory -> {} bytes stored",
        batch.num_rows(),
        batch.num_columns(),
        batch.get_array_memory_size(),
        bytes.len()
    );

    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(BLOCK_ROWS as u64));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("encode_8192_rows", |b| {
        b.iter(|| encode_block(black_box(&batch)).expect("encode"))
    });
    g.bench_function("decode_8192_rows", |b| {
        b.iter(|| decode_block(black_box(&bytes), &meta, "0b1ec", 7, 0).expect("decode"))
    });
    // A query's projection (two dimensions and one measure) of the same block.
    let projection = [0, 3, 6];
    g.bench_function("decode_3_columns_8192_rows", |b| {
        b.iter(|| {
            decode_block_columns(black_box(&bytes), &meta, "0b1ec", 7, 0, Some(&projection))
                .expect("decode")
        })
    });
    // The same block in the IPC format of store versions <= 3, the baseline: decoding must
    // not get slower with the format change.
    let ipc = encode_block_ipc(&batch).expect("ipc block");
    let ipc_meta = BlockMeta {
        bytes: ipc.len() as u64,
        crc32: checksum(&ipc),
        sections: None,
        ..meta.clone()
    };
    eprintln!("block: {} bytes as IPC (store version 3)", ipc.len());
    g.bench_function("ipc_encode_8192_rows", |b| {
        b.iter(|| encode_block_ipc(black_box(&batch)).expect("encode"))
    });
    g.bench_function("ipc_decode_8192_rows", |b| {
        b.iter(|| decode_block(black_box(&ipc), &ipc_meta, "0b1ec", 7, 0).expect("decode"))
    });
    g.bench_function("ipc_decode_3_columns_8192_rows", |b| {
        b.iter(|| {
            decode_block_columns(black_box(&ipc), &ipc_meta, "0b1ec", 7, 0, Some(&projection))
                .expect("decode")
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// prune

const PRUNE_BLOCKS: usize = 1000;

fn cuboid_col(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Per-block min/max of `dims` integer columns over a sorted run of `keys` cut into
/// [`PRUNE_BLOCKS`] blocks, as the writer computes them.
fn manifest_of(keys: &[Vec<Value>], dims: usize) -> CuboidManifest {
    let blocks = (0..PRUNE_BLOCKS)
        .map(|i| &keys[i * keys.len() / PRUNE_BLOCKS..(i + 1) * keys.len() / PRUNE_BLOCKS])
        .map(|chunk| {
            let stat = |d: usize, pick_max: bool| -> Value {
                let vals = chunk.iter().map(|k| &k[d]);
                let cmp = |a: &&Value, b: &&Value| match (a, b) {
                    (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
                    (Value::String(x), Value::String(y)) => x.cmp(y),
                    _ => std::cmp::Ordering::Equal,
                };
                let v = if pick_max {
                    vals.max_by(cmp)
                } else {
                    vals.min_by(cmp)
                };
                v.cloned().unwrap_or(Value::Null)
            };
            BlockMeta {
                rows: chunk.len() as u32,
                bytes: 40_000,
                crc32: 0,
                min: (0..dims).map(|d| stat(d, false)).collect(),
                max: (0..dims).map(|d| stat(d, true)).collect(),
                nulls: vec![0; dims],
                sections: None,
            }
        })
        .collect();
    CuboidManifest {
        cuboid: 1,
        rows: keys.len() as u64,
        dimensions: Vec::new(),
        blocks,
    }
}

/// Dimension fields: Int32 for the first `ints`, Utf8 for the rest.
fn dim_fields(names: &[&str], ints: usize) -> Vec<Field> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let t = if i < ints {
                DataType::Int32
            } else {
                DataType::Utf8
            };
            Field::new(*n, t, true)
        })
        .collect()
}

fn bench_prune(c: &mut Criterion) {
    // Q1.1's cuboid [d_year, d_yearmonthnum, lo_discount, lo_quantity]: every combination,
    // sorted (7 * 12 * 11 * 50 = 46,200 rows, ~46 per block).
    let mut keys = Vec::new();
    for year in 1992..1999i64 {
        for month in 1..=12i64 {
            for discount in 0..=10i64 {
                for quantity in 1..=50i64 {
                    keys.push(vec![
                        Value::from(year),
                        Value::from(year * 100 + month),
                        Value::from(discount),
                        Value::from(quantity),
                    ]);
                }
            }
        }
    }
    let q11_blocks = manifest_of(&keys, 4);
    let q11_dims = dim_fields(
        &["d_year", "d_yearmonthnum", "lo_discount", "lo_quantity"],
        4,
    );
    let q11 = vec![
        cuboid_col("d_year").eq(lit(1993i32)),
        cuboid_col("lo_discount").between(lit(1i32), lit(3i32)),
        cuboid_col("lo_quantity").lt(lit(25i32)),
    ];

    // Q3.3's cuboid [d_year, c_region, c_nation, c_city, s_region, s_nation, s_city]:
    // 7 years * 250 customer cities * 250 supplier cities, sorted, cut into 1,000 blocks.
    let mut keys = Vec::new();
    for year in 1992..1999i64 {
        for cc in 0..250u64 {
            for sc in 0..250u64 {
                let (cn, sn) = (cc / 10, sc / 10);
                keys.push(vec![
                    Value::from(year),
                    Value::from(REGIONS[(cn / 5) as usize]),
                    Value::from(nation(cn)),
                    Value::from(city(cn, cc % 10)),
                    Value::from(REGIONS[(sn / 5) as usize]),
                    Value::from(nation(sn)),
                    Value::from(city(sn, sc % 10)),
                ]);
            }
        }
    }
    let q33_blocks = manifest_of(&keys, 7);
    let q33_dims = dim_fields(
        &[
            "d_year", "c_region", "c_nation", "c_city", "s_region", "s_nation", "s_city",
        ],
        1,
    );
    let either_city = |col: &str| {
        cuboid_col(col)
            .eq(lit(city(23, 1)))
            .or(cuboid_col(col).eq(lit(city(23, 5))))
    };
    let q33 = vec![
        either_city("c_city"),
        either_city("s_city"),
        cuboid_col("d_year").gt_eq(lit(1992i32)),
        cuboid_col("d_year").lt_eq(lit(1997i32)),
    ];

    let kept = |preds: &[Expr], dims: &[Field], manifest: &CuboidManifest| {
        let predicate = conjunction(preds.to_vec()).expect("filters");
        prune_blocks(black_box(manifest), dims, &predicate)
            .expect("prunes")
            .into_iter()
            .filter(|keep| *keep)
            .count()
    };
    eprintln!(
        "prune: Q1.1 keeps {} of {} blocks, Q3.3 keeps {} of {}",
        kept(&q11, &q11_dims, &q11_blocks),
        q11_blocks.blocks.len(),
        kept(&q33, &q33_dims, &q33_blocks),
        q33_blocks.blocks.len()
    );

    let mut g = c.benchmark_group("prune");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(q11_blocks.blocks.len() as u64));
    g.bench_function("q1.1_ints_1000_blocks", |b| {
        b.iter(|| kept(black_box(&q11), &q11_dims, &q11_blocks))
    });
    g.throughput(Throughput::Elements(q33_blocks.blocks.len() as u64));
    g.bench_function("q3.3_string_ors_1000_blocks", |b| {
        b.iter(|| kept(black_box(&q33), &q33_dims, &q33_blocks))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// aggregate

const PARENT_ROWS: usize = 100_000;
/// Groups of the child `[d_year, c_region, s_region]`: 7 * 5 * 5, less the 15 of 1998 whose
/// customer region has no parent row (the first 100,000 keys stop at 1998's tenth nation).
const CHILD_GROUPS: usize = 160;

struct Parent {
    /// The child's dimension columns of each parent batch: d_year, c_region, s_region.
    dims: Vec<Vec<ArrayRef>>,
    /// The measure state columns of each parent batch.
    states: Vec<Vec<Option<ArrayRef>>>,
    rows: Vec<usize>,
}

/// 100,000 rows of the parent `[d_year, c_region, c_nation, s_region, s_nation, p_category]`
/// (distinct, sorted) with SUM/COUNT/MIN/MAX states and, when `hll`, an HLL(12) state.
fn parent_cuboid(hll: bool) -> (Parent, Vec<(String, StateKind)>) {
    let mut rng = Rng(2);
    let mut measures = vec![
        ("row_count".to_string(), StateKind::Count),
        ("lo_revenue_sum".to_string(), StateKind::SumInt),
        ("v_revenue_sum".to_string(), StateKind::SumInt),
        ("lo_supplycost_sum".to_string(), StateKind::SumInt),
        ("lo_extendedprice_min".to_string(), StateKind::MinInt),
        ("lo_extendedprice_max".to_string(), StateKind::MaxInt),
    ];
    if hll {
        measures.push(("lo_custkey_hll".to_string(), StateKind::Hll(12)));
    }
    let mut parent = Parent {
        dims: Vec::new(),
        states: Vec::new(),
        rows: Vec::new(),
    };
    // 7 years * 25 customer nations * 25 supplier nations * 25 categories = 109,375 keys;
    // the first 100,000 in key order, in 8192-row batches like stored blocks.
    let keys: Vec<(i32, u64, u64, u64)> = (1992..1999)
        .flat_map(|y| {
            (0..25u64).flat_map(move |cn| {
                (0..25u64).flat_map(move |sn| (0..25u64).map(move |p| (y, cn, sn, p)))
            })
        })
        .take(PARENT_ROWS)
        .collect();
    for chunk in keys.chunks(BLOCK_ROWS) {
        let n = chunk.len();
        parent.dims.push(vec![
            Arc::new(Int32Array::from_iter_values(chunk.iter().map(|k| k.0))),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|k| REGIONS[(k.1 / 5) as usize]),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|k| REGIONS[(k.2 / 5) as usize]),
            )),
        ]);
        let mut states: Vec<Option<ArrayRef>> = vec![
            Some(i64_column(n, &mut rng, 50)),
            Some(i64_column(n, &mut rng, 50_000_000)),
            Some(i64_column(n, &mut rng, 500_000_000)),
            Some(i64_column(n, &mut rng, 1_000_000)),
            Some(i64_column(n, &mut rng, 100_000)),
            Some(i64_column(n, &mut rng, 10_000_000)),
        ];
        if hll {
            let sketches: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let v = 1 + rng.below(16);
                    hll_state(&mut rng, v)
                })
                .collect();
            states.push(Some(Arc::new(BinaryArray::from_iter_values(
                sketches.iter(),
            ))));
        }
        parent.states.push(states);
        parent.rows.push(n);
    }
    (parent, measures)
}

fn child_fields() -> Vec<Field> {
    vec![
        Field::new("d_year", DataType::Int32, true),
        Field::new("c_region", DataType::Utf8, true),
        Field::new("s_region", DataType::Utf8, true),
    ]
}

fn merge_into_child(parent: &Parent, measures: &[(String, StateKind)]) -> Vec<RecordBatch> {
    let mut agg = Aggregator::new(Mode::Merge, child_fields(), measures).expect("aggregator");
    for ((dims, states), &rows) in parent.dims.iter().zip(&parent.states).zip(&parent.rows) {
        agg.update(dims, states, rows).expect("update");
    }
    agg.finish(BLOCK_ROWS).expect("finish")
}

fn bench_aggregate(c: &mut Criterion) {
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(PARENT_ROWS as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(6));
    for (name, hll) in [
        ("merge_sums_100k_to_160", false),
        ("merge_hll_100k_to_160", true),
    ] {
        let data: OnceCell<(Parent, Vec<(String, StateKind)>)> = OnceCell::new();
        g.bench_function(name, |b| {
            let (parent, measures) = data.get_or_init(|| {
                let (p, m) = parent_cuboid(hll);
                let out = merge_into_child(&p, &m);
                let rows: usize = out.iter().map(|b| b.num_rows()).sum();
                assert_eq!(rows, CHILD_GROUPS, "child groups");
                (p, m)
            });
            b.iter(|| merge_into_child(black_box(parent), measures))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// hll

const SKETCHES: usize = 1000;

fn sketches(values: u64, seed: u64) -> Vec<HyperLogLog> {
    let mut rng = Rng(seed);
    (0..SKETCHES)
        .map(|_| {
            let mut h = HyperLogLog::new(12).expect("precision 12");
            for _ in 0..values {
                h.add_i64(rng.below(6_000_000) as i64);
            }
            h
        })
        .collect()
}

fn bench_hll(c: &mut Criterion) {
    let sparse = sketches(20, 3);
    let dense = sketches(3000, 4);
    assert!(sparse.iter().all(HyperLogLog::is_sparse));
    assert!(dense.iter().all(|h| !h.is_sparse()));
    let sparse_bytes: Vec<Vec<u8>> = sparse.iter().map(HyperLogLog::to_bytes).collect();
    let dense_bytes: Vec<Vec<u8>> = dense.iter().map(HyperLogLog::to_bytes).collect();

    let mut g = c.benchmark_group("hll");
    g.throughput(Throughput::Elements(SKETCHES as u64));
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(3));
    for (kind, sketches, bytes) in [
        ("sparse_20", &sparse, &sparse_bytes),
        ("dense_3000", &dense, &dense_bytes),
    ] {
        g.bench_with_input(BenchmarkId::new("merge_1000", kind), sketches, |b, s| {
            b.iter(|| {
                let mut acc = HyperLogLog::new(12).expect("precision 12");
                for h in s {
                    acc.merge(h).expect("same precision");
                }
                acc
            })
        });
        g.bench_with_input(
            BenchmarkId::new("from_bytes_merge_1000", kind),
            bytes,
            |b, s| {
                b.iter(|| {
                    let mut acc = None;
                    for bytes in s {
                        HyperLogLog::merge_bytes(&mut acc, bytes).expect("valid state");
                    }
                    acc
                })
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// tdigest

const TDIGEST_VALUES: usize = 100_000;

/// `count` digests of `values` revenue-like values each (a long right tail).
fn digests(count: usize, values: usize, seed: u64) -> Vec<TDigest> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let mut d = TDigest::new(100).expect("compression 100");
            for _ in 0..values {
                let x = (rng.below(1_000_000) as f64 / 1_000_000.0 * 12.0).exp();
                d.add(x);
            }
            d
        })
        .collect()
}

fn bench_tdigest(c: &mut Criterion) {
    let mut rng = Rng(5);
    let values: Vec<f64> = (0..TDIGEST_VALUES)
        .map(|_| rng.below(10_000_000) as f64)
        .collect();
    let small = digests(SKETCHES, 5, 6);
    let large = digests(SKETCHES, 3000, 7);
    let small_bytes: Vec<Vec<u8>> = small.iter().map(TDigest::to_bytes).collect();
    let large_bytes: Vec<Vec<u8>> = large.iter().map(TDigest::to_bytes).collect();
    let mut merged = TDigest::new(100).expect("compression 100");
    large.iter().for_each(|d| merged.merge(d));
    let mut one = TDigest::new(100).expect("compression 100");
    one.add(1.0);
    // State sizes, for the report (criterion has no unit for them).
    eprintln!(
        "tdigest(100) state bytes: 1 value {}, 5 values {}, 3000 values {}, 3M values merged {}",
        one.to_bytes().len(),
        small_bytes[0].len(),
        large_bytes[0].len(),
        merged.to_bytes().len()
    );

    let mut g = c.benchmark_group("tdigest");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(TDIGEST_VALUES as u64));
    g.bench_function("update_100000", |b| {
        b.iter(|| {
            let mut d = TDigest::new(100).expect("compression 100");
            for &v in &values {
                d.add(v);
            }
            d.compress();
            d
        })
    });
    g.throughput(Throughput::Elements(SKETCHES as u64));
    for (kind, bytes) in [("small_5", &small_bytes), ("large_3000", &large_bytes)] {
        g.bench_with_input(
            BenchmarkId::new("from_bytes_merge_1000", kind),
            bytes,
            |b, s| {
                b.iter(|| {
                    let mut acc = TDigest::new(100).expect("compression 100");
                    for bytes in s {
                        acc.merge_bytes(bytes).expect("valid state");
                    }
                    acc.quantile(0.99)
                })
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// extended

const EXTENDED_ROWS: usize = 100_000;
const EXTENDED_GROUPS: u32 = 2_000;

/// EXTENDED_COLUMN states: folding 100k supplier names into 2,000 groups (the build's raw
/// mode), merging the 2,000 finished states of ten segments (merge mode), and the stored
/// column's size per group.
fn bench_extended(c: &mut Criterion) {
    use qilin_engine::measure::{extended::ExtendedStates, GroupStates};
    let mut rng = Rng(7);
    let group_of: Vec<u32> = (0..EXTENDED_ROWS)
        .map(|_| rng.below(EXTENDED_GROUPS as u64) as u32)
        .collect();
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        group_of.iter().map(|g| format!("Supplier#{g:09}")),
    ));
    let fresh = || {
        let mut s = ExtendedStates::new();
        for _ in 0..EXTENDED_GROUPS {
            s.push_empty().expect("push");
        }
        s
    };
    let groups: Vec<usize> = (0..EXTENDED_GROUPS as usize).collect();
    let mut built = fresh();
    built.update_raw(&names, &group_of).expect("update");
    let stored = built.finish(&groups).expect("finish");
    let bytes = stored.to_data().get_slice_memory_size().expect("size");
    println!(
        "extended: {} groups stored in {bytes} bytes ({:.1} bytes per group)",
        EXTENDED_GROUPS,
        bytes as f64 / EXTENDED_GROUPS as f64
    );
    let ids: Vec<u32> = (0..EXTENDED_GROUPS).collect();

    let mut g = c.benchmark_group("extended");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(EXTENDED_ROWS as u64));
    g.bench_function("update_100k_rows", |b| {
        b.iter(|| {
            let mut s = fresh();
            s.update_raw(black_box(&names), &group_of).expect("update");
            s
        })
    });
    g.throughput(Throughput::Elements(10 * EXTENDED_GROUPS as u64));
    g.bench_function("merge_10_segments", |b| {
        b.iter(|| {
            let mut s = fresh();
            for _ in 0..10 {
                s.merge(black_box(&stored), &ids).expect("merge");
            }
            s.finish(&groups).expect("finish")
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// topn

const TOPN_ROWS: usize = 100_000;
const TOPN_GROUPS: u32 = 160;

fn top_n_state(keys: usize, rng: &mut Rng) -> TopNCounter {
    let mut t = TopNCounter::new(qilin_engine::measure::topn::capacity_of(100));
    for _ in 0..keys {
        let k = format!("Supplier#{:09}", rng.below(2000));
        t.offer(Some(&k), rng.below(5_000_000) as f64);
    }
    t
}

fn bench_topn(c: &mut Criterion) {
    use datafusion::arrow::array::StructArray;
    use datafusion::arrow::datatypes::Fields;
    let mut rng = Rng(5);
    let fields = Fields::from(vec![
        Field::new("value", DataType::Int64, true),
        Field::new("by", DataType::Utf8, true),
    ]);
    let input: ArrayRef = Arc::new(StructArray::new(
        fields,
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..TOPN_ROWS).map(|_| rng.below(5_000_000) as i64),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..TOPN_ROWS).map(|_| format!("Supplier#{:09}", rng.below(2000))),
            )),
        ],
        None,
    ));
    let group_of: Vec<u32> = (0..TOPN_ROWS)
        .map(|_| rng.below(TOPN_GROUPS as u64) as u32)
        .collect();
    let states: Vec<Vec<u8>> = (0..1000)
        .map(|_| top_n_state(200, &mut rng).to_bytes())
        .collect();
    let full = top_n_state(200_000, &mut Rng(6));
    eprintln!(
        "topn state size: {} bytes with {} keys; {} bytes full ({} keys)",
        states[0].len(),
        TopNCounter::from_bytes(&states[0]).expect("valid").len(),
        full.to_bytes().len(),
        full.len()
    );

    let mut g = c.benchmark_group("topn");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(TOPN_ROWS as u64));
    g.bench_function("update", |b| {
        b.iter(|| {
            let mut s = TopNStates::new(100);
            for _ in 0..TOPN_GROUPS {
                s.push_empty().expect("push");
            }
            s.update_raw(&input, &group_of).expect("update");
            s
        })
    });
    g.throughput(Throughput::Elements(states.len() as u64));
    g.bench_function("merge_1000", |b| {
        b.iter(|| {
            let mut acc = None;
            for bytes in &states {
                TopNCounter::merge_bytes(&mut acc, bytes).expect("valid state");
            }
            acc
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// query

const SSB_SCALE: f64 = 0.01;
const QUERIES: [&str; 4] = ["Q1.1", "Q2.1", "Q3.3", "Q4.2"];

struct Sample {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    engine: QueryEngine,
    queries: Vec<(String, String)>,
}

/// Generates SSB at [`SSB_SCALE`], registers the sample and builds the cube (one segment,
/// all dates) into a temp dir, then opens a query engine over it.
fn sample() -> Sample {
    let dir = tempfile::tempdir().expect("temp dir");
    let at = |p: &str| dir.path().join(p).display().to_string();
    let props = format!(
        "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\n\
         kylin.storage.block-rows=1000\nkylin.query.cache-enabled=false\n",
        at("meta"),
        at("segments"),
        at("source")
    );
    let config = Config::from_parts(&props, "micro bench", |_| None).expect("config");
    let meta = Metadata::new(open_store(&config.stores.metadata_url).expect("metadata store"));
    let segments: Arc<dyn SegmentStore> =
        open_segment_store(&config.stores.storage_url).expect("segment store");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = std::time::Instant::now();
    let job: Job = rt.block_on(async {
        ssb::install(
            &meta,
            Path::new(&config.stores.source_url),
            SSB_SCALE,
            config.cube.max_cuboids_per_group,
        )
        .await
        .expect("install SSB sample");
        let jobs = JobEngine::new(meta.clone(), segments.clone(), config.clone());
        let sub = jobs
            .submit_build(ssb::CUBE, Some(ssb::full_range()))
            .expect("submit build");
        jobs.run(&sub.job().id, Arc::new(|_: &Job| {}))
            .await
            .expect("build")
    });
    assert_eq!(job.status, JobStatus::Succeed, "build: {job:?}");
    eprintln!(
        "query: SSB sample at scale {SSB_SCALE} generated and built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let engine = QueryEngine::new(&config, meta, segments);
    let all = ssb::parse_queries(include_str!("../../tests/ssb_queries.sql"))
        .expect("the 13 SSB queries");
    let queries: Vec<(String, String)> = all
        .into_iter()
        .filter(|(n, _)| QUERIES.contains(&n.as_str()))
        .collect();
    assert_eq!(queries.len(), QUERIES.len());
    for (name, sql) in &queries {
        let (_, rewritten) = rt
            .block_on(engine.plan_and_rewrite(sql))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(rewritten.is_some(), "{name}: the cube does not answer it");
    }
    Sample {
        _dir: dir,
        rt,
        engine,
        queries,
    }
}

fn bench_query(c: &mut Criterion) {
    let env: OnceCell<Sample> = OnceCell::new();
    let mut g = c.benchmark_group("query");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(4));
    for name in QUERIES {
        g.bench_function(BenchmarkId::new("cold", name), |b| {
            let s = env.get_or_init(sample);
            let sql = &s.queries.iter().find(|(n, _)| n == name).expect("query").1;
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                // A new text each time: the plan cache misses, the call plans from scratch.
                let text = format!("{sql} -- {n}");
                s.rt.block_on(s.engine.plan_and_rewrite(&text))
                    .expect("plan and rewrite")
            })
        });
        g.bench_function(BenchmarkId::new("plan_cached", name), |b| {
            let s = env.get_or_init(sample);
            let sql = &s.queries.iter().find(|(n, _)| n == name).expect("query").1;
            b.iter(|| {
                s.rt.block_on(s.engine.plan_and_rewrite(black_box(sql)))
                    .expect("plan and rewrite")
            })
        });
        g.bench_function(BenchmarkId::new("rewrite_only", name), |b| {
            let s = env.get_or_init(sample);
            let sql = &s.queries.iter().find(|(n, _)| n == name).expect("query").1;
            let (plan, _) =
                s.rt.block_on(s.engine.plan_and_rewrite(sql))
                    .expect("plan and rewrite");
            b.iter(|| {
                s.rt.block_on(s.engine.rewrite_plan(black_box(plan.clone())))
                    .expect("rewrite")
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// global_dict

const DICT_VALUES: usize = 100_000;

fn dict_strings(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| format!("Customer#{:011}", rng.below(1 << 40) ^ i as u64))
        .collect()
}

fn bench_global_dict(c: &mut Criterion) {
    let values = dict_strings(DICT_VALUES, 7);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalSegmentStore::open(dir.path()).expect("store");
    let built = {
        let mut d = GlobalDict::load(&store, "bench.t.c").expect("load");
        d.grow(&store, values.iter().map(|v| v.as_bytes()))
            .expect("grow");
        d
    };
    let batch: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..8192).map(|i| values[(i * 7919) % DICT_VALUES].as_str()),
    ));
    let ids = built.map_ids(&batch).expect("map");
    let ids = ids
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("ids are Int64")
        .clone();
    let mut rng = Rng(11);
    let bitmaps: Vec<Vec<u8>> = (0..1000)
        .map(|_| {
            let mut b = DistinctBitmap::new();
            for _ in 0..1000 {
                b.add_i64(rng.below(DICT_VALUES as u64) as i64);
            }
            b.to_bytes()
        })
        .collect();
    let manifest = store
        .get_dict_manifest("bench.t.c")
        .expect("manifest")
        .expect("committed");
    let chunk_bytes: u64 = built.manifest().chunks.iter().map(|c| c.bytes).sum();
    println!(
        "global_dict: {DICT_VALUES} values of 20 bytes: {chunk_bytes} stored chunk bytes in {}          chunks, manifest {} bytes, ~{} bytes in memory; a bitmap of ~1000 ids: {} bytes",
        built.manifest().chunks.len(),
        manifest.len(),
        built.memory_bytes(),
        bitmaps[0].len()
    );

    let mut g = c.benchmark_group("global_dict");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(DICT_VALUES as u64));
    g.bench_function("grow_100k", |b| {
        b.iter_with_setup(
            || {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = LocalSegmentStore::open(dir.path()).expect("store");
                (dir, store)
            },
            |(dir, store)| {
                let mut d = GlobalDict::load(&store, "bench.t.c").expect("load");
                d.grow(&store, values.iter().map(|v| v.as_bytes()))
                    .expect("grow");
                drop(dir);
            },
        )
    });
    g.bench_function("load_100k", |b| {
        b.iter(|| GlobalDict::load(black_box(&store), "bench.t.c").expect("load"))
    });
    g.throughput(Throughput::Elements(8192));
    g.bench_function("map_ids_8192", |b| {
        b.iter(|| built.map_ids(black_box(&batch)).expect("map"))
    });
    g.bench_function("bitmap_update_8192", |b| {
        b.iter(|| {
            let mut groups = vec![DistinctBitmap::new(); 160];
            for (i, id) in ids.values().iter().enumerate() {
                groups[i % 160].add_i64(*id);
            }
            groups
        })
    });
    g.throughput(Throughput::Elements(bitmaps.len() as u64));
    g.bench_function("bitmap_merge_1000", |b| {
        b.iter(|| {
            let mut acc = DistinctBitmap::new();
            for bytes in &bitmaps {
                acc.merge_from_bytes(black_box(bytes)).expect("valid");
            }
            acc.cardinality()
        })
    });
    g.finish();
}

/// Criterion's command line (filters, `--save-baseline`, ...) applies, but plots stay off:
/// criterion 0.3 turns them back on unless `--noplot` is passed, and without gnuplot it renders
/// SVGs with its plotters backend, which only slows the run.
fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args()
        .without_plots();
    bench_block(&mut c);
    bench_prune(&mut c);
    bench_aggregate(&mut c);
    bench_hll(&mut c);
    bench_tdigest(&mut c);
    bench_extended(&mut c);
    bench_topn(&mut c);
    bench_query(&mut c);
    bench_global_dict(&mut c);
    c.final_summary();
}
