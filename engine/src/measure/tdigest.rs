//! t-digest: the stored, mergeable state of a PERCENTILE measure.
//!
//! A merging t-digest (Dunning & Ertl, "Computing extremely accurate quantiles using
//! t-digests", 2019) with the `k1` scale function `k(q) = δ/(2π)·asin(2q − 1)`, where the
//! compression `δ` is the measure's `compression` option (10..=10000, default 100). Values
//! are buffered and folded into the sorted centroids in one merge pass when the buffer fills
//! (or when the state is written or queried), so the build's hot loop only appends: base
//! cuboid rows hold a handful of values, and a handful of singletons is also what their
//! digest keeps (`k1` never merges the outermost points of a small digest). A digest keeps at
//! most about `δ` centroids; its quantile estimate interpolates between centroid means
//! (singletons answer their own value), with the exact minimum and maximum at the ends.
//! With `δ = 100` the rank error is a fraction of a percent in the middle and smaller in the
//! tails (the unit tests check p50/p95/p99 within 1 % rank after merging many digests).
//!
//! NaN and infinite values are skipped, as NULL is: a t-digest interpolates means, which
//! they would poison.
//!
//! # Why not DataFusion's t-digest
//! DataFusion's `approx_percentile_cont` keeps a `TDigest` (functions-aggregate-common)
//! whose only serialized form is a list of six `ScalarValue`s for its own partial
//! aggregation: no byte format, no version, and its constructor from that state asserts
//! (panics) on bad input. A cube keeps states for years across DataFusion upgrades, so the
//! state is this module's own documented format instead.
//!
//! # Byte format (version 1, little-endian)
//! ```text
//! u8      version = 1
//! u32     compression
//! u32     n, the number of centroids
//! if n > 0:
//!   f64   min, f64 max        the exact extremes of the values
//!   n × f64                   centroid means, non-decreasing, within [min, max]
//!   n × varint (LEB128 u64)   centroid weights (value counts), each ≥ 1
//! ```
//! Nothing may follow. Digests of different compressions merge (the target's compression
//! wins); anything else that does not parse is [`Error::corrupt`].

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};

use super::GroupStates;
use crate::error::{Error, Result};
use crate::model::PERCENTILE_COMPRESSION;

/// The byte format's version (first byte).
pub const FORMAT_VERSION: u8 = 1;
/// The compression when a measure does not say.
pub const DEFAULT_COMPRESSION: u32 = 100;

const WHAT: &str = "PERCENTILE state (t-digest)";

/// A cluster of values: their mean and how many they are.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Centroid {
    mean: f64,
    weight: u64,
}

/// A t-digest; see the module docs.
#[derive(Clone, Debug)]
pub struct TDigest {
    compression: u32,
    /// Merged centroids, sorted by mean.
    centroids: Vec<Centroid>,
    /// Values and centroids not merged yet, in any order.
    buffer: Vec<Centroid>,
    /// Total weight of `centroids` and `buffer`.
    count: u64,
    min: f64,
    max: f64,
}

impl TDigest {
    /// An empty digest; `compression` must be in `10..=10000`.
    pub fn new(compression: u32) -> Result<Self> {
        if !PERCENTILE_COMPRESSION.contains(&compression) {
            return Err(Error::invalid(
                "PERCENTILE",
                format!(
                    "compression {compression} is outside {}..={}",
                    PERCENTILE_COMPRESSION.start(),
                    PERCENTILE_COMPRESSION.end()
                ),
            ));
        }
        Ok(Self {
            compression,
            centroids: Vec::new(),
            buffer: Vec::new(),
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        })
    }

    pub fn compression(&self) -> u32 {
        self.compression
    }

    /// How many values the digest summarizes.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Buffered entries that trigger a merge pass: a few times the centroid bound, so the
    /// pass (a sort) is amortized over many cheap appends.
    fn buffer_limit(&self) -> usize {
        (self.compression as usize * 4).max(64)
    }

