//! The ad-hoc mode: `N` seeded random cube-shaped SSB queries, the kind a BI user clicks
//! together (a few dimensions dragged onto rows, a slicer or two, one to three measures),
//! each different, run through the Python ADBC Flight SQL driver against `qilin-server` and
//! on DuckDB over the raw Parquet files in the same Python process, one query after the
//! other (so the two never compete for the cores). Both answers are compared (row count,
//! then every cell after sorting by the group-by columns, numbers to a relative 1e-9), and
//! each query's `EXPLAIN` (through the same ADBC connection) says which cuboid it read.
//!
//! The generator draws most queries inside one aggregation group of `ssb_cube` (see
//! `engine/src/sample/ssb.rs`: the Q1 group, the Q3 group, the Q2/Q4 group, the day-level
//! group whose `dates` columns are derived through `lo_orderdate`, the supplier-key group)
//! and the rest across all dimensions, where most cross groups and fall back to the base
//! cuboid — the slow tail issue 19 is about. Values are SSB's own domains (regions,
//! nations, cities, brands, calendar), fixed, so a seed gives the same queries at every
//! scale factor.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::workload::{median, percentile};

/// The default seed of `--adhoc` (`--seed` overrides it).
pub const DEFAULT_SEED: u64 = 19;
/// Largest product of the group-by columns' cardinalities at SF 1: a BI user slices, they do
/// not extract (a `lo_orderdate × p_brand` table would be an export, not a chart).
const MAX_GROUPS: u64 = 50_000;

/// xorshift64*: small and deterministic on every platform and crate version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Spread small seeds over the state (splitmix64 finaliser); never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
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
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as usize) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// An index drawn with the given weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total as usize) as u32;
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// The star's tables, in the order a BI tool joins them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    Lineorder,
    Dates,
    Customer,
    Supplier,
    Part,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Lineorder => "lineorder",
            Table::Dates => "dates",
            Table::Customer => "customer",
            Table::Supplier => "supplier",
            Table::Part => "part",
        }
    }
    /// `JOIN` clause of a lookup table.
    fn join(self) -> &'static str {
        match self {
            Table::Lineorder => "",
            Table::Dates => "INNER JOIN dates ON lineorder.lo_orderdate = dates.d_datekey",
            Table::Customer => "INNER JOIN customer ON lineorder.lo_custkey = customer.c_custkey",
            Table::Supplier => "INNER JOIN supplier ON lineorder.lo_suppkey = supplier.s_suppkey",
            Table::Part => "INNER JOIN part ON lineorder.lo_partkey = part.p_partkey",
        }
    }
}

/// Slicers on the same hierarchy exclude each other (a user filters a region OR a nation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    Own,
    Calendar,
    CustomerGeo,
    SupplierGeo,
    Part,
}

/// How a column's values are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    Year,
    YearMonthNum,
    YearMonth,
    /// Integers lo..=hi.
    Int(i64, i64),
    /// 0 or 1.
    Flag,
    DateKey,
    /// Supplier keys present at every scale ≥ 0.01 (20 suppliers).
    SuppKey,
    Strings(&'static [&'static str]),
    Region,
    Nation,
    City,
    Mfgr,
    Category,
    Brand,
}

/// A column a user can drag onto rows or filter on.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub table: Table,
    pub column: &'static str,
    domain: Domain,
    family: Family,
    /// Distinct values at SF 1 (for the group count bound).
    cardinality: u64,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const SEASONS: [&str; 5] = ["Christmas", "Winter", "Spring", "Summer", "Fall"];
const REGIONS: [&str; 5] = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"];
/// TPC-H nations (by key) and their regions.
const NATIONS: [(&str, &str); 25] = [
    ("ALGERIA", "AFRICA"),
    ("ARGENTINA", "AMERICA"),
    ("BRAZIL", "AMERICA"),
    ("CANADA", "AMERICA"),
    ("EGYPT", "MIDDLE EAST"),
    ("ETHIOPIA", "AFRICA"),
    ("FRANCE", "EUROPE"),
    ("GERMANY", "EUROPE"),
    ("INDIA", "ASIA"),
    ("INDONESIA", "ASIA"),
    ("IRAN", "MIDDLE EAST"),
    ("IRAQ", "MIDDLE EAST"),
    ("JAPAN", "ASIA"),
    ("JORDAN", "MIDDLE EAST"),
    ("KENYA", "AFRICA"),
    ("MOROCCO", "AFRICA"),
    ("MOZAMBIQUE", "AFRICA"),
    ("PERU", "AMERICA"),
    ("CHINA", "ASIA"),
    ("ROMANIA", "EUROPE"),
    ("SAUDI ARABIA", "MIDDLE EAST"),
    ("VIETNAM", "ASIA"),
    ("RUSSIA", "EUROPE"),
    ("UNITED KINGDOM", "EUROPE"),
    ("UNITED STATES", "AMERICA"),
];

