//! Golden records: the bytes every kind of stored record has at every version, committed
//! in `tests/records/`. They make a shape change impossible to miss:
//!
//! - a field added, removed, renamed in order, or an enum variant moved changes the bytes
//!   of today's samples, and `todays_records_match_their_golden_bytes` fails until the
//!   kind's `VERSION` is raised — and then fails again until the new version's golden file
//!   exists and the old one still reads (below);
//! - every older golden file must still decode, through the kind's `upgrade`, into the
//!   value it held, so a version's reader cannot be dropped by accident.
//!
//! Writing a new golden file is deliberate: `SOCIAL_STUDIO_WRITE_GOLDEN=1 cargo test -p
//! social-studio-storage golden` writes the files that are missing, never overwrites one.

use std::path::PathBuf;

use crate::codec::{self, Record};
use crate::fixtures::key;
use crate::port::{ConnectionCounts, PostCounts};
use crate::sled_store::golden_samples as internal;
use crate::*;

fn golden_path(kind: &str, version: u8) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/records")
        .join(format!("{kind}.v{version}.bin"))
}

/// `[len u32 LE][record]…`: one or more records of one kind.
fn frame(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn unframe(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        out.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    out
}

/// Compares (or, when asked and missing, writes) the golden file of `T`'s current version.
pub(crate) fn check_current<T: Record + PartialEq + std::fmt::Debug>(
    samples: &[T],
) -> Option<String> {
    let encoded: Vec<Vec<u8>> = samples.iter().map(|s| codec::encode(s).unwrap()).collect();
    let path = golden_path(T::KIND, T::VERSION);
    match std::fs::read(&path) {
        Ok(golden) if golden == frame(&encoded) => {
            for (bytes, sample) in unframe(&golden).iter().zip(samples) {
                let back: T = codec::decode("golden", T::KIND.as_bytes(), bytes).unwrap();
                assert_eq!(&back, sample, "{} round trip", T::KIND);
            }
            None
        }
        Ok(_) => Some(format!(
            "{} records no longer encode to {}: the shape changed. Raise {}::VERSION, teach its `upgrade` the old shape, and write the new golden file (SOCIAL_STUDIO_WRITE_GOLDEN=1).",
            T::KIND,
            path.display(),
            T::KIND
        )),
        Err(_) if std::env::var_os("SOCIAL_STUDIO_WRITE_GOLDEN").is_some() => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, frame(&encoded)).unwrap();
            None
        }
        Err(_) => Some(format!(
            "{} has no golden file for version {} ({}): write it with SOCIAL_STUDIO_WRITE_GOLDEN=1 once the shape is final",
            T::KIND,
            T::VERSION,
            path.display()
        )),
    }
}

