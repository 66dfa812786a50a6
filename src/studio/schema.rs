//! OpenAPI schemas for the storage crate's types that the views show as they are
//! (platforms, states, kinds, accounts, targets). The storage crate knows nothing of
//! HTTP or OpenAPI, so their schemas are declared here, beside the views that use them
//! (`#[schema(value_type = PlatformId)]`); the API tests validate live answers against
//! the document, so a schema here that drifts from what the type serialises fails them.

use std::borrow::Cow;

use social_studio_storage::{Platform, PostKind, StateLabel};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// A schema-only type: a string that is one of a fixed list of values.
macro_rules! string_enum_schema {
    ($(#[$doc:meta])* $name:ident, $schema_name:literal, $values:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some($values))
                    .into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($schema_name)
            }
        }
    };
}

string_enum_schema!(
    /// A platform, by its id (`x`, `bluesky`, …).
    PlatformId,
    "Platform",
    Platform::ALL.iter().map(|p| p.id())
);
string_enum_schema!(
    /// A connection status or post state, by its lowercase label.
    StateName,
    "StateLabel",
    StateLabel::ALL.iter().map(|s| s.as_str())
);
string_enum_schema!(
    /// A kind of post (`feed`, `story`, `reel`, …).
    PostKindName,
    "PostKind",
    PostKind::ALL.iter().map(|k| k.id())
);
string_enum_schema!(
    /// `image` or `video`.
    MediaKindName,
    "MediaKind",
    ["image", "video"]
);
string_enum_schema!(
    /// What kind of change an event records.
    EventKindName,
    "EventKind",
    [
        "connection_status",
        "post_state",
        "expiring_soon",
        "recovered",
        "grant_renewed",
        "targets_chosen"
    ]
);
string_enum_schema!(
    /// What kind of social identity an account is.
    AccountKindName,
    "AccountKind",
    ["personal", "business", "creator", "page"]
);
string_enum_schema!(
    /// What kind of place inside an account a target is.
    TargetKindName,
    "TargetKind",
    ["page", "board", "person", "organisation", "profile"]
);

/// The social identity behind a connection (the storage crate's `Account`).
#[derive(ToSchema)]
#[schema(as = Account)]
#[allow(dead_code)] // only its schema is read
pub struct AccountSchema {
    /// The platform's own stable id for the account.
    platform_id: String,
    /// The handle people see.
    handle: String,
    display_name: String,
    #[schema(value_type = AccountKindName)]
    kind: (),
    /// The account's picture, an `https` URL, where the platform gives one.
    picture: Option<String>,
}

/// Where a post lands inside an account (the storage crate's `Target`).
#[derive(ToSchema)]
#[schema(as = Target)]
#[allow(dead_code)] // only its schema is read
pub struct TargetSchema {
    #[schema(value_type = TargetKindName)]
    kind: (),
    /// The platform's id for the target.
    id: String,
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use social_studio_storage::{AccountKind, EventKind, MediaKind, TargetKind};

    /// The hand-written lists say what the storage types serialise as.
    #[test]
    fn the_listed_values_are_what_the_types_serialise_as() {
        let listed = |schema: RefOr<Schema>| -> Vec<serde_json::Value> {
            serde_json::to_value(schema).unwrap()["enum"]
                .as_array()
                .unwrap()
                .clone()
        };
        fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
            serde_json::to_value(v).unwrap()
        }
        assert_eq!(
            listed(<MediaKindName as utoipa::PartialSchema>::schema()),
            [MediaKind::Image, MediaKind::Video].map(|k| json(&k))
        );
        assert_eq!(
            listed(<EventKindName as utoipa::PartialSchema>::schema()),
            [
                EventKind::ConnectionStatus,
                EventKind::PostState,
                EventKind::ExpiringSoon,
                EventKind::Recovered,
                EventKind::GrantRenewed,
                EventKind::TargetsChosen
            ]
            .map(|k| json(&k))
        );
        assert_eq!(
            listed(<AccountKindName as utoipa::PartialSchema>::schema()),
            [
                AccountKind::Personal,
                AccountKind::Business,
                AccountKind::Creator,
                AccountKind::Page
            ]
            .map(|k| json(&k))
        );
        assert_eq!(
            listed(<TargetKindName as utoipa::PartialSchema>::schema()),
            [
                TargetKind::Page,
                TargetKind::Board,
                TargetKind::Person,
                TargetKind::Organisation,
                TargetKind::Profile
            ]
            .map(|k| json(&k))
        );
        assert_eq!(
            listed(<PlatformId as utoipa::PartialSchema>::schema()),
            Platform::ALL.map(|p| json(&p))
        );
        assert_eq!(
            listed(<StateName as utoipa::PartialSchema>::schema()),
            StateLabel::ALL.map(|s| json(&s))
        );
        assert_eq!(
            listed(<PostKindName as utoipa::PartialSchema>::schema()),
            PostKind::ALL.map(|k| json(&k))
        );
    }
}
