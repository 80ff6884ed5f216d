//! A few recently used entries of a large hash table, kept in front of it.
//!
//! The records of one TCP connection come close together, while the
//! formatter's table of sequence-number bases holds tens of thousands of
//! conversations: each lookup there was a cache miss, the largest single
//! cost in the churn profile. A scan of a handful of keys that were just
//! used is not. (The state tracker had one too, until its table held only
//! 4-byte indexes: then the scan cost more than the lookup it saved.)

/// The last `N` (key, value) pairs put, newest overwriting oldest.
pub struct Recent<K, V, const N: usize> {
    items: [Option<(K, V)>; N],
    next: usize,
}

impl<K: Copy + Eq, V: Copy, const N: usize> Default for Recent<K, V, N> {
    fn default() -> Self {
        Self { items: [None; N], next: 0 }
    }
}

impl<K: Copy + Eq, V: Copy, const N: usize> Recent<K, V, N> {
    pub fn get(&self, key: &K) -> Option<V> {
        self.items.iter().flatten().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// Remembers `key`'s value (replacing what it had here).
    pub fn put(&mut self, key: K, value: V) {
        if let Some(item) = self.items.iter_mut().flatten().find(|(k, _)| *k == key) {
            item.1 = value;
            return;
        }
        self.items[self.next] = Some((key, value));
        self.next = (self.next + 1) % N;
    }

    /// Forgets the entries whose value `gone` matches.
    pub fn forget(&mut self, gone: impl Fn(&V) -> bool) {
        for item in &mut self.items {
            if item.as_ref().is_some_and(|(_, v)| gone(v)) {
                *item = None;
            }
        }
    }

    pub fn clear(&mut self) {
        self.items = [None; N];
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn keeps_the_last_n() {
        let mut r: Recent<u32, u32, 2> = Recent::default();
        r.put(1, 10);
        r.put(2, 20);
        assert_eq!((r.get(&1), r.get(&2)), (Some(10), Some(20)));
        r.put(1, 11);
        assert_eq!(r.get(&1), Some(11));
        r.put(3, 30);
        // The oldest slot (1's) went.
        assert_eq!((r.get(&1), r.get(&2), r.get(&3)), (None, Some(20), Some(30)));
        r.forget(|&v| v == 20);
        assert_eq!(r.get(&2), None);
        r.clear();
        assert_eq!(r.get(&3), None);
    }
}