const fn attr(
    table: Table,
    column: &'static str,
    domain: Domain,
    family: Family,
    cardinality: u64,
) -> Attr {
    Attr {
        table,
        column,
        domain,
        family,
        cardinality,
    }
}

use Domain as D;
use Family as F;
use Table as T;

/// Every attribute of the generator: the cube's 16 dimensions and the `dates` columns
/// derived through `lo_orderdate`.
pub const ATTRS: &[Attr] = &[
    attr(T::Dates, "d_year", D::Year, F::Calendar, 7),
    attr(T::Dates, "d_yearmonthnum", D::YearMonthNum, F::Calendar, 80),
    attr(T::Dates, "d_yearmonth", D::YearMonth, F::Calendar, 80),
    attr(T::Dates, "d_weeknuminyear", D::Int(1, 53), F::Own, 53),
    attr(T::Lineorder, "lo_discount", D::Int(0, 10), F::Own, 11),
    attr(T::Lineorder, "lo_quantity", D::Int(1, 50), F::Own, 50),
    attr(T::Customer, "c_region", D::Region, F::CustomerGeo, 5),
    attr(T::Customer, "c_nation", D::Nation, F::CustomerGeo, 25),
    attr(T::Customer, "c_city", D::City, F::CustomerGeo, 250),
    attr(T::Supplier, "s_region", D::Region, F::SupplierGeo, 5),
    attr(T::Supplier, "s_nation", D::Nation, F::SupplierGeo, 25),
    attr(T::Supplier, "s_city", D::City, F::SupplierGeo, 250),
    attr(T::Part, "p_mfgr", D::Mfgr, F::Part, 5),
    attr(T::Part, "p_category", D::Category, F::Part, 25),
    attr(T::Part, "p_brand", D::Brand, F::Part, 1000),
    attr(T::Lineorder, "lo_orderdate", D::DateKey, F::Calendar, 2406),
    attr(T::Lineorder, "lo_suppkey", D::SuppKey, F::Own, 2000),
    // Derived through lo_orderdate (the day-level group).
    attr(T::Dates, "d_month", D::Strings(&MONTHS), F::Own, 12),
    attr(T::Dates, "d_monthnuminyear", D::Int(1, 12), F::Own, 12),
    attr(T::Dates, "d_dayofweek", D::Strings(&WEEKDAYS), F::Own, 7),
    attr(T::Dates, "d_daynuminweek", D::Int(1, 7), F::Own, 7),
    attr(T::Dates, "d_daynuminmonth", D::Int(1, 31), F::Own, 31),
    attr(T::Dates, "d_sellingseason", D::Strings(&SEASONS), F::Own, 5),
    attr(T::Dates, "d_holidayfl", D::Flag, F::Own, 2),
    attr(T::Dates, "d_weekdayfl", D::Flag, F::Own, 2),
    attr(T::Dates, "d_lastdayinmonthfl", D::Flag, F::Own, 2),
];

/// The `dates` columns the day-level group answers through `lo_orderdate`.
const DERIVED_DATES: [&str; 9] = [
    "d_month",
    "d_monthnuminyear",
    "d_dayofweek",
    "d_daynuminweek",
    "d_daynuminmonth",
    "d_sellingseason",
    "d_holidayfl",
    "d_weekdayfl",
    "d_lastdayinmonthfl",
];

/// The aggregation groups of `ssb_cube` as attribute names (the day-level one with the
/// derived `dates` columns it answers).
fn groups() -> Vec<Vec<&'static str>> {
    let mut day = vec!["lo_orderdate", "c_region", "s_region"];
    day.extend(DERIVED_DATES);
    vec![
        vec![
            "d_year",
            "d_yearmonthnum",
            "d_weeknuminyear",
            "lo_discount",
            "lo_quantity",
        ],
        vec![
            "d_year",
            "d_yearmonth",
            "c_region",
            "c_nation",
            "c_city",
            "s_region",
            "s_nation",
            "s_city",
        ],
        vec![
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
        day,
        vec!["lo_suppkey", "d_year"],
    ]
}

fn attr_named(name: &str) -> &'static Attr {
    ATTRS
        .iter()
        .find(|a| a.column == name)
        .expect("group attributes are in ATTRS")
}

