//! One partition's entries in a sled tree (`tokens/<k>`).
//!
//! # Keys
//! `exp (u64 big endian) ‖ id (u64 big endian)` → `kind ‖ digest ‖ record`, where `id` comes
//! from `sled::Db::generate_id` (unique across the database and across restarts) and `kind` is
//! the entry's [`Kind::code`]: `t` for a token record, `c` for a code record (postcard), and
//! `f` for a revoked family (no record). Keys in expiry order make the tree its own expiry index, so a sweep reads only
//! an expired prefix. Within one expiry second, ids only grow, so new entries land at the
//! right edge of the tree's recent range instead of at random places: sled's inserts there cost
//! less (BENCHMARKS.md), and a 16-byte key is stored inline, without an allocation.

use crate::crypto::TokenDigest;
use crate::store::backend::{Entry, EntryKey, Kind, Loaded, PartitionLog, Swept};
use crate::store::StoreError;
const KEY_LEN: usize = 16;
/// Kind and digest, before the record in every value.
const VALUE_HEAD: usize = 33;

fn key(exp: u64, id: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&exp.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn value(digest: &TokenDigest, entry: Entry<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(VALUE_HEAD + 48);
    v.push(entry.kind().code());
    v.extend_from_slice(&digest.0);
    entry.encode_into(v)
}

/// A stored entry's parts: expiry and id from the key, kind and digest from the value, and the
/// record's bytes. `None` for bytes that are not an entry.
fn parse<'a>(k: &[u8], v: &'a [u8]) -> Option<(EntryKey, u8, TokenDigest, &'a [u8])> {
    let k: &[u8; KEY_LEN] = k.try_into().ok()?;
    let exp = u64::from_be_bytes(k[..8].try_into().ok()?);
    let id = u64::from_be_bytes(k[8..].try_into().ok()?);
    let (head, record) = (v.get(..VALUE_HEAD)?, &v[VALUE_HEAD..]);
    Some((
        EntryKey { exp, id },
        head[0],
        TokenDigest(head[1..].try_into().ok()?),
        record,
    ))
}

pub(super) struct SledPartition {
    /// For `generate_id`.
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
}

impl PartitionLog for SledPartition {
    fn load(
        &self,
        now: u64,
        visit: &mut dyn FnMut(EntryKey, TokenDigest, Loaded) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for entry in self.tree.range(key(now.saturating_add(1), 0)..) {
            let (k, v) = entry?;
            let (at, kind, digest, bytes) = parse(&k, &v).ok_or(StoreError::CorruptKey)?;
            let kind = Kind::from_code(kind).ok_or(StoreError::CorruptKey)?;
            visit(at, digest, Loaded::decode(kind, bytes)?)?;
        }
        Ok(())
    }

    fn put(&mut self, digest: &TokenDigest, entry: Entry<'_>) -> Result<EntryKey, StoreError> {
        let at = EntryKey {
            exp: entry.exp(),
            id: self.db.generate_id()?,
        };
        self.tree.insert(key(at.exp, at.id), value(digest, entry))?;
        Ok(at)
    }

    fn replace(&mut self, at: EntryKey, digest: &TokenDigest, entry: Entry<'_>) -> Result<(), StoreError> {
        debug_assert_eq!(at.exp, entry.exp(), "a replacement keeps its expiry");
        self.tree.insert(key(at.exp, at.id), value(digest, entry))?;
        Ok(())
    }

    fn delete(&mut self, at: EntryKey) -> Result<(), StoreError> {
        self.tree.remove(key(at.exp, at.id))?;
        Ok(())
    }

    fn sweep(&mut self, now: u64, limit: usize) -> Result<Vec<Swept>, StoreError> {
        let expired: Vec<(sled::IVec, sled::IVec)> = self
            .tree
            .range(..key(now.saturating_add(1), 0))
            .take(limit)
            .collect::<Result<_, _>>()?;
        let mut swept = Vec::with_capacity(expired.len());
        for (k, v) in &expired {
            self.tree.remove(k)?;
            // Bytes that are not an entry go too: the sweep is what would ever remove them.
            if let Some((at, kind, digest, _)) = parse(k, v) {
                let Some(kind) = Kind::from_code(kind) else {
                    continue;
                };
                swept.push(Swept {
                    id: at.id,
                    kind,
                    digest,
                });
            }
        }
        Ok(swept)
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.tree.first()?;
        Ok(())
    }
}

/// Moves every entry of `tree` (partition `own` of the old layout) that belongs to another
/// partition among `new` under the new count, one key at a time: inserted there, then removed
/// here, so a crash in between leaves a duplicate, never a loss. Keys are unique across the
/// database, so a moved key never meets another in its new tree.
pub(super) fn move_misplaced(tree: &sled::Tree, own: usize, new: &[sled::Tree]) -> Result<(), StoreError> {
    for entry in tree.iter() {
        let (k, v) = entry?;
        let (_, _, digest, _) = parse(&k, &v).ok_or(StoreError::CorruptKey)?;
        let target = digest.shard(new.len());
        if target == own {
            continue;
        }
        new[target].insert(&k, v)?;
        tree.remove(&k)?;
    }
    Ok(())
}

/// Whether a stored value is a token record (for counting what the sweeper left).
pub(super) fn is_token(v: &[u8]) -> bool {
    v.first() == Some(&Kind::Token.code())
}
