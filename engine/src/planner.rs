//! The cube planner (as Kylin 2.3+'s): from the query history, which cuboids to add and
//! which built ones no query uses.
//!
//! Input: the history records of one cube (the JSON lines the query path writes under
//! `/query_history/<project>/<cube>/`, one per cube-answered aggregate: the exact dimension
//! set it `wanted` and the cuboid it `chosen`), the cube's layout and its READY segments.
//!
//! - A query of dimension set `w` reads today the smallest cuboid every READY segment has
//!   that covers `w` (as `rewrite::cover::choose_cuboid` does), measured by the segments'
//!   current row counts rather than the rows recorded, which may predate a merge or an
//!   earlier optimization.
//! - Candidates are the wanted sets no segment-wide cuboid matches exactly. Their rows are
//!   counted from each READY segment's stored base cuboid: the distinct combinations of the
//!   candidate's dimensions, counted exactly through 64-bit hashes of the combination
//!   (a HyperLogLog of precision 14, about 0.8 % error, past [`EXACT_LIMIT`] distinct
//!   combinations in a segment, to bound memory). Bytes are rows × the bytes per row of the
//!   built cuboids nearest in rows (measure states grow with the fact rows per cuboid row).
//! - Greedy selection: each round takes the candidate with the largest benefit per byte,
//!   benefit = Σ over the wanted sets it covers of (rows those queries read now − its rows)
//!   × their number of queries, as long as it fits in the byte budget; the chosen one
//!   lowers what the next rounds count as "read now".
//! - Drop proposals: built cuboids (never the base) that no recorded query chose, and that
//!   no kept cuboid builds from (its smallest covering cuboid). Leaving those out of the
//!   descriptor (`cuboid_black_list`) never makes another cuboid's build read a larger
//!   parent. They are only proposed: one day of history is no proof that a cuboid is unused.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::row::{RowConverter, SortField};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::measure::hll::HyperLogLog;
use crate::model::{cuboid, CubeInstance, CubeLayout, CuboidId, Segment};
use crate::storage::block::{read_block_columns, read_manifest};
use crate::storage::SegmentStore;

/// Distinct combinations counted exactly per segment and candidate before switching to a
/// HyperLogLog (about 16 MiB of hashes).
pub const EXACT_LIMIT: usize = 1 << 20;

pub use crate::query::history::{folder as history_folder, read_history_counted, QueryRecord};

/// The dimension set of a record in `layout`'s cuboid ids: from the names when the record
/// has them (so records survive a rowkey change), else the id. `None` when a name is no
/// longer a dimension or the id has bits past the rowkey.
pub fn wanted_cuboid(layout: &CubeLayout, r: &QueryRecord) -> Option<CuboidId> {
    let n = layout.rowkey.len();
    if r.wanted_dimensions.is_empty() {
        return (r.wanted & !cuboid::base(n) == 0).then_some(r.wanted);
    }
    let mut id = 0;
    for d in &r.wanted_dimensions {
        let i = layout
            .rowkey
            .iter()
            .position(|k| k.name.eq_ignore_ascii_case(d))?;
        id |= cuboid::bit(n, i);
    }
    Some(id)
}

/// A cuboid that could be added, with its estimated size over all READY segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub cuboid: CuboidId,
    pub rows: u64,
    pub bytes: u64,
}

/// A cuboid the greedy selection picked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pick {
    pub cuboid: CuboidId,
    pub rows: u64,
    pub bytes: u64,
    /// Recorded queries that would read it (it is their smallest covering cuboid then).
    pub queries: u64,
    /// Σ over those queries of the rows they read before it was picked − its rows.
    pub rows_saved: u64,
}

