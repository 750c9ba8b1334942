//! TOP_N: the stored, mergeable state that keeps the largest sums of a value per `by` value,
//! after Apache Kylin's `TopNCounter` (space-saving counters, Metwally et al.).
//!
//! A measure `TOP_N(value) BY by, n` keeps, per cuboid row, counters `by value → SUM(value)`.
//! As in Kylin a state holds up to `capacity = n × EXTRA_SPACE_RATE` counters, not `n`:
//! Kylin's `TopNCounter.EXTRA_SPACE_RATE` is 50, and we use the same factor so that a cube
//! imported from Kylin keeps the accuracy it had (the top `n` of a merge of many states are
//! right far more often when each state keeps 50× more candidates than asked for).
//!
//! # Values and bounds
//!
//! Sums are `f64`, as Kylin's counters are `double`: exact for integer sums whose magnitude
//! stays below 2^53, and the input may be any numeric column (integers, floats, decimals,
//! cast to `f64`). Rows whose value is NULL are not counted; a NULL `by` is a key of its own.
//! The key is the `by` value as text (Arrow's cast to Utf8); the query casts it back.
//!
//! Each counter has `(sum, error)`: its true sum lies in `[sum - error, sum]` (when the values
//! are non-negative; with negative values only the exact case below is guaranteed). A state
//! also records `missed`, an upper bound of the sum of any key it does not list.
//!
//! * Exact: a state that never held more keys than its capacity has `missed = 0` and every
//!   `error = 0`; merging exact states gives an exact state as long as the merge holds at most
//!   `capacity` keys, so merging is associative while nothing is dropped.
//! * Truncation (more than `capacity` keys): the counters are sorted by sum (descending) and
//!   the smallest dropped; `missed` becomes the largest dropped sum.
//! * Merge (Kylin's `TopNCounter.merge`): a key both sides list adds sums and errors; a key
//!   only one side lists may have had up to the other side's `missed` there, so it gets that
//!   added to its sum and error (Kylin adds the smallest counter of a full side; `missed` is
//!   the same idea, tighter, and zero when that side dropped nothing). `missed` of the merge
//!   is the sum of both.
//!
//! During a raw build a state takes source rows; a new key arriving after a truncation starts
//! at `missed + value` with error `missed` (space-saving). To bound memory the counters are
//! truncated to `capacity` when they reach `2 × capacity`; the stored state holds at most
//! `capacity` counters.
//!
//! # Binary format, version 1
//!
//! Little-endian throughout.
//!
//! | size | content                                                      |
//! |------|--------------------------------------------------------------|
//! | 1    | format version, `1`                                          |
//! | 4    | `u32` capacity, `1..=MAX_CAPACITY`                           |
//! | 8    | `f64` missed, finite, `>= 0`                                 |
//! | 4    | `u32` counter count `k`, `<= capacity`                       |
//! | ...  | `k` counters                                                 |
//!
//! A counter: `f64` sum (finite), `f64` error (finite, `>= 0`), `u8` key tag (`0` NULL, `1`
//! text), and for text a `u32` byte length and the UTF-8 bytes. Counters are written by sum
//! descending, then key ascending (NULL first), so the bytes depend only on the contents;
//! keys are distinct. Readers reject anything else, trailing bytes included, with
//! [`Error::corrupt`] and never panic.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};

use super::GroupStates;
use crate::error::{Error, Result};

/// Kylin's `TopNCounter.EXTRA_SPACE_RATE`: a state keeps `n` times this many counters.
pub const EXTRA_SPACE_RATE: u32 = 50;
/// The largest capacity a state may declare (`TOP_N_MAX × EXTRA_SPACE_RATE`).
pub const MAX_CAPACITY: u32 = crate::model::layout::TOP_N_MAX * EXTRA_SPACE_RATE;
const VERSION: u8 = 1;
const WHAT: &str = "TOP_N state";

/// The number of counters a TOP_N measure of `n` keeps.
pub fn capacity_of(n: u32) -> u32 {
    n.saturating_mul(EXTRA_SPACE_RATE).clamp(1, MAX_CAPACITY)
}

/// One key's counter: the true sum lies in `[sum - error, sum]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counter {
    pub sum: f64,
    pub error: f64,
}