    /// Adds one value (NaN and infinities are skipped).
    pub fn add(&mut self, value: f64) {
        if value.is_finite() {
            self.push(Centroid {
                mean: value,
                weight: 1,
            });
        }
    }

    fn push(&mut self, c: Centroid) {
        self.count += c.weight;
        self.min = self.min.min(c.mean);
        self.max = self.max.max(c.mean);
        self.buffer.push(c);
        if self.buffer.len() >= self.buffer_limit() {
            self.compress();
        }
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &TDigest) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.buffer.extend_from_slice(&other.centroids);
        self.buffer.extend_from_slice(&other.buffer);
        if self.buffer.len() >= self.buffer_limit() {
            self.compress();
        }
    }

    /// Parses a serialized digest and merges it into `self`, without building it first.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let parsed = Parsed::of(bytes)?;
        if parsed.count == 0 {
            return Ok(());
        }
        self.count = self
            .count
            .checked_add(parsed.count)
            .ok_or_else(|| Error::corrupt(WHAT, "the merged digests hold more than 2^64 values"))?;
        self.min = self.min.min(parsed.min);
        self.max = self.max.max(parsed.max);
        self.buffer.extend(parsed.centroids());
        if self.buffer.len() >= self.buffer_limit() {
            self.compress();
        }
        Ok(())
    }

    /// Folds the buffer into the centroids.
    pub fn compress(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        self.centroids = merged(&self.centroids, &self.buffer, self.count, self.compression);
        self.buffer.clear();
    }

    /// The merged centroids, without changing `self`.
    fn compressed(&self) -> Cow<'_, [Centroid]> {
        if self.buffer.is_empty() {
            Cow::Borrowed(&self.centroids)
        } else {
            Cow::Owned(merged(
                &self.centroids,
                &self.buffer,
                self.count,
                self.compression,
            ))
        }
    }

    /// The estimated value at quantile `q` (clamped to 0..=1); `None` for an empty digest.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let c = self.compressed();
        Some(estimate(&c, self.count, self.min, self.max, q))
    }

    /// The serialized state (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let c = self.compressed();
        let mut out = Vec::with_capacity(9 + 16 + c.len() * 10);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.compression.to_le_bytes());
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        if !c.is_empty() {
            out.extend_from_slice(&self.min.to_le_bytes());
            out.extend_from_slice(&self.max.to_le_bytes());
            for x in c.iter() {
                out.extend_from_slice(&x.mean.to_le_bytes());
            }
            for x in c.iter() {
                let mut w = x.weight;
                loop {
                    let byte = (w & 0x7f) as u8;
                    w >>= 7;
                    if w == 0 {
                        out.push(byte);
                        break;
                    }
                    out.push(byte | 0x80);
                }
            }
        }
        out
    }

    /// Reads a serialized state.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let parsed = Parsed::of(bytes)?;
        let mut d = TDigest::new(parsed.compression)?;
        if parsed.count > 0 {
            d.count = parsed.count;
            d.min = parsed.min;
            d.max = parsed.max;
            d.centroids = parsed.centroids().collect();
        }
        Ok(d)
    }

    /// Approximate heap and inline bytes held, for memory budgeting.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.centroids.capacity() + self.buffer.capacity()) * std::mem::size_of::<Centroid>()
    }
}

/// A validated serialized digest, borrowed.
struct Parsed<'a> {
    compression: u32,
    count: u64,
    min: f64,
    max: f64,
    means: &'a [u8],
    weights: Vec<u64>,
}

