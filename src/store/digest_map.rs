//! A hash map keyed by token digest that grows without long pauses.
//!
//! A partition holds up to millions of records in memory, and a plain `HashMap` grows by
//! rehashing every entry at once: at a million entries that stalled the owning shard, and every
//! request queued behind it, for a couple of hundred milliseconds (BENCHMARKS.md, issuance
//! p99). This map is split into [`SEGMENTS`] maps by one byte of the digest, so a growth step
//! rehashes one segment, a 256th of the entries. Digests are HMAC outputs, so the byte spreads
//! entries evenly, and no caller can aim entries at one segment without the server key.

use std::collections::HashMap;

use crate::crypto::TokenDigest;

/// Number of segments; one per value of the digest's last byte.
pub const SEGMENTS: usize = 256;

type Segment<V> = HashMap<TokenDigest, V, ahash::RandomState>;

pub struct DigestMap<V> {
    segments: Box<[Segment<V>]>,
    len: usize,
}

impl<V> Default for DigestMap<V> {
    fn default() -> Self {
        Self {
            segments: (0..SEGMENTS).map(|_| Segment::default()).collect(),
            len: 0,
        }
    }
}

impl<V> DigestMap<V> {
    // The last byte: the first eight choose the shard, so within one shard they are not even.
    fn segment(&self, digest: &TokenDigest) -> &Segment<V> {
        &self.segments[usize::from(digest.0[31])]
    }

    fn segment_mut(&mut self, digest: &TokenDigest) -> &mut Segment<V> {
        &mut self.segments[usize::from(digest.0[31])]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, digest: &TokenDigest) -> Option<&V> {
        self.segment(digest).get(digest)
    }

    pub fn get_mut(&mut self, digest: &TokenDigest) -> Option<&mut V> {
        self.segment_mut(digest).get_mut(digest)
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, digest: TokenDigest, value: V) -> Option<V> {
        let old = self.segment_mut(&digest).insert(digest, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The digests of every entry whose value satisfies `keep`; reads every entry.
    pub fn keys_where(&self, mut keep: impl FnMut(&V) -> bool) -> Vec<TokenDigest> {
        self.segments
            .iter()
            .flat_map(|s| s.iter())
            .filter(|(_, v)| keep(v))
            .map(|(d, _)| *d)
            .collect()
    }

    /// The digests of the entries of segment `segment` (taken modulo [`SEGMENTS`]) whose value
    /// satisfies `keep`: a 256th of the map, for work that visits it a step at a time.
    pub fn segment_keys_where(&self, segment: usize, mut keep: impl FnMut(&V) -> bool) -> Vec<TokenDigest> {
        self.segments[segment % SEGMENTS]
            .iter()
            .filter(|(_, v)| keep(v))
            .map(|(d, _)| *d)
            .collect()
    }

    pub fn remove(&mut self, digest: &TokenDigest) -> Option<V> {
        let old = self.segment_mut(digest).remove(digest);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(first: u8, last: u8) -> TokenDigest {
        let mut d = [first; 32];
        d[31] = last;
        TokenDigest(d)
    }

    #[test]
    fn behaves_as_one_map_across_segments() {
        let mut m = DigestMap::default();
        for first in 0..4u8 {
            for last in [0u8, 1, 255] {
                assert_eq!(m.insert(digest(first, last), (first, last)), None);
            }
        }
        assert_eq!(m.len(), 12);
        assert_eq!(
            m.insert(digest(2, 1), (9, 9)),
            Some((2, 1)),
            "replacing keeps the count"
        );
        assert_eq!(m.len(), 12);
        assert_eq!(m.get(&digest(2, 1)), Some(&(9, 9)));
        *m.get_mut(&digest(3, 255)).unwrap() = (7, 7);
        assert_eq!(m.remove(&digest(3, 255)), Some((7, 7)));
        assert_eq!(m.remove(&digest(3, 255)), None);
        assert_eq!(m.get(&digest(5, 0)), None);
        assert_eq!(m.len(), 11);
        assert!(!m.is_empty());
        let mut last_one = m.segment_keys_where(1, |_| true);
        last_one.sort_by_key(|d| d.0);
        assert_eq!(last_one, (0..4u8).map(|f| digest(f, 1)).collect::<Vec<_>>());
        assert_eq!(
            m.segment_keys_where(256, |v| v.0 == 1),
            [digest(1, 0)],
            "modulo SEGMENTS"
        );
    }
}
