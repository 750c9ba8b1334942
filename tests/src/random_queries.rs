//! The generator of random aggregate queries over the SSB star (the seeded half of the query
//! corpus, see [`crate::corpus`]), and what a refusal of one must say.
//!
//! The generator is seeded (printed; override with `QILIN_TEST_SEED`) and varies the group-by
//! columns (date hierarchy and derived date columns, customer, supplier, part, discount,
//! quantity), the filters (`=`, `IN`, `BETWEEN`, `<`, `>=`, `OR`, with values read from the
//! data), the measures and the join syntax (comma joins with WHERE equalities, or JOIN ... ON),
//! joining only the lookup tables a query needs. Most queries stay inside one aggregation
//! group of `ssb_cube` and must be answered; about a fifth add something no cuboid holds (a
//! dimension of another group, a column that is no dimension, a measure the cube lacks): those
//! must be answered correctly or refused with InvalidArgument "no realization ..." naming the
//! culprit. A handful of refused ones are then run on a server with pushdown enabled.

use std::collections::{BTreeSet, HashMap};

use datafusion::prelude::SessionContext;

use crate::compare::{oracle_query, Expect, HLL_REL};

const DEFAULT_SEED: u64 = 0x5153_4C49_4E00_0001;

/// xorshift64* — small, deterministic, good enough to pick query shapes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
    /// `n` distinct items of `pool` in random order.
    fn sample<T: Clone>(&mut self, pool: &[T], n: usize) -> Vec<T> {
        let mut v = pool.to_vec();
        self.shuffle(&mut v);
        v.truncate(n);
        v
    }
}

/// The aggregation groups of `ssb_cube`, written down independently of
/// `engine/src/sample/ssb.rs`: the dimension columns each one can answer. Group 4 stores
/// `lo_orderdate` and answers the `dates` columns derived through it.
const GROUPS: [&[&str]; 4] = [
    &[
        "d_year",
        "d_yearmonthnum",
        "d_weeknuminyear",
        "lo_discount",
        "lo_quantity",
    ],
    &[
        "d_year",
        "d_yearmonth",
        "c_region",
        "c_nation",
        "c_city",
        "s_region",
        "s_nation",
        "s_city",
    ],
    &[
        "d_year",
        "c_region",
        "c_nation",
        "s_region",
        "s_nation",
        "s_city",
        "p_mfgr",
        "p_category",
        "p_brand",
    ],
    &["lo_orderdate", "c_region", "s_region"],
];

/// Derived dimensions of the cube: `dates` columns answered through `lo_orderdate`.
const DERIVED_DATES: &[&str] = &[
    "d_month",
    "d_sellingseason",
    "d_dayofweek",
    "d_monthnuminyear",
    "d_daynuminweek",
    "d_holidayfl",
    "d_weekdayfl",
];

/// Columns of the star that are no dimension of the cube.
const NON_DIMENSIONS: &[&str] = &[
    "c_phone",
    "c_address",
    "c_mktsegment",
    "s_phone",
    "p_color",
    "p_container",
    "p_size",
    "lo_shipmode",
    "lo_orderpriority",
];

struct Measure {
    sql: &'static str,
    /// The cube has a measure answering it.
    covered: bool,
    /// Answered from a HyperLogLog state: compare within [`HLL_REL`].
    approx: bool,
    /// The fact column it aggregates (what a refusal should name).
    column: &'static str,
}

const fn m(sql: &'static str, column: &'static str) -> Measure {
    Measure {
        sql,
        covered: true,
        approx: false,
        column,
    }
}

const fn uncovered(sql: &'static str, column: &'static str) -> Measure {
    Measure {
        sql,
        covered: false,
        approx: false,
        column,
    }
}