impl<'a> Parsed<'a> {
    fn of(bytes: &'a [u8]) -> Result<Self> {
        let bad = |detail: &str| Error::corrupt(WHAT, detail);
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("no bytes"))?;
        if version != FORMAT_VERSION {
            return Err(bad(&format!(
                "format version {version} (this build reads version {FORMAT_VERSION})"
            )));
        }
        let (compression, rest) = take_u32(rest).ok_or_else(|| bad("truncated header"))?;
        if !PERCENTILE_COMPRESSION.contains(&compression) {
            return Err(bad(&format!("compression {compression} out of range")));
        }
        let (n, rest) = take_u32(rest).ok_or_else(|| bad("truncated header"))?;
        let n = n as usize;
        if n == 0 {
            if !rest.is_empty() {
                return Err(bad("bytes after an empty digest"));
            }
            return Ok(Parsed {
                compression,
                count: 0,
                min: 0.0,
                max: 0.0,
                means: &[],
                weights: Vec::new(),
            });
        }
        // Each centroid takes at least 9 bytes: refuse a count the bytes cannot hold before
        // allocating for it.
        if rest.len() < 16 || (rest.len() - 16) / 9 < n {
            return Err(bad(&format!("{n} centroids do not fit in the bytes")));
        }
        let min = f64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"));
        let max = f64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        let (means, mut rest) = rest[16..].split_at(n * 8);
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(bad("bad minimum or maximum"));
        }
        let mut prev = min;
        for m in means.chunks_exact(8) {
            let m = f64::from_le_bytes(m.try_into().expect("8 bytes"));
            if !(m >= prev && m <= max) {
                return Err(bad("centroid means out of order or outside [min, max]"));
            }
            prev = m;
        }
        let mut weights = Vec::with_capacity(n);
        let mut count: u64 = 0;
        for _ in 0..n {
            let (w, r) = take_varint(rest).ok_or_else(|| bad("bad centroid weight"))?;
            if w == 0 {
                return Err(bad("a centroid of weight 0"));
            }
            count = count
                .checked_add(w)
                .ok_or_else(|| bad("weights overflow"))?;
            weights.push(w);
            rest = r;
        }
        if !rest.is_empty() {
            return Err(bad("bytes after the centroids"));
        }
        Ok(Parsed {
            compression,
            count,
            min,
            max,
            means,
            weights,
        })
    }

    fn centroids(&self) -> impl Iterator<Item = Centroid> + '_ {
        self.means
            .chunks_exact(8)
            .zip(&self.weights)
            .map(|(m, &weight)| Centroid {
                mean: f64::from_le_bytes(m.try_into().expect("8 bytes")),
                weight,
            })
    }
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

fn take_varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// The largest quantile a centroid starting at `q0` may reach: `k⁻¹(k(q0) + 1)` for
/// `k(q) = δ/(2π)·asin(2q − 1)`.
fn q_limit(q0: f64, compression: f64) -> f64 {
    use std::f64::consts::PI;
    let k = compression / (2.0 * PI) * (2.0 * q0 - 1.0).clamp(-1.0, 1.0).asin() + 1.0;
    if k >= compression / 4.0 {
        return 1.0;
    }
    ((2.0 * PI * k / compression).sin() + 1.0) / 2.0
}

/// One merge pass over `centroids` and `buffer` (total weight `count`).
fn merged(
    centroids: &[Centroid],
    buffer: &[Centroid],
    count: u64,
    compression: u32,
) -> Vec<Centroid> {
    let mut all: Vec<Centroid> = Vec::with_capacity(centroids.len() + buffer.len());
    all.extend_from_slice(centroids);
    all.extend_from_slice(buffer);
    all.sort_unstable_by(|a, b| a.mean.total_cmp(&b.mean));
    let total = count as f64;
    let delta = f64::from(compression);
    let mut out = Vec::with_capacity((compression as usize).min(all.len()));
    let mut items = all.into_iter();
    let Some(mut cur) = items.next() else {
        return out;
    };
    // Weight of the centroids already emitted, and how far the current one may grow.
    let mut done: u64 = 0;
    let mut limit = total * q_limit(0.0, delta);
    for x in items {
        let proposed = done + cur.weight + x.weight;
        if proposed as f64 <= limit {
            let w = cur.weight + x.weight;
            cur.mean += (x.mean - cur.mean) * (x.weight as f64 / w as f64);
            cur.weight = w;
        } else {
            done += cur.weight;
            out.push(cur);
            limit = total * q_limit(done as f64 / total, delta);
            cur = x;
        }
    }
    out.push(cur);
    out
}