/// A space-saving TOP_N state.
#[derive(Debug, Clone, PartialEq)]
pub struct TopNCounter {
    capacity: u32,
    counters: HashMap<Option<String>, Counter>,
    missed: f64,
}

impl TopNCounter {
    pub fn new(capacity: u32) -> Self {
        TopNCounter {
            capacity: capacity.clamp(1, MAX_CAPACITY),
            counters: HashMap::new(),
            missed: 0.0,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Upper bound of the sum of a key not listed; 0 while nothing was ever dropped.
    pub fn missed(&self) -> f64 {
        self.missed
    }

    /// Exact: nothing was ever dropped, so every listed sum is the true sum and every key
    /// is listed.
    pub fn is_exact(&self) -> bool {
        self.missed == 0.0 && self.counters.values().all(|c| c.error == 0.0)
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Adds `value` to `key`'s sum.
    pub fn offer(&mut self, key: Option<&str>, value: f64) {
        let missed = self.missed;
        match self.counters.get_mut(&key.map(str::to_string)) {
            Some(c) => c.sum += value,
            None => {
                self.counters.insert(
                    key.map(str::to_string),
                    Counter {
                        sum: missed + value,
                        error: missed,
                    },
                );
                if self.counters.len() >= 2 * self.capacity as usize {
                    self.truncate();
                }
            }
        }
    }

    /// Merges `other` into `self` (Kylin's `TopNCounter.merge`), then truncates.
    pub fn merge(&mut self, other: &TopNCounter) {
        let (mine, theirs) = (self.missed, other.missed);
        if theirs != 0.0 {
            // Keys `other` does not list may have had up to `theirs` there.
            for (k, c) in self.counters.iter_mut() {
                if !other.counters.contains_key(k) {
                    c.sum += theirs;
                    c.error += theirs;
                }
            }
        }
        for (k, o) in &other.counters {
            match self.counters.get_mut(k) {
                Some(c) => {
                    c.sum += o.sum;
                    c.error += o.error;
                }
                None => {
                    self.counters.insert(
                        k.clone(),
                        Counter {
                            sum: o.sum + mine,
                            error: o.error + mine,
                        },
                    );
                }
            }
        }
        self.missed = mine + theirs;
        self.truncate();
    }

    /// Keeps the `capacity` largest counters.
    fn truncate(&mut self) {
        let cap = self.capacity as usize;
        if self.counters.len() <= cap {
            return;
        }
        let mut all: Vec<(Option<String>, Counter)> = self.counters.drain().collect();
        all.sort_by(order);
        for (_, c) in all.drain(cap..) {
            self.missed = self.missed.max(c.sum);
        }
        self.counters.extend(all);
    }

    /// The counters by sum descending, then key ascending (NULL first).
    pub fn sorted(&self) -> Vec<(Option<&str>, Counter)> {
        let mut v: Vec<(Option<&str>, Counter)> = self
            .counters
            .iter()
            .map(|(k, c)| (k.as_deref(), *c))
            .collect();
        v.sort_by(|a, b| {
            b.1.sum
                .partial_cmp(&a.1.sum)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.0.cmp(&b.0))
        });
        v
    }

    /// The stored form (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_size());
        out.push(VERSION);
        out.extend_from_slice(&self.capacity.to_le_bytes());
        out.extend_from_slice(&self.missed.to_le_bytes());
        out.extend_from_slice(&(self.counters.len() as u32).to_le_bytes());
        for (k, c) in self.sorted() {
            out.extend_from_slice(&c.sum.to_le_bytes());
            out.extend_from_slice(&c.error.to_le_bytes());
            match k {
                None => out.push(0),
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    out.extend_from_slice(k.as_bytes());
                }
            }
        }
        out
    }

    fn serialized_size(&self) -> usize {
        17 + self
            .counters
            .keys()
            .map(|k| 17 + k.as_ref().map_or(0, |k| 4 + k.len()))
            .sum::<usize>()
    }