/// Kylin's greedy selection. `wanted`: dimension set → number of queries; `built`: cuboid →
/// rows of the cuboids every READY segment has; `budget`: bytes all picks may take.
pub fn greedy(
    wanted: &BTreeMap<CuboidId, u64>,
    built: &HashMap<CuboidId, u64>,
    candidates: &[Candidate],
    budget: u64,
) -> Vec<Pick> {
    // What each wanted set reads now: the smallest covering cuboid.
    let mut reads: BTreeMap<CuboidId, u64> = wanted
        .keys()
        .map(|&w| {
            let rows = built
                .iter()
                .filter(|(&c, _)| cuboid::covers(c, w))
                .map(|(_, &r)| r)
                .min()
                .unwrap_or(u64::MAX);
            (w, rows)
        })
        .collect();
    let mut left: Vec<Candidate> = candidates.to_vec();
    let mut spent = 0u64;
    let mut picks = Vec::new();
    loop {
        let mut best: Option<(f64, usize, u64, u64)> = None;
        for (i, c) in left.iter().enumerate() {
            if c.bytes > budget.saturating_sub(spent) {
                continue;
            }
            let (mut benefit, mut queries) = (0u64, 0u64);
            for (w, &n) in wanted {
                let now = reads[w];
                if cuboid::covers(c.cuboid, *w) && c.rows < now {
                    benefit = benefit.saturating_add((now - c.rows).saturating_mul(n));
                    queries += n;
                }
            }
            if benefit == 0 {
                continue;
            }
            let per_byte = benefit as f64 / c.bytes.max(1) as f64;
            // Ties go to the smaller cuboid id, so the result does not depend on input order.
            let better = match best {
                None => true,
                Some((b, j, _, _)) => per_byte > b || (per_byte == b && c.cuboid < left[j].cuboid),
            };
            if better {
                best = Some((per_byte, i, benefit, queries));
            }
        }
        let Some((_, i, benefit, queries)) = best else {
            break;
        };
        let c = left.swap_remove(i);
        spent += c.bytes;
        for (w, now) in reads.iter_mut() {
            if cuboid::covers(c.cuboid, *w) && c.rows < *now {
                *now = c.rows;
            }
        }
        picks.push(Pick {
            cuboid: c.cuboid,
            rows: c.rows,
            bytes: c.bytes,
            queries,
            rows_saved: benefit,
        });
    }
    picks
}

/// Built cuboids worth leaving out: not the base, chosen by no recorded query, and not the
/// parent any kept cuboid builds from (its smallest covering cuboid, by rows). Considered
/// children first (fewest dimensions), so a cuboid that was only the parent of dropped
/// ones can go too; returned largest first.
pub fn unused(
    base: CuboidId,
    built: &HashMap<CuboidId, u64>,
    chosen: &HashSet<CuboidId>,
) -> Vec<CuboidId> {
    let mut order: Vec<CuboidId> = built
        .keys()
        .copied()
        .filter(|c| *c != base && !chosen.contains(c))
        .collect();
    order.sort_by_key(|c| (c.count_ones(), built[c], *c));
    let mut dropped: HashSet<CuboidId> = HashSet::new();
    for c in order {
        let parent_of = |k: CuboidId| {
            built
                .iter()
                .filter(|(&p, _)| p != k && !dropped.contains(&p) && cuboid::covers(p, k))
                .map(|(&p, &r)| (r, p.count_ones(), p))
                .min()
                .map(|(_, _, p)| p)
        };
        let needed = built.keys().any(|&k| {
            k != c && !dropped.contains(&k) && cuboid::covers(c, k) && parent_of(k) == Some(c)
        });
        if !needed {
            dropped.insert(c);
        }
    }
    let mut out: Vec<CuboidId> = dropped.into_iter().collect();
    out.sort_by_key(|c| (std::cmp::Reverse(built[c]), *c));
    out
}

/// Counts distinct combinations: exactly (hashes) up to [`EXACT_LIMIT`], then by HLL.
enum Counter {
    Exact(HashSet<u64>),
    Sketch(Box<HyperLogLog>),
}

impl Counter {
    fn add(&mut self, hash: u64) {
        match self {
            Counter::Exact(set) => {
                set.insert(hash);
                if set.len() > EXACT_LIMIT {
                    let mut h = Box::new(HyperLogLog::new(14).expect("precision 14 is valid"));
                    for &v in set.iter() {
                        h.add_hash(v);
                    }
                    *self = Counter::Sketch(h);
                }
            }
            Counter::Sketch(h) => h.add_hash(hash),
        }
    }

