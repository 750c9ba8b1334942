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
//! # Binary format, version 2 (written)
//!
//! Little-endian; `varint` is unsigned LEB128 (at most 10 bytes), `zigzag` maps a signed
//! integer to an unsigned one (`(v << 1) ^ (v >> 63)`).
//!
//! | size   | content                                                             |
//! |--------|---------------------------------------------------------------------|
//! | 1      | format version, `2`                                                 |
//! | varint | capacity, `1..=MAX_CAPACITY`                                        |
//! | 8      | `f64` missed, finite, `>= 0`                                        |
//! | varint | counter count `k`, `<= capacity`                                    |
//! | 1      | flags: `1` a NULL key, `2` errors stored, `4` sums as `f64`         |
//! | ...    | the text keys, ascending by bytes, strictly (so keys are distinct)  |
//! | ...    | `k` sums                                                            |
//! | ...    | `k` errors, when flag `2`                                           |
//!
//! Counters are in key order, the NULL key (flag `1`) first. A text key is front-coded
//! against the key before it: `varint` bytes shared with it, `varint` length of the rest, the
//! rest (the whole is UTF-8). A sum is a `zigzag varint` of an integer when every sum of the
//! state is an integer of magnitude at most 2^53 (exactly representable), otherwise (flag
//! `4`) an `f64` (finite) each. Errors are all zero unless flag `2`, then an `f64` (finite,
//! `>= 0`) each. Writers set a flag only when needed, so the bytes depend only on the
//! contents. Sorted, shared-prefix keys and integer sums make a state about a quarter of
//! version 1's size before compression (SSB's `Supplier#000001362` keys, revenue sums) and
//! 30 % smaller after the block's zstd.
//!
//! # Binary format, version 1 (still read)
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
//! text), and for text a `u32` byte length and the UTF-8 bytes, by sum descending, then key
//! ascending (NULL first); keys are distinct.
//!
//! Readers reject anything else, trailing bytes included, with [`Error::corrupt`] and never
//! panic.

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
/// The format written; [`VERSION_1`] is still read.
const VERSION: u8 = 2;
const VERSION_1: u8 = 1;
const WHAT: &str = "TOP_N state";
/// Version 2 flags.
const NULL_KEY: u8 = 1;
const ERRORS: u8 = 2;
const FLOAT_SUMS: u8 = 4;
/// Integers up to this magnitude are exact in an `f64`.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

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

/// A state's counters by key. foldhash, not std's SipHash: a build merges the counters of
/// every parent row's state into its group's (SipHash alone was 5.6 % of an SSB build's CPU).
type Counters = HashMap<Option<String>, Counter, foldhash::fast::RandomState>;

/// A space-saving TOP_N state.
#[derive(Debug, Clone, PartialEq)]
pub struct TopNCounter {
    capacity: u32,
    counters: Counters,
    missed: f64,
}

