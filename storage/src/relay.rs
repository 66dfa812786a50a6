//! Commands between nodes: the [`CommandRelay`] port.
//!
//! Several engine nodes on one database each run only the connections they hold a
//! lease on ([`crate::Ownership`]). A request that reaches a node which does not run the
//! connection — a reconnect, a verify, a disconnect, a post to schedule or retry — is
//! carried to the node that does through the store: the sender writes a command for the
//! connection, the owner takes it, carries it out and writes the answer, the sender
//! reads it. Nodes need no addresses or credentials for each other.
//!
//! The bodies are opaque bytes to the store (the engine encodes them) and sealed by the
//! vault before any statement carries them, with the connection (a command) or the
//! command's number (an answer) as associated data: a reconnect carries a grant, and the
//! database never holds a plaintext token.
//!
//! Only a backend several nodes share has a relay ([`crate::Store::commands`]); on sled
//! one process runs everything and nothing needs carrying.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::ownership::NodeId;
use crate::{ConnectionKey, StoreError};

/// A command's number, given by the store when it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandId(pub i64);

/// A command taken by the node that runs its connection.
pub struct TakenCommand {
    pub id: CommandId,
    pub key: ConnectionKey,
    pub body: Zeroizing<Vec<u8>>,
}

/// What withdrawing a command found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// Nobody had taken it: it is gone and will never be carried out.
    NotTaken,
    /// A node took it: it may be carried out, or have been; its answer is left unread.
    Taken,
}

#[async_trait]
pub trait CommandRelay: Send + Sync + 'static {
    /// Writes a command for whichever node holds `key`'s lease (now or later) and wakes
    /// the nodes.
    async fn send_command(&self, key: &ConnectionKey, body: &[u8])
        -> Result<CommandId, StoreError>;

    /// The command's answer, once given; the command is then deleted.
    async fn command_answer(&self, id: CommandId)
        -> Result<Option<Zeroizing<Vec<u8>>>, StoreError>;

    /// Gives up on a command whose answer did not come in time.
    async fn withdraw_command(&self, id: CommandId) -> Result<Withdrawn, StoreError>;

    /// Takes up to `limit` waiting commands for connections `node` holds a live lease on,
    /// oldest first; two nodes never take the same command.
    async fn take_commands(
        &self,
        node: &NodeId,
        limit: usize,
    ) -> Result<Vec<TakenCommand>, StoreError>;

    /// Writes the answer to a command this node took, and wakes its sender.
    async fn answer_command(&self, id: CommandId, body: &[u8]) -> Result<(), StoreError>;

    /// Notified whenever a command or an answer may be waiting (a notification from any
    /// node). Notifications can be lost (a listener reconnecting): wait on it with a
    /// timer beside it.
    fn command_signal(&self) -> Arc<Notify>;
}
