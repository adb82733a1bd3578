//! One shard's partition of token state: a sled tree and the operations on it.
//!
//! A `TokenPartition` is owned by exactly one `TokenShard` actor, which is therefore the only
//! writer of its tree. Operations are synchronous and return as soon as sled has applied them in
//! memory; durability is the caller's business (see `GroupCommit`).

use super::{CodeRecord, Record, Redeem, StoreError, TokenRecord};
use crate::crypto::TokenDigest;

const TOKEN: u8 = b't';
const CODE: u8 = b'c';
const EXPIRY: u8 = b'e';

fn record_key(prefix: u8, d: &TokenDigest) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(&d.0);
    k
}

fn token_key(d: &TokenDigest) -> [u8; 33] {
    record_key(TOKEN, d)
}

fn code_key(d: &TokenDigest) -> [u8; 33] {
    record_key(CODE, d)
}

fn expiry_key(exp: u64, d: &TokenDigest) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[0] = EXPIRY;
    k[1..9].copy_from_slice(&exp.to_be_bytes());
    k[9..].copy_from_slice(&d.0);
    k
}

pub struct TokenPartition {
    tree: sled::Tree,
}

impl TokenPartition {
    pub(super) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Stores a token record and its expiry-index entry.
    pub fn insert(&self, digest: &TokenDigest, record: &TokenRecord) -> Result<(), StoreError> {
        self.insert_raw(TOKEN, digest, record.exp, record.encode())
    }

    /// Stores an authorization code and its expiry-index entry.
    pub fn insert_code(&self, digest: &TokenDigest, record: &CodeRecord) -> Result<(), StoreError> {
        self.insert_raw(CODE, digest, record.exp, record.encode())
    }

    // Two plain inserts, index entry first, rather than one `sled::Batch`: a batch takes sled's
    // write lock and logs a manifest, which made each write cost about twice as much and each
    // flush about four times as much (BENCHMARKS.md). The order keeps the invariant that matters
    // after a crash between the two: no record without its index entry. An entry without its
    // record is harmless; the sweeper removes it when its time comes.
    fn insert_raw(&self, prefix: u8, digest: &TokenDigest, exp: u64, value: Vec<u8>) -> Result<(), StoreError> {
        self.tree.insert(expiry_key(exp, digest), &[][..])?;
        self.tree.insert(record_key(prefix, digest), value)?;
        Ok(())
    }

    /// Redeems an authorization code at `now`. The first redemption marks the code used and
    /// returns it; later ones return it as `AlreadyUsed`, so the caller can treat a replay.
    pub fn redeem_code(&self, digest: &TokenDigest, now: u64) -> Result<Redeem, StoreError> {
        let key = code_key(digest);
        let Some(bytes) = self.tree.get(key)? else {
            return Ok(Redeem::Unknown);
        };
        let mut record = CodeRecord::decode(&bytes)?;
        if record.exp <= now {
            return Ok(Redeem::Expired);
        }
        if record.redeemed {
            return Ok(Redeem::AlreadyUsed(record));
        }
        record.redeemed = true;
        self.tree.insert(key, record.encode())?;
        record.redeemed = false;
        Ok(Redeem::Redeemed(record))
    }

    /// A read that touches the tree, for readiness: fails if sled cannot serve reads.
    pub fn probe(&self) -> Result<(), StoreError> {
        self.tree.get([0u8])?;
        Ok(())
    }

