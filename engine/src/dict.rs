//! Global dictionaries: exact COUNT_DISTINCT of a column that is not an integer stores a
//! roaring bitmap of dictionary ids ([`crate::measure::bitmap`]), so every segment of every
//! cube must give a value the same id forever. One dictionary per source column (project,
//! table, column; a computed column: project, model, column) maps each value ever built to
//! an id `0, 1, 2, ...` in the order values were first seen (sorted within one build).
//!
//! # Where it lives
//!
//! In the segment store, beside the segments ([`SegmentStore::put_dict_object`] and
//! friends): segment garbage collection, segment deletion and cube drops never touch it.
//!
//! # How it grows (append only)
//!
//! The stored dictionary is a manifest (JSON, [`Manifest`]) naming chunk objects in id order.
//! A build that meets new values:
//! 1. writes them as new chunk objects (ids from the manifest's `next_id` on), each durable
//!    before the call returns, named `<generation>-<xxh64 of the content>` so a write never
//!    replaces a committed chunk with different bytes;
//! 2. commits by swapping the manifest for one that also names the new chunks,
//!    [`SegmentStore::swap_dict_manifest`], only if the manifest is still the one it read
//!    (check-and-put: a lock file locally, `checkAndPut` on HBase).
//!
//! A build killed before step 2 leaves the old dictionary and an unreferenced chunk (new
//! values are sorted, so the resumed build that meets the same values rewrites that very
//! chunk; otherwise it stays as a few bytes of garbage); after step 2 the new one. A writer in another process that committed first makes
//! the swap fail: the loser reloads the manifest, drops the values the winner added and tries
//! again with the rest. So a value never gets two ids and an id never goes missing, whatever
//! runs concurrently. Within one process, growth of a dictionary is serialized by a mutex so
//! concurrent builds do not spin on conflicts.
//!
//! # Chunk format, version 1 (little-endian)
//!
//! `u8 1 | u64 first id | u32 count | count × (u32 length | value bytes)`; the manifest keeps
//! each chunk's length and CRC-32, checked on load. Values are the raw bytes of strings and
//! binaries, and the text form (Arrow's cast to Utf8) of any other type.
//!
//! # Limits
//!
//! Ids never shrink: values that disappear from the source keep theirs. The whole dictionary
//! is loaded into memory by a build that uses it (about the values' bytes plus ~50 bytes per
//! value). Ids are u64, but the bitmap is densest below 2^32 values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{CubeLayout, ResolvedMeasure};
use crate::storage::SegmentStore;

const CHUNK_FORMAT: u8 = 1;
const MANIFEST_FORMAT: u32 = 1;
/// A chunk object holds at most about this many bytes (one HBase cell, well below its limit).
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Commit attempts against writers in other processes before giving up.
const MAX_ATTEMPTS: usize = 100;

/// Test hook, for crash tests only: when this environment variable is set, a process that
/// grows a dictionary aborts right after writing the new chunks and before committing them.
pub const ABORT_BEFORE_COMMIT_ENV: &str = "QILIN_TEST_DICT_ABORT_BEFORE_COMMIT";

/// The stored manifest: the committed dictionary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub dictionary: String,
    /// The id the next new value gets; the number of values.
    pub next_id: u64,
    /// Committed chunks in id order: chunk i holds ids `first_id..first_id + count`.
    pub chunks: Vec<ChunkRef>,
    /// Who committed last (makes every committed manifest unique to its writer).
    pub writer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    pub name: String,
    pub first_id: u64,
    pub count: u64,
    pub bytes: u64,
    pub crc32: u32,
}

type Ids = HashMap<Box<[u8]>, u64, foldhash::fast::RandomState>;

/// A dictionary loaded into memory: value → id.
#[derive(Debug)]
pub struct GlobalDict {
    name: String,
    ids: Ids,
    manifest: Manifest,
    /// The manifest's stored bytes (`None`: nothing committed yet), the check of the next swap.
    raw: Option<Vec<u8>>,
}

/// The dictionary name of a column: `project.table.column`, lowercase, every character
/// outside `[a-z0-9_]` written as `-` and two hex digits.
pub fn dict_name(project: &str, table: &str, column: &str) -> String {
    let part = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.to_lowercase().chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                out.push(c);
            } else {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("-{b:02x}"));
                }
            }
        }
        out
    };
    format!("{}.{}.{}", part(project), part(table), part(column))
}