const MEASURES: &[Measure] = &[
    m("sum(lo_revenue)", "lo_revenue"),
    m("count(*)", "*"),
    m("count(1)", "*"),
    m("min(lo_extendedprice)", "lo_extendedprice"),
    m("max(lo_extendedprice)", "lo_extendedprice"),
    m("avg(lo_quantity)", "lo_quantity"),
    m("avg(lo_revenue)", "lo_revenue"),
    m("count(distinct lo_suppkey)", "lo_suppkey"),
    Measure {
        sql: "count(distinct lo_custkey)",
        covered: true,
        approx: true,
        column: "lo_custkey",
    },
    m("sum(lo_extendedprice * lo_discount)", "lo_extendedprice"),
    m("sum(lo_revenue - lo_supplycost)", "lo_revenue"),
    m("sum(lo_supplycost)", "lo_supplycost"),
    m("sum(lo_quantity)", "lo_quantity"),
    m("sum(lo_extendedprice)", "lo_extendedprice"),
];

const UNCOVERED_MEASURES: &[Measure] = &[
    uncovered("sum(lo_tax)", "lo_tax"),
    uncovered("max(lo_revenue)", "lo_revenue"),
    uncovered("count(distinct lo_partkey)", "lo_partkey"),
    uncovered("sum(lo_ordtotalprice)", "lo_ordtotalprice"),
    uncovered("min(lo_supplycost)", "lo_supplycost"),
];

/// The table a column belongs to and, for lookups, the join condition's (FK, PK).
fn table_of(column: &str) -> (&'static str, Option<(&'static str, &'static str)>) {
    match column.split('_').next() {
        Some("d") => ("dates", Some(("lo_orderdate", "d_datekey"))),
        Some("c") => ("customer", Some(("lo_custkey", "c_custkey"))),
        Some("s") => ("supplier", Some(("lo_suppkey", "s_suppkey"))),
        Some("p") => ("part", Some(("lo_partkey", "p_partkey"))),
        _ => ("lineorder", None),
    }
}

fn all_dimensions() -> Vec<&'static str> {
    let mut v: BTreeSet<&str> = GROUPS.iter().flat_map(|g| g.iter().copied()).collect();
    v.extend(DERIVED_DATES);
    v.into_iter().collect()
}

/// Whether some aggregation group holds every column (derived dates count as `lo_orderdate`).
fn predicted_covered(columns: &BTreeSet<&str>) -> bool {
    let mapped: BTreeSet<&str> = columns
        .iter()
        .map(|c| {
            if DERIVED_DATES.contains(c) {
                "lo_orderdate"
            } else {
                c
            }
        })
        .collect();
    GROUPS.iter().any(|g| mapped.iter().all(|c| g.contains(c)))
}