/// Every golden file of an older version of `T` decodes into `expected`.
pub(crate) fn check_older<T: Record + PartialEq + std::fmt::Debug>(
    version: u8,
    expected: &[T],
) -> Option<String> {
    let path = golden_path(T::KIND, version);
    let Ok(golden) = std::fs::read(&path) else {
        return Some(format!(
            "the golden file {} of an older version is gone",
            path.display()
        ));
    };
    let records = unframe(&golden);
    if records.len() != expected.len() {
        return Some(format!(
            "{} holds {} records, expected {}",
            path.display(),
            records.len(),
            expected.len()
        ));
    }
    for (bytes, want) in records.iter().zip(expected) {
        assert_eq!(
            bytes[0],
            version,
            "{} is a version-{version} file",
            path.display()
        );
        match codec::decode::<T>("golden", T::KIND.as_bytes(), bytes) {
            Ok(got) if &got == want => {}
            Ok(got) => {
                return Some(format!(
                    "{} v{version} reads as {got:?}, expected {want:?}",
                    T::KIND
                ))
            }
            Err(e) => return Some(format!("{} v{version} no longer reads: {e}", T::KIND)),
        }
    }
    None
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn reason(code: ReasonCode, said: Option<&str>) -> Reason {
    Reason {
        code,
        platform_message: said.map(str::to_string),
    }
}

fn id(n: u8) -> PostId {
    PostId::from_bytes([n; 16])
}

fn facts() -> GrantFacts {
    GrantFacts {
        issued_at: t(1),
        expires_at: Some(t(2)),
        refresh_expires_at: None,
        has_refresh_token: true,
    }
}

fn connections() -> Vec<Connection> {
    let statuses = [
        ConnectionStatus::Active,
        ConnectionStatus::Expired(reason(ReasonCode::RevokedByUser, Some("revoked"))),
        ConnectionStatus::Error(reason(ReasonCode::NotPageAdmin, None)),
    ];
    let kinds = [
        AccountKind::Personal,
        AccountKind::Business,
        AccountKind::Creator,
        AccountKind::Page,
    ];
    let targets = [
        TargetKind::Page,
        TargetKind::Board,
        TargetKind::Person,
        TargetKind::Organisation,
        TargetKind::Profile,
    ];
    Platform::ALL
        .into_iter()
        .enumerate()
        .map(|(i, p)| Connection {
            key: key("golden", p),
            status: statuses[i % 3].clone(),
            account: Account {
                platform_id: format!("id-{i}"),
                handle: format!("@h{i}"),
                display_name: format!("Name {i}"),
                kind: kinds[i % 4],
                picture: (i % 2 == 0).then(|| format!("https://example.com/p{i}.jpg")),
            },
            targets: vec![Target {
                kind: targets[i % 5],
                id: format!("t{i}"),
                name: format!("Target {i}"),
            }],
            chosen_targets: if i % 3 == 0 {
                Vec::new()
            } else {
                vec![format!("t{i}")]
            },
            connected_at: t(10),
            status_since: t(11),
            refresh_in_flight: (i == 0).then(|| RefreshInFlight {
                started_at: t(12),
                token_fingerprint: [7; 8],
            }),
            grant: (i % 2 == 0).then(facts),
        })
        .collect()
}

fn states() -> Vec<PostState> {
    vec![
        PostState::Scheduled,
        PostState::Paused(reason(ReasonCode::ConnectionNotActive, None)),
        PostState::Publishing,
        PostState::Published(Receipt {
            platform_post_id: "p1".into(),
            url: Some("https://example.com/p1".into()),
        }),
        PostState::Failed(reason(ReasonCode::ContentRejected, Some("too long"))),
        PostState::Unconfirmed,
        PostState::Held(reason(ReasonCode::TooLate, None)),
        PostState::Cancelled,
    ]
}

fn statuses() -> Vec<PostStatus> {
    states()
        .into_iter()
        .enumerate()
        .map(|(i, state)| PostStatus {
            id: id(i as u8),
            connection: key("golden", Platform::ALL[i % 9]),
            due_at: t(100 + i as i64),
            next_attempt_at: (i % 2 == 0).then(|| t(200)),
            state,
            attempts: i as u32,
            updated_at: t(300),
            waiting: (i == 0).then(|| reason(ReasonCode::RateLimited, Some("until noon"))),
        })
        .collect()
}

fn bodies() -> Vec<PostBody> {
    PostKind::ALL
        .into_iter()
        .enumerate()
        .map(|(i, kind)| PostBody {
            id: id(i as u8),
            group_id: (i == 0).then(|| id(99)),
            connection: key("golden", Platform::ALL[i % 9]),
            target: (i % 2 == 1).then(|| format!("board-{i}")),
            kind,
            content: Content {
                text: format!("text {i}"),
                title: (i == 3).then(|| "a title".to_string()),
                links: vec!["https://example.com".into()],
                media: vec![
                    Media {
                        url: "https://example.com/a.jpg".into(),
                        kind: MediaKind::Image,
                        alt: Some("alt".into()),
                    },
                    Media {
                        url: "https://example.com/v.mp4".into(),
                        kind: MediaKind::Video,
                        alt: None,
                    },
                ],
            },
            due_at: t(100),
            created_at: t(50),
        })
        .collect()
}

/// Today's sample events: those of version 1, and one of each kind version 2 added.
pub(crate) fn sample_events() -> Vec<Event> {
    let mut events = sample_events_v1();
    events.push(Event {
        seq: events.len() as u64 + 1,
        at: t(401),
        connection: key("golden", Platform::Pinterest),
        post: None,
        kind: EventKind::TargetsChosen,
        from: None,
        to: None,
        reason: None,
        detail: Some("board-1,board-2".into()),
    });
    events
}

/// The sample events of event version 1 (and of its golden file).
pub(crate) fn sample_events_v1() -> Vec<Event> {
    let kinds = [
        EventKind::ConnectionStatus,
        EventKind::PostState,
        EventKind::ExpiringSoon,
        EventKind::Recovered,
        EventKind::GrantRenewed,
    ];
    let labels = StateLabel::ALL;
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| Event {
            seq: i as u64 + 1,
            at: t(400),
            connection: key("golden", Platform::ALL[i % 9]),
            post: (i % 2 == 0).then(|| id(i as u8)),
            kind: kinds[i % 5],
            from: Some(labels[(i + 1) % labels.len()]),
            to: Some(*label),
            reason: (i % 3 == 0).then(|| reason(ReasonCode::GrantExpired, Some("said"))),
            detail: (i == 2).then(|| "detail".to_string()),
        })
        .collect()
}