/// The dictionary of a global-dictionary measure's input column: named after the source
/// table (not the model's alias), or after the model for a computed column.
pub fn measure_dict_name(layout: &CubeLayout, m: &ResolvedMeasure) -> Option<String> {
    if !m.global_dict {
        return None;
    }
    let input = m.input.as_ref()?;
    let project = &layout.model.project;
    if input.expression.is_some() {
        return Some(dict_name(
            project,
            &format!("model {}", layout.model.name),
            &input.column,
        ));
    }
    let table = layout
        .joins
        .iter()
        .find(|j| j.alias.eq_ignore_ascii_case(&input.table))
        .map(|j| j.table.as_str())
        .unwrap_or(&input.table);
    Some(dict_name(project, table, &input.column))
}

/// The in-process lock of one dictionary in one store.
fn process_lock(store: &dyn SegmentStore, name: &str) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    locks
        .entry(format!("{}\n{name}", store.describe()))
        .or_default()
        .clone()
}

impl GlobalDict {
    /// Loads the committed dictionary `name` (empty when none is stored).
    pub fn load(store: &dyn SegmentStore, name: &str) -> Result<GlobalDict> {
        let mut d = GlobalDict {
            name: name.to_string(),
            ids: Ids::default(),
            manifest: Manifest {
                format: MANIFEST_FORMAT,
                dictionary: name.to_string(),
                ..Manifest::default()
            },
            raw: None,
        };
        d.refresh(store)?;
        Ok(d)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of values (ids are `0..len`).
    pub fn len(&self) -> u64 {
        self.manifest.next_id
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The id of `value`.
    pub fn id(&self, value: &[u8]) -> Option<u64> {
        self.ids.get(value).copied()
    }

    /// Every (value, id).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.ids.iter().map(|(k, &v)| (&**k, v))
    }

    /// Heap bytes of the in-memory map (approximate).
    pub fn memory_bytes(&self) -> usize {
        self.ids.capacity() * (std::mem::size_of::<(Box<[u8]>, u64)>() + 1)
            + self.ids.keys().map(|k| k.len()).sum::<usize>()
    }

    /// Catches up with the stored manifest: loads chunks committed since this was loaded.
    pub fn refresh(&mut self, store: &dyn SegmentStore) -> Result<()> {
        let Some(raw) = store.get_dict_manifest(&self.name)? else {
            if self.raw.is_some() {
                return Err(Error::corrupt(
                    format!("dictionary {}", self.name),
                    "its manifest disappeared",
                ));
            }
            return Ok(());
        };
        if self.raw.as_deref() == Some(raw.as_slice()) {
            return Ok(());
        }
        let what = || format!("manifest of dictionary {}", self.name);
        let m: Manifest =
            serde_json::from_slice(&raw).map_err(|e| Error::corrupt(what(), e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(Error::corrupt(
                what(),
                format!("format {} (this build reads {MANIFEST_FORMAT})", m.format),
            ));
        }
        let known = self.manifest.chunks.len();
        if m.chunks.len() < known || m.chunks[..known] != self.manifest.chunks[..] {
            return Err(Error::corrupt(
                what(),
                "it no longer extends the chunks loaded before (dictionaries only grow)",
            ));
        }
        let mut next = self.manifest.next_id;
        for c in &m.chunks[known..] {
            if c.first_id != next {
                return Err(Error::corrupt(
                    what(),
                    format!("chunk {} starts at id {}, not {next}", c.name, c.first_id),
                ));
            }
            let bytes = store.get_dict_object(&self.name, &c.name)?;
            for (i, v) in decode_chunk(&self.name, c, &bytes)?.into_iter().enumerate() {
                let id = c.first_id + i as u64;
                if let Some(old) = self.ids.insert(v, id) {
                    return Err(Error::corrupt(
                        what(),
                        format!("ids {old} and {id} name the same value"),
                    ));
                }
            }
            next += c.count;
        }
        if next != m.next_id {
            return Err(Error::corrupt(
                what(),
                format!("chunks end at id {next}, next_id says {}", m.next_id),
            ));
        }
        self.manifest = m;
        self.raw = Some(raw);
        Ok(())
    }

    /// Gives every value of `values` not in the dictionary an id, and commits them (see the
    /// module docs); returns how many ids this call added. Values added meanwhile by another
    /// writer keep the ids it gave them.
    pub fn grow<'a>(
        &mut self,
        store: &dyn SegmentStore,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<u64> {
        let mut pending: Vec<&[u8]> = Vec::new();
        let mut seen: std::collections::HashSet<&[u8], foldhash::fast::RandomState> =
            Default::default();
        for v in values {
            if !self.ids.contains_key(v) && seen.insert(v) {
                pending.push(v);
            }
        }
        if pending.is_empty() {
            return Ok(0);
        }
        // Sorted, the same new values always make the same chunk bytes and name: a build
        // resumed after a crash rewrites the chunk it left uncommitted instead of leaving it.
        pending.sort_unstable();
        let lock = process_lock(store, &self.name);
        let _serialized = lock.lock().unwrap_or_else(|p| p.into_inner());
        let writer = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        for _ in 0..MAX_ATTEMPTS {
            self.refresh(store)?;
            pending.retain(|v| !self.ids.contains_key(*v));
            if pending.is_empty() {
                return Ok(0);
            }
            let generation = self.manifest.chunks.len();
            let mut next = self.manifest.next_id;
            let mut chunks = Vec::new();
            for part in split_chunks(&pending) {
                let data = encode_chunk(next, part);
                let name = format!(
                    "{generation:010}-{:016x}",
                    xxhash_rust::xxh64::xxh64(&data, 0)
                );
                store.put_dict_object(&self.name, &name, &data)?;
                chunks.push(ChunkRef {
                    name,
                    first_id: next,
                    count: part.len() as u64,
                    bytes: data.len() as u64,
                    crc32: crc32fast::hash(&data),
                });
                next += part.len() as u64;
            }
            if std::env::var_os(ABORT_BEFORE_COMMIT_ENV).is_some() {
                eprintln!(
                    "{ABORT_BEFORE_COMMIT_ENV}: aborting before committing dictionary {}",
                    self.name
                );
                std::process::abort();
            }
            let mut m = self.manifest.clone();
            m.chunks.extend(chunks);
            m.next_id = next;
            m.writer = writer.clone();
            let raw =
                serde_json::to_vec(&m).map_err(|e| Error::invalid("dictionary", e.to_string()))?;
            if store.swap_dict_manifest(&self.name, self.raw.as_deref(), &raw)? {
                let added = next - self.manifest.next_id;
                for (i, v) in pending.iter().enumerate() {
                    self.ids
                        .insert((*v).into(), self.manifest.next_id + i as u64);
                }
                self.manifest = m;
                self.raw = Some(raw);
                return Ok(added);
            }
            // Another process committed first; our chunks stay unreferenced. Reload, retry.
        }
        Err(Error::Busy(format!(
            "dictionary {}: {MAX_ATTEMPTS} commits in a row lost to other writers",
            self.name
        )))
    }

    /// The ids of a column's values (null stays null); a value without an id is an error.
    pub fn map_ids(&self, values: &ArrayRef) -> Result<ArrayRef> {
        let mut out = Vec::with_capacity(values.len());
        let mut missing: Option<String> = None;
        for_each_value(values, |v| {
            out.push(v.and_then(|v| {
                let id = self.id(v);
                if id.is_none() && missing.is_none() {
                    missing = Some(String::from_utf8_lossy(v).chars().take(80).collect());
                }
                id.map(|id| id as i64)
            }));
        })?;
        if let Some(v) = missing {
            return Err(Error::Refused(format!(
                "value {v:?} has no id in dictionary {} (did the source change during the \
                 build? build again)",
                self.name
            )));
        }
        Ok(std::sync::Arc::new(Int64Array::from(out)))
    }
}

/// Calls `f` with the key bytes of each value of `values` in order (`None` for null): the
/// bytes of strings and binaries, the Utf8 text of anything else.
pub fn for_each_value(values: &ArrayRef, mut f: impl FnMut(Option<&[u8]>)) -> Result<()> {
    match values.data_type() {
        DataType::Utf8 => values
            .as_string::<i32>()
            .iter()
            .for_each(|v| f(v.map(str::as_bytes))),
        DataType::LargeUtf8 => values
            .as_string::<i64>()
            .iter()
            .for_each(|v| f(v.map(str::as_bytes))),
        DataType::Utf8View => values
            .as_string_view()
            .iter()
            .for_each(|v| f(v.map(str::as_bytes))),
        DataType::Binary => values.as_binary::<i32>().iter().for_each(f),
        DataType::LargeBinary => values.as_binary::<i64>().iter().for_each(f),
        DataType::BinaryView => values.as_binary_view().iter().for_each(f),
        _ => {
            let text = cast(values, &DataType::Utf8)?;
            text.as_string::<i32>()
                .iter()
                .for_each(|v| f(v.map(str::as_bytes)));
        }
    }
    Ok(())
}

/// Splits values into runs of at most [`CHUNK_BYTES`] encoded bytes (at least one value each).
fn split_chunks<'a, 'b>(values: &'b [&'a [u8]]) -> Vec<&'b [&'a [u8]]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 13usize);
    for (i, v) in values.iter().enumerate() {
        let size = 4 + v.len();
        if i > start && bytes + size > CHUNK_BYTES {
            out.push(&values[start..i]);
            (start, bytes) = (i, 13);
        }
        bytes += size;
    }
    if start < values.len() {
        out.push(&values[start..]);
    }
    out
}