/// The value at quantile `q` of `n` values summarized by centroids `c` (non-empty, sorted),
/// following Dunning's MergingDigest: each centroid's weight is centred on its mean, values
/// between two centre points interpolate linearly, singletons answer themselves, and the
/// ends interpolate to the exact minimum and maximum.
fn estimate(c: &[Centroid], n: u64, min: f64, max: f64, q: f64) -> f64 {
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let n = n as f64;
    if c.len() == 1 && c[0].weight == 1 {
        return c[0].mean;
    }
    let index = q * n;
    if index < 1.0 {
        return min;
    }
    if index > n - 1.0 {
        return max;
    }
    let first = c[0];
    let fw = first.weight as f64;
    if fw > 2.0 && index < fw / 2.0 {
        return min + (index - 1.0) / (fw / 2.0 - 1.0) * (first.mean - min);
    }
    let last = c[c.len() - 1];
    let lw = last.weight as f64;
    if lw > 2.0 && n - index <= lw / 2.0 {
        return max - (n - index - 1.0) / (lw / 2.0 - 1.0) * (max - last.mean);
    }
    let mut so_far = fw / 2.0;
    for pair in c.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let dw = (a.weight + b.weight) as f64 / 2.0;
        if so_far + dw > index {
            let mut left = 0.0;
            if a.weight == 1 {
                if index - so_far < 0.5 {
                    return a.mean;
                }
                left = 0.5;
            }
            let mut right = 0.0;
            if b.weight == 1 {
                if so_far + dw - index <= 0.5 {
                    return b.mean;
                }
                right = 0.5;
            }
            let z1 = index - so_far - left;
            let z2 = so_far + dw - index - right;
            if z1 + z2 <= 0.0 {
                return (a.mean + b.mean) / 2.0;
            }
            return (a.mean * z2 + b.mean * z1) / (z1 + z2);
        }
        so_far += dw;
    }
    // Between the last centre and the maximum.
    let z1 = (index - so_far).max(0.0);
    let z2 = (n - index).max(0.0);
    if z1 + z2 <= 0.0 {
        return max;
    }
    (last.mean * z2 + max * z1) / (z1 + z2)
}

/// Per-group digests for the build's aggregator.
pub struct PercentileStates {
    compression: u32,
    digests: Vec<TDigest>,
}

impl PercentileStates {
    pub fn new(compression: u32) -> Result<Self> {
        TDigest::new(compression)?;
        Ok(Self {
            compression,
            digests: Vec::new(),
        })
    }
}

impl GroupStates for PercentileStates {
    fn push_empty(&mut self) -> Result<()> {
        self.digests.push(TDigest::new(self.compression)?);
        Ok(())
    }

