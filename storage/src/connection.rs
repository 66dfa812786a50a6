//! Connections: one authorised account per (pen name, platform), with its status.
//!
//! A connection is `Active`, `Expired(reason)` or `Error(reason)`. Disconnecting erases
//! it: a pen name with no record for a platform is simply *not connected*.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{decode_body, CodecProblem, Record};
use crate::{GrantFacts, PenName, Platform, Reason, Timestamp};

/// Names one connection: the unit of ownership of a grant and of scheduled posts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnectionKey {
    pub pen_name: PenName,
    pub platform: Platform,
}

impl ConnectionKey {
    pub fn new(pen_name: PenName, platform: Platform) -> ConnectionKey {
        ConnectionKey { pen_name, platform }
    }

    /// Storage key: `pen_name \0 platform_id`. Pen names never contain `\0`, so a prefix
    /// scan of `pen_name \0` finds exactly that pen name's connections and no other's.
    pub fn storage_key(&self) -> Vec<u8> {
        let mut k = pen_prefix(&self.pen_name);
        k.extend_from_slice(self.platform.id().as_bytes());
        k
    }
}

/// Key prefix shared by everything a pen name owns in a tree keyed by connection.
pub fn pen_prefix(pen: &PenName) -> Vec<u8> {
    let mut k = Vec::with_capacity(pen.as_str().len() + 12);
    k.extend_from_slice(pen.as_str().as_bytes());
    k.push(0);
    k
}

impl fmt::Display for ConnectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pen_name, self.platform)
    }
}

/// Where a connection stands. Only `Active` connections publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionStatus {
    Active,
    /// The grant is dead (revoked, expired, password changed…): the author must reconnect.
    Expired(Reason),
    /// A requirement is unmet (lost Page role, personal profile…) or the engine gave up.
    Error(Reason),
}

impl ConnectionStatus {
    pub fn label(&self) -> StateLabel {
        match self {
            ConnectionStatus::Active => StateLabel::Active,
            ConnectionStatus::Expired(_) => StateLabel::Expired,
            ConnectionStatus::Error(_) => StateLabel::Error,
        }
    }

    pub fn reason(&self) -> Option<&Reason> {
        match self {
            ConnectionStatus::Active => None,
            ConnectionStatus::Expired(r) | ConnectionStatus::Error(r) => Some(r),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self, ConnectionStatus::Active)
    }
}

/// Every state a connection or post can be in, as one lowercase label. Events record
/// transitions as (from, to) labels; `NotConnected` is the absence of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateLabel {
    NotConnected,
    Active,
    Expired,
    Error,
    Scheduled,
    Paused,
    Publishing,
    Published,
    Failed,
    Unconfirmed,
    Held,
    Cancelled,
}

impl StateLabel {
    /// Every label, connection states first.
    pub const ALL: [StateLabel; 12] = [
        StateLabel::NotConnected,
        StateLabel::Active,
        StateLabel::Expired,
        StateLabel::Error,
        StateLabel::Scheduled,
        StateLabel::Paused,
        StateLabel::Publishing,
        StateLabel::Published,
        StateLabel::Failed,
        StateLabel::Unconfirmed,
        StateLabel::Held,
        StateLabel::Cancelled,
    ];

    /// The labels a post can carry (the last eight of [`StateLabel::ALL`]).
    pub const POST: [StateLabel; 8] = [
        StateLabel::Scheduled,
        StateLabel::Paused,
        StateLabel::Publishing,
        StateLabel::Published,
        StateLabel::Failed,
        StateLabel::Unconfirmed,
        StateLabel::Held,
        StateLabel::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateLabel::NotConnected => "not_connected",
            StateLabel::Active => "active",
            StateLabel::Expired => "expired",
            StateLabel::Error => "error",
            StateLabel::Scheduled => "scheduled",
            StateLabel::Paused => "paused",
            StateLabel::Publishing => "publishing",
            StateLabel::Published => "published",
            StateLabel::Failed => "failed",
            StateLabel::Unconfirmed => "unconfirmed",
            StateLabel::Held => "held",
            StateLabel::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for StateLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of social identity an account is; some platforms only publish for some kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Personal,
    Business,
    Creator,
    Page,
}

/// The social identity behind a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The platform's own stable id (X user id, Bluesky DID…): what "same account" means
    /// when an author reconnects.
    pub platform_id: String,
    /// The handle people see (`@jane`), without secrets.
    pub handle: String,
    pub display_name: String,
    pub kind: AccountKind,
    /// The account's picture where the platform gives one in the identity answer the
    /// adapter reads: an `https` URL (the adapters keep nothing else), or `None`.
    pub picture: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Page,
    Board,
    Person,
    Organisation,
    Profile,
}