/// The measures a BI user picks from (all answered by the cube's measures: SUMs, the
/// computed columns `v_revenue` / `v_profit`, MIN/MAX, COUNT, and the exact bitmap
/// COUNT DISTINCTs; not the HyperLogLog one, whose answer is approximate by design).
const MEASURES: &[(&str, u32, Option<Table>)] = &[
    ("SUM(lineorder.lo_revenue)", 6, None),
    (
        "SUM(lineorder.lo_extendedprice * lineorder.lo_discount)",
        3,
        None,
    ),
    (
        "SUM(lineorder.lo_revenue - lineorder.lo_supplycost)",
        3,
        None,
    ),
    ("SUM(lineorder.lo_supplycost)", 1, None),
    ("SUM(lineorder.lo_quantity)", 2, None),
    ("SUM(lineorder.lo_extendedprice)", 1, None),
    ("COUNT(*)", 4, None),
    ("MIN(lineorder.lo_extendedprice)", 1, None),
    ("MAX(lineorder.lo_extendedprice)", 1, None),
    ("COUNT(DISTINCT lineorder.lo_suppkey)", 2, None),
    ("COUNT(DISTINCT customer.c_name)", 1, Some(Table::Customer)),
];

/// One generated query.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdhocQuery {
    /// `A001`, `A002`, ...
    pub id: String,
    pub sql: String,
    /// The group-by columns (the first `dimensions.len()` output columns).
    pub dimensions: Vec<String>,
    /// Columns filtered on.
    pub filters: Vec<String>,
    /// The aggregation group the query was drawn from (1-based), or null when drawn across
    /// all of them.
    pub group: Option<usize>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn city(nation: &str, digit: i64) -> String {
    format!("{nation:<9.9}{digit}")
}

/// One value of `a`'s domain as an SQL literal.
fn value(rng: &mut Rng, a: &Attr) -> String {
    match a.domain {
        D::Year => rng.range(1992, 1998).to_string(),
        D::YearMonthNum => {
            let y = rng.range(1992, 1998);
            let m = rng.range(1, if y == 1998 { 7 } else { 12 });
            (y * 100 + m).to_string()
        }
        D::YearMonth => {
            let y = rng.range(1992, 1998);
            let m = rng.range(1, if y == 1998 { 7 } else { 12 });
            quote(&format!("{}{y}", &MONTHS[(m - 1) as usize][..3]))
        }
        D::Int(lo, hi) => rng.range(lo, hi).to_string(),
        D::Flag => rng.range(0, 1).to_string(),
        D::DateKey => {
            let y = rng.range(1992, 1998);
            let m = rng.range(1, if y == 1998 { 7 } else { 12 });
            (y * 10000 + m * 100 + rng.range(1, 28)).to_string()
        }
        D::SuppKey => rng.range(1, 20).to_string(),
        D::Strings(v) => quote(rng.pick::<&str>(v)),
        D::Region => quote(rng.pick::<&str>(&REGIONS)),
        D::Nation => quote(rng.pick(&NATIONS).0),
        D::City => quote(&city(rng.pick(&NATIONS).0, rng.range(0, 9))),
        D::Mfgr => quote(&format!("MFGR#{}", rng.range(1, 5))),
        D::Category => quote(&format!("MFGR#{}{}", rng.range(1, 5), rng.range(1, 5))),
        D::Brand => quote(&format!(
            "MFGR#{}{}{}",
            rng.range(1, 5),
            rng.range(1, 5),
            rng.range(1, 40)
        )),
    }
}

/// A filter on `a`: equality, IN list or a range, as the column allows.
fn filter(rng: &mut Rng, a: &Attr) -> String {
    let col = format!("{}.{}", a.table.name(), a.column);
    let ordered = matches!(
        a.domain,
        D::Year | D::YearMonthNum | D::Int(..) | D::DateKey | D::SuppKey
    );
    let kind = if matches!(a.domain, D::Flag) {
        0
    } else if ordered {
        rng.weighted(&[3, 2, 3, 1, 1])
    } else if matches!(a.domain, D::Brand) {
        rng.weighted(&[3, 2, 2])
    } else {
        rng.weighted(&[3, 2])
    };
    match kind {
        0 => format!("{col} = {}", value(rng, a)),
        1 => {
            let n = rng.range(2, 4) as usize;
            let mut vals = BTreeSet::new();
            for _ in 0..n * 4 {
                if vals.len() == n {
                    break;
                }
                vals.insert(value(rng, a));
            }
            let vals: Vec<String> = vals.into_iter().collect();
            format!("{col} IN ({})", vals.join(", "))
        }
        2 if matches!(a.domain, D::Brand) => {
            // Q2.2's shape: a run of brands inside one category.
            let (m, c) = (rng.range(1, 5), rng.range(1, 5));
            let lo = rng.range(1, 30);
            let hi = lo + rng.range(1, 9);
            format!("{col} BETWEEN 'MFGR#{m}{c}{lo}' AND 'MFGR#{m}{c}{hi}'")
        }
        2 => {
            let (x, y) = (value(rng, a), value(rng, a));
            let (x, y): (i64, i64) = (x.parse().unwrap_or(0), y.parse().unwrap_or(0));
            format!("{col} BETWEEN {} AND {}", x.min(y), x.max(y))
        }
        3 => format!("{col} < {}", value(rng, a)),
        _ => format!("{col} >= {}", value(rng, a)),
    }
}