    /// Reads a stored state; anything but a valid version-1 state is [`Error::corrupt`].
    pub fn from_bytes(bytes: &[u8]) -> Result<TopNCounter> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(Error::corrupt(
                WHAT,
                format!("format version {version} (this build reads version {VERSION})"),
            ));
        }
        let capacity = r.u32()?;
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(Error::corrupt(WHAT, format!("capacity {capacity}")));
        }
        let missed = r.f64()?;
        if !missed.is_finite() || missed < 0.0 {
            return Err(Error::corrupt(WHAT, format!("missed bound {missed}")));
        }
        let k = r.u32()?;
        if k > capacity {
            return Err(Error::corrupt(
                WHAT,
                format!("{k} counters over capacity {capacity}"),
            ));
        }
        // Each counter takes at least 17 bytes: a bad count cannot allocate much.
        if (k as usize).saturating_mul(17) > bytes.len() {
            return Err(Error::corrupt(
                WHAT,
                format!("{k} counters in {} bytes", bytes.len()),
            ));
        }
        let mut counters = HashMap::with_capacity(k as usize);
        for _ in 0..k {
            let sum = r.f64()?;
            let error = r.f64()?;
            if !sum.is_finite() || !error.is_finite() || error < 0.0 {
                return Err(Error::corrupt(WHAT, format!("counter ({sum}, {error})")));
            }
            let key = match r.u8()? {
                0 => None,
                1 => {
                    let len = r.u32()? as usize;
                    let text = std::str::from_utf8(r.take(len)?)
                        .map_err(|_| Error::corrupt(WHAT, "a key is not UTF-8"))?;
                    Some(text.to_string())
                }
                t => return Err(Error::corrupt(WHAT, format!("key tag {t}"))),
            };
            if counters.insert(key, Counter { sum, error }).is_some() {
                return Err(Error::corrupt(WHAT, "a key is listed twice"));
            }
        }
        if r.at != bytes.len() {
            return Err(Error::corrupt(
                WHAT,
                format!("{} trailing bytes", bytes.len() - r.at),
            ));
        }
        Ok(TopNCounter {
            capacity,
            counters,
            missed,
        })
    }

    /// Merges stored bytes into `into` (the first state read becomes it).
    pub fn merge_bytes(into: &mut Option<TopNCounter>, bytes: &[u8]) -> Result<()> {
        let other = TopNCounter::from_bytes(bytes)?;
        match into {
            Some(s) => s.merge(&other),
            None => *into = Some(other),
        }
        Ok(())
    }

    /// Heap bytes, roughly: the hash table slots and the keys' text.
    pub fn memory_size(&self) -> usize {
        let slot = std::mem::size_of::<(Option<String>, Counter)>() + 8;
        self.counters.capacity() * slot
            + self
                .counters
                .keys()
                .map(|k| k.as_ref().map_or(0, |k| k.capacity()))
                .sum::<usize>()
    }
}

fn order(a: &(Option<String>, Counter), b: &(Option<String>, Counter)) -> Ordering {
    b.1.sum
        .partial_cmp(&a.1.sum)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.0.cmp(&b.0))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Error::corrupt(WHAT, format!("truncated at byte {}", self.at)))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// The TOP_N states of a build's groups.
pub struct TopNStates {
    capacity: u32,
    groups: Vec<TopNCounter>,
}

impl TopNStates {
    /// States of a TOP_N measure of `n`.
    pub fn new(n: u32) -> Self {
        TopNStates {
            capacity: capacity_of(n),
            groups: Vec::new(),
        }
    }
}

impl GroupStates for TopNStates {
    fn push_empty(&mut self) -> Result<()> {
        self.groups.push(TopNCounter::new(self.capacity));
        Ok(())
    }

