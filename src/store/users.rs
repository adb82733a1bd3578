//! Users and their remembered consents, in sled.
//!
//! Sign-ins and consent checks are rare next to introspections, so the registry reads sled
//! directly; there is no copy in memory to keep in step. Every write is flushed before it
//! returns, so a user added or a consent remembered survives a crash once acknowledged. A
//! password is stored only as an argon2id PHC string (`crypto::hash_password`).

use super::{ConsentRecord, Record, StoreError, UserRecord};

#[derive(Clone)]
pub struct UserRegistry {
    db: sled::Db,
    users: sled::Tree,
    /// `username ‖ 0 ‖ client_id` → [`ConsentRecord`]. A username cannot contain a NUL (see
    /// `admin::validate_username`), so one user's prefix never matches another's.
    consents: sled::Tree,
}

fn consent_key(username: &str, client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(username.len() + 1 + client_id.len());
    k.extend_from_slice(username.as_bytes());
    k.push(0);
    k.extend_from_slice(client_id.as_bytes());
    k
}

impl UserRegistry {
    pub(super) fn open(db: sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            users: db.open_tree("users")?,
            consents: db.open_tree("consents")?,
            db,
        })
    }

    pub fn get(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .get(username.as_bytes())?
            .map(|v| UserRecord::decode(&v))
            .transpose()
    }

    /// Creates or replaces a user, durably.
    pub fn upsert(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.users.insert(user.username.as_bytes(), user.encode())?;
        self.db.flush()?;
        Ok(())
    }

    /// Removes a user and every consent they gave, durably. Returns whether the user existed.
    pub fn remove(&self, username: &str) -> Result<bool, StoreError> {
        let existed = self.users.remove(username.as_bytes())?.is_some();
        let mut prefix = username.as_bytes().to_vec();
        prefix.push(0);
        for entry in self.consents.scan_prefix(&prefix) {
            let (k, _) = entry?;
            self.consents.remove(k)?;
        }
        self.db.flush()?;
        Ok(existed)
    }

    /// Forgets every consent given to `client_id`, durably (the client was removed: one registered
    /// again under the same id must ask again). Returns how many were forgotten. Reads every
    /// consent: removing a client is rare, and consents are keyed by user first.
    pub fn forget_client(&self, client_id: &str) -> Result<usize, StoreError> {
        let mut forgotten = 0;
        for entry in self.consents.iter() {
            let (k, _) = entry?;
            let of_client = k
                .iter()
                .position(|&b| b == 0)
                .is_some_and(|nul| &k[nul + 1..] == client_id.as_bytes());
            if of_client {
                self.consents.remove(&k)?;
                forgotten += 1;
            }
        }
        self.db.flush()?;
        Ok(forgotten)
    }

    /// The consents `username` gave, by client id.
    pub fn consents_of(&self, username: &str) -> Result<Vec<(String, ConsentRecord)>, StoreError> {
        let mut prefix = username.as_bytes().to_vec();
        prefix.push(0);
        self.consents
            .scan_prefix(&prefix)
            .map(|entry| {
                let (k, v) = entry?;
                let client = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                Ok((client, ConsentRecord::decode(&v)?))
            })
            .collect()
    }

    /// Every user, ordered by username.
    pub fn list(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users.iter().map(|e| UserRecord::decode(&e?.1)).collect()
    }

    pub fn consent(&self, username: &str, client_id: &str) -> Result<Option<ConsentRecord>, StoreError> {
        self.consents
            .get(consent_key(username, client_id))?
            .map(|v| ConsentRecord::decode(&v))
            .transpose()
    }

    /// Remembers that `username` approved `scopes` for `client_id`, adding to what they had
    /// approved before, durably.
    pub fn remember_consent(
        &self,
        username: &str,
        client_id: &str,
        scopes: &[String],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut all = self.consent(username, client_id)?.map(|c| c.scopes).unwrap_or_default();
        for s in scopes {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        all.sort();
        let record = ConsentRecord {
            scopes: all,
            granted_at: now,
        };
        self.consents
            .insert(consent_key(username, client_id), record.encode())?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn user(name: &str) -> UserRecord {
        UserRecord {
            username: name.into(),
            sub: format!("sub-{name}"),
            password_hash: "$argon2id$stub".into(),
            email: None,
            name: None,
        }
    }

    #[test]
    fn users_round_trip_and_removal_takes_their_consents() {
        let store = Store::temporary().unwrap();
        let reg = store.users().unwrap();
        reg.upsert(&user("bob")).unwrap();
        reg.upsert(&user("alice")).unwrap();
        reg.upsert(&user("al")).unwrap();
        let names: Vec<_> = reg.list().unwrap().into_iter().map(|u| u.username).collect();
        assert_eq!(names, ["al", "alice", "bob"]);
        assert_eq!(reg.get("alice").unwrap().unwrap().sub, "sub-alice");

        reg.remember_consent("alice", "app", &["openid".into()], 1).unwrap();
        reg.remember_consent("alice", "app", &["read".into(), "openid".into()], 2)
            .unwrap();
        reg.remember_consent("al", "app", &["read".into()], 3).unwrap();
        let c = reg.consent("alice", "app").unwrap().unwrap();
        assert_eq!(c.scopes, ["openid", "read"], "consents accumulate");
        assert!(reg.consent("alice", "other").unwrap().is_none());

        assert!(reg.remove("alice").unwrap());
        assert!(!reg.remove("alice").unwrap());
        assert!(reg.get("alice").unwrap().is_none());
        assert!(reg.consent("alice", "app").unwrap().is_none());
        assert!(
            reg.consent("al", "app").unwrap().is_some(),
            "a user whose name is a prefix keeps their consent"
        );
    }

    #[test]
    fn a_removed_client_is_forgotten_by_every_user() {
        let store = Store::temporary().unwrap();
        let reg = store.users().unwrap();
        for (user, client) in [("alice", "app"), ("alice", "app2"), ("bob", "app"), ("bob", "xapp")] {
            reg.remember_consent(user, client, &["read".into()], 1).unwrap();
        }
        assert_eq!(reg.forget_client("app").unwrap(), 2);
        assert!(reg.consent("alice", "app").unwrap().is_none());
        assert!(reg.consent("bob", "app").unwrap().is_none());
        let alice: Vec<_> = reg.consents_of("alice").unwrap().into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            alice,
            ["app2"],
            "a client whose id merely contains the removed one stays"
        );
        assert_eq!(reg.consents_of("bob").unwrap()[0].0, "xapp");
        assert_eq!(reg.forget_client("app").unwrap(), 0);
    }
}
