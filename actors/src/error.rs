//! Errors of the engine's commands.

use social_studio_storage::{
    ConnectionKey, NodeId, PostId, PostRefusal, Reason, StateLabel, StoreError,
};

use crate::PortError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not connected")]
    NotConnected(ConnectionKey),
    #[error("the account that came back is not the one connected to {key}: {reason}")]
    WrongAccount { key: ConnectionKey, reason: Reason },
    #[error("post {0} not found")]
    PostNotFound(PostId),
    #[error("post {id} is {state} and cannot be {action}")]
    InvalidTransition {
        id: PostId,
        state: StateLabel,
        action: &'static str,
    },
    #[error("the platform answered: {0}")]
    Platform(#[from] PortError),
    #[error("the connection is {status}: {reason}")]
    ConnectionNotActive { status: StateLabel, reason: Reason },
    #[error("the engine is not running ({0})")]
    Unavailable(String),
    /// Several nodes share the store and another one runs this connection (or none does
    /// for the moment: a node stopped and its lease has not lapsed yet). Nothing was
    /// done; the command goes to the owner, or is tried again once a node took it over.
    #[error("{key} is run by {} on this deployment, not by this node", owner.as_ref().map_or("no node yet".to_owned(), |o| format!("node {o}")))]
    NotOwnerHere {
        key: ConnectionKey,
        owner: Option<NodeId>,
    },
}

/// A post's refusal keeps the shape the engine has always answered with.
impl From<PostRefusal> for EngineError {
    fn from(refusal: PostRefusal) -> Self {
        match refusal {
            PostRefusal::InvalidTransition { id, state, action } => {
                EngineError::InvalidTransition {
                    id,
                    state,
                    action: action.past_tense(),
                }
            }
            PostRefusal::NotConnected(key) => EngineError::NotConnected(key),
        }
    }
}

impl<T> From<ractor::RactorErr<T>> for EngineError {
    fn from(e: ractor::RactorErr<T>) -> Self {
        EngineError::Unavailable(e.to_string())
    }
}

impl<T> From<ractor::MessagingErr<T>> for EngineError {
    fn from(e: ractor::MessagingErr<T>) -> Self {
        EngineError::Unavailable(e.to_string())
    }
}
