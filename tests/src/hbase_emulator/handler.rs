//! The generated `HbaseSyncHandler`, implemented over [`Emulator`] and [`Store`].

use std::collections::BTreeMap;
use std::sync::Arc;

use hbase_thrift::hbase::{
    AlreadyExists, BatchMutation, ColumnDescriptor, HbaseSyncHandler, IOError, IllegalArgument,
    Mutation, ScannerID, TAccessControlEntity, TAppend, TCell, TColumn, TIncrement, TRegionInfo,
    TRowResult, TScan, TThriftServerType, Text,
};

use super::store::{self, column_name, Family, RowResult, ScanSpec, Selection, Store};
use super::{now_ms, Emulator};

type Bytes = Vec<u8>;
type Attributes = BTreeMap<Text, Text>;

/// Serves one connection's calls (cheap: the state is shared through the [`Emulator`]).
pub struct Handler {
    emu: Arc<Emulator>,
    host: String,
    port: u16,
}

impl Handler {
    /// `host`/`port`: the server address reported in region infos.
    pub fn new(emu: Arc<Emulator>, host: String, port: u16) -> Handler {
        Handler { emu, host, port }
    }
}

fn to_thrift(e: store::Error) -> thrift::Error {
    match e {
        store::Error::Io(m) => thrift::Error::User(Box::new(IOError::new(m, false))),
        store::Error::IllegalArgument(m) => thrift::Error::User(Box::new(IllegalArgument::new(m))),
        store::Error::AlreadyExists(m) => thrift::Error::User(Box::new(AlreadyExists::new(m))),
    }
}

fn unsupported<T>(what: &str) -> thrift::Result<T> {
    Err(to_thrift(store::Error::Io(format!(
        "{what} is not supported by the emulator"
    ))))
}

fn cell(c: store::Cell) -> TCell {
    TCell::new(c.value, c.ts)
}

fn row_result(r: RowResult, sorted: bool) -> TRowResult {
    if sorted {
        let cols = r
            .cells
            .into_iter()
            .map(|(f, q, c)| TColumn::new(column_name(&f, &q), cell(c)))
            .collect::<Vec<_>>();
        TRowResult::new(r.row, None, cols)
    } else {
        let cols = r
            .cells
            .into_iter()
            .map(|(f, q, c)| (column_name(&f, &q), cell(c)))
            .collect::<BTreeMap<_, _>>();
        TRowResult::new(r.row, cols, None)
    }
}

fn results(rows: Vec<RowResult>, sorted: bool) -> Vec<TRowResult> {
    rows.into_iter().map(|r| row_result(r, sorted)).collect()
}

fn mutations(ms: Vec<Mutation>) -> Vec<store::Mutation> {
    ms.into_iter()
        .map(|m| store::Mutation {
            is_delete: m.is_delete.unwrap_or(false),
            column: m.column.unwrap_or_default(),
            value: m.value.unwrap_or_default(),
        })
        .collect()
}