fn grants() -> Vec<Grant> {
    vec![
        Grant {
            access_token: Secret::new("a"),
            refresh_token: Some(Secret::new("r")),
            token_type: "bearer".into(),
            scopes: vec!["s1".into(), "s2".into()],
            issued_at: t(1),
            expires_at: Some(t(2)),
            refresh_expires_at: Some(t(3)),
            target_tokens: vec![TargetToken {
                target_id: "page".into(),
                token: Secret::new("pt"),
                expires_at: None,
            }],
            endpoint: Some("https://pds.example".into()),
        },
        Grant {
            access_token: Secret::new("only"),
            refresh_token: None,
            token_type: "bearer".into(),
            scopes: vec![],
            issued_at: t(1),
            expires_at: None,
            refresh_expires_at: None,
            target_tokens: vec![],
            endpoint: None,
        },
    ]
}

fn pending() -> Vec<PendingAuthorization> {
    let connect = PendingAuthorization {
        connection: key("golden", Platform::X),
        pkce_verifier: Some(Secret::new("verifier")),
        redirect_uri: "http://127.0.0.1:8080/v1/oauth/callback".into(),
        created_at: t(1),
        expires_at: t(2),
        replace: true,
        purpose: StatePurpose::Connect { return_to: None },
    };
    vec![
        connect.clone(),
        PendingAuthorization {
            purpose: StatePurpose::Connect {
                return_to: Some("/social/page/golden".into()),
            },
            ..connect.clone()
        },
        PendingAuthorization {
            pkce_verifier: None,
            redirect_uri: String::new(),
            replace: false,
            purpose: StatePurpose::PageLink,
            ..connect
        },
    ]
}

fn idempotent() -> Vec<IdempotentRequest> {
    vec![
        IdempotentRequest {
            request_digest: [1, 2, 3, 4, 5, 6, 7, 8],
            posts: vec![id(1), id(2)],
            created_at: t(5),
            unfinished: Vec::new(),
        },
        IdempotentRequest {
            request_digest: [8, 7, 6, 5, 4, 3, 2, 1],
            posts: vec![id(0), id(1)],
            created_at: t(50),
            unfinished: bodies().into_iter().take(2).collect(),
        },
    ]
}

fn counts() -> Vec<PostCounts> {
    vec![PostCounts {
        scheduled: 1,
        paused: 2,
        publishing: 3,
        published: 4,
        failed: 5,
        unconfirmed: 6,
        held: 7,
        cancelled: 8,
    }]
}

