//! A small least-recently-used cache bounded in bytes, shared by the result cache and the
//! decoded-block cache.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

struct Entry<V> {
    value: V,
    bytes: u64,
    last_used: u64,
}

struct Inner<K, V> {
    map: HashMap<K, Entry<V>>,
    bytes: u64,
    clock: u64,
}

pub(crate) struct LruCache<K, V> {
    max_bytes: u64,
    inner: Mutex<Inner<K, V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> LruCache<K, V> {
    pub fn new(max_bytes: u64) -> Self {
        LruCache {
            max_bytes,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.clock += 1;
        let now = inner.clock;
        let e = inner.map.get_mut(key)?;
        e.last_used = now;
        Some(e.value.clone())
    }

    /// Inserts `value`; entries larger than the whole budget are not cached. When the budget
    /// is exceeded the least recently used entries go until a quarter of it is free, so
    /// eviction's sort is paid rarely.
    pub fn insert(&self, key: K, value: V, bytes: u64) {
        if bytes > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        inner.clock += 1;
        let last_used = inner.clock;
        if let Some(old) = inner.map.insert(
            key,
            Entry {
                value,
                bytes,
                last_used,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        if inner.bytes > self.max_bytes {
            let mut by_age: Vec<(u64, K)> = inner
                .map
                .iter()
                .map(|(k, e)| (e.last_used, k.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(t, _)| *t);
            let target = self.max_bytes - self.max_bytes / 4;
            for (_, k) in by_age {
                if inner.bytes <= target {
                    break;
                }
                if let Some(e) = inner.map.remove(&k) {
                    inner.bytes -= e.bytes;
                }
            }
        }
    }

    pub fn clear(&self) {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.map.clear();
        inner.bytes = 0;
    }

    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.inner.lock().expect("cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let c = LruCache::new(100);
        c.insert("a", 1, 30);
        c.insert("b", 2, 30);
        c.insert("c", 3, 30);
        // a is now the most recently used; 120 > 100 evicts the least recently used until a
        // quarter of the budget is free: b, then c.
        assert_eq!(c.get(&"a"), Some(1));
        c.insert("d", 4, 30);
        assert!(c.bytes() <= 75);
        assert_eq!(c.get(&"b"), None);
        assert_eq!(c.get(&"c"), None);
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.get(&"d"), Some(4));
        c.insert("huge", 4, 1000);
        assert_eq!(c.get(&"huge"), None);
        c.insert("a", 5, 10); // replacing keeps the byte count right
        assert_eq!(c.bytes(), 40);
        c.clear();
        assert_eq!(c.get(&"a"), None);
        assert_eq!(c.bytes(), 0);
    }
}
