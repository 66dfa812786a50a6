//! Commands carried to the node that runs a connection, through the store
//! ([`social_studio_storage::CommandRelay`]), so that every node's API answers for every
//! pen name.
//!
//! A node that is asked to act on a connection another node runs (the supervisor says
//! `NotOwnerHere`) writes the request as a `Command` and waits for its `Answer`; the
//! owner's command loop (`serve`) takes the commands for the connections it holds,
//! carries each out as if it had been asked itself, and writes the answer back. The
//! encoding is bincode over serde, sealed by the store. A command nobody takes within
//! [`RELAY_WITHIN`] is withdrawn (never carried out later) and refused as
//! `NotOwnerHere` with no owner, which the API answers "send it again in a few seconds";
//! one taken but not answered in time is `Unavailable` with its outcome unknown.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use social_studio_storage::{
    Account, Connection, ConnectionKey, Grant, NodeId, Post, PostId, Reason, SharedStore,
    StateLabel, TakenCommand, Target, Withdrawn,
};
use tracing::Instrument as _;

use crate::messages::{ConnectionView, DisconnectReport};
use crate::{Engine, EngineError, PortError, RevokeOutcome};

/// How long a node waits for the owner's answer to a command.
pub const RELAY_WITHIN: Duration = Duration::from_secs(30);

/// How often the waiting sides look again when no notification came (one may be lost
/// while a listener reconnects).
const LOOK_AGAIN: Duration = Duration::from_millis(250);
const OWNER_LOOKS_AGAIN: Duration = Duration::from_secs(1);

/// The most commands a node takes at once.
const TAKE_AT_ONCE: usize = 64;

/// A request for the node that runs the connection it is sent for.
#[derive(Serialize, Deserialize)]
pub(crate) enum Command {
    Connect {
        account: Account,
        targets: Vec<Target>,
        grant: Grant,
        replace: bool,
    },
    Disconnect,
    Verify,
    ChooseTargets {
        targets: Vec<String>,
    },
    Schedule {
        post: Post,
    },
    Update {
        post: Post,
    },
    Cancel {
        id: PostId,
    },
    Retry {
        id: PostId,
    },
    Resolve {
        id: PostId,
        published: bool,
    },
}

/// The owner's answer.
#[derive(Serialize, Deserialize)]
pub(crate) enum Answer {
    /// The connection as its actor holds it after the command (the sender derives the
    /// view from it, as for any stored connection).
    Connection(Box<Connection>),
    Disconnected {
        revoke: Result<RevokeOutcome, PortError>,
        posts_failed: usize,
    },
    Post(Box<Post>),
    Refused(Refusal),
}

/// An [`EngineError`] as it travels.
#[derive(Serialize, Deserialize)]
pub(crate) enum Refusal {
    NotConnected(ConnectionKey),
    WrongAccount {
        key: ConnectionKey,
        reason: Reason,
    },
    PostNotFound(PostId),
    InvalidTransition {
        id: PostId,
        state: StateLabel,
        action: String,
    },
    Platform(PortError),
    ConnectionNotActive {
        status: StateLabel,
        reason: Reason,
    },
    Unavailable(String),
    NotOwnerHere {
        key: ConnectionKey,
        owner: Option<String>,
    },
}

impl From<EngineError> for Refusal {
    fn from(e: EngineError) -> Refusal {
        match e {
            EngineError::NotConnected(key) => Refusal::NotConnected(key),
            EngineError::WrongAccount { key, reason } => Refusal::WrongAccount { key, reason },
            EngineError::PostNotFound(id) => Refusal::PostNotFound(id),
            EngineError::InvalidTransition { id, state, action } => Refusal::InvalidTransition {
                id,
                state,
                action: action.to_owned(),
            },
            EngineError::Platform(p) => Refusal::Platform(p),
            EngineError::ConnectionNotActive { status, reason } => {
                Refusal::ConnectionNotActive { status, reason }
            }
            EngineError::Unavailable(m) => Refusal::Unavailable(m),
            EngineError::Store(e) => Refusal::Unavailable(format!(
                "the store failed on the node that runs the connection: {e}"
            )),
            EngineError::NotOwnerHere { key, owner } => Refusal::NotOwnerHere {
                key,
                owner: owner.map(|o| o.to_string()),
            },
        }
    }
}

impl From<Refusal> for EngineError {
    fn from(r: Refusal) -> EngineError {
        match r {
            Refusal::NotConnected(key) => EngineError::NotConnected(key),
            Refusal::WrongAccount { key, reason } => EngineError::WrongAccount { key, reason },
            Refusal::PostNotFound(id) => EngineError::PostNotFound(id),
            Refusal::InvalidTransition { id, state, action } => EngineError::InvalidTransition {
                id,
                state,
                action: past_tense(&action),
            },
            Refusal::Platform(p) => EngineError::Platform(p),
            Refusal::ConnectionNotActive { status, reason } => {
                EngineError::ConnectionNotActive { status, reason }
            }
            Refusal::Unavailable(m) => EngineError::Unavailable(m),
            Refusal::NotOwnerHere { key, owner } => EngineError::NotOwnerHere {
                key,
                owner: owner.and_then(|o| NodeId::parse(&o).ok()),
            },
        }
    }
}

/// The engine's words for what a post could not be (its refusals name them statically).
fn past_tense(action: &str) -> &'static str {
    const KNOWN: [&str; 5] = ["cancelled", "retried", "resolved", "edited", "scheduled"];
    KNOWN
        .into_iter()
        .find(|k| *k == action)
        .unwrap_or("changed")
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| EngineError::Unavailable(format!("a command could not be encoded: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EngineError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| {
            EngineError::Unavailable(format!(
                "a command between nodes could not be read (nodes of different releases?): {e}"
            ))
        })
}

