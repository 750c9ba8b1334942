//! Tables, rows and HBase semantics, without the network or the snapshot file.
//!
//! Changes are two-step so that they can be logged before they are applied: a `plan_*`
//! method validates a request against the current state (`&self`) and returns the
//! [`Record`]s that describe its effect; [`Store::apply`] (infallible) applies a record.
//! Replaying a snapshot applies the same records, so replay is deterministic: records hold
//! resolved timestamps and values (an increment is logged as the put of its result).
//!
//! One version per cell: a put replaces the cell when its timestamp is at least the
//! stored one (so the later of two writes in the same millisecond wins, as in HBase); a put
//! with an older timestamp than the stored cell is dropped, where HBase would keep it as an
//! older version. Reads with a time bound return the single stored version if it is older
//! than the bound and nothing otherwise.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

pub type Bytes = Vec<u8>;

/// HBase's limit on a row key (`Short.MAX_VALUE`).
pub const MAX_ROW_LENGTH: usize = i16::MAX as usize;

/// HBase's default `hbase.client.keyvalue.maxsize` (10 MiB): larger cells are refused.
pub const MAX_CELL_BYTES: usize = 10 * 1024 * 1024;

/// `LATEST_TIMESTAMP`: a delete bound that removes every version.
pub const LATEST: i64 = i64::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Reported as Thrift `IOError` (HBase's IOExceptions: TableNotFound, NoSuchColumnFamily…).
    Io(String),
    /// Reported as Thrift `IllegalArgument`.
    IllegalArgument(String),
    /// Reported as Thrift `AlreadyExists`.
    AlreadyExists(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A column family as created (the name without the trailing ':').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub name: Bytes,
    pub max_versions: i32,
    pub compression: String,
    pub in_memory: bool,
    pub bloom_filter_type: String,
    pub block_cache_enabled: bool,
    pub time_to_live: i32,
}

impl Family {
    /// A family with HBase's defaults.
    pub fn named(name: &[u8]) -> Family {
        Family {
            name: name.to_vec(),
            max_versions: 3,
            compression: "NONE".into(),
            in_memory: false,
            bloom_filter_type: "NONE".into(),
            block_cache_enabled: false,
            time_to_live: i32::MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub value: Bytes,
    pub ts: i64,
}

/// Cells of a row keyed by (family, qualifier), which is HBase's column order.
pub type Row = BTreeMap<(Bytes, Bytes), Cell>;

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub families: Vec<Family>,
    pub enabled: bool,
    /// Creation time (ms), used as the region id.
    pub created: i64,
    pub rows: BTreeMap<Bytes, Row>,
}

impl Table {
    pub fn has_family(&self, family: &[u8]) -> bool {
        self.families.iter().any(|f| f.name == family)
    }
}

/// One effect on one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        family: Bytes,
        qualifier: Bytes,
        value: Bytes,
        ts: i64,
    },
    /// Removes the cell if its timestamp is ≤ `max_ts`.
    DeleteColumn {
        family: Bytes,
        qualifier: Bytes,
        max_ts: i64,
    },
    DeleteFamily {
        family: Bytes,
        max_ts: i64,
    },
    DeleteRow {
        max_ts: i64,
    },
}

/// An acknowledged change, as logged to the snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    CreateTable {
        name: Bytes,
        families: Vec<Family>,
        created: i64,
    },
    DeleteTable {
        name: Bytes,
    },
    SetEnabled {
        name: Bytes,
        enabled: bool,
    },
    Mutate {
        table: Bytes,
        row: Bytes,
        ops: Vec<Op>,
    },
}

/// A column reference as Thrift1 clients write it: `family:qualifier`, or `family` /
/// `family:` (no qualifier: the whole family for reads and deletes, the empty qualifier for
/// increments and checkAndPut), like HBase's `CellUtil.parseColumn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub family: Bytes,
    pub qualifier: Option<Bytes>,
}

