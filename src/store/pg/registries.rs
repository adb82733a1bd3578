//! Clients (`tessera_clients`), users (`tessera_users`) and consents (`tessera_consents`), each
//! a postcard record under its natural key. Every write commits before it returns. Lists are
//! ordered by the keys' bytes (`COLLATE "C"`), as sled orders them.

use std::sync::Arc;

use crate::store::backend::{ClientStorage, UserStorage};
use crate::store::{ClientRecord, ConsentRecord, Record, StoreError, UserRecord};

use super::Shared;

pub(super) struct PgClients(pub(super) Arc<Shared>);

impl ClientStorage for PgClients {
    fn load(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.0.io.run(|client| async move {
            let rows = client.query("SELECT record FROM tessera_clients", &[]).await?;
            rows.iter().map(|r| ClientRecord::decode(r.get(0))).collect()
        })
    }

    fn put(&self, record: &ClientRecord) -> Result<(), StoreError> {
        let (id, bytes) = (record.client_id.clone(), record.encode());
        self.0.io.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO tessera_clients (client_id, record) VALUES ($1, $2) \
                     ON CONFLICT (client_id) DO UPDATE SET record = EXCLUDED.record",
                    &[&id, &bytes],
                )
                .await?;
            Ok(())
        })
    }

    fn remove(&self, client_id: &str) -> Result<bool, StoreError> {
        let id = client_id.to_owned();
        self.0.io.run(move |client| async move {
            Ok(client
                .execute("DELETE FROM tessera_clients WHERE client_id = $1", &[&id])
                .await?
                == 1)
        })
    }
}

pub(super) struct PgUsers(pub(super) Arc<Shared>);

impl UserStorage for PgUsers {
    fn get(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let name = username.to_owned();
        self.0.io.run(move |client| async move {
            client
                .query_opt("SELECT record FROM tessera_users WHERE username = $1", &[&name])
                .await?
                .map(|r| UserRecord::decode(r.get(0)))
                .transpose()
        })
    }

    fn put(&self, user: &UserRecord) -> Result<(), StoreError> {
        let (name, bytes) = (user.username.clone(), user.encode());
        self.0.io.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO tessera_users (username, record) VALUES ($1, $2) \
                     ON CONFLICT (username) DO UPDATE SET record = EXCLUDED.record",
                    &[&name, &bytes],
                )
                .await?;
            Ok(())
        })
    }

    fn remove(&self, username: &str) -> Result<bool, StoreError> {
        let name = username.to_owned();
        self.0.io.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let existed = tx
                .execute("DELETE FROM tessera_users WHERE username = $1", &[&name])
                .await?
                == 1;
            tx.execute("DELETE FROM tessera_consents WHERE username = $1", &[&name])
                .await?;
            tx.commit().await?;
            Ok(existed)
        })
    }

    fn list(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.0.io.run(|client| async move {
            let rows = client
                .query("SELECT record FROM tessera_users ORDER BY username COLLATE \"C\"", &[])
                .await?;
            rows.iter().map(|r| UserRecord::decode(r.get(0))).collect()
        })
    }

    fn consent(&self, username: &str, client_id: &str) -> Result<Option<ConsentRecord>, StoreError> {
        let (name, id) = (username.to_owned(), client_id.to_owned());
        self.0.io.run(move |client| async move {
            client
                .query_opt(
                    "SELECT record FROM tessera_consents WHERE username = $1 AND client_id = $2",
                    &[&name, &id],
                )
                .await?
                .map(|r| ConsentRecord::decode(r.get(0)))
                .transpose()
        })
    }

    fn put_consent(&self, username: &str, client_id: &str, consent: &ConsentRecord) -> Result<(), StoreError> {
        let (name, id, bytes) = (username.to_owned(), client_id.to_owned(), consent.encode());
        self.0.io.run(move |client| async move {
            client
                .execute(
                    "INSERT INTO tessera_consents (username, client_id, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (username, client_id) DO UPDATE SET record = EXCLUDED.record",
                    &[&name, &id, &bytes],
                )
                .await?;
            Ok(())
        })
    }

    fn consents_of(&self, username: &str) -> Result<Vec<(String, ConsentRecord)>, StoreError> {
        let name = username.to_owned();
        self.0.io.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT client_id, record FROM tessera_consents WHERE username = $1 \
                     ORDER BY client_id COLLATE \"C\"",
                    &[&name],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.get::<_, String>(0), ConsentRecord::decode(r.get(1))?)))
                .collect()
        })
    }

    fn forget_client(&self, client_id: &str) -> Result<usize, StoreError> {
        let id = client_id.to_owned();
        self.0.io.run(move |client| async move {
            Ok(client
                .execute("DELETE FROM tessera_consents WHERE client_id = $1", &[&id])
                .await? as usize)
        })
    }
}
