//! The index from what a revocation event names (a token's `jti`, a grant, a user, a client) to
//! the cache keys of the entries that hold it.
//!
//! Guarantees:
//! - it is written when an active answer is admitted (a cache miss) and when an entry leaves
//!   the cache (the cache's eviction listener), never on a cache hit;
//! - it holds only keys of entries the cache holds, or is about to: an entry is indexed just
//!   before the cache stores it, and unindexed when the cache drops it, for whatever cause;
//! - each indexed entry carries the stamp of its admission, and an entry leaving the cache
//!   unindexes only what its own admission put there: the removal of an old answer for a
//!   token, reported late, cannot unindex a newer answer for the same token.

use std::collections::HashMap;

use dashmap::DashMap;

use crate::cache::Digest;
use crate::introspect::TokenInfo;

/// What an identifier identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Jti,
    Grant,
    Sub,
    Client,
}

const KINDS: usize = 4;

impl Kind {
    fn slot(self) -> usize {
        match self {
            Kind::Jti => 0,
            Kind::Grant => 1,
            Kind::Sub => 2,
            Kind::Client => 3,
        }
    }
}

/// The identifiers of an answer, by kind.
pub fn identifiers(info: &TokenInfo) -> impl Iterator<Item = (Kind, &str)> {
    [
        (Kind::Jti, info.jti.as_deref()),
        (Kind::Grant, info.grant_id.as_deref()),
        (Kind::Sub, info.sub.as_deref()),
        (Kind::Client, Some(info.client_id.as_str())),
    ]
    .into_iter()
    .filter_map(|(kind, id)| id.map(|id| (kind, id)))
}

/// Holders of one identifier: cache key → the stamp of the admission that indexed it.
type Holders = HashMap<Digest, u64>;

pub struct Index {
    by_kind: [DashMap<Box<str>, Holders>; KINDS],
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    pub fn new() -> Index {
        Index {
            by_kind: std::array::from_fn(|_| DashMap::new()),
        }
    }

    /// Records that the entry at `key`, admitted with `stamp`, holds `info`'s identifiers.
    pub fn insert(&self, key: Digest, stamp: u64, info: &TokenInfo) {
        for (kind, id) in identifiers(info) {
            let map = &self.by_kind[kind.slot()];
            match map.get_mut(id) {
                Some(mut holders) => {
                    holders.insert(key, stamp);
                }
                None => {
                    map.entry(id.into()).or_default().insert(key, stamp);
                }
            }
        }
    }

    /// Forgets the entry at `key` admitted with `stamp`; what another admission indexed stays.
    pub fn forget(&self, key: &Digest, stamp: u64, info: &TokenInfo) {
        for (kind, id) in identifiers(info) {
            let map = &self.by_kind[kind.slot()];
            let emptied = match map.get_mut(id) {
                Some(mut holders) if holders.get(key) == Some(&stamp) => {
                    holders.remove(key);
                    holders.is_empty()
                }
                _ => false,
            };
            if emptied {
                // Checked again under the shard's lock: an insert may have come in between.
                map.remove_if(id, |_, holders| holders.is_empty());
            }
        }
    }

    /// The keys of the entries holding `id` as a `kind`.
    pub fn holders(&self, kind: Kind, id: &str) -> Vec<Digest> {
        self.by_kind[kind.slot()]
            .get(id)
            .map(|holders| holders.keys().copied().collect())
            .unwrap_or_default()
    }

    /// How many identifiers are indexed, all kinds together.
    pub fn len(&self) -> usize {
        self.by_kind.iter().map(DashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scope::Scopes;

    pub(crate) fn info(jti: &str, grant: Option<&str>, sub: Option<&str>, client: &str) -> TokenInfo {
        TokenInfo {
            client_id: client.into(),
            sub: sub.map(Into::into),
            username: None,
            scopes: Scopes::parse("read"),
            exp: None,
            iat: Some(1),
            jti: Some(jti.into()),
            grant_id: grant.map(Into::into),
            cache_max_age: None,
            cache_max_age_with_feed: None,
        }
    }

    fn sorted(mut keys: Vec<Digest>) -> Vec<Digest> {
        keys.sort();
        keys
    }

    #[test]
    fn each_kind_finds_exactly_the_entries_holding_it() {
        let index = Index::new();
        let a = info("j-a", Some("g-1"), Some("u-1"), "c-1");
        let b = info("j-b", Some("g-1"), Some("u-1"), "c-1");
        let c = info("j-c", Some("g-2"), Some("u-2"), "c-1");
        let d = info("j-d", None, None, "c-2");
        for (n, i) in [&a, &b, &c, &d].into_iter().enumerate() {
            index.insert([n as u8; 32], n as u64, i);
        }
        assert_eq!(index.holders(Kind::Jti, "j-b"), vec![[1; 32]]);
        assert_eq!(sorted(index.holders(Kind::Grant, "g-1")), vec![[0; 32], [1; 32]]);
        assert_eq!(sorted(index.holders(Kind::Sub, "u-1")), vec![[0; 32], [1; 32]]);
        assert_eq!(index.holders(Kind::Sub, "u-2"), vec![[2; 32]]);
        assert_eq!(
            sorted(index.holders(Kind::Client, "c-1")),
            vec![[0; 32], [1; 32], [2; 32]]
        );
        assert_eq!(index.holders(Kind::Client, "c-2"), vec![[3; 32]]);
        // Kinds do not mix: a grant id is not a jti, a client id is not a sub.
        assert!(index.holders(Kind::Jti, "g-1").is_empty());
        assert!(index.holders(Kind::Sub, "c-1").is_empty());
        assert!(index.holders(Kind::Grant, "nope").is_empty());
    }

    #[test]
    fn forgetting_every_entry_empties_the_index() {
        let index = Index::new();
        let a = info("j-a", Some("g-1"), Some("u-1"), "c-1");
        let b = info("j-b", Some("g-1"), Some("u-1"), "c-1");
        index.insert([0; 32], 0, &a);
        index.insert([1; 32], 1, &b);
        index.forget(&[0; 32], 0, &a);
        assert_eq!(index.holders(Kind::Grant, "g-1"), vec![[1; 32]]);
        assert!(index.holders(Kind::Jti, "j-a").is_empty());
        index.forget(&[1; 32], 1, &b);
        assert!(index.is_empty(), "{} identifiers left", index.len());
    }

    #[test]
    fn a_late_removal_of_an_older_admission_keeps_the_newer_one() {
        let index = Index::new();
        let a = info("j-a", None, Some("u-1"), "c-1");
        index.insert([0; 32], 1, &a);
        // The same token admitted again (its old entry expired), then the old entry's removal
        // reported.
        index.insert([0; 32], 2, &a);
        index.forget(&[0; 32], 1, &a);
        assert_eq!(index.holders(Kind::Jti, "j-a"), vec![[0; 32]]);
        index.forget(&[0; 32], 2, &a);
        assert!(index.is_empty());
    }
}
