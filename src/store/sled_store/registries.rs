//! Clients, users and consents in sled: trees `clients` (`client_id` → [`ClientRecord`]),
//! `users` (`username` → [`UserRecord`]) and `consents` (`username ‖ 0 ‖ client_id` →
//! [`ConsentRecord`]). Each write flushes before it returns: these writes are rare, and a
//! client, user or consent is durable once acknowledged.

use crate::store::backend::{ClientStorage, UserStorage};
use crate::store::{ClientRecord, ConsentRecord, Record, StoreError, UserRecord};

pub(super) struct SledClients {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
}

impl ClientStorage for SledClients {
    fn load(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.tree.iter().values().map(|v| ClientRecord::decode(&v?)).collect()
    }

    fn put(&self, record: &ClientRecord) -> Result<(), StoreError> {
        self.tree.insert(record.client_id.as_bytes(), record.encode())?;
        self.db.flush()?;
        Ok(())
    }

    fn remove(&self, client_id: &str) -> Result<bool, StoreError> {
        let existed = self.tree.remove(client_id.as_bytes())?.is_some();
        self.db.flush()?;
        Ok(existed)
    }
}

pub(super) struct SledUsers {
    pub(super) db: sled::Db,
    pub(super) users: sled::Tree,
    /// A username cannot contain a NUL (see `admin::validate_username`), so one user's prefix
    /// never matches another's.
    pub(super) consents: sled::Tree,
}

fn consent_key(username: &str, client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(username.len() + 1 + client_id.len());
    k.extend_from_slice(username.as_bytes());
    k.push(0);
    k.extend_from_slice(client_id.as_bytes());
    k
}

fn user_prefix(username: &str) -> Vec<u8> {
    let mut prefix = username.as_bytes().to_vec();
    prefix.push(0);
    prefix
}

impl UserStorage for SledUsers {
    fn get(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .get(username.as_bytes())?
            .map(|v| UserRecord::decode(&v))
            .transpose()
    }

    fn put(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.users.insert(user.username.as_bytes(), user.encode())?;
        self.db.flush()?;
        Ok(())
    }

    fn remove(&self, username: &str) -> Result<bool, StoreError> {
        let existed = self.users.remove(username.as_bytes())?.is_some();
        for entry in self.consents.scan_prefix(user_prefix(username)) {
            let (k, _) = entry?;
            self.consents.remove(k)?;
        }
        self.db.flush()?;
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users.iter().map(|e| UserRecord::decode(&e?.1)).collect()
    }

    fn consent(&self, username: &str, client_id: &str) -> Result<Option<ConsentRecord>, StoreError> {
        self.consents
            .get(consent_key(username, client_id))?
            .map(|v| ConsentRecord::decode(&v))
            .transpose()
    }

    fn put_consent(&self, username: &str, client_id: &str, consent: &ConsentRecord) -> Result<(), StoreError> {
        self.consents
            .insert(consent_key(username, client_id), consent.encode())?;
        self.db.flush()?;
        Ok(())
    }

    fn consents_of(&self, username: &str) -> Result<Vec<(String, ConsentRecord)>, StoreError> {
        let prefix = user_prefix(username);
        self.consents
            .scan_prefix(&prefix)
            .map(|entry| {
                let (k, v) = entry?;
                let client = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                Ok((client, ConsentRecord::decode(&v)?))
            })
            .collect()
    }

    /// Reads every consent: removing a client is rare, and consents are keyed by user first.
    fn forget_client(&self, client_id: &str) -> Result<usize, StoreError> {
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
}