pub fn parse_column(c: &[u8]) -> Column {
    match c.iter().position(|&b| b == b':') {
        Some(i) if i + 1 < c.len() => Column {
            family: c[..i].to_vec(),
            qualifier: Some(c[i + 1..].to_vec()),
        },
        Some(i) => Column {
            family: c[..i].to_vec(),
            qualifier: None,
        },
        None => Column {
            family: c.to_vec(),
            qualifier: None,
        },
    }
}

/// `family:qualifier`, the key of `TRowResult.columns`.
pub fn column_name(family: &[u8], qualifier: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(family.len() + 1 + qualifier.len());
    v.extend_from_slice(family);
    v.push(b':');
    v.extend_from_slice(qualifier);
    v
}

/// Which cells a read returns.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Empty: all columns.
    pub columns: Vec<Column>,
    /// Exclusive upper bound on cell timestamps (the `*Ts` reads).
    pub before_ts: Option<i64>,
}

impl Selection {
    pub fn columns(columns: &[Bytes]) -> Selection {
        Selection {
            columns: columns.iter().map(|c| parse_column(c)).collect(),
            before_ts: None,
        }
    }

    fn wants(&self, family: &[u8], qualifier: &[u8], cell: &Cell) -> bool {
        if self.before_ts.is_some_and(|t| cell.ts >= t) {
            return false;
        }
        self.columns.is_empty()
            || self.columns.iter().any(|c| {
                c.family == family && c.qualifier.as_deref().is_none_or(|q| q == qualifier)
            })
    }

    fn check_families(&self, table: &Table, name: &[u8]) -> Result<()> {
        for c in &self.columns {
            if !table.has_family(&c.family) {
                return Err(no_such_family(name, &c.family));
            }
        }
        Ok(())
    }

    fn project(&self, row_key: &[u8], row: &Row) -> Option<RowResult> {
        let cells: Vec<(Bytes, Bytes, Cell)> = row
            .iter()
            .filter(|((f, q), c)| self.wants(f, q, c))
            .map(|((f, q), c)| (f.clone(), q.clone(), c.clone()))
            .collect();
        (!cells.is_empty()).then(|| RowResult {
            row: row_key.to_vec(),
            cells,
        })
    }
}

/// A row as read: its cells in (family, qualifier) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowResult {
    pub row: Bytes,
    pub cells: Vec<(Bytes, Bytes, Cell)>,
}

/// A mutation as a Thrift1 client sends it.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub is_delete: bool,
    pub column: Bytes,
    pub value: Bytes,
}

/// What a scanner returns.
#[derive(Debug, Clone, Default)]
pub struct ScanSpec {
    pub start: Bytes,
    /// Exclusive; empty: to the end of the table.
    pub stop: Bytes,
    /// Only rows starting with this (PrefixFilter / scannerOpenWithPrefix).
    pub prefix: Option<Bytes>,
    pub selection: Selection,
    pub sort_columns: bool,
}

#[derive(Debug, Clone)]
struct Scanner {
    table: Bytes,
    spec: ScanSpec,
    /// The last row examined; the scan resumes strictly after it.
    last: Option<Bytes>,
}

#[derive(Debug, Default)]
pub struct Store {
    tables: BTreeMap<Bytes, Table>,
    scanners: HashMap<i32, Scanner>,
    next_scanner: i32,
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn not_found(name: &[u8]) -> Error {
    Error::Io(format!(
        "org.apache.hadoop.hbase.TableNotFoundException: {}",
        show(name)
    ))
}

fn no_such_family(table: &[u8], family: &[u8]) -> Error {
    Error::Io(format!(
        "org.apache.hadoop.hbase.regionserver.NoSuchColumnFamilyException: Column family {} does not exist in region of table {}",
        show(family),
        show(table)
    ))
}

fn check_row(row: &[u8]) -> Result<()> {
    if row.is_empty() {
        return Err(Error::IllegalArgument(
            "java.lang.IllegalArgumentException: Row length is 0".into(),
        ));
    }
    if row.len() > MAX_ROW_LENGTH {
        return Err(Error::IllegalArgument(format!(
            "java.lang.IllegalArgumentException: Row length {} is > {MAX_ROW_LENGTH}",
            row.len()
        )));
    }
    Ok(())
}

fn check_cell_size(row: &[u8], family: &[u8], qualifier: &[u8], value: &[u8]) -> Result<()> {
    let size = row.len() + family.len() + qualifier.len() + value.len();
    if size > MAX_CELL_BYTES {
        return Err(Error::IllegalArgument(format!(
            "java.lang.IllegalArgumentException: KeyValue size too large ({size} > {MAX_CELL_BYTES})"
        )));
    }
    Ok(())
}

fn valid_table_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name[0] != b'.'
        && name[0] != b'-'
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

impl Store {
    pub fn new() -> Store {
        Store {
            next_scanner: 1,
            ..Store::default()
        }
    }