    fn update_raw(&mut self, input: &ArrayRef, group_of: &[u32]) -> Result<()> {
        let input = input
            .as_any()
            .downcast_ref::<StructArray>()
            .filter(|s| s.num_columns() == 2)
            .ok_or_else(|| {
                Error::invalid(
                    "TOP_N input",
                    format!("expected a struct {{value, by}}, got {}", input.data_type()),
                )
            })?;
        let values = cast(input.column(0), &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        let by = cast(input.column(1), &DataType::Utf8)?;
        let by = by.as_string::<i32>();
        for (i, &g) in group_of.iter().enumerate() {
            // A NULL struct row or value is not counted.
            if input.is_null(i) || values.is_null(i) {
                continue;
            }
            let key = (!by.is_null(i)).then(|| by.value(i));
            self.groups[g as usize].offer(key, values.value(i));
        }
        Ok(())
    }

    fn merge(&mut self, states: &ArrayRef, group_of: &[u32]) -> Result<()> {
        let states = states
            .as_binary_opt::<i32>()
            .ok_or_else(|| Error::corrupt(WHAT, "state column is not Binary"))?;
        for (i, &g) in group_of.iter().enumerate() {
            if states.is_null(i) {
                continue;
            }
            let other = TopNCounter::from_bytes(states.value(i))?;
            self.groups[g as usize].merge(&other);
        }
        Ok(())
    }

    fn finish(&self, groups: &[usize]) -> Result<ArrayRef> {
        let mut b = BinaryBuilder::new();
        for &g in groups {
            let mut s = self.groups[g].clone();
            s.truncate_to_capacity();
            b.append_value(s.to_bytes());
        }
        Ok(Arc::new(b.finish()))
    }

    fn memory_of(&self, groups: &[usize]) -> usize {
        groups.iter().map(|&g| self.groups[g].memory_size()).sum()
    }

    fn fixed_memory(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<TopNCounter>()
    }
}

impl TopNCounter {
    /// Truncates a raw state (up to `2 × capacity` counters) to what is stored.
    pub fn truncate_to_capacity(&mut self) {
        self.truncate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BinaryArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Fields};

    fn counter(cap: u32, items: &[(&str, f64)]) -> TopNCounter {
        let mut c = TopNCounter::new(cap);
        for (k, v) in items {
            c.offer(Some(k), *v);
        }
        c
    }

    fn sums(c: &TopNCounter) -> Vec<(String, f64, f64)> {
        c.sorted()
            .into_iter()
            .map(|(k, c)| (k.unwrap_or("<null>").to_string(), c.sum, c.error))
            .collect()
    }

    #[test]
    fn update_sums_per_key() {
        let c = counter(10, &[("a", 1.0), ("b", 5.0), ("a", 7.0)]);
        assert_eq!(
            sums(&c),
            vec![("a".into(), 8.0, 0.0), ("b".into(), 5.0, 0.0)]
        );
        assert!(c.is_exact());
    }

    #[test]
    fn capacity_follows_kylin() {
        assert_eq!(capacity_of(100), 5000);
        assert_eq!(capacity_of(10_000), MAX_CAPACITY);
    }

    #[test]
    fn merge_adds_and_is_associative_when_not_full() {
        let a = counter(10, &[("a", 1.0), ("b", 2.0)]);
        let b = counter(10, &[("b", 3.0), ("c", 4.0)]);
        let c = counter(10, &[("a", 5.0), ("d", 6.0)]);
        let mut ab_c = a.clone();
        ab_c.merge(&b);
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        assert_eq!(ab_c, a_bc);
        assert!(ab_c.is_exact());
        assert_eq!(
            sums(&ab_c),
            vec![
                ("a".into(), 6.0, 0.0),
                ("d".into(), 6.0, 0.0),
                ("b".into(), 5.0, 0.0),
                ("c".into(), 4.0, 0.0)
            ]
        );
    }