/// A family as HBase's `ThriftUtilities.colDescFromThrift` builds it. Absent fields have
/// their IDL defaults by now (see [`super::lenient`]); fields sent as 0 / "" are refused
/// like HBase refuses them (`ColumnDescriptor::default()` of the generated Rust code sends
/// `maxVersions = 0`, `compression = ""`, `bloomFilterType = ""`).
fn family_from_thrift(d: ColumnDescriptor) -> store::Result<Family> {
    let illegal = |m: String| store::Error::IllegalArgument(m);
    let compression = d.compression.unwrap_or_default().to_ascii_uppercase();
    if !matches!(
        compression.as_str(),
        "NONE" | "GZ" | "LZO" | "SNAPPY" | "LZ4" | "BZIP2" | "ZSTD"
    ) {
        return Err(illegal(format!(
            "java.lang.IllegalArgumentException: Unsupported compression algorithm name: {}",
            compression.to_ascii_lowercase()
        )));
    }
    let bloom = d.bloom_filter_type.unwrap_or_default();
    if !matches!(
        bloom.as_str(),
        "NONE" | "ROW" | "ROWCOL" | "ROWPREFIX_FIXED_LENGTH"
    ) {
        return Err(illegal(format!(
            "java.lang.IllegalArgumentException: No enum constant org.apache.hadoop.hbase.regionserver.BloomType.{bloom}"
        )));
    }
    let name = d.name.unwrap_or_default();
    if name.is_empty() {
        return Err(illegal("column name is empty".into()));
    }
    let max_versions = d.max_versions.unwrap_or(0);
    if max_versions <= 0 {
        return Err(illegal(
            "java.lang.IllegalArgumentException: Maximum versions must be positive".into(),
        ));
    }
    let mut f = Family::named(&store::parse_column(&name).family);
    f.max_versions = max_versions;
    f.compression = compression;
    f.bloom_filter_type = bloom;
    f.in_memory = d.in_memory.unwrap_or(false);
    f.block_cache_enabled = d.block_cache_enabled.unwrap_or(false);
    f.time_to_live = match d.time_to_live.unwrap_or(0) {
        t if t > 0 => t,
        _ => i32::MAX,
    };
    Ok(f)
}

fn family_to_thrift(f: &Family) -> ColumnDescriptor {
    let mut name = f.name.clone();
    name.push(b':');
    ColumnDescriptor {
        name: Some(name),
        max_versions: Some(f.max_versions),
        compression: Some(f.compression.clone()),
        in_memory: Some(f.in_memory),
        bloom_filter_type: Some(f.bloom_filter_type.clone()),
        bloom_filter_vector_size: Some(0),
        bloom_filter_nb_hashes: Some(0),
        block_cache_enabled: Some(f.block_cache_enabled),
        time_to_live: Some(f.time_to_live),
    }
}

/// The only filter supported in `TScan.filterString`: `PrefixFilter('prefix')`, with `''`
/// for a quote inside the prefix.
pub fn parse_filter(filter: &[u8]) -> store::Result<Option<Bytes>> {
    let text = filter.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    let reject = || {
        store::Error::IllegalArgument(format!(
            "filter string not supported by the emulator (only PrefixFilter('...')): {}",
            String::from_utf8_lossy(filter)
        ))
    };
    let rest = text.strip_prefix(b"PrefixFilter").ok_or_else(reject)?;
    let rest = rest.trim_ascii();
    let inner = rest
        .strip_prefix(b"(")
        .and_then(|r| r.strip_suffix(b")"))
        .ok_or_else(reject)?
        .trim_ascii();
    let quoted = inner
        .strip_prefix(b"'")
        .and_then(|r| r.strip_suffix(b"'"))
        .ok_or_else(reject)?;
    let mut out = Vec::with_capacity(quoted.len());
    let mut i = 0;
    while i < quoted.len() {
        if quoted[i] == b'\'' {
            if quoted.get(i + 1) != Some(&b'\'') {
                return Err(reject());
            }
            i += 1;
        }
        out.push(quoted[i]);
        i += 1;
    }
    Ok(Some(out))
}