    // ---- tables -------------------------------------------------------------------------

    pub fn table(&self, name: &[u8]) -> Result<&Table> {
        self.tables.get(name).ok_or_else(|| not_found(name))
    }

    /// The table if it exists and is enabled (TableNotEnabledException otherwise).
    pub fn enabled_table(&self, name: &[u8]) -> Result<&Table> {
        let t = self.table(name)?;
        if !t.enabled {
            return Err(Error::Io(format!(
                "org.apache.hadoop.hbase.TableNotEnabledException: {} is disabled.",
                show(name)
            )));
        }
        Ok(t)
    }

    pub fn tables(&self) -> impl Iterator<Item = (&Bytes, &Table)> {
        self.tables.iter()
    }

    pub fn plan_create_table(
        &self,
        name: &[u8],
        families: Vec<Family>,
        now: i64,
    ) -> Result<Record> {
        if !valid_table_name(name) {
            return Err(Error::IllegalArgument(format!(
                "java.lang.IllegalArgumentException: Illegal table name: {}",
                show(name)
            )));
        }
        if self.tables.contains_key(name) {
            return Err(Error::AlreadyExists(format!(
                "table name already in use: {}",
                show(name)
            )));
        }
        if families.is_empty() {
            return Err(Error::IllegalArgument(
                "java.lang.IllegalArgumentException: Table should have at least one column family."
                    .into(),
            ));
        }
        let mut sorted: Vec<Family> = Vec::new();
        for f in families {
            if f.name.is_empty()
                || f.name[0] == b'.'
                || f.name.iter().any(|&b| b == b':' || b.is_ascii_control())
            {
                return Err(Error::IllegalArgument(format!(
                    "java.lang.IllegalArgumentException: Illegal column family name: {}",
                    show(&f.name)
                )));
            }
            if sorted.iter().any(|s| s.name == f.name) {
                return Err(Error::IllegalArgument(format!(
                    "java.lang.IllegalArgumentException: Family '{}' already exists so cannot be added",
                    show(&f.name)
                )));
            }
            sorted.push(f);
        }
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Record::CreateTable {
            name: name.to_vec(),
            families: sorted,
            created: now,
        })
    }

    pub fn plan_delete_table(&self, name: &[u8]) -> Result<Record> {
        if self.table(name)?.enabled {
            return Err(Error::Io(format!(
                "org.apache.hadoop.hbase.TableNotDisabledException: {}",
                show(name)
            )));
        }
        Ok(Record::DeleteTable {
            name: name.to_vec(),
        })
    }

    /// Like HBase, enabling an enabled table (or disabling a disabled one) is an error.
    pub fn plan_set_enabled(&self, name: &[u8], enabled: bool) -> Result<Record> {
        let t = self.table(name)?;
        if t.enabled == enabled {
            let ex = if enabled {
                "TableNotDisabledException"
            } else {
                "TableNotEnabledException"
            };
            return Err(Error::Io(format!(
                "org.apache.hadoop.hbase.{ex}: {}",
                show(name)
            )));
        }
        Ok(Record::SetEnabled {
            name: name.to_vec(),
            enabled,
        })
    }

    // ---- reads --------------------------------------------------------------------------

    /// The cells of one column (`family:qualifier`) or family (`family`) of a row.
    pub fn get_cells(
        &self,
        table: &[u8],
        row: &[u8],
        column: &[u8],
        before_ts: Option<i64>,
    ) -> Result<Vec<Cell>> {
        let sel = Selection {
            columns: vec![parse_column(column)],
            before_ts,
        };
        Ok(self
            .get_rows(table, std::slice::from_ref(&row.to_vec()), &sel)?
            .into_iter()
            .flat_map(|r| r.cells.into_iter().map(|(_, _, c)| c))
            .collect())
    }