/// Encodes a chunk (see the module docs).
pub fn encode_chunk(first_id: u64, values: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + values.iter().map(|v| 4 + v.len()).sum::<usize>());
    out.push(CHUNK_FORMAT);
    out.extend_from_slice(&first_id.to_le_bytes());
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Decodes chunk `c` of dictionary `dict`, checking it against the manifest's entry.
pub fn decode_chunk(dict: &str, c: &ChunkRef, data: &[u8]) -> Result<Vec<Box<[u8]>>> {
    let corrupt =
        |detail: String| Error::corrupt(format!("chunk {} of dictionary {dict}", c.name), detail);
    if data.len() as u64 != c.bytes || crc32fast::hash(data) != c.crc32 {
        return Err(corrupt(format!(
            "{} bytes with CRC-32 {:08x}, the manifest says {} bytes with {:08x}",
            data.len(),
            crc32fast::hash(data),
            c.bytes,
            c.crc32
        )));
    }
    if data.len() < 13 || data[0] != CHUNK_FORMAT {
        return Err(corrupt("not a version 1 chunk".into()));
    }
    let first = u64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(data[9..13].try_into().expect("4 bytes")) as u64;
    if first != c.first_id || count != c.count {
        return Err(corrupt(format!(
            "holds ids {first}..+{count}, the manifest says {}..+{}",
            c.first_id, c.count
        )));
    }
    let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
    let mut at = 13usize;
    for i in 0..count {
        let len = data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| corrupt(format!("value {i} is cut off")))?;
        let v = data
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| corrupt(format!("value {i} is cut off")))?;
        out.push(v.into());
        at += 4 + len;
    }
    if at != data.len() {
        return Err(corrupt(format!(
            "{} bytes trail the values",
            data.len() - at
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalSegmentStore;

    fn store() -> (tempfile::TempDir, LocalSegmentStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalSegmentStore::open(dir.path()).unwrap();
        (dir, s)
    }

    fn vals(v: &[&'static str]) -> Vec<&'static [u8]> {
        v.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn names_are_safe_and_distinct() {
        assert_eq!(
            dict_name("SSB", "customer", "C_NAME"),
            "ssb.customer.c_name"
        );
        assert_eq!(dict_name("p", "a.b", "c"), "p.a-2eb.c");
        assert_ne!(dict_name("p", "a.b", "c"), dict_name("p.a", "b", "c"));
        crate::storage::validate_dict_name("dictionary", &dict_name("p", "x y/ü", "c")).unwrap();
    }

    #[test]
    fn grows_append_only_with_stable_ids() {
        let (_d, s) = store();
        let mut d = GlobalDict::load(&s, "p.t.c").unwrap();
        assert!(d.is_empty());
        assert_eq!(d.grow(&s, vals(&["b", "a", "b"])).unwrap(), 2);
        // Sorted within one growth.
        assert_eq!((d.id(b"a"), d.id(b"b")), (Some(0), Some(1)));
        assert_eq!(d.grow(&s, vals(&["a", "c"])).unwrap(), 1);
        assert_eq!(d.id(b"c"), Some(2));
        assert_eq!(d.grow(&s, vals(&["a"])).unwrap(), 0);
        let again = GlobalDict::load(&s, "p.t.c").unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(again.id(b"a"), Some(0));
        assert_eq!(again.id(b"c"), Some(2));
        assert_eq!(again.manifest().chunks.len(), 2);
        // Segments never see it.
        assert!(s.list_segments().unwrap().is_empty());
    }

    #[test]
    fn a_stale_writer_reloads_and_never_duplicates() {
        let (_d, s) = store();
        let mut a = GlobalDict::load(&s, "p.t.c").unwrap();
        let mut b = GlobalDict::load(&s, "p.t.c").unwrap();
        a.grow(&s, vals(&["x", "y"])).unwrap();
        // b read the empty dictionary; its commit finds the manifest changed, reloads, and
        // adds only what a did not.
        assert_eq!(b.grow(&s, vals(&["y", "z"])).unwrap(), 1);
        assert_eq!(b.id(b"y"), a.id(b"y"));
        assert_eq!(b.id(b"z"), Some(2));
        let c = GlobalDict::load(&s, "p.t.c").unwrap();
        let mut ids: Vec<u64> = c.entries().map(|(_, id)| id).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2]);
    }

    #[test]
    fn an_uncommitted_chunk_changes_nothing() {
        let (_d, s) = store();
        let mut a = GlobalDict::load(&s, "p.t.c").unwrap();
        a.grow(&s, vals(&["x"])).unwrap();
        // A crashed writer's chunk: written, never committed.
        let data = encode_chunk(1, &vals(&["lost"]));
        s.put_dict_object("p.t.c", "0000000001-deadbeef", &data)
            .unwrap();
        let mut b = GlobalDict::load(&s, "p.t.c").unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b.id(b"lost"), None);
        b.grow(&s, vals(&["y"])).unwrap();
        assert_eq!(b.id(b"y"), Some(1));
    }

    #[test]
    fn concurrent_threads_give_each_value_one_id() {
        let (_d, s) = store();
        let s = std::sync::Arc::new(s);
        let words: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (s, words) = (s.clone(), &words);
                scope.spawn(move || {
                    let mut d = GlobalDict::load(s.as_ref(), "p.t.c").unwrap();
                    let mine: Vec<&[u8]> = words
                        .iter()
                        .skip(t * 30)
                        .take(110)
                        .map(|w| w.as_bytes())
                        .collect();
                    d.grow(s.as_ref(), mine).unwrap();
                });
            }
        });
        let d = GlobalDict::load(s.as_ref(), "p.t.c").unwrap();
        let mut ids: Vec<u64> = d.entries().map(|(_, id)| id).collect();
        ids.sort();
        let n = (3 * 30 + 110) as u64;
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn big_growth_splits_into_chunks() {
        let (_d, s) = store();
        let big: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 64 * 1024]).collect();
        let mut d = GlobalDict::load(&s, "p.t.c").unwrap();
        d.grow(&s, big.iter().map(|v| v.as_slice())).unwrap();
        assert!(d.manifest().chunks.len() >= 3);
        let again = GlobalDict::load(&s, "p.t.c").unwrap();
        assert_eq!(again.id(&big[39]), Some(39));
    }

    #[test]
    fn maps_any_type_and_keeps_nulls() {
        let (_d, s) = store();
        let mut d = GlobalDict::load(&s, "p.t.c").unwrap();
        let strings: ArrayRef =
            std::sync::Arc::new(datafusion::arrow::array::StringArray::from(vec![
                Some("a"),
                None,
                Some("b"),
            ]));
        let mut keys = Vec::new();
        for_each_value(&strings, |v| keys.push(v.map(|v| v.to_vec()))).unwrap();
        d.grow(&s, keys.iter().flatten().map(|v| v.as_slice()))
            .unwrap();
        let ids = d.map_ids(&strings).unwrap();
        let ids = ids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![Some(0), None, Some(1)]);
        let floats: ArrayRef =
            std::sync::Arc::new(datafusion::arrow::array::Float64Array::from(vec![1.5]));
        let err = d.map_ids(&floats).unwrap_err();
        assert!(err.to_string().contains("1.5"), "{err}");
    }

    #[test]
    fn corrupt_chunks_and_manifests_are_errors() {
        let (_d, s) = store();
        let mut d = GlobalDict::load(&s, "p.t.c").unwrap();
        d.grow(&s, vals(&["a", "b"])).unwrap();
        let c = d.manifest().chunks[0].clone();
        let mut data = s.get_dict_object("p.t.c", &c.name).unwrap();
        let n = data.len();
        data[n - 1] ^= 1;
        s.put_dict_object("p.t.c", &c.name, &data).unwrap();
        assert!(matches!(
            GlobalDict::load(&s, "p.t.c").unwrap_err(),
            Error::Corrupt { .. }
        ));
        // Truncations of a valid chunk never panic.
        let good = encode_chunk(0, &vals(&["abc", "d"]));
        for cut in 0..good.len() {
            let part = &good[..cut];
            let r = ChunkRef {
                name: "x".into(),
                first_id: 0,
                count: 2,
                bytes: part.len() as u64,
                crc32: crc32fast::hash(part),
            };
            assert!(decode_chunk("d", &r, part).is_err());
        }
        let raw = s.get_dict_manifest("p.t.c").unwrap().unwrap();
        s.swap_dict_manifest("p.t.c", Some(&raw), b"{not json")
            .unwrap();
        assert!(GlobalDict::load(&s, "p.t.c").is_err());
    }
}
