//! [`Ownership`] on sled: one process owns every connection, so the answers are the
//! trivial ones, and the engine that uses the port is written once for both backends.
//!
//! - `acquire` gives every connection this store has not handed out yet (never claimed,
//!   or released), each with a new claim ([`Store::claim`]'s epochs), and ignores the
//!   fair share: there is one node;
//! - `renew` holds every claimed connection, loses none, and is good forever
//!   ([`Duration::MAX`]);
//! - `release` and `release_all` forget the claims (a write fenced with one is refused
//!   from then on), so the next `acquire` hands them out again with new epochs;
//! - `owners` names the node that last acquired, with every claimed connection.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::batch::Epoch;
use crate::ownership::{LeaseRenewal, NodeId, Ownership};
use crate::port::Store;
use crate::{ConnectionKey, StoreError};

use super::SledStore;

#[async_trait]
impl Ownership for SledStore {
    async fn acquire(
        &self,
        node: &NodeId,
        _lease: Duration,
    ) -> Result<Vec<(ConnectionKey, Epoch)>, StoreError> {
        let loaded = self.all_connections().await?;
        // A connection whose record cannot be read is owned too: its work reports it.
        let keys: Vec<ConnectionKey> = loaded
            .items
            .into_iter()
            .map(|c| c.key)
            .chain(loaded.unreadable.into_iter().filter_map(|u| u.connection))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.node = Some(node.clone());
        let mut taken = Vec::new();
        for key in keys {
            if w.epochs.contains_key(&key) {
                continue;
            }
            w.next_epoch += 1;
            let epoch = w.next_epoch;
            w.epochs.insert(key.clone(), epoch);
            taken.push((key, Epoch(epoch)));
        }
        taken.sort();
        Ok(taken)
    }

    /// One process holds everything: the connection is (again) this node's, under a new
    /// epoch, as [`Store::claim`] gives one.
    async fn acquire_key(
        &self,
        node: &NodeId,
        _lease: Duration,
        key: &ConnectionKey,
    ) -> Result<Option<Epoch>, StoreError> {
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.node = Some(node.clone());
        w.next_epoch += 1;
        let epoch = w.next_epoch;
        w.epochs.insert(key.clone(), epoch);
        Ok(Some(Epoch(epoch)))
    }

    async fn renew(&self, node: &NodeId, _lease: Duration) -> Result<LeaseRenewal, StoreError> {
        let started_at = Instant::now();
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.node = Some(node.clone());
        let mut held: Vec<_> = w
            .epochs
            .iter()
            .map(|(k, &e)| (k.clone(), Epoch(e)))
            .collect();
        held.sort();
        Ok(LeaseRenewal {
            held,
            lost: Vec::new(),
            released: Vec::new(),
            started_at,
            valid_for: Duration::MAX,
        })
    }

    async fn release(&self, _node: &NodeId, keys: &[ConnectionKey]) -> Result<(), StoreError> {
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            w.epochs.remove(key);
        }
        Ok(())
    }

    async fn release_all(&self, _node: &NodeId) -> Result<(), StoreError> {
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.epochs.clear();
        w.node = None;
        Ok(())
    }

    async fn owners(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(w.node
            .iter()
            .map(|node| (node.clone(), w.epochs.len() as u64))
            .collect())
    }

    async fn owner_of(&self, key: &ConnectionKey) -> Result<Option<NodeId>, StoreError> {
        let w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(w.node.clone().filter(|_| w.epochs.contains_key(key)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::fixtures::{connection, key};
    use crate::ownership::{NodeId, Ownership};
    use crate::vault::{KeySource, MasterKey};
    use crate::{Batch, Durability, Epoch, Platform, SledStore, Store, StoreConfig, StoreError};

    /// The port's trivial answers on one process: everything, once, forever; a released
    /// connection is fenced and handed out again with a newer epoch.
    #[tokio::test]
    async fn one_process_owns_every_connection_forever() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_with_key(
            &StoreConfig::new(dir.path()),
            &MasterKey::generate(),
            KeySource::Provided,
        )
        .unwrap();
        let n = NodeId::parse("only").unwrap();
        let (a, b) = (key("jane", Platform::X), key("paul", Platform::Bluesky));
        let mut batch = Batch::new();
        batch.put_connection(&connection(&a));
        store.commit(batch, Durability::Durable).await.unwrap();

        let first = store.acquire(&n, Duration::from_secs(15)).await.unwrap();
        assert_eq!(first.iter().map(|(k, _)| k).collect::<Vec<_>>(), [&a]);
        assert!(store
            .acquire(&n, Duration::from_secs(15))
            .await
            .unwrap()
            .is_empty());
        let mut batch = Batch::new();
        batch.put_connection(&connection(&b));
        store.commit(batch, Durability::Durable).await.unwrap();
        let second = store.acquire(&n, Duration::from_secs(15)).await.unwrap();
        assert_eq!(second.iter().map(|(k, _)| k).collect::<Vec<_>>(), [&b]);

        let renewal = store.renew(&n, Duration::from_secs(15)).await.unwrap();
        assert_eq!(renewal.held.len(), 2);
        assert!(renewal.lost.is_empty() && renewal.released.is_empty());
        assert_eq!(renewal.valid_for, Duration::MAX);
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(renewal
            .held_until(Duration::from_secs(5))
            .allows_call_at(far));
        assert_eq!(store.owners().await.unwrap(), vec![(n.clone(), 2)]);

        // The acquired epoch fences writes; a release ends it.
        let (_, epoch) = first[0];
        let fenced = |epoch: Epoch| {
            let mut batch = Batch::new();
            batch.fence(&a, epoch).put_connection(&connection(&a));
            store.commit(batch, Durability::Durable)
        };
        fenced(epoch).await.unwrap();
        store.release(&n, std::slice::from_ref(&a)).await.unwrap();
        assert!(matches!(
            fenced(epoch).await,
            Err(StoreError::Fenced { .. })
        ));
        let again = store.acquire(&n, Duration::from_secs(15)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].0 == a && again[0].1 > epoch, "{again:?}");

        store.release_all(&n).await.unwrap();
        assert!(store.owners().await.unwrap().is_empty());
        assert_eq!(
            store
                .acquire(&n, Duration::from_secs(15))
                .await
                .unwrap()
                .len(),
            2
        );
    }
}
