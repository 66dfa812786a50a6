//! Sample records for tests, examples and benchmarks of this and the other crates.
//! Not part of the engine's API: compiled only for this crate's tests and behind the
//! `testkit` feature, which only dev-dependencies enable.

use crate::{
    Account, AccountKind, Connection, ConnectionKey, ConnectionStatus, Content, Grant, Media,
    MediaKind, PenName, Platform, Post, PostId, PostKind, PostState, Secret, Target, TargetKind,
    Timestamp,
};

pub fn key(pen: &str, platform: Platform) -> ConnectionKey {
    ConnectionKey::new(PenName::parse(pen).expect("fixture pen name"), platform)
}

pub fn connection(key: &ConnectionKey) -> Connection {
    Connection {
        key: key.clone(),
        status: ConnectionStatus::Active,
        account: Account {
            platform_id: format!("{}-{}", key.platform, key.pen_name),
            handle: format!("@{}", key.pen_name),
            display_name: format!("{} on {}", key.pen_name, key.platform.display_name()),
            kind: AccountKind::Personal,
            picture: None,
        },
        targets: vec![Target {
            kind: TargetKind::Profile,
            id: "me".into(),
            name: "Profile".into(),
        }],
        chosen_targets: vec!["me".into()],
        connected_at: Timestamp::from_unix_millis(1_700_000_000_000),
        status_since: Timestamp::from_unix_millis(1_700_000_000_000),
        refresh_in_flight: None,
        grant: None,
    }
}

pub fn grant(access: &str, refresh: Option<&str>) -> Grant {
    Grant {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        token_type: "bearer".into(),
        scopes: vec!["tweet.write".into(), "offline.access".into()],
        issued_at: Timestamp::from_unix_millis(1_700_000_000_000),
        expires_at: Some(Timestamp::from_unix_millis(1_700_007_200_000)),
        refresh_expires_at: None,
        target_tokens: Vec::new(),
        endpoint: None,
    }
}

/// A scheduled post due `i` seconds after a fixed instant.
pub fn post(key: &ConnectionKey, i: u64) -> Post {
    let due = Timestamp::from_unix_millis(1_800_000_000_000 + i as i64 * 1_000);
    Post {
        id: PostId::new(),
        group_id: None,
        connection: key.clone(),
        target: None,
        kind: PostKind::Feed,
        content: Content {
            text: format!("post number {i} from {}", key.pen_name),
            title: None,
            links: vec!["https://example.com/book".into()],
            media: vec![Media {
                url: "https://example.com/cover.jpg".into(),
                kind: MediaKind::Image,
                alt: Some("The cover".into()),
            }],
        },
        due_at: due,
        next_attempt_at: None,
        waiting: None,
        state: PostState::Scheduled,
        attempts: 0,
        created_at: Timestamp::from_unix_millis(1_700_000_000_000),
        updated_at: Timestamp::from_unix_millis(1_700_000_000_000),
    }
}