impl Handler {
    fn read<T>(&self, f: impl FnOnce(&Store) -> store::Result<T>) -> thrift::Result<T> {
        self.emu.read(f).map_err(to_thrift)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Store) -> store::Result<(T, Vec<store::Record>)>,
    ) -> thrift::Result<T> {
        self.emu.write(f).map_err(to_thrift)
    }

    fn get_rows(
        &self,
        table: &[u8],
        rows: &[Bytes],
        columns: &[Bytes],
        before_ts: Option<i64>,
    ) -> thrift::Result<Vec<TRowResult>> {
        let mut sel = Selection::columns(columns);
        sel.before_ts = before_ts;
        let rows = self.read(|s| s.get_rows(table, rows, &sel))?;
        Ok(results(rows, false))
    }

    fn get_cells(
        &self,
        table: &[u8],
        row: &[u8],
        column: &[u8],
        before_ts: Option<i64>,
        versions: i32,
    ) -> thrift::Result<Vec<TCell>> {
        let mut cells = self.read(|s| s.get_cells(table, row, column, before_ts))?;
        if versions < 1 {
            cells.clear();
        }
        Ok(cells.into_iter().map(cell).collect())
    }

    fn mutate_rows(
        &self,
        table: &[u8],
        batches: Vec<BatchMutation>,
        ts: Option<i64>,
    ) -> thrift::Result<()> {
        let now = now_ms();
        let batches: Vec<(Bytes, Vec<store::Mutation>)> = batches
            .into_iter()
            .map(|b| {
                (
                    b.row.unwrap_or_default(),
                    mutations(b.mutations.unwrap_or_default()),
                )
            })
            .collect();
        self.write(|s| {
            let mut records = Vec::new();
            for (row, ms) in &batches {
                records.extend(s.plan_mutate_row(table, row, ms, ts, now)?);
            }
            Ok(((), records))
        })
    }

    fn open_scanner(&self, table: &[u8], spec: ScanSpec) -> thrift::Result<ScannerID> {
        self.emu
            .scanners(|s| s.open_scanner(table, spec))
            .map_err(to_thrift)
    }

    fn scan_spec(start: Bytes, stop: Bytes, columns: &[Bytes], before_ts: Option<i64>) -> ScanSpec {
        let mut selection = Selection::columns(columns);
        selection.before_ts = before_ts;
        ScanSpec {
            start,
            stop,
            prefix: None,
            selection,
            sort_columns: false,
        }
    }

    fn scanner_next(&self, id: ScannerID, n: i32) -> thrift::Result<Vec<TRowResult>> {
        let (rows, sorted) = self
            .emu
            .scanners(|s| Ok((s.scanner_next(id, n)?, s.scanner_sorts_columns(id))))
            .map_err(to_thrift)?;
        Ok(results(rows, sorted))
    }

    fn increment(
        &self,
        table: &[u8],
        row: &[u8],
        column: &[u8],
        amount: i64,
    ) -> thrift::Result<i64> {
        let now = now_ms();
        self.write(|s| {
            let (v, r) = s.plan_increment(table, row, column, amount, now)?;
            Ok((v, vec![r]))
        })
    }
}

impl HbaseSyncHandler for Handler {
    fn handle_enable_table(&self, table_name: Bytes) -> thrift::Result<()> {
        self.write(|s| Ok(((), vec![s.plan_set_enabled(&table_name, true)?])))
    }

    fn handle_disable_table(&self, table_name: Bytes) -> thrift::Result<()> {
        self.write(|s| Ok(((), vec![s.plan_set_enabled(&table_name, false)?])))
    }

    fn handle_is_table_enabled(&self, table_name: Bytes) -> thrift::Result<bool> {
        self.read(|s| Ok(s.table(&table_name)?.enabled))
    }

    fn handle_compact(&self, table_name_or_region_name: Bytes) -> thrift::Result<()> {
        self.read(|s| s.table(&table_name_or_region_name).map(|_| ()))
    }

    fn handle_major_compact(&self, table_name_or_region_name: Bytes) -> thrift::Result<()> {
        self.read(|s| s.table(&table_name_or_region_name).map(|_| ()))
    }

    fn handle_get_table_names(&self) -> thrift::Result<Vec<Text>> {
        self.read(|s| Ok(s.tables().map(|(n, _)| n.clone()).collect()))
    }

    fn handle_get_table_names_with_is_table_enabled(&self) -> thrift::Result<BTreeMap<Text, bool>> {
        self.read(|s| Ok(s.tables().map(|(n, t)| (n.clone(), t.enabled)).collect()))
    }

    fn handle_get_column_descriptors(
        &self,
        table_name: Text,
    ) -> thrift::Result<BTreeMap<Text, ColumnDescriptor>> {
        self.read(|s| {
            Ok(s.table(&table_name)?
                .families
                .iter()
                .map(|f| {
                    let d = family_to_thrift(f);
                    (d.name.clone().unwrap_or_default(), d)
                })
                .collect())
        })
    }