    /// The existing rows among `rows` (in request order), with the selected cells; rows
    /// with no selected cell are left out, like HBase's Thrift1 server does.
    pub fn get_rows(
        &self,
        table: &[u8],
        rows: &[Bytes],
        sel: &Selection,
    ) -> Result<Vec<RowResult>> {
        let t = self.enabled_table(table)?;
        sel.check_families(t, table)?;
        let mut out = Vec::new();
        for r in rows {
            if r.is_empty() {
                return Err(Error::IllegalArgument(
                    "java.lang.IllegalArgumentException: Row length is 0".into(),
                ));
            }
            if let Some(row) = t.rows.get(r) {
                out.extend(sel.project(r, row));
            }
        }
        Ok(out)
    }

    // ---- writes -------------------------------------------------------------------------

    /// A mutateRow: deletes and puts of one row. `ts`: the timestamp of the `*Ts` variants
    /// (puts get it, deletes remove versions up to it); otherwise puts get `now` and deletes
    /// remove every version. Like HBase's Thrift1 server, the deletes apply before the puts,
    /// and a put without a qualifier (`family` or `family:`) is ignored with a warning.
    pub fn plan_mutate_row(
        &self,
        table: &[u8],
        row: &[u8],
        mutations: &[Mutation],
        ts: Option<i64>,
        now: i64,
    ) -> Result<Option<Record>> {
        let t = self.enabled_table(table)?;
        check_row(row)?;
        let mut deletes = Vec::new();
        let mut puts = Vec::new();
        for m in mutations {
            let c = parse_column(&m.column);
            if !t.has_family(&c.family) {
                return Err(no_such_family(table, &c.family));
            }
            if m.is_delete {
                deletes.push(delete_op(c, ts.unwrap_or(LATEST)));
            } else if let Some(qualifier) = c.qualifier {
                check_cell_size(row, &c.family, &qualifier, &m.value)?;
                puts.push(Op::Put {
                    family: c.family,
                    qualifier,
                    value: m.value.clone(),
                    ts: ts.unwrap_or(now),
                });
            } else {
                eprintln!(
                    "hbase-thrift-emulator: WARN No column qualifier specified in a put to {}; ignored like HBase does (only deletes may address a whole family)",
                    show(&m.column)
                );
            }
        }
        deletes.extend(puts);
        Ok((!deletes.is_empty()).then(|| Record::Mutate {
            table: table.to_vec(),
            row: row.to_vec(),
            ops: deletes,
        }))
    }

    /// deleteAll / deleteAllTs: one column, or a whole family if `column` has no qualifier.
    pub fn plan_delete_all(
        &self,
        table: &[u8],
        row: &[u8],
        column: &[u8],
        ts: Option<i64>,
    ) -> Result<Record> {
        let t = self.enabled_table(table)?;
        check_row(row)?;
        let c = parse_column(column);
        if !t.has_family(&c.family) {
            return Err(no_such_family(table, &c.family));
        }
        Ok(Record::Mutate {
            table: table.to_vec(),
            row: row.to_vec(),
            ops: vec![delete_op(c, ts.unwrap_or(LATEST))],
        })
    }

    /// deleteAllRow / deleteAllRowTs.
    pub fn plan_delete_row(&self, table: &[u8], row: &[u8], ts: Option<i64>) -> Result<Record> {
        self.enabled_table(table)?;
        check_row(row)?;
        Ok(Record::Mutate {
            table: table.to_vec(),
            row: row.to_vec(),
            ops: vec![Op::DeleteRow {
                max_ts: ts.unwrap_or(LATEST),
            }],
        })
    }