    fn update_raw(&mut self, input: &ArrayRef, group_of: &[u32]) -> Result<()> {
        if !input.data_type().is_numeric() {
            return Err(Error::invalid(
                "PERCENTILE",
                format!("needs a numeric column, got {}", input.data_type()),
            ));
        }
        let values = cast(input, &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        for (i, &g) in group_of.iter().enumerate() {
            if values.is_valid(i) {
                self.digests[g as usize].add(values.value(i));
            }
        }
        Ok(())
    }

    fn merge(&mut self, states: &ArrayRef, group_of: &[u32]) -> Result<()> {
        let states = states.as_binary_opt::<i32>().ok_or_else(|| {
            Error::corrupt(
                WHAT,
                format!("stored as {}, not Binary", states.data_type()),
            )
        })?;
        for (i, &g) in group_of.iter().enumerate() {
            if states.is_valid(i) {
                self.digests[g as usize].merge_bytes(states.value(i))?;
            }
        }
        Ok(())
    }

    fn finish(&self, groups: &[usize]) -> Result<ArrayRef> {
        let mut b = BinaryBuilder::new();
        for &g in groups {
            b.append_value(self.digests[g].to_bytes());
        }
        Ok(Arc::new(b.finish()))
    }

    fn memory_of(&self, groups: &[usize]) -> usize {
        groups.iter().map(|&g| self.digests[g].memory_size()).sum()
    }

    fn fixed_memory(&self) -> usize {
        (self.digests.capacity() - self.digests.len()) * std::mem::size_of::<TDigest>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BinaryArray, Int64Array};

    /// A deterministic xorshift stream in [0, 1).
    fn uniform(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    /// Where `v` falls among `sorted`: the fractions of values below and at most `v`.
    fn rank(sorted: &[f64], v: f64) -> (f64, f64) {
        let below = sorted.partition_point(|&x| x < v) as f64;
        let upto = sorted.partition_point(|&x| x <= v) as f64;
        let n = sorted.len() as f64;
        (below / n, upto / n)
    }

    fn check_ranks(d: &TDigest, values: &[f64], tolerance: f64) {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999] {
            let v = d.quantile(q).unwrap();
            let (lo, hi) = rank(&sorted, v);
            assert!(
                lo - tolerance <= q && q <= hi + tolerance,
                "q {q}: estimate {v} has rank {lo}..{hi}"
            );
        }
    }

    fn digest_of(values: &[f64]) -> TDigest {
        let mut d = TDigest::new(DEFAULT_COMPRESSION).unwrap();
        values.iter().for_each(|&v| d.add(v));
        d
    }

    fn skewed(n: usize) -> Vec<f64> {
        // Log-normal-ish: exp of a sum of uniforms, a long right tail like revenue.
        let a = uniform(7, n);
        let b = uniform(11, n);
        let c = uniform(13, n);
        (0..n).map(|i| ((a[i] + b[i] + c[i]) * 4.0).exp()).collect()
    }

    #[test]
    fn one_digest_is_accurate_on_uniform_and_skewed_data() {
        for values in [uniform(3, 100_000), skewed(100_000)] {
            let d = digest_of(&values);
            assert_eq!(d.count(), 100_000);
            check_ranks(&d, &values, 0.005);
            assert!(d.compressed().len() <= 2 * DEFAULT_COMPRESSION as usize);
        }
    }

    #[test]
    fn merges_of_many_digests_stay_accurate() {
        for values in [uniform(5, 200_000), skewed(200_000)] {
            // Many small digests (like base cuboid rows), merged through bytes in two levels
            // (like child cuboids and then segments).
            let mut level1: Vec<TDigest> = Vec::new();
            for chunk in values.chunks(2_000) {
                let mut mid = TDigest::new(DEFAULT_COMPRESSION).unwrap();
                for small in chunk.chunks(7) {
                    mid.merge_bytes(&digest_of(small).to_bytes()).unwrap();
                }
                level1.push(mid);
            }
            let mut total = TDigest::new(DEFAULT_COMPRESSION).unwrap();
            for d in &level1 {
                total.merge_bytes(&d.to_bytes()).unwrap();
            }
            assert_eq!(total.count(), values.len() as u64);
            check_ranks(&total, &values, 0.01);
        }
    }

    #[test]
    fn merge_is_order_insensitive_within_the_error() {
        let values = skewed(50_000);
        let (a, b) = values.split_at(20_000);
        let mut ab = digest_of(a);
        ab.merge(&digest_of(b));
        let mut ba = digest_of(b);
        ba.merge(&digest_of(a));
        for q in [0.5, 0.95, 0.99] {
            check_ranks(&ab, &values, 0.01);
            check_ranks(&ba, &values, 0.01);
            assert!(ab.quantile(q).is_some());
        }
    }

    #[test]
    fn small_digests_are_exact() {
        let d = digest_of(&[5.0, 1.0, 3.0]);
        assert_eq!(d.quantile(0.0), Some(1.0));
        assert_eq!(d.quantile(0.5), Some(3.0));
        assert_eq!(d.quantile(1.0), Some(5.0));
        let single = digest_of(&[42.0]);
        assert_eq!(single.quantile(0.99), Some(42.0));
        let back = TDigest::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(back.quantile(0.5), Some(3.0));
    }

    #[test]
    fn round_trip_keeps_the_digest() {
        let values = skewed(30_000);
        let mut d = digest_of(&values);
        let bytes = d.to_bytes();
        let back = TDigest::from_bytes(&bytes).unwrap();
        d.compress();
        assert_eq!(back.centroids, d.centroids);
        assert_eq!((back.count, back.min, back.max), (d.count, d.min, d.max));
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.compression(), DEFAULT_COMPRESSION);
        // The sizes the README states: 34 bytes for one value, about 1 KB when full.
        assert_eq!(digest_of(&[1.0]).to_bytes().len(), 34);
        assert!((500..1500).contains(&bytes.len()), "{} bytes", bytes.len());
    }