/// The distinct values of every column the generator filters on, read from the oracle.
pub struct Domains(HashMap<&'static str, (bool, Vec<String>)>);

impl Domains {
    pub async fn load(ctx: &SessionContext) -> Domains {
        let mut out = HashMap::new();
        let columns = all_dimensions()
            .into_iter()
            .chain(NON_DIMENSIONS.iter().copied());
        for c in columns {
            let (table, _) = table_of(c);
            let batches = oracle_query(
                ctx,
                &format!("SELECT DISTINCT {c} FROM {table} ORDER BY {c}"),
            )
            .await;
            let numeric = batches[0].schema().field(0).data_type().is_integer();
            let values: Vec<String> = batches
                .iter()
                .flat_map(|b| (0..b.num_rows()).map(move |r| crate::cell(b.column(0).as_ref(), r)))
                .collect();
            assert!(!values.is_empty(), "no values of {c}");
            out.insert(c, (numeric, values));
        }
        Domains(out)
    }

    fn literal(&self, column: &str, i: usize) -> String {
        let (numeric, values) = &self.0[column];
        let v = &values[i];
        if *numeric {
            v.clone()
        } else {
            format!("'{}'", v.replace('\'', "''"))
        }
    }

    fn len(&self, column: &str) -> usize {
        self.0[column].1.len()
    }

    /// A random predicate on `column` using values present in the data.
    fn predicate(&self, rng: &mut Rng, column: &str) -> String {
        let n = self.len(column);
        let lit = |rng: &mut Rng| self.literal(column, rng.below(n));
        match rng.below(6) {
            0 => format!("{column} = {}", lit(rng)),
            1 => {
                let k = 2 + rng.below(2);
                let idx: Vec<usize> = rng.sample(&(0..n).collect::<Vec<_>>(), k);
                let vals: Vec<String> = idx.iter().map(|&i| self.literal(column, i)).collect();
                format!("{column} IN ({})", vals.join(", "))
            }
            2 => {
                let (a, b) = (rng.below(n), rng.below(n));
                format!(
                    "{column} BETWEEN {} AND {}",
                    self.literal(column, a.min(b)),
                    self.literal(column, a.max(b))
                )
            }
            3 => format!("{column} < {}", lit(rng)),
            4 => format!("{column} >= {}", lit(rng)),
            _ => format!("({column} = {} OR {column} = {})", lit(rng), lit(rng)),
        }
    }
}

/// One generated query and what the test expects of it.
pub struct Generated {
    pub sql: String,
    pub expect: Expect,
    /// Some aggregation group holds all its columns and the cube has all its measures.
    pub covered: bool,
    /// Names one of which a refusal must mention.
    pub blame: Vec<String>,
}

pub fn generate(rng: &mut Rng, domains: &Domains) -> Generated {
    // The family: one aggregation group whose columns the query uses.
    let g = *rng.pick(&[0, 0, 1, 1, 1, 2, 2, 2, 3, 3]);
    let (group_pool, filter_pool): (Vec<&str>, Vec<&str>) = if g == 3 {
        let pool: Vec<&str> = DERIVED_DATES
            .iter()
            .copied()
            .chain(["c_region", "s_region"])
            .collect();
        let mut filters = pool.clone();
        filters.push("lo_orderdate");
        (pool, filters)
    } else {
        (GROUPS[g].to_vec(), GROUPS[g].to_vec())
    };
    let n_dims = *rng.pick(&[0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3]);
    let mut dims = rng.sample(&group_pool, n_dims);
    let n_filters = *rng.pick(&[0, 1, 1, 2, 2, 3]);
    let mut filter_cols = rng.sample(&filter_pool, n_filters);
    let n_measures = 1 + rng.below(3);
    let mut measures: Vec<&Measure> = rng.sample(&MEASURES.iter().collect::<Vec<_>>(), n_measures);

    // About a fifth get something outside the chosen group.
    let mut blame: Vec<String> = Vec::new();
    if rng.chance(0.2) {
        match rng.below(3) {
            0 => {
                let others: Vec<&str> = all_dimensions()
                    .into_iter()
                    .filter(|d| !filter_pool.contains(d) && !dims.contains(d))
                    .collect();
                let extra = *rng.pick(&others);
                if rng.chance(0.5) {
                    dims.push(extra);
                } else {
                    filter_cols.push(extra);
                }
                // A combination no group holds: any of its columns may be the one named.
                blame.extend(dims.iter().chain(&filter_cols).map(|c| c.to_string()));
            }
            1 => {
                let extra = *rng.pick(NON_DIMENSIONS);
                if rng.chance(0.5) {
                    dims.push(extra);
                } else {
                    filter_cols.push(extra);
                }
                blame.push(extra.to_string());
            }
            _ => {
                let extra = rng.pick(UNCOVERED_MEASURES);
                let at = rng.below(measures.len() + 1);
                measures.insert(at, extra);
                blame.push(extra.column.to_string());
            }
        }
    }

    let used: BTreeSet<&str> = dims.iter().chain(&filter_cols).copied().collect();
    let covered = used.iter().all(|c| !NON_DIMENSIONS.contains(c))
        && measures.iter().all(|m| m.covered)
        && predicted_covered(&used);

    // SELECT: the group-by columns first, then the measures (so the comparison can sort rows
    // on the exact columns).
    let mut select: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let alias = rng.chance(0.5);
    for (i, m) in measures.iter().enumerate() {
        select.push(if alias {
            format!("{} AS m{i}", m.sql)
        } else {
            m.sql.to_string()
        });
    }
    let approx = measures
        .iter()
        .enumerate()
        .filter(|(_, m)| m.approx)
        .map(|(i, _)| (dims.len() + i, HLL_REL))
        .collect();

    // FROM: the fact table and only the lookups the columns need.
    let mut joins: Vec<(&str, &str, &str)> = Vec::new();
    for c in &used {
        if let (t, Some((fk, pk))) = table_of(c) {
            if !joins.iter().any(|j| j.0 == t) {
                joins.push((t, fk, pk));
            }
        }
    }
    rng.shuffle(&mut joins);
    let eq = |rng: &mut Rng, fk: &str, pk: &str| {
        if rng.chance(0.5) {
            format!("{fk} = {pk}")
        } else {
            format!("{pk} = {fk}")
        }
    };
    let mut predicates: Vec<String> = filter_cols
        .iter()
        .map(|c| domains.predicate(rng, c))
        .collect();
    let from = if joins.is_empty() || rng.chance(0.5) {
        // Comma joins: the fact table somewhere in the list, equalities in WHERE.
        let mut tables: Vec<&str> = joins.iter().map(|j| j.0).collect();
        let at = rng.below(tables.len() + 1);
        tables.insert(at, "lineorder");
        for &(_, fk, pk) in &joins {
            predicates.push(eq(rng, fk, pk));
        }
        rng.shuffle(&mut predicates);
        tables.join(", ")
    } else {
        let mut s = String::from("lineorder");
        for &(t, fk, pk) in &joins {
            let kw = if rng.chance(0.3) {
                "INNER JOIN"
            } else {
                "JOIN"
            };
            s.push_str(&format!(" {kw} {t} ON {}", eq(rng, fk, pk)));
        }
        s
    };

    let mut sql = format!("SELECT {} FROM {from}", select.join(", "));
    if !predicates.is_empty() {
        sql.push_str(&format!(" WHERE {}", predicates.join(" AND ")));
    }
    if !dims.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", dims.join(", ")));
    }
    let mut ordered = false;
    if !dims.is_empty() && rng.chance(0.3) {
        // Ordered on every group key, so the order is fully determined.
        let keys: Vec<String> = dims
            .iter()
            .map(|d| {
                if rng.chance(0.3) {
                    format!("{d} DESC")
                } else {
                    d.to_string()
                }
            })
            .collect();
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
        if rng.chance(0.4) {
            sql.push_str(&format!(" LIMIT {}", 1 + rng.below(15)));
        }
        ordered = true;
    }
    Generated {
        sql,
        expect: Expect { ordered, approx },
        covered,
        blame,
    }
}

/// The generator's seed: `QILIN_TEST_SEED` (decimal or `0x` hex) or a fixed default.
pub fn seed() -> u64 {
    match std::env::var("QILIN_TEST_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("QILIN_TEST_SEED={s:?} is not a u64: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// Why a refusal is not the one expected, if it is not.
pub fn check_refusal(status: &tonic::Status, q: &Generated) -> Result<(), String> {
    let msg = status.message().to_lowercase();
    if status.code() != tonic::Code::InvalidArgument || !msg.contains("no realization") {
        return Err(format!(
            "unexpected error {:?}: {}",
            status.code(),
            status.message()
        ));
    }
    if q.covered {
        return Err(format!(
            "refused although aggregation group(s) of ssb_cube hold all its columns and measures: {}",
            status.message()
        ));
    }
    if !q.blame.iter().any(|b| msg.contains(&b.to_lowercase())) {
        return Err(format!(
            "the refusal names none of {:?}: {}",
            q.blame,
            status.message()
        ));
    }
    Ok(())
}