    /// The record for `digest`, live or not.
    pub fn get(&self, digest: &TokenDigest) -> Result<Option<TokenRecord>, StoreError> {
        match self.tree.get(token_key(digest))? {
            Some(bytes) => Ok(Some(TokenRecord::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Removes the token record for `digest`, whose expiry the caller read with [`get`](Self::get),
    /// and then its expiry-index entry (the reverse of the insertion order, for the same reason).
    pub fn delete(&self, digest: &TokenDigest, exp: u64) -> Result<(), StoreError> {
        self.tree.remove(token_key(digest))?;
        self.tree.remove(expiry_key(exp, digest))?;
        Ok(())
    }

    /// Removes up to `limit` records whose expiry is at or before `now`; returns how many.
    /// Reads only the expired prefix of the expiry index, so its cost follows the number of
    /// expired records, not the size of the partition.
    pub fn sweep_expired(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let end = expiry_key(now, &TokenDigest([0xff; 32]));
        let expired: Vec<sled::IVec> = self
            .tree
            .range(&[EXPIRY][..]..=&end[..])
            .keys()
            .take(limit)
            .collect::<Result<_, _>>()?;
        for key in &expired {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&key[9..41]);
            // The entry does not say which kind of record it indexes; removing an absent key
            // is a no-op, and token and code digests never collide (separate HMAC domains).
            self.tree.remove(token_key(&TokenDigest(digest)))?;
            self.tree.remove(code_key(&TokenDigest(digest)))?;
            self.tree.remove(key)?;
        }
        Ok(expired.len())
    }

    /// Moves every record of this partition (number `own` of the old layout) that belongs
    /// elsewhere under the new layout `parts`.
    pub(super) fn move_misplaced(&self, own: usize, parts: &[TokenPartition]) -> Result<(), StoreError> {
        let stays = |d: &TokenDigest| own < parts.len() && d.shard(parts.len()) == own;
        for prefix in [TOKEN, CODE] {
            for entry in self.tree.scan_prefix([prefix]) {
                let (key, value) = entry?;
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&key[1..33]);
                let digest = TokenDigest(digest);
                if stays(&digest) {
                    continue;
                }
                let exp = match prefix {
                    TOKEN => TokenRecord::decode(&value)?.exp,
                    _ => CodeRecord::decode(&value)?.exp,
                };
                parts[digest.shard(parts.len())].insert_raw(prefix, &digest, exp, value.to_vec())?;
                self.tree.remove(key)?;
                self.tree.remove(expiry_key(exp, &digest))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn digest(b: u8) -> TokenDigest {
        TokenDigest([b; 32])
    }

    fn partition() -> TokenPartition {
        Store::temporary().unwrap().partitions(1).unwrap().pop().unwrap()
    }

    #[test]
    fn insert_get_remove() {
        let p = partition();
        let r = TokenRecord::test_record(100);
        p.insert(&digest(1), &r).unwrap();
        assert_eq!(p.get(&digest(1)).unwrap(), Some(r.clone()));
        assert_eq!(p.get(&digest(2)).unwrap(), None);
        p.delete(&digest(1), r.exp).unwrap();
        assert_eq!(p.get(&digest(1)).unwrap(), None);
        p.delete(&digest(1), r.exp).unwrap();
        assert_eq!(
            p.sweep_expired(u64::MAX - 1, 10).unwrap(),
            0,
            "removal took the expiry entry too"
        );
    }

    #[test]
    fn sweep_removes_only_expired_and_respects_limit() {
        let p = partition();
        for i in 0..10u8 {
            p.insert(&digest(i), &TokenRecord::test_record(100 + i as u64)).unwrap();
        }
        assert_eq!(p.sweep_expired(99, 100).unwrap(), 0);
        assert_eq!(p.sweep_expired(104, 3).unwrap(), 3);
        assert_eq!(p.sweep_expired(104, 100).unwrap(), 2);
        for i in 0..10u8 {
            assert_eq!(p.get(&digest(i)).unwrap().is_some(), i >= 5, "token {i}");
        }
    }

    #[test]
    fn a_code_redeems_once_then_reports_replay() {
        let p = partition();
        let code = CodeRecord::test_record(100);
        p.insert_code(&digest(7), &code).unwrap();
        assert_eq!(
            p.get(&digest(7)).unwrap(),
            None,
            "codes and tokens live under separate keys"
        );
        assert_eq!(p.redeem_code(&digest(7), 50).unwrap(), Redeem::Redeemed(code.clone()));
        let replay = p.redeem_code(&digest(7), 51).unwrap();
        assert_eq!(replay, Redeem::AlreadyUsed(CodeRecord { redeemed: true, ..code }));
        assert_eq!(p.redeem_code(&digest(8), 50).unwrap(), Redeem::Unknown);
    }

    #[test]
    fn expired_codes_are_refused_and_swept() {
        let p = partition();
        p.insert_code(&digest(1), &CodeRecord::test_record(100)).unwrap();
        p.insert(&digest(2), &TokenRecord::test_record(100)).unwrap();
        assert_eq!(p.redeem_code(&digest(1), 100).unwrap(), Redeem::Expired);
        assert_eq!(p.sweep_expired(100, 10).unwrap(), 2);
        assert_eq!(p.redeem_code(&digest(1), 0).unwrap(), Redeem::Unknown);
        assert_eq!(p.get(&digest(2)).unwrap(), None);
    }
}
