//! Users and their remembered consents.
//!
//! Sign-ins and consent checks are rare next to introspections, so the registry reads the
//! backend directly; there is no copy in memory to keep in step. Every write is durable before
//! it returns, so a user added or a consent remembered survives a crash once acknowledged. A
//! password is stored only as an argon2id PHC string (`crypto::hash_password`).

use std::sync::Arc;

use super::backend::UserStorage;
use super::{ConsentRecord, StoreError, UserRecord};

#[derive(Clone)]
pub struct UserRegistry {
    storage: Arc<dyn UserStorage>,
}

impl UserRegistry {
    pub(super) fn new(storage: Box<dyn UserStorage>) -> Self {
        Self {
            storage: Arc::from(storage),
        }
    }

    pub fn get(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.storage.get(username)
    }

    /// Creates or replaces a user, durably.
    pub fn upsert(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.storage.put(user)
    }

    /// Removes a user and every consent they gave, durably. Returns whether the user existed.
    pub fn remove(&self, username: &str) -> Result<bool, StoreError> {
        self.storage.remove(username)
    }

    /// Forgets every consent given to `client_id`, durably (the client was removed: one
    /// registered again under the same id must ask again). Returns how many were forgotten.
    pub fn forget_client(&self, client_id: &str) -> Result<usize, StoreError> {
        self.storage.forget_client(client_id)
    }

    /// The consents `username` gave, by client id.
    pub fn consents_of(&self, username: &str) -> Result<Vec<(String, ConsentRecord)>, StoreError> {
        self.storage.consents_of(username)
    }

    /// Every user, ordered by username.
    pub fn list(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.storage.list()
    }

    pub fn consent(&self, username: &str, client_id: &str) -> Result<Option<ConsentRecord>, StoreError> {
        self.storage.consent(username, client_id)
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
        self.storage.put_consent(username, client_id, &record)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::contract::user;
    use crate::store::Store;

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