impl TargetKind {
    /// Whether a target of this kind is the account itself (a person, a profile) — where
    /// a post that names no target lands — rather than something inside it (a Page, a
    /// board, an organisation).
    pub fn is_the_account(self) -> bool {
        matches!(self, TargetKind::Person | TargetKind::Profile)
    }
}

/// Where a post lands inside an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: TargetKind,
    /// The platform's id for the target (Page id, board id, person or organisation URN).
    pub id: String,
    pub name: String,
}

/// A refresh that was sent to the platform and whose answer has not yet been stored.
/// Written durably *before* the call, so a crash in that window is recognised at
/// restart and either completed (where the platform has a grace period) or named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshInFlight {
    pub started_at: Timestamp,
    /// A short, non-reversible fingerprint of the refresh token sent, so the restart can
    /// tell whether the stored grant still holds that token.
    pub token_fingerprint: [u8; 8],
}

impl ConnectionKey {
    /// Reads a storage key (`pen_name \0 platform_id`) back, for naming a record whose
    /// value cannot be read. `None` when the key is not a connection key.
    pub fn from_storage_key(key: &[u8]) -> Option<ConnectionKey> {
        let at = key.iter().position(|&b| b == 0)?;
        let pen = std::str::from_utf8(&key[..at]).ok()?;
        let platform = std::str::from_utf8(&key[at + 1..]).ok()?;
        Some(ConnectionKey::new(
            PenName::parse(pen).ok()?,
            Platform::from_id(platform)?,
        ))
    }
}

/// The stored record of a connection (its grant is stored separately, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub key: ConnectionKey,
    pub status: ConnectionStatus,
    pub account: Account,
    /// Targets the author may post to (Pages, boards, organisations…).
    pub targets: Vec<Target>,
    /// The ids (from `targets`) of the targets the author chose: where a post that names
    /// no target goes. After connecting, [`Connection::default_choice`].
    pub chosen_targets: Vec<String>,
    pub connected_at: Timestamp,
    /// When the current status began, for "expired since…".
    pub status_since: Timestamp,
    pub refresh_in_flight: Option<RefreshInFlight>,
    /// The grant's non-secret facts (lifetimes, whether it holds a refresh token), kept
    /// beside the status so a status page never unseals a token. `None` when the grant
    /// could not be read.
    pub grant: Option<GrantFacts>,
}

impl Connection {
    /// The targets chosen when nobody has chosen: the account itself (a person or a
    /// profile), which is where a post naming no target has always gone. A connection
    /// whose targets are all inside the account (Facebook Pages, Pinterest boards) has
    /// none chosen until the author chooses, and a post naming no target is refused as
    /// before.
    pub fn default_choice(targets: &[Target]) -> Vec<String> {
        targets
            .iter()
            .filter(|t| t.kind.is_the_account())
            .map(|t| t.id.clone())
            .collect()
    }

    /// Whether the author has targets to choose from: the account lists one inside it
    /// (a Page, a board, an organisation). A connection whose only target is the account
    /// itself has nothing to choose.
    pub fn has_targets_to_choose(&self) -> bool {
        self.targets.iter().any(|t| !t.kind.is_the_account())
    }

    /// The chosen targets that are still listed, in the order of `targets`.
    pub fn chosen(&self) -> Vec<&Target> {
        self.targets
            .iter()
            .filter(|t| self.chosen_targets.contains(&t.id))
            .collect()
    }

    /// Takes the account's targets as a reconnect or a check found them: the choice keeps
    /// the chosen targets still listed, and falls back to [`Connection::default_choice`]
    /// when none is.
    pub fn set_targets(&mut self, targets: Vec<Target>) {
        let kept: Vec<String> = targets
            .iter()
            .filter(|t| self.chosen_targets.contains(&t.id))
            .map(|t| t.id.clone())
            .collect();
        self.chosen_targets = if kept.is_empty() {
            Connection::default_choice(&targets)
        } else {
            kept
        };
        self.targets = targets;
    }
}

/// An account as connection versions 1 and 2 stored it (before [`Account::picture`]).
#[derive(Deserialize)]
struct AccountV2 {
    platform_id: String,
    handle: String,
    display_name: String,
    kind: AccountKind,
}

impl From<AccountV2> for Account {
    fn from(a: AccountV2) -> Account {
        Account {
            platform_id: a.platform_id,
            handle: a.handle,
            display_name: a.display_name,
            kind: a.kind,
            picture: None,
        }
    }
}