    #[test]
    fn round_trip_is_byte_stable() {
        let mut c = counter(3, &[("x", 1.5), ("y", 2.0), ("z", 9.0), ("w", 0.5)]);
        c.offer(None, 4.0);
        c.truncate_to_capacity();
        let bytes = c.to_bytes();
        let back = TopNCounter::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.len(), 3);
        let empty = TopNCounter::new(7);
        assert_eq!(TopNCounter::from_bytes(&empty.to_bytes()).unwrap(), empty);
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        let good = counter(4, &[("a", 1.0), ("b", 2.0)]).to_bytes();
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![2], b"garbage".to_vec()];
        for cut in 0..good.len() {
            cases.push(good[..cut].to_vec());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        cases.push(trailing);
        let mut bad_tag = good.clone();
        bad_tag[17 + 16] = 7;
        cases.push(bad_tag);
        let mut nan = good.clone();
        nan[17..25].copy_from_slice(&f64::NAN.to_le_bytes());
        cases.push(nan);
        let mut huge = good.clone();
        huge[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(huge);
        let mut zero_cap = good.clone();
        zero_cap[1..5].copy_from_slice(&0u32.to_le_bytes());
        cases.push(zero_cap);
        // Same key twice.
        let mut dup = counter(4, &[("a", 2.0)]).to_bytes();
        dup[13..17].copy_from_slice(&2u32.to_le_bytes());
        let entry = dup[17..].to_vec();
        dup.extend_from_slice(&entry);
        cases.push(dup);
        for bytes in cases {
            let e = TopNCounter::from_bytes(&bytes).expect_err("corrupt state accepted");
            assert!(e.to_string().contains("corrupt"), "{e}");
        }
    }

    #[test]
    fn overflow_keeps_bounds() {
        // 20 keys with sums 1..=20 into capacity 5: each counter's true sum lies within its
        // bounds, and every dropped key is at most `missed`.
        let truth: Vec<(String, f64)> = (1..=20).map(|i| (format!("k{i:02}"), i as f64)).collect();
        let mut parts = Vec::new();
        for chunk in truth.chunks(3) {
            let mut c = TopNCounter::new(5);
            for (k, v) in chunk {
                // Split each value in two rows to exercise sums.
                c.offer(Some(k), v / 2.0);
                c.offer(Some(k), v / 2.0);
            }
            parts.push(c);
        }
        let mut all = TopNCounter::new(5);
        for p in parts.iter().rev() {
            all.merge(p);
        }
        assert_eq!(all.len(), 5);
        assert!(!all.is_exact());
        for (k, c) in all.sorted() {
            let t = truth.iter().find(|(n, _)| Some(n.as_str()) == k).unwrap().1;
            assert!(c.sum - c.error <= t && t <= c.sum, "{k:?} {c:?} true {t}");
        }
        for (k, t) in &truth {
            if !all.counters.contains_key(&Some(k.clone())) {
                assert!(*t <= all.missed(), "{k} {t} > {}", all.missed());
            }
        }
        // Bounds, not ranks, are what an overflowing merge keeps: keys arriving after a
        // truncation carry `missed` in their sums and may push out truly larger ones.
    }

    #[test]
    fn raw_updates_truncate_at_twice_capacity() {
        let mut c = TopNCounter::new(2);
        for (i, v) in [10.0, 9.0, 1.0, 2.0].iter().enumerate() {
            c.offer(Some(&format!("k{i}")), *v);
        }
        // 4 = 2 × capacity keys: truncated to the two largest, missed = 2.
        assert_eq!(c.len(), 2);
        assert_eq!(c.missed(), 2.0);
        c.offer(Some("new"), 1.0);
        let new = c.counters[&Some("new".to_string())];
        assert_eq!((new.sum, new.error), (3.0, 2.0));
    }

    #[test]
    fn group_states_update_merge_finish() {
        let mut s = TopNStates::new(1);
        s.push_empty().unwrap();
        s.push_empty().unwrap();
        let fields = Fields::from(vec![
            Field::new("value", DataType::Int64, true),
            Field::new("by", DataType::Utf8, true),
        ]);
        let input: ArrayRef = Arc::new(StructArray::new(
            fields,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("a"),
                    None,
                ])),
            ],
            None,
        ));
        s.update_raw(&input, &[0, 1, 0, 0]).unwrap();
        let stored = s.finish(&[0, 1]).unwrap();
        let mut t = TopNStates::new(1);
        t.push_empty().unwrap();
        t.merge(&stored, &[0, 0]).unwrap();
        let merged = t.finish(&[0]).unwrap();
        let merged = TopNCounter::from_bytes(merged.as_binary::<i32>().value(0)).unwrap();
        let got = sums(&merged);
        assert_eq!(
            got,
            vec![
                ("<null>".into(), 4.0, 0.0),
                ("b".into(), 2.0, 0.0),
                ("a".into(), 1.0, 0.0)
            ]
        );
        let bad: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"\x01junk".as_slice()]));
        assert!(t.merge(&bad, &[0]).is_err());
    }
}