/// Draws `n` distinct attributes of `pool` (no two of one hierarchy when `one_per_family`).
fn draw(
    rng: &mut Rng,
    pool: &[&'static Attr],
    n: usize,
    one_per_family: bool,
) -> Vec<&'static Attr> {
    let mut out: Vec<&'static Attr> = Vec::new();
    for _ in 0..n * 8 {
        if out.len() == n {
            break;
        }
        let a = *rng.pick(pool);
        let clash = out.iter().any(|b| {
            b.column == a.column || (one_per_family && a.family != F::Own && b.family == a.family)
        });
        if !clash {
            out.push(a);
        }
    }
    out
}

/// One random query (its id filled in by [`generate`]).
fn one(rng: &mut Rng) -> AdhocQuery {
    let groups = groups();
    let all: Vec<&'static Attr> = ATTRS.iter().collect();
    // Two queries in three stay inside one aggregation group; the rest draw from everything.
    let group = if rng.chance(0.65) {
        Some(rng.below(groups.len()))
    } else {
        None
    };
    let pool: Vec<&'static Attr> = match group {
        Some(g) => groups[g].iter().map(|n| attr_named(n)).collect(),
        None => all.clone(),
    };
    let dims = loop {
        let n = [0usize, 1, 2, 3, 4][rng.weighted(&[1, 7, 7, 4, 1])];
        let d = draw(rng, &pool, n.min(pool.len()), false);
        let groups_bound: u64 = d.iter().map(|a| a.cardinality).product();
        if groups_bound <= MAX_GROUPS {
            break d;
        }
    };
    let n_filters = [0usize, 1, 2, 3][rng.weighted(&[3, 8, 6, 3])];
    // Slicers mostly on the same group's columns; now and then on a derived date column.
    let mut filter_pool = pool.clone();
    if rng.chance(0.2) {
        filter_pool.push(attr_named(rng.pick::<&str>(&DERIVED_DATES)));
    }
    let filtered = draw(rng, &filter_pool, n_filters.min(filter_pool.len()), true);
    let n_measures = [1usize, 2, 3][rng.weighted(&[6, 3, 1])];
    let weights: Vec<u32> = MEASURES.iter().map(|m| m.1).collect();
    let mut measures: Vec<usize> = Vec::new();
    for _ in 0..n_measures * 8 {
        if measures.len() == n_measures {
            break;
        }
        let m = rng.weighted(&weights);
        if !measures.contains(&m) {
            measures.push(m);
        }
    }

    let mut tables: BTreeSet<Table> = BTreeSet::new();
    for a in dims.iter().chain(&filtered) {
        tables.insert(a.table);
    }
    for &m in &measures {
        if let Some(t) = MEASURES[m].2 {
            tables.insert(t);
        }
    }
    tables.remove(&Table::Lineorder);

    let qualified = |a: &Attr| format!("{}.{}", a.table.name(), a.column);
    let mut select: Vec<String> = dims.iter().map(|a| qualified(a)).collect();
    for (i, &m) in measures.iter().enumerate() {
        select.push(format!("{} AS m{i}", MEASURES[m].0));
    }
    let mut sql = format!("SELECT {} FROM lineorder", select.join(", "));
    for t in &tables {
        let _ = write!(sql, " {}", t.join());
    }
    let where_: Vec<String> = filtered.iter().map(|a| filter(rng, a)).collect();
    if !where_.is_empty() {
        let _ = write!(sql, " WHERE {}", where_.join(" AND "));
    }
    if !dims.is_empty() {
        let keys: Vec<String> = dims.iter().map(|a| qualified(a)).collect();
        let _ = write!(sql, " GROUP BY {}", keys.join(", "));
    }
    AdhocQuery {
        id: String::new(),
        sql,
        dimensions: dims.iter().map(|a| a.column.to_string()).collect(),
        filters: filtered.iter().map(|a| a.column.to_string()).collect(),
        group: group.map(|g| g + 1),
    }
}

