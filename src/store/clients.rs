//! The client registry: every registered client, in the backend and in a concurrent in-memory
//! map.
//!
//! Client authentication runs on every token, introspection and revocation request, so reads
//! are served from the `DashMap` without touching storage or taking a global lock. Writes (the
//! admin API, the CLI, clients from the config file) are rare: each is made durable, and only
//! then reaches the map, so the map never shows a client the storage does not have.

use std::sync::Arc;

use dashmap::DashMap;

use super::backend::ClientStorage;
use super::{ClientRecord, StoreError};

#[derive(Clone)]
pub struct ClientRegistry {
    storage: Arc<dyn ClientStorage>,
    cache: Arc<DashMap<String, Arc<ClientRecord>, ahash::RandomState>>,
}

impl ClientRegistry {
    pub(super) fn open(storage: Box<dyn ClientStorage>) -> Result<Self, StoreError> {
        let cache = DashMap::with_hasher(ahash::RandomState::new());
        for record in storage.load()? {
            cache.insert(record.client_id.clone(), Arc::new(record));
        }
        Ok(Self {
            storage: Arc::from(storage),
            cache: Arc::new(cache),
        })
    }

    pub fn get(&self, client_id: &str) -> Option<Arc<ClientRecord>> {
        self.cache.get(client_id).map(|r| Arc::clone(r.value()))
    }

    /// Creates or replaces a client, durably.
    pub fn upsert(&self, record: ClientRecord) -> Result<(), StoreError> {
        self.storage.put(&record)?;
        self.cache.insert(record.client_id.clone(), Arc::new(record));
        Ok(())
    }

    /// Removes a client, durably. Returns whether it existed.
    pub fn remove(&self, client_id: &str) -> Result<bool, StoreError> {
        let existed = self.storage.remove(client_id)?;
        self.cache.remove(client_id);
        Ok(existed)
    }

    /// Whether some registered client declares `resource` as its resource indicator. A scan:
    /// it runs only for token requests that name a resource, and clients are few.
    pub fn has_resource(&self, resource: &str) -> bool {
        self.cache.iter().any(|c| c.resource.as_deref() == Some(resource))
    }

    /// Every client, ordered by id.
    pub fn list(&self) -> Vec<Arc<ClientRecord>> {
        let mut all: Vec<_> = self.cache.iter().map(|r| Arc::clone(r.value())).collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::client;
    use crate::store::Store;

    #[test]
    fn upsert_list_remove_and_reload() {
        let store = Store::temporary().unwrap();
        let reg = store.clients().unwrap();
        reg.upsert(client("b")).unwrap();
        reg.upsert(client("a")).unwrap();
        let ids: Vec<_> = reg.list().iter().map(|c| c.client_id.clone()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(!reg.has_resource("https://api.example"));
        reg.upsert(ClientRecord {
            resource: Some("https://api.example".into()),
            ..client("rs")
        })
        .unwrap();
        assert!(reg.has_resource("https://api.example"));
        assert!(!reg.has_resource("https://api.example/"), "exact match only");
        reg.remove("rs").unwrap();
        assert!(reg.remove("a").unwrap());
        assert!(!reg.remove("a").unwrap());
        let reopened = store.clients().unwrap();
        assert!(reopened.get("a").is_none());
        assert_eq!(reopened.get("b").unwrap().scopes, ["read"]);
    }
}