    fn count(&self) -> u64 {
        match self {
            Counter::Exact(set) => set.len() as u64,
            Counter::Sketch(h) => h.estimate(),
        }
    }
}

/// Rows each of `cuboids` would have over `segments`: distinct combinations of its
/// dimensions in each segment's stored base cuboid, summed over segments. Reads only the
/// dimension columns the cuboids need; never the source.
pub fn estimate_rows(
    layout: &CubeLayout,
    store: &dyn SegmentStore,
    segments: &[&Segment],
    cuboids: &[CuboidId],
) -> Result<HashMap<CuboidId, u64>> {
    let base = layout.base_cuboid();
    let mut total: HashMap<CuboidId, u64> = cuboids.iter().map(|&c| (c, 0)).collect();
    if cuboids.is_empty() {
        return Ok(total);
    }
    // The base cuboid's columns are the rowkey in order: dimension i is column i.
    let needed = cuboids.iter().fold(0, |a, c| a | c);
    let columns = layout.cuboid_columns(needed);
    for seg in segments {
        let manifest = read_manifest(store, &seg.id, base)?;
        let mut counters: Vec<Counter> = cuboids
            .iter()
            .map(|_| Counter::Exact(HashSet::new()))
            .collect();
        let positions: Vec<Vec<usize>> = cuboids
            .iter()
            .map(|&c| {
                layout
                    .cuboid_columns(c)
                    .iter()
                    .map(|i| columns.iter().position(|x| x == i).expect("needed column"))
                    .collect()
            })
            .collect();
        for (b, meta) in manifest.blocks.iter().enumerate() {
            // The dimensions only: by column chunk, the measure states are never read.
            let batch = read_block_columns(store, &seg.id, base, b as u32, meta, Some(&columns))?;
            if batch.num_rows() == 0 {
                continue;
            }
            for (k, pos) in positions.iter().enumerate() {
                if pos.is_empty() {
                    counters[k].add(0); // the empty cuboid: one row (the grand total)
                    continue;
                }
                let arrays: Vec<ArrayRef> = pos.iter().map(|&p| batch.column(p).clone()).collect();
                let fields: Vec<SortField> = arrays
                    .iter()
                    .map(|a| SortField::new(a.data_type().clone()))
                    .collect();
                let converter = RowConverter::new(fields)?;
                let rows = converter.convert_columns(&arrays)?;
                for row in rows.iter() {
                    counters[k].add(xxhash_rust::xxh64::xxh64(row.as_ref(), 0));
                }
            }
        }
        for (k, &c) in cuboids.iter().enumerate() {
            *total.get_mut(&c).expect("initialised") += counters[k].count();
        }
    }
    Ok(total)
}

/// Built cuboids whose bytes per row size a candidate: the ones nearest it in rows.
const SIZE_NEIGHBOURS: usize = 3;

/// Bytes per row of a candidate of `rows` rows: those of the [`SIZE_NEIGHBOURS`] built
/// cuboids nearest it in rows (on a log scale), bytes over rows. A row's measure states (HLL,
/// bitmaps, TOP_N counters, digests) grow with the fact rows aggregated into it, which is
/// what the row count tells; the number of dimensions does not (sized by dimension count, the
/// nine cuboids two `optimize` runs added to the SSB SF 1 sample were estimated at 11× their
/// bytes; by rows, 8 % under).
fn bytes_per_row(stats: &HashMap<CuboidId, (u64, u64)>, rows: u64) -> f64 {
    let distance = |r: u64| ((r.max(1) as f64).ln() - (rows.max(1) as f64).ln()).abs();
    let mut near: Vec<(u64, u64)> = stats.values().copied().filter(|&(r, _)| r > 0).collect();
    near.sort_by(|a, b| distance(a.0).total_cmp(&distance(b.0)));
    let (r, b) = near
        .iter()
        .take(SIZE_NEIGHBOURS)
        .fold((0u64, 0u64), |(r, b), &(rows, bytes)| (r + rows, b + bytes));
    if r == 0 {
        0.0
    } else {
        b as f64 / r as f64
    }
}