    fn handle_get_table_regions(&self, table_name: Text) -> thrift::Result<Vec<TRegionInfo>> {
        let created = self.read(|s| Ok(s.table(&table_name)?.created))?;
        let mut name = table_name.clone();
        name.extend_from_slice(format!(",,{created}.emulator.").as_bytes());
        Ok(vec![TRegionInfo::new(
            Vec::new(),
            Vec::new(),
            created,
            name,
            1i8,
            self.host.clone().into_bytes(),
            i32::from(self.port),
        )])
    }

    fn handle_create_table(
        &self,
        table_name: Text,
        column_families: Vec<ColumnDescriptor>,
    ) -> thrift::Result<()> {
        let families = column_families
            .into_iter()
            .map(family_from_thrift)
            .collect::<store::Result<Vec<_>>>()
            .map_err(to_thrift)?;
        let now = now_ms();
        self.write(|s| Ok(((), vec![s.plan_create_table(&table_name, families, now)?])))
    }

    fn handle_delete_table(&self, table_name: Text) -> thrift::Result<()> {
        self.write(|s| Ok(((), vec![s.plan_delete_table(&table_name)?])))
    }

    fn handle_get(
        &self,
        table_name: Text,
        row: Text,
        column: Text,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TCell>> {
        self.get_cells(&table_name, &row, &column, None, 1)
    }

    fn handle_get_ver(
        &self,
        table_name: Text,
        row: Text,
        column: Text,
        num_versions: i32,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TCell>> {
        self.get_cells(&table_name, &row, &column, None, num_versions)
    }

    fn handle_get_ver_ts(
        &self,
        table_name: Text,
        row: Text,
        column: Text,
        timestamp: i64,
        num_versions: i32,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TCell>> {
        self.get_cells(&table_name, &row, &column, Some(timestamp), num_versions)
    }

    fn handle_get_row(
        &self,
        table_name: Text,
        row: Text,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &[row], &[], None)
    }

    fn handle_get_row_with_columns(
        &self,
        table_name: Text,
        row: Text,
        columns: Vec<Text>,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &[row], &columns, None)
    }

    fn handle_get_row_ts(
        &self,
        table_name: Text,
        row: Text,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &[row], &[], Some(timestamp))
    }