/// `n` distinct queries for `seed`: the same list for the same seed, everywhere.
pub fn generate(seed: u64, n: usize) -> anyhow::Result<Vec<AdhocQuery>> {
    let mut rng = Rng::new(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(50).max(100) {
        if out.len() == n {
            break;
        }
        let mut q = one(&mut rng);
        if seen.insert(q.sql.clone()) {
            q.id = format!("A{:03}", out.len() + 1);
            out.push(q);
        }
    }
    if out.len() < n {
        bail!(
            "could only generate {} distinct ad-hoc queries of {n}",
            out.len()
        );
    }
    Ok(out)
}

/// Runs the queries through ADBC and on DuckDB: per query, one untimed run on each (whose
/// answers are compared), then `runs` timed runs on each, then `EXPLAIN` through ADBC.
/// Results are fetched as Arrow tables on both sides; the comparison is outside the timing.
const SCRIPT: &str = r#"
import decimal, json, math, sys, time
import adbc_driver_flightsql.dbapi as flightsql
import duckdb

spec = json.load(open(sys.argv[1]))
conn = flightsql.connect(spec["uri"], db_kwargs={"username": "ADMIN", "password": "KYLIN"})
con = duckdb.connect()
con.execute("set temp_directory = '%s'" % spec["temp"].replace("'", "''"))
con.execute("set enable_progress_bar = false")
for t in spec["tables"]:
    path = spec["dir"] + "/" + t + ".parquet"
    con.execute("create view %s as select * from read_parquet('%s')" % (t, path.replace("'", "''")))

def qilin(sql):
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetch_arrow_table()
    finally:
        cur.close()

def duck(sql):
    relation = con.sql(sql)
    # to_arrow_table in DuckDB 2, fetch_arrow_table in 1.x.
    return (getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table)()

def timed(f, sql):
    t0 = time.perf_counter()
    table = f(sql)
    return (time.perf_counter() - t0) * 1000.0, table

def norm(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if v is None or isinstance(v, (int, float, str)):
        return v
    return str(v)

def rows(table):
    cols = [[norm(v) for v in c.to_pylist()] for c in table.columns]
    return [tuple(c[i] for c in cols) for i in range(table.num_rows)]

def key(row, k):
    return tuple((0, str(x)) if isinstance(x, str) else ((1, 0) if x is None else (0, x)) for x in row[:k])

def same(x, y):
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if num(x) and num(y):
        return math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9) if isinstance(x, float) or isinstance(y, float) else x == y
    return x == y

def compare(a, b, k):
    if a.num_rows != b.num_rows:
        return "row count: qilin %d, duckdb %d" % (a.num_rows, b.num_rows)
    if a.num_columns != b.num_columns:
        return "column count: qilin %d, duckdb %d" % (a.num_columns, b.num_columns)
    ra, rb = sorted(rows(a), key=lambda r: key(r, k)), sorted(rows(b), key=lambda r: key(r, k))
    for i, (x, y) in enumerate(zip(ra, rb)):
        for j, (u, v) in enumerate(zip(x, y)):
            if not same(u, v):
                return "row %d column %d: qilin %r, duckdb %r" % (i, j, u, v)
    return None

def checksum(table, k):
    total = 0.0
    for x in rows(table):
        for v in x[k:]:
            if isinstance(v, (int, float)):
                total += float(v)
    return total

out = {"duckdb_version": duckdb.__version__, "queries": []}
for q in spec["queries"]:
    sql, k = q["sql"], q["dims"]
    r = {"id": q["id"], "qilin_ms": [], "duckdb_ms": [], "error": None, "mismatch": None, "explain": []}
    try:
        first, a = timed(qilin, sql)
        r["qilin_first_ms"] = first
        r["rows"] = a.num_rows
    except Exception as e:
        a = None
        r["error"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    first, b = timed(duck, sql)
    r["duckdb_first_ms"] = first
    r["duckdb_rows"] = b.num_rows
    r["duckdb_checksum"] = checksum(b, k)
    if a is not None:
        r["mismatch"] = compare(a, b, k)
        r["checksum"] = checksum(a, k)
        for _ in range(spec["runs"]):
            r["qilin_ms"].append(timed(qilin, sql)[0])
    for _ in range(spec["runs"]):
        r["duckdb_ms"].append(timed(duck, sql)[0])
    try:
        plan = qilin("EXPLAIN " + sql)
        cols = [c.to_pylist() for c in plan.columns]
        r["explain"] = [[str(cols[0][i]), str(cols[1][i])] for i in range(plan.num_rows) if "plan" not in str(cols[0][i])]
    except Exception as e:
        r["explain"] = [["error", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__]]
    out["queries"].append(r)
    print("%s qilin %s ms, duckdb %.1f ms%s" % (q["id"], "%.1f" % min(r["qilin_ms"]) if r["qilin_ms"] else "error", min(r["duckdb_ms"] or [first]), " MISMATCH" if r["mismatch"] else ""), file=sys.stderr, flush=True)
conn.close()
print(json.dumps(out))
"#;

#[derive(Deserialize)]
struct ScriptOut {
    duckdb_version: String,
    queries: Vec<ScriptQuery>,
}

#[derive(Deserialize)]
struct ScriptQuery {
    id: String,
    qilin_ms: Vec<f64>,
    duckdb_ms: Vec<f64>,
    #[serde(default)]
    qilin_first_ms: Option<f64>,
    duckdb_first_ms: f64,
    #[serde(default)]
    rows: Option<u64>,
    duckdb_rows: u64,
    #[serde(default)]
    checksum: Option<f64>,
    duckdb_checksum: f64,
    error: Option<String>,
    mismatch: Option<String>,
    explain: Vec<(String, String)>,
}

/// p50 / p95 / p99 / max and the sum of a series, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub total_ms: f64,
}

impl Percentiles {
    pub fn of(samples: &[f64]) -> Percentiles {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Percentiles {
            p50_ms: percentile(&v, 0.50),
            p95_ms: percentile(&v, 0.95),
            p99_ms: percentile(&v, 0.99),
            max_ms: v.last().copied().unwrap_or(0.0),
            total_ms: v.iter().sum(),
        }
    }
}

/// One ad-hoc query's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdhocResult {
    pub id: String,
    pub sql: String,
    pub dimensions: Vec<String>,
    pub filters: Vec<String>,
    pub group: Option<usize>,
    /// Rows of Qilin's answer (null when it failed).
    pub rows: Option<u64>,
    pub duckdb_rows: u64,
    /// Sum of the measure cells of each answer (a quick cross-check; the comparison is cell
    /// by cell).
    pub qilin_checksum: Option<f64>,
    pub duckdb_checksum: f64,
    /// Median of the timed runs (null when Qilin failed).
    pub qilin_ms: Option<f64>,
    pub duckdb_ms: f64,
    /// The untimed first run of each (cold for this query's blocks).
    pub qilin_first_ms: Option<f64>,
    pub duckdb_first_ms: f64,
    /// qilin_ms / duckdb_ms.
    pub ratio: Option<f64>,
    /// EXPLAIN's `cuboid` row ("cuboid N [dims] with R rows"), or its `realization` row.
    pub cuboid: String,
    /// EXPLAIN's `blocks` row ("read X of Y").
    pub blocks: String,
    /// The query read the base cuboid.
    pub base_cuboid: bool,
    /// Every non-plan row of EXPLAIN.
    pub explain: Vec<(String, String)>,
    pub error: Option<String>,
    pub mismatch: Option<String>,
}