/// A cuboid to add, for people and `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Addition {
    pub cuboid: CuboidId,
    pub dimensions: Vec<String>,
    pub est_rows: u64,
    pub est_bytes: u64,
    pub queries: u64,
    pub rows_saved: u64,
    /// What these queries read today: the cuboid and its rows.
    pub reads_today: CuboidId,
    pub reads_today_rows: u64,
}

/// A built cuboid that no recorded query uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Removal {
    pub cuboid: CuboidId,
    pub dimensions: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

/// The planner's proposal for one cube.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub cube: String,
    /// Records of this cube read, and of those the ones whose dimensions still resolve.
    pub records: usize,
    pub records_used: usize,
    /// Distinct dimension sets wanted.
    pub wanted_sets: usize,
    pub ready_segments: usize,
    /// Bytes of the cuboids of the READY segments now.
    pub cube_bytes: u64,
    pub budget_bytes: u64,
    pub add: Vec<Addition>,
    pub drop: Vec<Removal>,
    /// How candidate rows were estimated.
    pub estimate: String,
}

impl Plan {
    /// The added cuboids' dimension sets: what `--apply` appends to
    /// `mandatory_dimension_set_list`.
    pub fn added_sets(&self) -> Vec<Vec<String>> {
        self.add.iter().map(|a| a.dimensions.clone()).collect()
    }
}