    fn current<'a>(
        &'a self,
        table: &[u8],
        row: &[u8],
        family: &[u8],
        qualifier: &[u8],
    ) -> Option<&'a Cell> {
        self.tables
            .get(table)?
            .rows
            .get(row)?
            .get(&(family.to_vec(), qualifier.to_vec()))
    }

    /// atomicIncrement: the cell holds an 8-byte big-endian i64 (absent = 0). Returns the
    /// new value and its put.
    pub fn plan_increment(
        &self,
        table: &[u8],
        row: &[u8],
        column: &[u8],
        amount: i64,
        now: i64,
    ) -> Result<(i64, Record)> {
        let t = self.enabled_table(table)?;
        check_row(row)?;
        let c = parse_column(column);
        if !t.has_family(&c.family) {
            return Err(no_such_family(table, &c.family));
        }
        let qualifier = c.qualifier.unwrap_or_default();
        let old = match self.current(table, row, &c.family, &qualifier) {
            None => 0,
            Some(cell) => {
                let bytes: [u8; 8] = cell.value.as_slice().try_into().map_err(|_| {
                    Error::IllegalArgument(format!(
                        "org.apache.hadoop.hbase.DoNotRetryIOException: Field is not a long, it's {} bytes wide",
                        cell.value.len()
                    ))
                })?;
                i64::from_be_bytes(bytes)
            }
        };
        let new = old.wrapping_add(amount);
        let ts = self
            .current(table, row, &c.family, &qualifier)
            .map_or(now, |cell| now.max(cell.ts));
        Ok((
            new,
            Record::Mutate {
                table: table.to_vec(),
                row: row.to_vec(),
                ops: vec![Op::Put {
                    family: c.family,
                    qualifier,
                    value: new.to_be_bytes().to_vec(),
                    ts,
                }],
            },
        ))
    }

    /// append: concatenates each value to its column's current value. Returns the new cells.
    pub fn plan_append(
        &self,
        table: &[u8],
        row: &[u8],
        columns: &[Bytes],
        values: &[Bytes],
        now: i64,
    ) -> Result<(Vec<Cell>, Option<Record>)> {
        let t = self.enabled_table(table)?;
        check_row(row)?;
        if columns.len() != values.len() {
            return Err(Error::IllegalArgument(
                "the number of columns and values differ".into(),
            ));
        }
        let mut ops = Vec::new();
        let mut cells = Vec::new();
        for (col, val) in columns.iter().zip(values) {
            let c = parse_column(col);
            if !t.has_family(&c.family) {
                return Err(no_such_family(table, &c.family));
            }
            let qualifier = c.qualifier.unwrap_or_default();
            let old = self.current(table, row, &c.family, &qualifier);
            let mut value = old.map(|c| c.value.clone()).unwrap_or_default();
            value.extend_from_slice(val);
            check_cell_size(row, &c.family, &qualifier, &value)?;
            let ts = old.map_or(now, |c| now.max(c.ts));
            cells.push(Cell {
                value: value.clone(),
                ts,
            });
            ops.push(Op::Put {
                family: c.family,
                qualifier,
                value,
                ts,
            });
        }
        let rec = (!ops.is_empty()).then(|| Record::Mutate {
            table: table.to_vec(),
            row: row.to_vec(),
            ops,
        });
        Ok((cells, rec))
    }

    /// checkAndPut: applies `put` (a column and value) if `column` of `row` holds `expected`;
    /// an empty `expected` matches a column that does not exist or holds an empty value
    /// (HBase's rule for a null/empty comparator value).
    #[allow(clippy::too_many_arguments)]
    pub fn plan_check_and_put(
        &self,
        table: &[u8],
        row: &[u8],
        column: &[u8],
        expected: &[u8],
        put_column: &[u8],
        put_value: &[u8],
        now: i64,
    ) -> Result<(bool, Option<Record>)> {
        let t = self.enabled_table(table)?;
        check_row(row)?;
        let check = parse_column(column);
        let put = parse_column(put_column);
        for f in [&check.family, &put.family] {
            if !t.has_family(f) {
                return Err(no_such_family(table, f));
            }
        }
        let put_qualifier = put.qualifier.unwrap_or_default();
        check_cell_size(row, &put.family, &put_qualifier, put_value)?;
        let current = self.current(
            table,
            row,
            &check.family,
            check.qualifier.as_deref().unwrap_or_default(),
        );
        let matches = match current {
            None => expected.is_empty(),
            Some(c) => c.value == expected,
        };
        if !matches {
            return Ok((false, None));
        }
        let ts = self
            .current(table, row, &put.family, &put_qualifier)
            .map_or(now, |c| now.max(c.ts));
        Ok((
            true,
            Some(Record::Mutate {
                table: table.to_vec(),
                row: row.to_vec(),
                ops: vec![Op::Put {
                    family: put.family,
                    qualifier: put_qualifier,
                    value: put_value.to_vec(),
                    ts,
                }],
            }),
        ))
    }

    // ---- applying records ---------------------------------------------------------------

    /// Applies a planned (or replayed) change. Records that no longer fit the state (a
    /// mutation of a table that is gone) are ignored.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::CreateTable {
                name,
                families,
                created,
            } => {
                self.tables.insert(
                    name.clone(),
                    Table {
                        families: families.clone(),
                        enabled: true,
                        created: *created,
                        rows: BTreeMap::new(),
                    },
                );
            }
            Record::DeleteTable { name } => {
                self.tables.remove(name);
            }
            Record::SetEnabled { name, enabled } => {
                if let Some(t) = self.tables.get_mut(name) {
                    t.enabled = *enabled;
                }
            }
            Record::Mutate { table, row, ops } => {
                let Some(t) = self.tables.get_mut(table) else {
                    return;
                };
                let cells = t.rows.entry(row.clone()).or_default();
                for op in ops {
                    apply_op(cells, op);
                }
                if cells.is_empty() {
                    t.rows.remove(row);
                }
            }
        }
    }

    /// The whole state as records (for compaction), one table or row at a time.
    pub fn for_each_record<E>(
        &self,
        mut f: impl FnMut(&Record) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        for (name, t) in &self.tables {
            f(&Record::CreateTable {
                name: name.clone(),
                families: t.families.clone(),
                created: t.created,
            })?;
            for (row, cells) in &t.rows {
                let ops = cells
                    .iter()
                    .map(|((family, qualifier), c)| Op::Put {
                        family: family.clone(),
                        qualifier: qualifier.clone(),
                        value: c.value.clone(),
                        ts: c.ts,
                    })
                    .collect();
                f(&Record::Mutate {
                    table: name.clone(),
                    row: row.clone(),
                    ops,
                })?;
            }
            if !t.enabled {
                f(&Record::SetEnabled {
                    name: name.clone(),
                    enabled: false,
                })?;
            }
        }
        Ok(())
    }

    // ---- scanners (not persisted) -------------------------------------------------------

    pub fn open_scanner(&mut self, table: &[u8], spec: ScanSpec) -> Result<i32> {
        let t = self.enabled_table(table)?;
        spec.selection.check_families(t, table)?;
        let id = self.next_scanner;
        self.next_scanner = self.next_scanner.checked_add(1).unwrap_or(1);
        self.scanners.insert(
            id,
            Scanner {
                table: table.to_vec(),
                spec,
                last: None,
            },
        );
        Ok(id)
    }

    /// Up to `n` more rows of scanner `id`, read from the live table after the cursor.
    pub fn scanner_next(&mut self, id: i32, n: i32) -> Result<Vec<RowResult>> {
        let scanner = self
            .scanners
            .get(&id)
            .ok_or_else(|| Error::IllegalArgument("scanner ID is invalid".into()))?;
        let t = self.enabled_table(&scanner.table)?;
        let spec = &scanner.spec;
        let lower: Bound<&[u8]> = match &scanner.last {
            Some(last) => Bound::Excluded(last.as_slice()),
            None => Bound::Included(spec.start.as_slice()),
        };
        let upper: Bound<&[u8]> = if spec.stop.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(spec.stop.as_slice())
        };
        let mut out = Vec::new();
        let mut last = None;
        if n > 0
            && !matches!((lower, upper), (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b)) if a >= b)
        {
            for (key, row) in t.rows.range::<[u8], _>((lower, upper)) {
                if let Some(p) = &spec.prefix {
                    if !key.starts_with(p) {
                        if key.as_slice() > p.as_slice() {
                            break; // past every row with the prefix
                        }
                        continue;
                    }
                }
                last = Some(key.clone());
                if let Some(r) = spec.selection.project(key, row) {
                    out.push(r);
                    if out.len() >= n as usize {
                        break;
                    }
                }
            }
        }
        if let Some(last) = last {
            if let Some(s) = self.scanners.get_mut(&id) {
                s.last = Some(last);
            }
        }
        Ok(out)
    }

    pub fn scanner_sorts_columns(&self, id: i32) -> bool {
        self.scanners.get(&id).is_some_and(|s| s.spec.sort_columns)
    }

    pub fn close_scanner(&mut self, id: i32) -> Result<()> {
        self.scanners
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| Error::IllegalArgument("scanner ID is invalid".into()))
    }
}