impl TopNCounter {
    pub fn new(capacity: u32) -> Self {
        TopNCounter {
            capacity: capacity.clamp(1, MAX_CAPACITY),
            counters: Counters::default(),
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

    /// Merges `other` into `self` (Kylin's `TopNCounter.merge`), then truncates. `other` is
    /// taken by value: its keys move instead of being copied, and a first merge into an empty
    /// state (every group of a build starts so) takes `other`'s table whole.
    pub fn merge(&mut self, mut other: TopNCounter) {
        if self.counters.is_empty() && self.missed == 0.0 {
            other.capacity = self.capacity;
            *self = other;
            self.truncate();
            return;
        }
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
        for (k, o) in other.counters {
            match self.counters.get_mut(&k) {
                Some(c) => {
                    c.sum += o.sum;
                    c.error += o.error;
                }
                None => {
                    self.counters.insert(
                        k,
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

    /// The stored form, version 2 (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut counters: Vec<(Option<&str>, Counter)> = self
            .counters
            .iter()
            .map(|(k, c)| (k.as_deref(), *c))
            .collect();
        // NULL first, then text by bytes (`str`'s order).
        counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let integer = |x: f64| x.fract() == 0.0 && x.abs() <= EXACT_INTEGER;
        let mut flags = 0;
        if counters.first().is_some_and(|c| c.0.is_none()) {
            flags |= NULL_KEY;
        }
        if counters.iter().any(|c| c.1.error != 0.0) {
            flags |= ERRORS;
        }
        if !counters.iter().all(|c| integer(c.1.sum)) {
            flags |= FLOAT_SUMS;
        }
        let key_bytes: usize = counters.iter().map(|c| c.0.map_or(0, str::len)).sum();
        let mut out = Vec::with_capacity(24 + key_bytes + 12 * counters.len());
        out.push(VERSION);
        put_varint(&mut out, u64::from(self.capacity));
        out.extend_from_slice(&self.missed.to_le_bytes());
        put_varint(&mut out, counters.len() as u64);
        out.push(flags);
        let mut previous: &[u8] = &[];
        for key in counters.iter().filter_map(|c| c.0) {
            let key = key.as_bytes();
            let shared = key.iter().zip(previous).take_while(|(a, b)| a == b).count();
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (key.len() - shared) as u64);
            out.extend_from_slice(&key[shared..]);
            previous = key;
        }
        for (_, c) in &counters {
            if flags & FLOAT_SUMS != 0 {
                out.extend_from_slice(&c.sum.to_le_bytes());
            } else {
                let v = c.sum as i64;
                put_varint(&mut out, ((v << 1) ^ (v >> 63)) as u64);
            }
        }
        if flags & ERRORS != 0 {
            for (_, c) in &counters {
                out.extend_from_slice(&c.error.to_le_bytes());
            }
        }
        out
    }

    /// Reads a stored state (version 2 or 1); anything else is [`Error::corrupt`].
    pub fn from_bytes(bytes: &[u8]) -> Result<TopNCounter> {
        let mut r = Reader { bytes, at: 0 };
        let state = match r.u8()? {
            VERSION => Self::read_v2(&mut r)?,
            VERSION_1 => Self::read_v1(&mut r)?,
            version => {
                return Err(Error::corrupt(
                    WHAT,
                    format!(
                        "format version {version} (this build reads versions {VERSION_1} and \
                         {VERSION})"
                    ),
                ))
            }
        };
        if r.at != bytes.len() {
            return Err(Error::corrupt(
                WHAT,
                format!("{} trailing bytes", bytes.len() - r.at),
            ));
        }
        Ok(state)
    }

    fn read_v2(r: &mut Reader) -> Result<TopNCounter> {
        let (capacity, missed, k) = read_header(r, |r| r.varint())?;
        let flags = r.u8()?;
        if flags & !(NULL_KEY | ERRORS | FLOAT_SUMS) != 0 {
            return Err(Error::corrupt(WHAT, format!("flags {flags:#x}")));
        }
        // Every counter takes at least one byte (its sum): a bad count cannot allocate much.
        if k > r.bytes.len() {
            return Err(Error::corrupt(
                WHAT,
                format!("{k} counters in {} bytes", r.bytes.len()),
            ));
        }
        let null = flags & NULL_KEY != 0;
        if null && k == 0 {
            return Err(Error::corrupt(WHAT, "a NULL key flag without counters"));
        }
        let mut keys: Vec<Option<String>> = Vec::with_capacity(k);
        if null {
            keys.push(None);
        }
        // The last key read; each key is rebuilt in place from it (no allocation but the
        // key's own `String`).
        let mut previous: Vec<u8> = Vec::new();
        let mut first_text = true;
        while keys.len() < k {
            let shared = r.varint()?;
            let rest = r.varint()?;
            if shared > previous.len() as u64 {
                return Err(Error::corrupt(
                    WHAT,
                    format!("a key shares {shared} bytes with one of {}", previous.len()),
                ));
            }
            let shared = shared as usize;
            let rest = r.take(usize::try_from(rest).unwrap_or(usize::MAX))?;
            // Both share `shared` bytes, so the new key is greater exactly when its rest is
            // greater than the previous key's (the first text key may be anything, even "").
            if !first_text && rest <= &previous[shared..] {
                return Err(Error::corrupt(WHAT, "keys out of order or listed twice"));
            }
            first_text = false;
            previous.truncate(shared);
            previous.extend_from_slice(rest);
            let text = std::str::from_utf8(&previous)
                .map_err(|_| Error::corrupt(WHAT, "a key is not UTF-8"))?;
            keys.push(Some(text.to_owned()));
        }
        let mut sums = Vec::with_capacity(k);
        for _ in 0..k {
            let sum = if flags & FLOAT_SUMS != 0 {
                r.f64()?
            } else {
                let z = r.varint()?;
                let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
                if v.unsigned_abs() > EXACT_INTEGER as u64 {
                    return Err(Error::corrupt(WHAT, format!("integer sum {v}")));
                }
                v as f64
            };
            if !sum.is_finite() {
                return Err(Error::corrupt(WHAT, format!("sum {sum}")));
            }
            sums.push(sum);
        }
        let mut counters = Counters::with_capacity_and_hasher(k, Default::default());
        for (key, sum) in keys.into_iter().zip(sums) {
            let error = if flags & ERRORS != 0 { r.f64()? } else { 0.0 };
            if !error.is_finite() || error < 0.0 {
                return Err(Error::corrupt(WHAT, format!("error bound {error}")));
            }
            counters.insert(key, Counter { sum, error });
        }
        Ok(TopNCounter {
            capacity,
            counters,
            missed,
        })
    }

    fn read_v1(r: &mut Reader) -> Result<TopNCounter> {
        let (capacity, missed, k) = read_header(r, |r| r.u32().map(u64::from))?;
        // Each counter takes at least 17 bytes: a bad count cannot allocate much.
        if k.saturating_mul(17) > r.bytes.len() {
            return Err(Error::corrupt(
                WHAT,
                format!("{k} counters in {} bytes", r.bytes.len()),
            ));
        }
        let mut counters = Counters::with_capacity_and_hasher(k, Default::default());
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
            Some(s) => s.merge(other),
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
    /// Unsigned LEB128 of at most 10 bytes whose value fits a `u64`.
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(Error::corrupt(WHAT, "a varint overflows 64 bits"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::corrupt(WHAT, "a varint longer than 10 bytes"))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Capacity, missed bound and counter count, checked; both versions store them in this order,
/// the integers as `read_int` reads them.
fn read_header(
    r: &mut Reader,
    read_int: impl Fn(&mut Reader<'_>) -> Result<u64>,
) -> Result<(u32, f64, usize)> {
    let capacity = read_int(r)?;
    if capacity == 0 || capacity > u64::from(MAX_CAPACITY) {
        return Err(Error::corrupt(WHAT, format!("capacity {capacity}")));
    }
    let missed = r.f64()?;
    if !missed.is_finite() || missed < 0.0 {
        return Err(Error::corrupt(WHAT, format!("missed bound {missed}")));
    }
    let k = read_int(r)?;
    if k > capacity {
        return Err(Error::corrupt(
            WHAT,
            format!("{k} counters over capacity {capacity}"),
        ));
    }
    Ok((capacity as u32, missed, k as usize))
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
            self.groups[g as usize].merge(other);
        }
        Ok(())
    }

    fn finish(&self, groups: &[usize]) -> Result<ArrayRef> {
        let mut b = BinaryBuilder::new();
        for &g in groups {
            let state = &self.groups[g];
            // Merged states are truncated already; raw ones hold up to twice the capacity.
            if state.len() <= state.capacity as usize {
                b.append_value(state.to_bytes());
            } else {
                let mut s = state.clone();
                s.truncate_to_capacity();
                b.append_value(s.to_bytes());
            }
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
        ab_c.merge(b.clone());
        ab_c.merge(c.clone());
        let mut bc = b.clone();
        bc.merge(c);
        let mut a_bc = a.clone();
        a_bc.merge(bc);
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

    /// Version 1 as it was written (by sum descending, then key), to check it is still read.
    fn v1_bytes(c: &TopNCounter) -> Vec<u8> {
        let mut out = vec![VERSION_1];
        out.extend_from_slice(&c.capacity.to_le_bytes());
        out.extend_from_slice(&c.missed.to_le_bytes());
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        for (k, c) in c.sorted() {
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

    fn assert_corrupt(cases: Vec<Vec<u8>>) {
        for bytes in cases {
            let e = TopNCounter::from_bytes(&bytes)
                .expect_err(&format!("corrupt state accepted: {bytes:?}"));
            assert!(e.to_string().contains("corrupt"), "{e}");
        }
    }

    #[test]
    fn version_2_is_compact_and_exact_for_every_kind_of_state() {
        // Shared-prefix keys and integer sums: front-coded and varint.
        let mut ssb = TopNCounter::new(5000);
        for i in 0..2000 {
            ssb.offer(
                Some(&format!("Supplier#{i:09}")),
                f64::from(i * 7919 % 100_003),
            );
        }
        let v2 = ssb.to_bytes();
        let v1 = v1_bytes(&ssb);
        assert!(
            v2.len() * 3 < v1.len(),
            "{} vs {} bytes",
            v2.len(),
            v1.len()
        );
        // Fractional and huge sums (f64s), errors, a NULL key, an empty key, multi-byte text.
        let mut odd = counter(3, &[("", 0.5), ("é", 2.0), ("z", 1e300), ("a", -3.0)]);
        odd.offer(None, 4.0);
        odd.truncate_to_capacity();
        let mut negative_zero = counter(4, &[("b", -0.0), ("a", -(2f64.powi(53)))]);
        negative_zero.offer(Some("c"), 2f64.powi(53));
        assert_eq!(
            negative_zero.to_bytes()[11],
            0,
            "integer sums, at the limits"
        );
        for c in [
            &ssb,
            &odd,
            &negative_zero,
            &with_error(),
            &TopNCounter::new(1),
        ] {
            let mut c = c.clone();
            c.truncate_to_capacity();
            let bytes = c.to_bytes();
            assert_eq!(bytes[0], VERSION);
            let back = TopNCounter::from_bytes(&bytes).unwrap();
            assert_eq!(back, c);
            assert_eq!(back.to_bytes(), bytes, "bytes depend only on the contents");
            // The same state in version 1 reads back equal.
            assert_eq!(TopNCounter::from_bytes(&v1_bytes(&c)).unwrap(), c);
        }
        assert_ne!(with_error().to_bytes()[11] & ERRORS, 0);
        assert_eq!(odd.to_bytes()[11], NULL_KEY | FLOAT_SUMS);
    }

    /// A state after a truncation: a counter with an error bound.
    fn with_error() -> TopNCounter {
        TopNCounter {
            capacity: 2,
            counters: [
                (
                    Some("a".to_string()),
                    Counter {
                        sum: 5.0,
                        error: 0.0,
                    },
                ),
                (
                    Some("b".to_string()),
                    Counter {
                        sum: 3.0,
                        error: 1.5,
                    },
                ),
            ]
            .into_iter()
            .collect(),
            missed: 1.5,
        }
    }

    /// The first merge into an empty state takes the merged state whole, under the
    /// measure's capacity: as merging its counters one by one would.
    #[test]
    fn a_first_merge_takes_the_state_under_its_own_capacity() {
        let mut wide = TopNCounter::new(4);
        wide.merge(with_error());
        let mut want = with_error();
        want.capacity = 4;
        assert_eq!(wide, want);
        let mut narrow = TopNCounter::new(1);
        narrow.merge(with_error());
        assert_eq!(narrow.capacity(), 1);
        assert_eq!(sums(&narrow), vec![("a".into(), 5.0, 0.0)]);
        // "b" (3.0) was dropped: a key not listed may have had up to 3.0.
        assert_eq!(narrow.missed(), 3.0);
        // Merging into a state that is not empty still adds the other's missed bound.
        let mut both = counter(4, &[("c", 1.0)]);
        both.merge(with_error());
        assert_eq!(
            sums(&both),
            vec![
                ("a".into(), 5.0, 0.0),
                ("b".into(), 3.0, 1.5),
                ("c".into(), 2.5, 1.5)
            ]
        );
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        let mut with_null = counter(4, &[("ab", 1.0), ("ac", 2.0)]);
        with_null.offer(None, 3.0);
        let good = with_null.to_bytes();
        // version, capacity 4, missed 0.0, k 3, flags NULL_KEY, keys "ab", "ac", sums 3, 1, 2
        assert_eq!(good[..12], [2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 3, NULL_KEY]);
        assert_eq!(good[12..], [0, 2, b'a', b'b', 1, 1, b'c', 6, 2, 4]);
        let patched = |at: usize, b: &[u8]| {
            let mut v = good.clone();
            v.splice(at..at + b.len(), b.iter().copied());
            v
        };
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![2], vec![3], b"garbage".to_vec()];
        cases.extend((0..good.len()).map(|cut| good[..cut].to_vec()));
        cases.push([good.as_slice(), &[0]].concat());
        cases.extend([
            patched(1, &[0]),              // capacity 0
            patched(10, &[5]),             // more counters than the capacity
            patched(11, &[NULL_KEY | 8]),  // unknown flag
            patched(16, &[3, 1]),          // a key sharing more than the last has
            patched(17, &[1, b'b']),       // "ab" then "ab": listed twice
            patched(18, b"a"),             // "ab" then "aa": out of order
            patched(13, &[2, 0xff, 0xfe]), // not UTF-8
        ]);
        // A huge integer sum, a NaN float sum, a negative error, a varint over 64 bits.
        let mut huge = good[..19].to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 2, 4]);
        cases.push(huge);
        let mut nan = counter(2, &[("a", 0.5)]).to_bytes();
        let at = nan.len() - 8;
        nan[at..].copy_from_slice(&f64::NAN.to_le_bytes());
        cases.push(nan);
        let mut negative = with_error().to_bytes();
        assert_ne!(negative[11] & ERRORS, 0);
        let at = negative.len() - 8;
        negative[at..].copy_from_slice(&(-1.0f64).to_le_bytes());
        cases.push(negative);
        let mut long = vec![2];
        long.extend_from_slice(&[0xff; 10]);
        long.push(1);
        cases.push(long);
        assert_corrupt(cases);
    }

    #[test]
    fn corrupt_version_1_bytes_are_errors() {
        let good = v1_bytes(&counter(4, &[("a", 1.0), ("b", 2.0)]));
        assert_eq!(TopNCounter::from_bytes(&good).unwrap().len(), 2);
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|cut| good[..cut].to_vec()).collect();
        cases.push([good.as_slice(), &[0]].concat());
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
        let mut dup = v1_bytes(&counter(4, &[("a", 2.0)]));
        dup[13..17].copy_from_slice(&2u32.to_le_bytes());
        let entry = dup[17..].to_vec();
        dup.extend_from_slice(&entry);
        cases.push(dup);
        assert_corrupt(cases);
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
        for p in parts.into_iter().rev() {
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