impl Answer {
    pub(crate) fn into_view(self, engine: &Engine) -> Result<ConnectionView, EngineError> {
        match self {
            Answer::Connection(c) => Ok(engine.view(*c)),
            other => Err(other.unexpected()),
        }
    }

    pub(crate) fn into_report(self) -> Result<DisconnectReport, EngineError> {
        match self {
            Answer::Disconnected {
                revoke,
                posts_failed,
            } => Ok(DisconnectReport {
                revoke,
                posts_failed,
            }),
            other => Err(other.unexpected()),
        }
    }

    pub(crate) fn into_post(self) -> Result<Post, EngineError> {
        match self {
            Answer::Post(p) => Ok(*p),
            other => Err(other.unexpected()),
        }
    }

    fn unexpected(self) -> EngineError {
        match self {
            Answer::Refused(r) => r.into(),
            _ => EngineError::Unavailable(
                "the node that runs the connection answered another question".into(),
            ),
        }
    }
}

/// Sends `command` for `key` to the node that runs it and waits for the answer. `owner`
/// is who the supervisor named, for the refusal when there is no relay.
pub(crate) async fn send(
    store: &SharedStore,
    key: ConnectionKey,
    owner: Option<NodeId>,
    command: Command,
) -> Result<Answer, EngineError> {
    let Some(relay) = store.commands() else {
        return Err(EngineError::NotOwnerHere { key, owner });
    };
    let body = zeroize::Zeroizing::new(encode(&command)?);
    drop(command);
    let signal = relay.command_signal();
    let id = relay.send_command(&key, &body).await?;
    let deadline = tokio::time::Instant::now() + RELAY_WITHIN;
    loop {
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(answer) = relay.command_answer(id).await? {
            return decode(&answer);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        let _ = tokio::time::timeout((deadline - now).min(LOOK_AGAIN), notified).await;
    }
    match relay.withdraw_command(id).await? {
        Withdrawn::NotTaken => Err(EngineError::NotOwnerHere { key, owner: None }),
        Withdrawn::Taken => Err(EngineError::Unavailable(format!(
            "the node that runs {key} took the request but did not answer within {} s; it may have been carried out",
            RELAY_WITHIN.as_secs()
        ))),
    }
}

/// The owner's side: takes the commands for the connections this node runs, carries
/// each out on `engine` (never relayed again) and writes its answer. Runs until aborted.
pub(crate) async fn serve(engine: Engine, node: NodeId) {
    let store = engine.store().clone();
    let Some(relay) = store.commands() else {
        return;
    };
    let signal = relay.command_signal();
    let mut failing = false;
    loop {
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match relay.take_commands(&node, TAKE_AT_ONCE).await {
            Ok(taken) => {
                if failing {
                    tracing::info!("commands from other nodes are taken again");
                    failing = false;
                }
                let full = taken.len() == TAKE_AT_ONCE;
                for command in taken {
                    tokio::spawn(carry_out(engine.clone(), store.clone(), command));
                }
                if full {
                    continue;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "cannot take commands from other nodes");
                    failing = true;
                }
            }
        }
        let _ = tokio::time::timeout(OWNER_LOOKS_AGAIN, notified).await;
    }
}

async fn carry_out(engine: Engine, store: SharedStore, taken: TakenCommand) {
    let TakenCommand { id, key, body } = taken;
    let answer = match decode::<Command>(&body) {
        Ok(command) => {
            let span = tracing::info_span!(
                "command",
                pen_name = key.pen_name.as_str(),
                platform = key.platform.id(),
                command = id.0
            );
            answer(&engine, key, command).instrument(span).await
        }
        Err(e) => Answer::Refused(e.into()),
    };
    let Some(relay) = store.commands() else {
        return;
    };
    let written = match encode(&answer) {
        Ok(bytes) => relay
            .answer_command(id, &bytes)
            .await
            .map_err(EngineError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::error!(command = id.0, error = %e, "could not answer a command from another node");
    }
}

async fn answer(engine: &Engine, key: ConnectionKey, command: Command) -> Answer {
    let pen = key.pen_name.clone();
    let result = match command {
        Command::Connect {
            account,
            targets,
            grant,
            replace,
        } => engine
            .connect_here(key, account, targets, grant, replace)
            .await
            .map(|v| Answer::Connection(Box::new(v.connection))),
        Command::Disconnect => engine
            .disconnect_here(key)
            .await
            .map(|r| Answer::Disconnected {
                revoke: r.revoke,
                posts_failed: r.posts_failed,
            }),
        Command::Verify => engine
            .verify_here(key)
            .await
            .map(|v| Answer::Connection(Box::new(v.connection))),
        Command::ChooseTargets { targets } => engine
            .choose_targets_here(key, targets)
            .await
            .map(|v| Answer::Connection(Box::new(v.connection))),
        Command::Schedule { post } => engine.schedule_here(post).await.map(boxed_post),
        Command::Update { post } => engine.update_here(post).await.map(boxed_post),
        Command::Cancel { id } => engine.cancel_here(pen, id).await.map(boxed_post),
        Command::Retry { id } => engine.retry_here(pen, id).await.map(boxed_post),
        Command::Resolve { id, published } => engine
            .resolve_here(pen, id, published)
            .await
            .map(boxed_post),
    };
    result.unwrap_or_else(|e| Answer::Refused(e.into()))
}

fn boxed_post(p: Post) -> Answer {
    Answer::Post(Box::new(p))
}
