//! Choosing targets: where a post that names no target goes, for a connection whose
//! account lists targets inside it (Facebook Pages, Pinterest boards, LinkedIn
//! organisations beside the member).
//!
//! The rule, here and in [`NewPost::parse`](super::NewPost::parse): a post request that
//! names a target posts to that target, as always; one that names none posts to each
//! chosen target — one post per target, sharing the request's group — and, where none is
//! chosen, to the account itself as before (refused where the platform needs a Page or a
//! board). After connecting, the account itself is chosen where it is one of the targets
//! (a LinkedIn member), and nothing where it is not (Pages, boards):
//! [`Connection::default_choice`](social_studio_storage::Connection::default_choice).

use social_studio_actors::EngineError;
use social_studio_storage::{Connection, ConnectionKey, Platform, Reason, StoreError};

use super::error::EngineRefusal;
use super::views::ConnectionEntry;
use super::Studio;

/// Why a choice of targets was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// The list was empty.
    #[error("choose at least one target")]
    NoneChosen,
    /// An id that is not one of the connection's listed targets.
    #[error("{0:?} is not a target of this connection")]
    UnknownTarget(String),
    /// An id named twice.
    #[error("{0:?} is named more than once")]
    DuplicateTarget(String),
    /// The account lists nothing inside it: posts go to the account itself.
    #[error("{} lists no targets to choose from: posts go to the account itself", .0.display_name())]
    NothingToChoose(Platform),
    #[error(transparent)]
    Engine(#[from] EngineRefusal),
}

impl From<EngineError> for TargetsError {
    fn from(e: EngineError) -> TargetsError {
        TargetsError::Engine(e.into())
    }
}

impl From<StoreError> for TargetsError {
    fn from(e: StoreError) -> TargetsError {
        TargetsError::Engine(e.into())
    }
}

impl TargetsError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TargetsError::NoneChosen => "no_target_chosen",
            TargetsError::UnknownTarget(_) => "unknown_target",
            TargetsError::DuplicateTarget(_) => "duplicate_target",
            TargetsError::NothingToChoose(_) => "no_targets_to_choose",
            TargetsError::Engine(e) => e.code(),
        }
    }

    /// What a person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            TargetsError::NoneChosen
            | TargetsError::UnknownTarget(_)
            | TargetsError::DuplicateTarget(_) => {
                "Choose one or more of the ids the connection lists in `targets`."
            }
            TargetsError::NothingToChoose(_) => {
                "Nothing to do: posts on this platform go to the connected account."
            }
            TargetsError::Engine(e) => e.remedy(),
        }
    }

    /// The reason behind it, where there is one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            TargetsError::Engine(e) => e.reason(),
            _ => None,
        }
    }
}

/// Checks a choice against the connection's listed targets.
fn check_choice(connection: &Connection, ids: &[String]) -> Result<(), TargetsError> {
    if !connection.has_targets_to_choose() {
        return Err(TargetsError::NothingToChoose(connection.key.platform));
    }
    if ids.is_empty() {
        return Err(TargetsError::NoneChosen);
    }
    for (i, id) in ids.iter().enumerate() {
        if !connection.targets.iter().any(|t| &t.id == id) {
            return Err(TargetsError::UnknownTarget(id.clone()));
        }
        if ids[..i].contains(id) {
            return Err(TargetsError::DuplicateTarget(id.clone()));
        }
    }
    Ok(())
}

impl Studio {
    /// Chooses where the connection's posts that name no target go: `ids` from its
    /// listed targets, at least one, each once. A change is stored by the connection's
    /// actor with a `targets_chosen` event; the same choice again changes nothing.
    /// Refused, with nothing changed, for an id not listed, an empty or repeating list,
    /// or a connection with nothing to choose (its only target is the account itself).
    pub async fn choose_targets(
        &self,
        key: &ConnectionKey,
        ids: Vec<String>,
    ) -> Result<ConnectionEntry, TargetsError> {
        let Some(connection) = self.inner.store.connection(key).await? else {
            return Err(EngineRefusal::NotConnected(key.platform).into());
        };
        check_choice(&connection, &ids)?;
        self.inner.engine.choose_targets(key.clone(), ids).await?;
        Ok(self.entry(key).await?)
    }
}

/// Where a post that names no target goes on `key`'s connection: one entry per chosen
/// target (`None` for the account itself, as a post naming no target always meant), or
/// `[None]` when nothing is chosen or the account has nothing to choose.
pub(super) async fn aims(studio: &Studio, key: &ConnectionKey) -> Vec<Option<String>> {
    let Ok(Some(connection)) = studio.inner.store.connection(key).await else {
        // Not connected, or unreadable: the validation that follows says so.
        return vec![None];
    };
    let chosen = connection.chosen();
    if !connection.has_targets_to_choose() || chosen.is_empty() {
        return vec![None];
    }
    chosen
        .into_iter()
        .map(|t| (!t.kind.is_the_account()).then(|| t.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use social_studio_storage::fixtures;
    use social_studio_storage::{Target, TargetKind};

    fn linkedin() -> Connection {
        let mut c = fixtures::connection(&fixtures::key("jane", Platform::Linkedin));
        c.targets = vec![
            Target {
                kind: TargetKind::Person,
                id: "urn:li:person:1".into(),
                name: "Jane".into(),
            },
            Target {
                kind: TargetKind::Organisation,
                id: "urn:li:organization:2".into(),
                name: "Jane Press".into(),
            },
        ];
        c.chosen_targets = Connection::default_choice(&c.targets);
        c
    }

    #[test]
    fn a_choice_names_listed_targets_once_each() {
        let c = linkedin();
        let ids = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_choice(&c, &ids(&["urn:li:organization:2", "urn:li:person:1"])).is_ok());
        assert_eq!(
            check_choice(&c, &ids(&[])).unwrap_err().code(),
            "no_target_chosen"
        );
        assert_eq!(
            check_choice(&c, &ids(&["urn:li:person:1", "nope"]))
                .unwrap_err()
                .code(),
            "unknown_target"
        );
        assert_eq!(
            check_choice(&c, &ids(&["urn:li:person:1", "urn:li:person:1"]))
                .unwrap_err()
                .code(),
            "duplicate_target"
        );
        // An account whose only target is itself has nothing to choose.
        let x = fixtures::connection(&fixtures::key("jane", Platform::X));
        assert_eq!(
            check_choice(&x, &ids(&["me"])).unwrap_err().code(),
            "no_targets_to_choose"
        );
    }
}