    fn handle_get_row_with_columns_ts(
        &self,
        table_name: Text,
        row: Text,
        columns: Vec<Text>,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &[row], &columns, Some(timestamp))
    }

    fn handle_get_rows(
        &self,
        table_name: Text,
        rows: Vec<Text>,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &rows, &[], None)
    }

    fn handle_get_rows_with_columns(
        &self,
        table_name: Text,
        rows: Vec<Text>,
        columns: Vec<Text>,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &rows, &columns, None)
    }

    fn handle_get_rows_ts(
        &self,
        table_name: Text,
        rows: Vec<Text>,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &rows, &[], Some(timestamp))
    }

    fn handle_get_rows_with_columns_ts(
        &self,
        table_name: Text,
        rows: Vec<Text>,
        columns: Vec<Text>,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.get_rows(&table_name, &rows, &columns, Some(timestamp))
    }

    fn handle_mutate_row(
        &self,
        table_name: Text,
        row: Text,
        mutations: Vec<Mutation>,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.mutate_rows(&table_name, vec![BatchMutation::new(row, mutations)], None)
    }

    fn handle_mutate_row_ts(
        &self,
        table_name: Text,
        row: Text,
        mutations: Vec<Mutation>,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.mutate_rows(
            &table_name,
            vec![BatchMutation::new(row, mutations)],
            Some(timestamp),
        )
    }

    fn handle_mutate_rows(
        &self,
        table_name: Text,
        row_batches: Vec<BatchMutation>,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.mutate_rows(&table_name, row_batches, None)
    }

    fn handle_mutate_rows_ts(
        &self,
        table_name: Text,
        row_batches: Vec<BatchMutation>,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.mutate_rows(&table_name, row_batches, Some(timestamp))
    }

    fn handle_atomic_increment(
        &self,
        table_name: Text,
        row: Text,
        column: Text,
        value: i64,
    ) -> thrift::Result<i64> {
        self.increment(&table_name, &row, &column, value)
    }

    fn handle_delete_all(
        &self,
        table_name: Text,
        row: Text,
        column: Text,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.write(|s| {
            Ok((
                (),
                vec![s.plan_delete_all(&table_name, &row, &column, None)?],
            ))
        })
    }

    fn handle_delete_all_ts(
        &self,
        table_name: Text,
        row: Text,
        column: Text,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.write(|s| {
            Ok((
                (),
                vec![s.plan_delete_all(&table_name, &row, &column, Some(timestamp))?],
            ))
        })
    }

    fn handle_delete_all_row(
        &self,
        table_name: Text,
        row: Text,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.write(|s| Ok(((), vec![s.plan_delete_row(&table_name, &row, None)?])))
    }

    fn handle_increment(&self, increment: TIncrement) -> thrift::Result<()> {
        self.increment(
            &increment.table.unwrap_or_default(),
            &increment.row.unwrap_or_default(),
            &increment.column.unwrap_or_default(),
            increment.ammount.unwrap_or(0),
        )
        .map(|_| ())
    }

    fn handle_increment_rows(&self, increments: Vec<TIncrement>) -> thrift::Result<()> {
        for i in increments {
            self.handle_increment(i)?;
        }
        Ok(())
    }

    fn handle_delete_all_row_ts(
        &self,
        table_name: Text,
        row: Text,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<()> {
        self.write(|s| {
            Ok((
                (),
                vec![s.plan_delete_row(&table_name, &row, Some(timestamp))?],
            ))
        })
    }

    fn handle_scanner_open_with_scan(
        &self,
        table_name: Text,
        scan: TScan,
        _attributes: Attributes,
    ) -> thrift::Result<ScannerID> {
        if scan.reversed == Some(true) {
            return Err(to_thrift(store::Error::IllegalArgument(
                "reversed scans are not supported by the emulator".into(),
            )));
        }
        let prefix = parse_filter(&scan.filter_string.unwrap_or_default()).map_err(to_thrift)?;
        if scan.timestamp == Some(0) {
            // HBase reads a set timestamp as the time range [0, timestamp): nothing.
            eprintln!(
                "hbase-thrift-emulator: WARN scannerOpenWithScan with TScan.timestamp = 0 matches no cells (as in HBase); TScan::default() sets it, leave it None to read everything"
            );
        }
        let mut spec = Self::scan_spec(
            scan.start_row.unwrap_or_default(),
            scan.stop_row.unwrap_or_default(),
            &scan.columns.unwrap_or_default(),
            scan.timestamp,
        );
        spec.prefix = prefix;
        spec.sort_columns = scan.sort_columns.unwrap_or(false);
        self.open_scanner(&table_name, spec)
    }

    fn handle_scanner_open(
        &self,
        table_name: Text,
        start_row: Text,
        columns: Vec<Text>,
        _attributes: Attributes,
    ) -> thrift::Result<ScannerID> {
        let spec = Self::scan_spec(start_row, Vec::new(), &columns, None);
        self.open_scanner(&table_name, spec)
    }

    fn handle_scanner_open_with_stop(
        &self,
        table_name: Text,
        start_row: Text,
        stop_row: Text,
        columns: Vec<Text>,
        _attributes: Attributes,
    ) -> thrift::Result<ScannerID> {
        let spec = Self::scan_spec(start_row, stop_row, &columns, None);
        self.open_scanner(&table_name, spec)
    }

    fn handle_scanner_open_with_prefix(
        &self,
        table_name: Text,
        start_and_prefix: Text,
        columns: Vec<Text>,
        _attributes: Attributes,
    ) -> thrift::Result<ScannerID> {
        let mut spec = Self::scan_spec(start_and_prefix.clone(), Vec::new(), &columns, None);
        spec.prefix = Some(start_and_prefix);
        self.open_scanner(&table_name, spec)
    }

    fn handle_scanner_open_ts(
        &self,
        table_name: Text,
        start_row: Text,
        columns: Vec<Text>,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<ScannerID> {
        let spec = Self::scan_spec(start_row, Vec::new(), &columns, Some(timestamp));
        self.open_scanner(&table_name, spec)
    }

    fn handle_scanner_open_with_stop_ts(
        &self,
        table_name: Text,
        start_row: Text,
        stop_row: Text,
        columns: Vec<Text>,
        timestamp: i64,
        _attributes: Attributes,
    ) -> thrift::Result<ScannerID> {
        let spec = Self::scan_spec(start_row, stop_row, &columns, Some(timestamp));
        self.open_scanner(&table_name, spec)
    }

    fn handle_scanner_get(&self, id: ScannerID) -> thrift::Result<Vec<TRowResult>> {
        self.scanner_next(id, 1)
    }

    fn handle_scanner_get_list(
        &self,
        id: ScannerID,
        nb_rows: i32,
    ) -> thrift::Result<Vec<TRowResult>> {
        self.scanner_next(id, nb_rows)
    }

    fn handle_scanner_close(&self, id: ScannerID) -> thrift::Result<()> {
        self.emu
            .scanners(|s| s.close_scanner(id))
            .map_err(to_thrift)
    }

    fn handle_get_region_info(&self, _row: Text) -> thrift::Result<TRegionInfo> {
        unsupported("getRegionInfo")
    }

    fn handle_append(&self, append: TAppend) -> thrift::Result<Vec<TCell>> {
        let now = now_ms();
        let table = append.table.unwrap_or_default();
        let row = append.row.unwrap_or_default();
        let columns = append.columns.unwrap_or_default();
        let values = append.values.unwrap_or_default();
        let cells = self.write(|s| {
            let (cells, rec) = s.plan_append(&table, &row, &columns, &values, now)?;
            Ok((cells, rec.into_iter().collect()))
        })?;
        Ok(cells.into_iter().map(cell).collect())
    }

    fn handle_check_and_put(
        &self,
        table_name: Text,
        row: Text,
        column: Text,
        value: Text,
        mput: Mutation,
        _attributes: Attributes,
    ) -> thrift::Result<bool> {
        let now = now_ms();
        let put_column = mput.column.unwrap_or_default();
        let put_value = mput.value.unwrap_or_default();
        self.write(|s| {
            let (ok, rec) = s.plan_check_and_put(
                &table_name,
                &row,
                &column,
                &value,
                &put_column,
                &put_value,
                now,
            )?;
            Ok((ok, rec.into_iter().collect()))
        })
    }

    fn handle_get_thrift_server_type(&self) -> thrift::Result<TThriftServerType> {
        Ok(TThriftServerType::ONE)
    }

    fn handle_get_cluster_id(&self) -> thrift::Result<String> {
        Ok("qilin-hbase-emulator".into())
    }

    fn handle_grant(&self, _info: TAccessControlEntity) -> thrift::Result<bool> {
        unsupported("grant")
    }

    fn handle_revoke(&self, _info: TAccessControlEntity) -> thrift::Result<bool> {
        unsupported("revoke")
    }
}

#[cfg(test)]
mod tests {
    use super::parse_filter;

    #[test]
    fn prefix_filter_strings() {
        assert_eq!(parse_filter(b"").unwrap(), None);
        assert_eq!(
            parse_filter(b"PrefixFilter ('ab''c')").unwrap(),
            Some(b"ab'c".to_vec())
        );
        assert!(parse_filter(b"KeyOnlyFilter()").is_err());
        assert!(parse_filter(b"PrefixFilter('a') AND KeyOnlyFilter()").is_err());
    }
}