/// A connection as format version 2 stored it (before [`Account::picture`] and
/// [`Connection::chosen_targets`]).
#[derive(Deserialize)]
struct ConnectionV2 {
    key: ConnectionKey,
    status: ConnectionStatus,
    account: AccountV2,
    targets: Vec<Target>,
    connected_at: Timestamp,
    status_since: Timestamp,
    refresh_in_flight: Option<RefreshInFlight>,
    grant: Option<GrantFacts>,
}

/// A connection as format version 1 stored it (before [`Connection::grant`]).
#[derive(Deserialize)]
struct ConnectionV1 {
    key: ConnectionKey,
    status: ConnectionStatus,
    account: AccountV2,
    targets: Vec<Target>,
    connected_at: Timestamp,
    status_since: Timestamp,
    refresh_in_flight: Option<RefreshInFlight>,
}

impl Record for Connection {
    const KIND: &'static str = "connection";
    /// 2: gained `grant` (the grant's non-secret facts).
    /// 3: gained `account.picture` and `chosen_targets`.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Result<Connection, CodecProblem> {
        match version {
            // The facts come from the sealed grant, which only the migration can open; it
            // fills them in. Read alone, a version-1 record says "not known".
            1 => {
                let v1: ConnectionV1 = decode_body(body)?;
                Ok(Connection {
                    key: v1.key,
                    status: v1.status,
                    account: v1.account.into(),
                    chosen_targets: Connection::default_choice(&v1.targets),
                    targets: v1.targets,
                    connected_at: v1.connected_at,
                    status_since: v1.status_since,
                    refresh_in_flight: v1.refresh_in_flight,
                    grant: None,
                })
            }
            // No picture was read before; the choice is where posts naming no target
            // went then.
            2 => {
                let v2: ConnectionV2 = decode_body(body)?;
                Ok(Connection {
                    key: v2.key,
                    status: v2.status,
                    account: v2.account.into(),
                    chosen_targets: Connection::default_choice(&v2.targets),
                    targets: v2.targets,
                    connected_at: v2.connected_at,
                    status_since: v2.status_since,
                    refresh_in_flight: v2.refresh_in_flight,
                    grant: v2.grant,
                })
            }
            v => Err(CodecProblem::UnknownVersion(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: TargetKind, id: &str) -> Target {
        Target {
            kind,
            id: id.into(),
            name: id.into(),
        }
    }

    #[test]
    fn the_default_choice_is_the_account_itself_and_a_new_listing_keeps_what_is_still_there() {
        let member = target(TargetKind::Person, "member");
        let org = target(TargetKind::Organisation, "org");
        let (page1, page2) = (
            target(TargetKind::Page, "p1"),
            target(TargetKind::Page, "p2"),
        );
        assert_eq!(
            Connection::default_choice(&[member.clone(), org.clone()]),
            vec!["member".to_string()]
        );
        assert!(Connection::default_choice(&[page1.clone(), page2.clone()]).is_empty());

        let mut c = crate::fixtures::connection(&crate::fixtures::key("jane", Platform::Facebook));
        c.targets = vec![page1.clone(), page2.clone()];
        c.chosen_targets = vec!["p2".into()];
        assert!(c.has_targets_to_choose());
        assert_eq!(c.chosen(), vec![&page2]);
        // p2 still listed: kept.
        c.set_targets(vec![page2.clone(), target(TargetKind::Page, "p3")]);
        assert_eq!(c.chosen_targets, vec!["p2".to_string()]);
        // p2 gone: back to the default, which for Pages is none.
        c.set_targets(vec![page1]);
        assert!(c.chosen_targets.is_empty());
        // Only the account itself: nothing to choose.
        c.set_targets(vec![target(TargetKind::Profile, "me")]);
        assert!(!c.has_targets_to_choose());
        assert_eq!(c.chosen_targets, vec!["me".to_string()]);
    }

    #[test]
    fn every_label_is_listed_once_and_post_labels_are_the_post_states() {
        // No wildcard: a new variant stops this compiling, the reminder to list it in ALL.
        let is_post = |l: StateLabel| match l {
            StateLabel::NotConnected
            | StateLabel::Active
            | StateLabel::Expired
            | StateLabel::Error => false,
            StateLabel::Scheduled
            | StateLabel::Paused
            | StateLabel::Publishing
            | StateLabel::Published
            | StateLabel::Failed
            | StateLabel::Unconfirmed
            | StateLabel::Held
            | StateLabel::Cancelled => true,
        };
        let mut names: Vec<&str> = StateLabel::ALL.iter().map(|l| l.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), StateLabel::ALL.len());
        let posts: Vec<StateLabel> = StateLabel::ALL
            .into_iter()
            .filter(|l| is_post(*l))
            .collect();
        assert_eq!(posts, StateLabel::POST);
    }
}