    #[test]
    fn empty_digest() {
        let d = TDigest::new(50).unwrap();
        assert_eq!(d.quantile(0.5), None);
        let bytes = d.to_bytes();
        assert_eq!(bytes, [FORMAT_VERSION, 50, 0, 0, 0, 0, 0, 0, 0]);
        let back = TDigest::from_bytes(&bytes).unwrap();
        assert_eq!(back.count(), 0);
        let mut m = digest_of(&[1.0, 2.0]);
        m.merge_bytes(&bytes).unwrap();
        assert_eq!(m.count(), 2);
        assert!(TDigest::new(5).is_err());
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let d = digest_of(&[f64::NAN, 1.0, f64::INFINITY, 2.0]);
        assert_eq!(d.count(), 2);
        assert_eq!(d.quantile(1.0), Some(2.0));
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        let good = digest_of(&uniform(9, 1000)).to_bytes();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![2],
            vec![FORMAT_VERSION, 100, 0],
            vec![FORMAT_VERSION, 5, 0, 0, 0, 0, 0, 0, 0],
            vec![FORMAT_VERSION, 100, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![FORMAT_VERSION, 100, 0, 0, 0, 255, 255, 255, 255],
            good[..good.len() - 1].to_vec(),
            [good.as_slice(), &[0]].concat(),
        ];
        // Means out of order.
        let mut swapped = good.clone();
        swapped[25..33].copy_from_slice(&1e300f64.to_le_bytes());
        cases.push(swapped);
        // A NaN maximum.
        let mut nan = good.clone();
        nan[17..25].copy_from_slice(&f64::NAN.to_le_bytes());
        cases.push(nan);
        // A zero weight.
        let mut zero = good.clone();
        let n = zero.len();
        zero[n - 1] = 0;
        cases.push(zero);
        for bytes in &cases {
            assert!(TDigest::from_bytes(bytes).is_err(), "{bytes:?}");
            let mut d = TDigest::new(100).unwrap();
            let err = d.merge_bytes(bytes).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        }
        // Random garbage never panics.
        for seed in 0..200u64 {
            let junk: Vec<u8> = uniform(seed + 1, (seed % 40) as usize)
                .into_iter()
                .map(|x| (x * 256.0) as u8)
                .collect();
            let _ = TDigest::from_bytes(&junk);
        }
    }

    #[test]
    fn group_states_build_and_merge() {
        let mut s = PercentileStates::new(100).unwrap();
        s.push_empty().unwrap();
        s.push_empty().unwrap();
        let input: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(10)]));
        s.update_raw(&input, &[0, 0, 1, 0]).unwrap();
        let out = s.finish(&[1, 0]).unwrap();
        let mut merged = PercentileStates::new(100).unwrap();
        merged.push_empty().unwrap();
        merged.merge(&out, &[0, 0]).unwrap();
        let d =
            TDigest::from_bytes(merged.finish(&[0]).unwrap().as_binary::<i32>().value(0)).unwrap();
        assert_eq!(d.count(), 3);
        assert_eq!(d.quantile(0.5), Some(3.0));
        assert!(merged.memory_of(&[0]) > 0);
        let bad: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"junk".as_slice()]));
        assert!(merged.merge(&bad, &[0]).is_err());
        let strings: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec!["x"]));
        assert!(merged.update_raw(&strings, &[0]).is_err());
    }
}