fn delete_op(c: Column, max_ts: i64) -> Op {
    match c.qualifier {
        Some(qualifier) => Op::DeleteColumn {
            family: c.family,
            qualifier,
            max_ts,
        },
        None => Op::DeleteFamily {
            family: c.family,
            max_ts,
        },
    }
}

fn apply_op(cells: &mut Row, op: &Op) {
    match op {
        Op::Put {
            family,
            qualifier,
            value,
            ts,
        } => {
            let key = (family.clone(), qualifier.clone());
            match cells.get_mut(&key) {
                Some(c) if c.ts > *ts => {} // an older version: HBase would keep it hidden
                Some(c) => {
                    c.value = value.clone();
                    c.ts = *ts;
                }
                None => {
                    cells.insert(
                        key,
                        Cell {
                            value: value.clone(),
                            ts: *ts,
                        },
                    );
                }
            }
        }
        Op::DeleteColumn {
            family,
            qualifier,
            max_ts,
        } => {
            let key = (family.clone(), qualifier.clone());
            if cells.get(&key).is_some_and(|c| c.ts <= *max_ts) {
                cells.remove(&key);
            }
        }
        Op::DeleteFamily { family, max_ts } => {
            cells.retain(|(f, _), c| f != family || c.ts > *max_ts);
        }
        Op::DeleteRow { max_ts } => {
            cells.retain(|_, c| c.ts > *max_ts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(table: &[u8], families: &[&[u8]]) -> Store {
        let mut s = Store::new();
        let r = s
            .plan_create_table(
                table,
                families.iter().map(|f| Family::named(f)).collect(),
                1,
            )
            .unwrap();
        s.apply(&r);
        s
    }

    fn put(s: &mut Store, row: &[u8], col: &[u8], value: &[u8], now: i64) {
        let m = Mutation {
            is_delete: false,
            column: col.to_vec(),
            value: value.to_vec(),
        };
        let r = s
            .plan_mutate_row(b"t", row, &[m], None, now)
            .unwrap()
            .unwrap();
        s.apply(&r);
    }

    #[test]
    fn table_admin_errors() {
        let mut s = store_with(b"t", &[b"f"]);
        assert!(matches!(
            s.plan_create_table(b"t", vec![Family::named(b"f")], 2),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            s.plan_create_table(b"u", vec![], 2),
            Err(Error::IllegalArgument(_))
        ));
        assert!(matches!(s.plan_delete_table(b"t"), Err(Error::Io(_))));
        let Err(Error::Io(m)) = s.plan_delete_table(b"nope") else {
            panic!()
        };
        assert!(m.contains("TableNotFoundException: nope"), "{m}");
        let r = s.plan_set_enabled(b"t", false).unwrap();
        s.apply(&r);
        assert!(s
            .get_rows(b"t", &[b"r".to_vec()], &Selection::default())
            .is_err());
        let r = s.plan_delete_table(b"t").unwrap();
        s.apply(&r);
        assert_eq!(s.tables().count(), 0);
    }

    #[test]
    fn puts_deletes_and_versions() {
        let mut s = store_with(b"t", &[b"a", b"b"]);
        put(&mut s, b"r", b"a:x", b"1", 10);
        put(&mut s, b"r", b"b:y", b"2", 10);
        // An older timestamp loses, an equal one wins.
        let old = Mutation {
            is_delete: false,
            column: b"a:x".to_vec(),
            value: b"old".to_vec(),
        };
        let r = s
            .plan_mutate_row(b"t", b"r", &[old], Some(5), 0)
            .unwrap()
            .unwrap();
        s.apply(&r);
        put(&mut s, b"r", b"a:x", b"3", 10);
        let rows = s
            .get_rows(b"t", &[b"r".to_vec()], &Selection::default())
            .unwrap();
        assert_eq!(rows[0].cells.len(), 2);
        assert_eq!(rows[0].cells[0].2.value, b"3");
        // A put to an unknown family fails.
        let bad = Mutation {
            is_delete: false,
            column: b"zz:x".to_vec(),
            value: vec![],
        };
        assert!(matches!(
            s.plan_mutate_row(b"t", b"r", &[bad], None, 1),
            Err(Error::Io(_))
        ));
        // Family delete.
        let d = s.plan_delete_all(b"t", b"r", b"a", None).unwrap();
        s.apply(&d);
        let cells = s.get_cells(b"t", b"r", b"b:y", None).unwrap();
        assert_eq!(
            cells,
            vec![Cell {
                value: b"2".to_vec(),
                ts: 10
            }]
        );
        assert!(s.get_cells(b"t", b"r", b"a:x", None).unwrap().is_empty());
        let d = s.plan_delete_row(b"t", b"r", None).unwrap();
        s.apply(&d);
        assert!(s
            .get_rows(b"t", &[b"r".to_vec()], &Selection::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn scanner_sees_live_rows_in_byte_order() {
        let mut s = store_with(b"t", &[b"f"]);
        for k in [&b"\xff"[..], b"\x00", b"a", b"ab", b"b"] {
            put(&mut s, k, b"f:q", k, 1);
        }
        let id = s.open_scanner(b"t", ScanSpec::default()).unwrap();
        let first: Vec<Bytes> = s
            .scanner_next(id, 2)
            .unwrap()
            .into_iter()
            .map(|r| r.row)
            .collect();
        assert_eq!(first, vec![b"\x00".to_vec(), b"a".to_vec()]);
        put(&mut s, b"aa", b"f:q", b"new", 2);
        let rest: Vec<Bytes> = s
            .scanner_next(id, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.row)
            .collect();
        assert_eq!(
            rest,
            vec![
                b"aa".to_vec(),
                b"ab".to_vec(),
                b"b".to_vec(),
                b"\xff".to_vec()
            ]
        );
        assert!(s.scanner_next(id, 10).unwrap().is_empty());
        s.close_scanner(id).unwrap();
        assert!(matches!(
            s.scanner_next(id, 1),
            Err(Error::IllegalArgument(_))
        ));
        let id = s
            .open_scanner(
                b"t",
                ScanSpec {
                    start: b"a".to_vec(),
                    prefix: Some(b"a".to_vec()),
                    ..ScanSpec::default()
                },
            )
            .unwrap();
        assert_eq!(s.scanner_next(id, 10).unwrap().len(), 3);
    }

    #[test]
    fn check_and_put_and_increment() {
        let mut s = store_with(b"t", &[b"f"]);
        let (ok, r) = s
            .plan_check_and_put(b"t", b"r", b"f:q", b"", b"f:q", b"v1", 1)
            .unwrap();
        assert!(ok);
        s.apply(&r.unwrap());
        let (ok, r) = s
            .plan_check_and_put(b"t", b"r", b"f:q", b"", b"f:q", b"v2", 2)
            .unwrap();
        assert!(!ok && r.is_none());
        let (ok, _) = s
            .plan_check_and_put(b"t", b"r", b"f:q", b"v1", b"f:q", b"v2", 2)
            .unwrap();
        assert!(ok);
        let (v, r) = s.plan_increment(b"t", b"r", b"f:n", 5, 1).unwrap();
        assert_eq!(v, 5);
        s.apply(&r);
        let (v, _) = s.plan_increment(b"t", b"r", b"f:n", -7, 1).unwrap();
        assert_eq!(v, -2);
        assert!(matches!(
            s.plan_increment(b"t", b"r", b"f:q", 1, 1),
            Err(Error::IllegalArgument(_))
        ));
    }
}