/// Plans `layout`'s cube from `records` (of any cube: others are ignored). `budget`: bytes
/// the added cuboids may take over all READY segments (`None`: a quarter of the cube's
/// current cuboid bytes).
pub fn plan(
    layout: &CubeLayout,
    inst: &CubeInstance,
    store: &dyn SegmentStore,
    records: &[QueryRecord],
    budget: Option<u64>,
) -> Result<Plan> {
    let cube = &layout.cube.name;
    let signature = crate::model::descriptor_signature(layout);
    let segments: Vec<&Segment> = inst
        .ready_segments()
        .filter(|s| s.built_under(&signature))
        .collect();
    if segments.is_empty() {
        return Err(Error::Refused(format!(
            "cube {cube} has no READY segment built under its current descriptor: nothing to \
             plan from (build or refresh one first)"
        )));
    }
    // Cuboids every READY segment has, with rows and bytes summed.
    let mut stats: HashMap<CuboidId, (u64, u64, usize)> = HashMap::new();
    for s in &segments {
        for c in &s.cuboids {
            let e = stats.entry(c.id).or_default();
            e.0 += c.rows;
            e.1 += c.bytes;
            e.2 += 1;
        }
    }
    let everywhere: HashMap<CuboidId, (u64, u64)> = stats
        .iter()
        .filter(|(_, v)| v.2 == segments.len())
        .map(|(&c, &(r, b, _))| (c, (r, b)))
        .collect();
    let built: HashMap<CuboidId, u64> = everywhere.iter().map(|(&c, &(r, _))| (c, r)).collect();
    let cube_bytes: u64 = segments
        .iter()
        .flat_map(|s| &s.cuboids)
        .map(|c| c.bytes)
        .sum();
    let budget = budget.unwrap_or(cube_bytes / 4);

    let mine: Vec<&QueryRecord> = records
        .iter()
        .filter(|r| r.cube.eq_ignore_ascii_case(cube))
        .collect();
    let mut wanted: BTreeMap<CuboidId, u64> = BTreeMap::new();
    let mut chosen: HashSet<CuboidId> = HashSet::new();
    let mut used = 0;
    for r in &mine {
        if let Some(w) = wanted_cuboid(layout, r) {
            *wanted.entry(w).or_default() += 1;
            chosen.insert(r.chosen);
            used += 1;
        }
    }
    // Queries choose among the present cuboids as the planner counts them: what they
    // would read now is "chosen" too, even if the recorded choice predates it.
    for &w in wanted.keys() {
        if let Some((_, c)) = built
            .iter()
            .filter(|(&c, _)| cuboid::covers(c, w))
            .map(|(&c, &r)| (r, c))
            .min()
        {
            chosen.insert(c);
        }
    }
    let todo: Vec<CuboidId> = wanted
        .keys()
        .copied()
        .filter(|w| !built.contains_key(w))
        .collect();
    let rows = estimate_rows(layout, store, &segments, &todo)?;
    // Cuboids of the rowkey only: the table index's rows are source rows, not aggregates.
    let base = layout.base_cuboid();
    let sizes: HashMap<CuboidId, (u64, u64)> = everywhere
        .iter()
        .filter(|(&c, _)| c & !base == 0)
        .map(|(&c, &v)| (c, v))
        .collect();
    let candidates: Vec<Candidate> = todo
        .iter()
        .map(|&c| {
            let r = rows[&c];
            Candidate {
                cuboid: c,
                rows: r,
                bytes: (r as f64 * bytes_per_row(&sizes, r)).ceil() as u64,
            }
        })
        .collect();
    let picks = greedy(&wanted, &built, &candidates, budget);
    let add = picks
        .iter()
        .map(|p| {
            let (today_rows, today) = built
                .iter()
                .filter(|(&c, _)| cuboid::covers(c, p.cuboid))
                .map(|(&c, &r)| (r, c))
                .min()
                .unwrap_or((0, layout.base_cuboid()));
            Addition {
                cuboid: p.cuboid,
                dimensions: layout.cuboid_names(p.cuboid),
                est_rows: p.rows,
                est_bytes: p.bytes,
                queries: p.queries,
                rows_saved: p.rows_saved,
                reads_today: today,
                reads_today_rows: today_rows,
            }
        })
        .collect();
    let drop = unused(layout.base_cuboid(), &built, &chosen)
        .into_iter()
        .map(|c| Removal {
            cuboid: c,
            dimensions: layout.cuboid_names(c),
            rows: everywhere[&c].0,
            bytes: everywhere[&c].1,
        })
        .collect();
    Ok(Plan {
        cube: cube.clone(),
        records: mine.len(),
        records_used: used,
        wanted_sets: wanted.len(),
        ready_segments: segments.len(),
        cube_bytes,
        budget_bytes: budget,
        add,
        drop,
        estimate: format!(
            "distinct combinations in the stored base cuboid of each READY segment (exact up \
             to {EXACT_LIMIT} per segment, HyperLogLog p=14 beyond)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(v: &[(CuboidId, u64)]) -> BTreeMap<CuboidId, u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn greedy_picks_by_benefit_per_byte_within_the_budget() {
        // Four dimensions; base 0b1111 has 1000 rows, 0b1100 has 100.
        let built = HashMap::from([(0b1111, 1000), (0b1100, 100)]);
        let w = wanted(&[(0b0011, 10), (0b0110, 1), (0b0100, 5)]);
        let cands = [
            Candidate {
                cuboid: 0b0011,
                rows: 50,
                bytes: 500,
            },
            Candidate {
                cuboid: 0b0110,
                rows: 60,
                bytes: 600,
            },
        ];
        let picks = greedy(&w, &built, &cands, u64::MAX);
        // 0b0011: 10 queries × (1000 − 50) = 9500 → 19/byte; 0b0110: 1 × 940 + 5 × 40
        // (0b0100 reads 0b1100 = 100 rows today) = 1140 → 1.9/byte.
        assert_eq!(picks.len(), 2);
        assert_eq!(picks[0].cuboid, 0b0011);
        assert_eq!((picks[0].queries, picks[0].rows_saved), (10, 9500));
        assert_eq!(picks[1].cuboid, 0b0110);
        assert_eq!((picks[1].queries, picks[1].rows_saved), (6, 1140));
        // A budget for one: the better one only.
        let picks = greedy(&w, &built, &cands, 550);
        assert_eq!(
            picks.iter().map(|p| p.cuboid).collect::<Vec<_>>(),
            vec![0b0011]
        );
        // Nothing fits: nothing picked.
        assert!(greedy(&w, &built, &cands, 499).is_empty());
    }

    #[test]
    fn greedy_counts_what_an_earlier_pick_already_saved() {
        let built = HashMap::from([(0b111, 1000)]);
        let w = wanted(&[(0b011, 4), (0b001, 4)]);
        let cands = [
            Candidate {
                cuboid: 0b011,
                rows: 100,
                bytes: 100,
            },
            Candidate {
                cuboid: 0b001,
                rows: 90,
                bytes: 90,
            },
        ];
        let picks = greedy(&w, &built, &cands, u64::MAX);
        // 0b011 helps both sets (8 × 900 = 7200 → 72/byte) and goes first; then 0b001 only
        // saves 4 × (100 − 90) = 40 over it.
        assert_eq!(picks[0].cuboid, 0b011);
        assert_eq!(picks[0].rows_saved, 7200);
        assert_eq!(picks[1].cuboid, 0b001);
        assert_eq!(picks[1].rows_saved, 40);
        // A candidate no smaller than what queries read now is never picked.
        let big = [Candidate {
            cuboid: 0b011,
            rows: 1000,
            bytes: 1,
        }];
        assert!(greedy(&w, &built, &big, u64::MAX).is_empty());
    }

    #[test]
    fn unused_keeps_the_base_chosen_cuboids_and_needed_parents() {
        let base = 0b111;
        let built = HashMap::from([
            (0b111, 1000),
            (0b110, 500),
            (0b100, 10),
            (0b011, 800),
            (0b001, 20),
        ]);
        // 0b100 is chosen: its parent 0b110 (500 rows, smaller than the base) is needed.
        // 0b011 is 0b001's parent: needed too. 0b001 is unused and nobody's parent.
        let chosen = HashSet::from([0b100, 0b001]);
        assert!(unused(base, &built, &chosen).is_empty());
        let chosen = HashSet::from([0b100]);
        // 0b001 is nobody's parent, and once it goes 0b011 is nobody's either.
        assert_eq!(unused(base, &built, &chosen), vec![0b011, 0b001]);
        let chosen = HashSet::new();
        let all = unused(base, &built, &chosen);
        assert!(!all.contains(&base));
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn candidates_are_sized_by_the_built_cuboids_nearest_in_rows() {
        // Small cuboids carry large merged states per row, large ones small states.
        let stats = HashMap::from([
            (1, (100, 100_000)),           // 1000 B/row
            (2, (1_000, 500_000)),         // 500 B/row
            (3, (10_000, 1_000_000)),      // 100 B/row
            (4, (1_000_000, 50_000_000)),  // 50 B/row
            (5, (2_000_000, 90_000_000)),  // 45 B/row
            (6, (3_000_000, 120_000_000)), // 40 B/row
        ]);
        // Near the large ones: their 135 MB over 6 M rows.
        assert_eq!(
            bytes_per_row(&stats, 2_500_000),
            260_000_000.0 / 6_000_000.0
        );
        // Near the small ones: 1.6 MB over 11,100 rows.
        assert_eq!(bytes_per_row(&stats, 1_000), 1_600_000.0 / 11_100.0);
        assert_eq!(bytes_per_row(&HashMap::new(), 10), 0.0);
    }

    #[test]
    fn a_query_history_line_is_a_planner_record() {
        let text = r#"{"time":"2026-12-03T01:00:00Z","project":"ssb","cube":"ssb_cube","wanted":3,"wanted_dimensions":["d_year","c_city"],"chosen":7,"chosen_rows":100,"millis":12.5}"#;
        let r: QueryRecord = serde_json::from_str(text).unwrap();
        assert_eq!(r.wanted_dimensions, vec!["d_year", "c_city"]);
        assert_eq!(r.chosen_rows, 100);
    }
}
