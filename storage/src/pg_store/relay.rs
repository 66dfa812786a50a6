//! [`CommandRelay`] on PostgreSQL (schema in `migrations/0003_commands.sql`): a command is
//! a row of `commands`, taken by the node whose lease on the connection is live (a join
//! with `epochs`, `FOR UPDATE SKIP LOCKED`), answered in place, read and deleted by its
//! sender. Every change notifies the event channel with the payload `command`, which
//! wakes the listening nodes ([`CommandRelay::command_signal`]).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::ownership::NodeId;
use crate::relay::{CommandId, CommandRelay, TakenCommand, Withdrawn};
use crate::{ConnectionKey, StoreError};

use super::feed::COMMAND_PAYLOAD;
use super::PgStore;

/// Associated data of a command's body: the connection it is for.
fn command_aad(key: &ConnectionKey) -> Vec<u8> {
    let mut aad = b"social-studio command\0".to_vec();
    aad.extend_from_slice(&key.storage_key());
    aad
}

/// Associated data of an answer: the command it answers.
fn answer_aad(id: CommandId) -> Vec<u8> {
    let mut aad = b"social-studio answer\0".to_vec();
    aad.extend_from_slice(&id.0.to_be_bytes());
    aad
}

impl PgStore {
    async fn notify_commands(&self, client: &deadpool_postgres::Object) -> Result<(), StoreError> {
        client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&self.inner.feed.channel(), &COMMAND_PAYLOAD],
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl CommandRelay for PgStore {
    async fn send_command(
        &self,
        key: &ConnectionKey,
        body: &[u8],
    ) -> Result<CommandId, StoreError> {
        let sealed = self.inner.vault.seal(&command_aad(key), body);
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO commands (key, body) VALUES ($1, $2) RETURNING id",
                &[&key.storage_key(), &sealed],
            )
            .await?;
        self.notify_commands(&client).await?;
        Ok(CommandId(row.get(0)))
    }

    async fn command_answer(
        &self,
        id: CommandId,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "DELETE FROM commands WHERE id = $1 AND answer IS NOT NULL RETURNING answer",
                &[&id.0],
            )
            .await?
        else {
            return Ok(None);
        };
        let sealed: Vec<u8> = row.get(0);
        let plain = self.inner.vault.open(&answer_aad(id), &sealed, || {
            format!("the answer to command {}", id.0)
        })?;
        Ok(Some(plain))
    }

    async fn withdraw_command(&self, id: CommandId) -> Result<Withdrawn, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM commands WHERE id = $1 AND taken_at IS NULL",
                &[&id.0],
            )
            .await?;
        Ok(if deleted == 1 {
            Withdrawn::NotTaken
        } else {
            Withdrawn::Taken
        })
    }

    async fn take_commands(
        &self,
        node: &NodeId,
        limit: usize,
    ) -> Result<Vec<TakenCommand>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // A command is taken once: SKIP LOCKED leaves a row another node is taking, and
        // the re-check after a lock leaves one taken meanwhile.
        let rows = client
            .query(
                "WITH chosen AS ( \
                     SELECT c.id FROM commands c JOIN epochs e ON e.key = c.key \
                     WHERE c.taken_at IS NULL AND e.owner = $1 AND e.expires_at > now() \
                     ORDER BY c.id LIMIT $2 FOR UPDATE OF c SKIP LOCKED) \
                 UPDATE commands SET taken_by = $1, taken_at = now() \
                 FROM chosen WHERE commands.id = chosen.id AND commands.taken_at IS NULL \
                 RETURNING commands.id, commands.key, commands.body",
                &[&node.as_str(), &limit],
            )
            .await?;
        // Rows a sender that died left behind.
        client
            .execute(
                "DELETE FROM commands WHERE created_at < now() - interval '1 day'",
                &[],
            )
            .await?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            let id = CommandId(row.get(0));
            let key_bytes: Vec<u8> = row.get(1);
            let sealed: Vec<u8> = row.get(2);
            let Some(key) = ConnectionKey::from_storage_key(&key_bytes) else {
                tracing::error!(
                    command = id.0,
                    "a command names no connection; it is left unanswered"
                );
                continue;
            };
            let body = self.inner.vault.open(&command_aad(&key), &sealed, || {
                format!("command {} for {key}", id.0)
            })?;
            taken.push(TakenCommand { id, key, body });
        }
        Ok(taken)
    }

    async fn answer_command(&self, id: CommandId, body: &[u8]) -> Result<(), StoreError> {
        let sealed = self.inner.vault.seal(&answer_aad(id), body);
        let client = self.client().await?;
        client
            .execute(
                "UPDATE commands SET answer = $2, answered_at = now() WHERE id = $1",
                &[&id.0, &sealed],
            )
            .await?;
        self.notify_commands(&client).await?;
        Ok(())
    }

    fn command_signal(&self) -> Arc<Notify> {
        self.inner.feed.command_signal()
    }
}