/// The ad-hoc mode's report (`adhoc` in the JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdhocReport {
    pub seed: u64,
    pub queries: usize,
    /// Timed runs per query and engine after the untimed, compared one.
    pub runs: usize,
    pub duckdb_version: String,
    /// Over the queries Qilin answered (per-query medians).
    pub qilin: Percentiles,
    /// Over the same queries.
    pub duckdb: Percentiles,
    /// Per-query qilin / duckdb.
    pub ratio: Percentiles,
    /// qilin p99 / duckdb p99.
    pub p99_ratio: f64,
    pub slower_than_duckdb: usize,
    pub qilin_over_1s: usize,
    pub duckdb_over_1s: usize,
    pub base_cuboid_queries: usize,
    /// Answers that differ from DuckDB's, and queries Qilin failed: both are failures.
    pub mismatches: usize,
    pub errors: usize,
    /// Ids of the worst queries by ratio, worst first.
    pub worst: Vec<String>,
    pub results: Vec<AdhocResult>,
}

/// How many of the worst queries the table names.
const WORST: usize = 5;

/// Runs `queries` (see [`SCRIPT`]) against the server at `addr` and DuckDB over
/// `source_dir`; `base_cuboid` is the cube's base cuboid id (to count fallbacks).
pub fn run(
    addr: &str,
    source_dir: &Path,
    queries: &[AdhocQuery],
    seed: u64,
    runs: usize,
    base_cuboid: u64,
    spill_dir: &Path,
) -> anyhow::Result<AdhocReport> {
    let tmp = std::env::temp_dir().join(format!("qilin-bench-adhoc-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    std::fs::create_dir_all(spill_dir)?;
    let spec = tmp.join("spec.json");
    let script = tmp.join("adhoc.py");
    std::fs::write(&script, SCRIPT)?;
    let list: Vec<serde_json::Value> = queries
        .iter()
        .map(|q| serde_json::json!({"id": q.id, "sql": q.sql, "dims": q.dimensions.len()}))
        .collect();
    std::fs::write(
        &spec,
        serde_json::to_string(&serde_json::json!({
            "uri": format!("grpc://{addr}"),
            "dir": source_dir.to_string_lossy(),
            "tables": qilin_engine::sample::ssb::TABLES,
            "queries": list,
            "runs": runs,
            "temp": spill_dir.to_string_lossy(),
        }))?,
    )?;
    eprintln!(
        "ad-hoc mode: {} queries (seed {seed}) through ADBC and on DuckDB ...",
        queries.len()
    );
    let out = Command::new("python3")
        .arg(&script)
        .arg(&spec)
        .stderr(std::process::Stdio::inherit())
        .output();
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(spill_dir);
    let out = out.context("running python3")?;
    if !out.status.success() {
        bail!(
            "the ad-hoc script failed ({}); it needs python3 with adbc_driver_flightsql, pyarrow and duckdb",
            out.status
        );
    }
    let parsed: ScriptOut =
        serde_json::from_slice(&out.stdout).context("parsing the ad-hoc script's output")?;
    let by_id: BTreeMap<&str, &AdhocQuery> = queries.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut results = Vec::new();
    for r in parsed.queries {
        let q = by_id
            .get(r.id.as_str())
            .with_context(|| format!("unknown query id {} in the script's output", r.id))?;
        results.push(result(q, r, base_cuboid));
    }
    Ok(summarize(seed, runs, parsed.duckdb_version, results))
}

fn sorted_median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    Some(median(&v))
}

fn result(q: &AdhocQuery, r: ScriptQuery, base_cuboid: u64) -> AdhocResult {
    let row = |k: &str| {
        r.explain
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let cuboid = row("cuboid")
        .or_else(|| row("realization"))
        .or_else(|| row("error"))
        .unwrap_or_default();
    let base_cuboid = cuboid.starts_with(&format!("cuboid {base_cuboid} "));
    let qilin_ms = sorted_median(&r.qilin_ms);
    let duckdb_ms = sorted_median(&r.duckdb_ms).unwrap_or(r.duckdb_first_ms);
    AdhocResult {
        id: r.id,
        sql: q.sql.clone(),
        dimensions: q.dimensions.clone(),
        filters: q.filters.clone(),
        group: q.group,
        rows: r.rows,
        duckdb_rows: r.duckdb_rows,
        qilin_checksum: r.checksum,
        duckdb_checksum: r.duckdb_checksum,
        qilin_ms,
        duckdb_ms,
        qilin_first_ms: r.qilin_first_ms,
        duckdb_first_ms: r.duckdb_first_ms,
        ratio: qilin_ms.map(|q| if duckdb_ms > 0.0 { q / duckdb_ms } else { 0.0 }),
        cuboid,
        blocks: row("blocks").unwrap_or_default(),
        base_cuboid,
        explain: r.explain,
        error: r.error,
        mismatch: r.mismatch,
    }
}

/// The percentiles, counts and worst queries of `results`.
pub fn summarize(
    seed: u64,
    runs: usize,
    duckdb_version: String,
    results: Vec<AdhocResult>,
) -> AdhocReport {
    let answered: Vec<&AdhocResult> = results.iter().filter(|r| r.qilin_ms.is_some()).collect();
    let q: Vec<f64> = answered.iter().filter_map(|r| r.qilin_ms).collect();
    let d: Vec<f64> = answered.iter().map(|r| r.duckdb_ms).collect();
    let ratios: Vec<f64> = answered.iter().filter_map(|r| r.ratio).collect();
    let (qilin, duckdb) = (Percentiles::of(&q), Percentiles::of(&d));
    let mut worst: Vec<&AdhocResult> = answered.clone();
    worst.sort_by(|a, b| b.ratio.unwrap_or(0.0).total_cmp(&a.ratio.unwrap_or(0.0)));
    AdhocReport {
        seed,
        queries: results.len(),
        runs,
        duckdb_version,
        p99_ratio: if duckdb.p99_ms > 0.0 {
            qilin.p99_ms / duckdb.p99_ms
        } else {
            0.0
        },
        qilin,
        duckdb,
        ratio: Percentiles::of(&ratios),
        slower_than_duckdb: ratios.iter().filter(|&&r| r > 1.0).count(),
        qilin_over_1s: q.iter().filter(|&&t| t > 1000.0).count(),
        duckdb_over_1s: results.iter().filter(|r| r.duckdb_ms > 1000.0).count(),
        base_cuboid_queries: results.iter().filter(|r| r.base_cuboid).count(),
        mismatches: results.iter().filter(|r| r.mismatch.is_some()).count(),
        errors: results.iter().filter(|r| r.error.is_some()).count(),
        worst: worst.iter().take(WORST).map(|r| r.id.clone()).collect(),
        results,
    }
}

impl AdhocReport {
    /// The printed lines.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ad-hoc mode: {} queries (seed {}), median of {} run(s) after 1 compared run, ADBC vs DuckDB {}",
            self.queries, self.seed, self.runs, self.duckdb_version
        );
        let _ = writeln!(
            s,
            "  {:<8} {:>10} {:>10} {:>10} {:>10} {:>11}",
            "", "p50 ms", "p95 ms", "p99 ms", "max ms", "total ms"
        );
        for (name, p) in [("qilin", &self.qilin), ("duckdb", &self.duckdb)] {
            let _ = writeln!(
                s,
                "  {name:<8} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>11.1}",
                p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.total_ms
            );
        }
        let r = &self.ratio;
        let _ = writeln!(
            s,
            "  ratio qilin/duckdb per query: p50 {:.3}, p95 {:.3}, p99 {:.3}, max {:.3}; p99/p99 {:.3}",
            r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, self.p99_ratio
        );
        let _ = writeln!(
            s,
            "  slower than DuckDB: {}; over 1 s: qilin {}, duckdb {}; read the base cuboid: {}; \
             mismatches: {}; errors: {}",
            self.slower_than_duckdb,
            self.qilin_over_1s,
            self.duckdb_over_1s,
            self.base_cuboid_queries,
            self.mismatches,
            self.errors
        );
        for id in &self.worst {
            let Some(r) = self.results.iter().find(|r| &r.id == id) else {
                continue;
            };
            let _ = writeln!(
                s,
                "  worst {}: qilin {:.2} ms, duckdb {:.2} ms, ratio {:.2}; {}; blocks {}\n    {}",
                r.id,
                r.qilin_ms.unwrap_or(0.0),
                r.duckdb_ms,
                r.ratio.unwrap_or(0.0),
                r.cuboid,
                r.blocks,
                r.sql
            );
        }
        for r in self
            .results
            .iter()
            .filter(|r| r.error.is_some() || r.mismatch.is_some())
        {
            let _ = writeln!(
                s,
                "  FAILED {}: {}\n    {}",
                r.id,
                r.error.as_deref().or(r.mismatch.as_deref()).unwrap_or(""),
                r.sql
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_distinct() {
        let a = generate(7, 200).unwrap();
        let b = generate(7, 200).unwrap();
        assert_eq!(a, b, "same seed, same queries");
        let distinct: HashSet<&str> = a.iter().map(|q| q.sql.as_str()).collect();
        assert_eq!(distinct.len(), 200, "all distinct");
        let c = generate(8, 200).unwrap();
        assert_ne!(a, c, "another seed, other queries");
        // A prefix of a longer list is the shorter list.
        assert_eq!(generate(7, 50).unwrap(), a[..50].to_vec());
    }

    #[test]
    fn shapes_cover_the_cube() {
        let qs = generate(DEFAULT_SEED, 100).unwrap();
        let groups: BTreeSet<Option<usize>> = qs.iter().map(|q| q.group).collect();
        assert_eq!(
            groups.len(),
            6,
            "every group and the cross-group draw: {groups:?}"
        );
        let derived = qs
            .iter()
            .filter(|q| {
                q.filters
                    .iter()
                    .any(|f| DERIVED_DATES.contains(&f.as_str()))
            })
            .count();
        assert!(
            derived >= 5,
            "{derived} queries filter a derived date column"
        );
        for needle in [" IN (", " BETWEEN ", " = ", "COUNT(DISTINCT", "COUNT(*)"] {
            assert!(
                qs.iter().any(|q| q.sql.contains(needle)),
                "no query has {needle}"
            );
        }
        assert!(qs.iter().any(|q| q.dimensions.is_empty()));
        assert!(qs.iter().any(|q| q.dimensions.len() >= 3));
    }

    /// Every query parses with DataFusion's SQL parser, names only columns of the generated
    /// SSB tables, plans and runs (on a tiny generation).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_plan_and_run_on_datafusion() {
        let dir = tempfile::tempdir().unwrap();
        qilin_engine::sample::ssbgen::generate_ssb(0.001, dir.path())
            .await
            .unwrap();
        let ctx = crate::workload::datafusion_context(dir.path())
            .await
            .unwrap();
        for q in generate(DEFAULT_SEED, 100).unwrap() {
            let statements = datafusion::sql::parser::DFParser::parse_sql(&q.sql)
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", q.id, q.sql));
            assert_eq!(statements.len(), 1, "{}", q.sql);
            let df = ctx
                .sql(&q.sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", q.id, q.sql));
            let width = df.schema().fields().len();
            assert!(
                width > q.dimensions.len(),
                "{}: measures after the dimensions",
                q.id
            );
            df.collect()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", q.id, q.sql));
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(p.total_ms, 5050.0);
    }
}