#[test]
fn todays_records_match_their_golden_bytes() {
    let problems: Vec<String> = [
        check_current(&connections()),
        check_current(&grants()),
        check_current(&bodies()),
        check_current(&statuses()),
        check_current(&sample_events()),
        check_current(&pending()),
        check_current(&idempotent()),
        check_current(&counts()),
        check_current(&[ConnectionCounts {
            active: 3,
            expired: 2,
            error: 1,
        }]),
        internal::check_current_internal(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_older_version_still_reads() {
    // Connection v2 had no picture and no choice: it reads with no picture, and the
    // account itself chosen (where a post naming no target went).
    let v2: Vec<Connection> = connections()
        .into_iter()
        .map(|mut c| {
            c.account.picture = None;
            c.chosen_targets = Connection::default_choice(&c.targets);
            c
        })
        .collect();
    // Connection v1 had no grant facts either: it reads as "not known" (the format-1
    // upgrade fills them in from the sealed grant).
    let v1: Vec<Connection> = v2
        .iter()
        .cloned()
        .map(|mut c| {
            c.grant = None;
            c
        })
        .collect();
    if std::env::var_os("SOCIAL_STUDIO_WRITE_GOLDEN").is_some()
        && !golden_path("connection", 1).exists()
    {
        #[derive(serde::Serialize)]
        struct AccountV2<'a> {
            platform_id: &'a str,
            handle: &'a str,
            display_name: &'a str,
            kind: AccountKind,
        }
        #[derive(serde::Serialize)]
        struct ConnectionV1<'a> {
            key: &'a ConnectionKey,
            status: &'a ConnectionStatus,
            account: AccountV2<'a>,
            targets: &'a Vec<Target>,
            connected_at: Timestamp,
            status_since: Timestamp,
            refresh_in_flight: &'a Option<RefreshInFlight>,
        }
        let bytes: Vec<Vec<u8>> = v1
            .iter()
            .map(|c| {
                codec::encode_as(
                    1,
                    &ConnectionV1 {
                        key: &c.key,
                        status: &c.status,
                        account: AccountV2 {
                            platform_id: &c.account.platform_id,
                            handle: &c.account.handle,
                            display_name: &c.account.display_name,
                            kind: c.account.kind,
                        },
                        targets: &c.targets,
                        connected_at: c.connected_at,
                        status_since: c.status_since,
                        refresh_in_flight: &c.refresh_in_flight,
                    },
                )
                .unwrap()
            })
            .collect();
        std::fs::write(golden_path("connection", 1), frame(&bytes)).unwrap();
    }
    // Idempotent request v1 had the posts' ids only: it reads as finished.
    let idempotent_v1: Vec<IdempotentRequest> = idempotent().into_iter().take(1).collect();
    // Pending authorization v1 had no purpose: a connect begun through the API.
    let pending_v1: Vec<PendingAuthorization> = pending().into_iter().take(1).collect();
    let problems: Vec<String> = [
        check_older(1, &v1),
        check_older(2, &v2),
        check_older(1, &idempotent_v1),
        check_older(1, &pending_v1),
        // Event v1 had no `TargetsChosen`: its records read as they are.
        check_older(1, &sample_events_v1()),
        internal::check_older_internal(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // And every kind's current version is the newest golden file there is.
    for entry in std::fs::read_dir(golden_path("x", 0).parent().unwrap()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let (kind, rest) = name.split_once(".v").unwrap();
        let version: u8 = rest.trim_end_matches(".bin").parse().unwrap();
        let current = match kind {
            "connection" => Connection::VERSION,
            "grant" => Grant::VERSION,
            "post_body" => PostBody::VERSION,
            "post_status" => PostStatus::VERSION,
            "event" => Event::VERSION,
            "pending_authorization" => PendingAuthorization::VERSION,
            "idempotent_request" => IdempotentRequest::VERSION,
            "post_counts" => PostCounts::VERSION,
            "connection_counts" => ConnectionCounts::VERSION,
            other => internal::version_of(other)
                .unwrap_or_else(|| panic!("a golden file of an unknown kind: {name}")),
        };
        assert!(
            version <= current,
            "{name} is newer than what this build writes"
        );
    }
}
