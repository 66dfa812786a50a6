//! [`NewPost`]: a request to schedule content ([`PostRequest`], as sent) parsed once
//! into what it will create — one post per platform it names, each checked against its
//! platform's rules and its connection. Any refusal refuses the whole request, with each
//! platform's errors, and nothing is stored.

use serde::{Deserialize, Serialize};
use social_studio_storage::{
    ConnectionKey, Content, Media, MediaKind, PenName, Platform, Post, PostId, PostKind, PostState,
    Timestamp,
};
use utoipa::ToSchema;

use super::error::{FieldError, PlatformRefusal, PostError};
use super::Studio;

/// One platform a request posts to, with its target where the platform needs one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformTarget {
    pub platform: String,
    /// One of the connection's targets; absent, each of its chosen targets.
    #[serde(default)]
    pub target: Option<String>,
}

/// An image or video a post carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaInput {
    /// A public http(s) URL.
    pub url: String,
    /// `image` or `video`.
    pub kind: String,
    #[serde(default)]
    pub alt: Option<String>,
}

/// A request to schedule content (the body of `POST /v1/pen-names/{pen}/posts`):
/// `platform` (with `target`), or `platforms`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostRequest {
    /// One platform…
    #[serde(default)]
    pub platform: Option<String>,
    /// …or several (connect once, post everywhere).
    #[serde(default)]
    pub platforms: Option<Vec<PlatformTarget>>,
    /// With `platform`: one of the connection's targets. Absent, the post goes to each
    /// of the connection's chosen targets (`chosen_targets`), one post per target.
    #[serde(default)]
    pub target: Option<String>,
    /// `feed|story|reel|pin|video|community|thread`; the platform's main kind if absent.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub links: Vec<String>,
    #[serde(default)]
    pub media: Vec<MediaInput>,
    /// RFC 3339.
    pub scheduled_at: String,
}

/// A request to schedule content, validated for every platform it names: the posts it
/// creates, one per platform — or, for a platform named without a target, one per target
/// its connection has chosen — each with its connection, target, kind, content and due
/// time. Only [`NewPost::parse`] makes one.
#[derive(Debug, Clone)]
pub struct NewPost {
    /// One per platform named (one per chosen target where it names no target), in the
    /// request's order; sharing a group id when several.
    pub(super) posts: Vec<Post>,
    /// When the request was parsed: the posts' creation time.
    pub(super) created_at: Timestamp,
}

impl NewPost {
    /// Parses and validates `request` for `pen`: which platforms (`platform`, or
    /// `platforms`), when (`scheduled_at`, RFC 3339), what (text, links and media that
    /// are absolute http(s) URLs, a kind of post the platform offers), and for each
    /// platform whether its connection exists, whether the target is one of its targets,
    /// and whether the content keeps the platform's rules. Every refusal of every platform
    /// comes back at once, as `validation_failed`; a time that does not parse is
    /// `invalid_time`.
    pub async fn parse(
        studio: &Studio,
        pen: &PenName,
        request: &PostRequest,
    ) -> Result<NewPost, PostError> {
        let targets: Vec<PlatformTarget> = match (&request.platform, &request.platforms) {
            (Some(p), None) => vec![PlatformTarget {
                platform: p.clone(),
                target: request.target.clone(),
            }],
            (None, Some(list)) if !list.is_empty() => list.clone(),
            _ => {
                return Err(PostError::ValidationFailed(vec![PlatformRefusal {
                    platform: String::new(),
                    errors: vec![FieldError::new(
                        "platform_required",
                        "name one platform in `platform`, or several in `platforms`",
                    )],
                }]))
            }
        };
        let due = Timestamp::parse_rfc3339(&request.scheduled_at).map_err(|source| {
            PostError::InvalidTime {
                field: "scheduled_at",
                source,
            }
        })?;
        let mut common = Vec::new();
        let media = parse_media(&request.media, &mut common);
        for (i, l) in request.links.iter().enumerate() {
            if !absolute_http_url(l) {
                common.push(FieldError::new(
                    "invalid_link",
                    format!("links[{i}] must be an absolute http(s) URL"),
                ));
            }
        }
        let kind = match request.kind.as_deref() {
            None => None,
            Some(k) => match PostKind::from_id(k) {
                Some(k) => Some(k),
                None => {
                    common.push(FieldError::new(
                        "invalid_kind",
                        format!("{k:?} is not a kind of post"),
                    ));
                    None
                }
            },
        };
        let now = studio.now();
        // Shared by the posts when the request makes more than one.
        let group = PostId::new();
        let mut refusals = Vec::new();
        let mut posts = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in &targets {
            let mut errors = common.clone();
            let Some(platform) = Platform::from_id(&t.platform) else {
                errors.push(FieldError::new(
                    "unknown_platform",
                    format!("{:?} is not a platform", t.platform),
                ));
                refusals.push(PlatformRefusal {
                    platform: t.platform.clone(),
                    errors,
                });
                continue;
            };
            if !seen.insert(platform) {
                errors.push(FieldError::new(
                    "duplicate_platform",
                    "a request names each platform once",
                ));
            }
            let kind = kind.unwrap_or(platform.capabilities().post_kinds[0]);
            let connection = ConnectionKey::new(pen.clone(), platform);
            // Named, it is the one target; unnamed, each target the author chose.
            let aims = match &t.target {
                Some(target) => vec![Some(target.clone())],
                None => super::targets::aims(studio, &connection).await,
            };
            for aim in aims {
                let mut errors = errors.clone();
                let post = Post {
                    id: PostId::new(),
                    group_id: Some(group),
                    connection: connection.clone(),
                    target: aim,
                    kind,
                    content: Content {
                        text: request.text.clone(),
                        title: request.title.clone(),
                        links: request.links.clone(),
                        media: media.clone(),
                    },
                    due_at: due,
                    next_attempt_at: None,
                    waiting: None,
                    state: PostState::Scheduled,
                    attempts: 0,
                    created_at: now,
                    updated_at: now,
                };
                errors.extend(studio.validate_for(&post, request.kind.is_some()).await);
                if errors.is_empty() {
                    posts.push(post);
                } else if !refusals
                    .iter()
                    .any(|r: &PlatformRefusal| r.platform == platform.id() && r.errors == errors)
                {
                    refusals.push(PlatformRefusal {
                        platform: platform.id().to_string(),
                        errors,
                    });
                }
            }
        }
        if posts.len() < 2 {
            for post in &mut posts {
                post.group_id = None;
            }
        }
        if !refusals.is_empty() {
            return Err(PostError::ValidationFailed(refusals));
        }
        Ok(NewPost {
            posts,
            created_at: now,
        })
    }

    /// The posts scheduling this will create, one per platform (or chosen target), in the
    /// request's order.
    pub fn posts(&self) -> &[Post] {
        &self.posts
    }
}

fn absolute_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

pub(super) fn parse_media(items: &[MediaInput], errors: &mut Vec<FieldError>) -> Vec<Media> {
    let mut out = Vec::new();
    for (i, m) in items.iter().enumerate() {
        let kind = match m.kind.as_str() {
            "image" => MediaKind::Image,
            "video" => MediaKind::Video,
            other => {
                errors.push(FieldError::new(
                    "invalid_media_kind",
                    format!("media[{i}].kind is {other:?}; expected image or video"),
                ));
                continue;
            }
        };
        if !absolute_http_url(&m.url) {
            errors.push(FieldError::new(
                "invalid_media_url",
                format!("media[{i}].url must be a public http(s) URL"),
            ));
            continue;
        }
        out.push(Media {
            url: m.url.clone(),
            kind,
            alt: m.alt.clone(),
        });
    }
    out
}

impl Studio {
    /// Checks one post against its platform and connection. Returns every refusal.
    pub(super) async fn validate_for(&self, post: &Post, kind_given: bool) -> Vec<FieldError> {
        let platform = post.connection.platform;
        let mut errors = Vec::new();
        let caps = platform.capabilities();
        if caps.not_offered.contains(&post.kind) {
            let reason = social_studio_storage::ReasonCode::NotOfferedByPlatform;
            errors.push(FieldError::new(
                reason.code(),
                format!(
                    "{} has no public API for {} posts. {}",
                    platform.display_name(),
                    post.kind.id(),
                    reason.remedy()
                ),
            ));
            return errors;
        }
        if !caps.post_kinds.contains(&post.kind) {
            let offered: Vec<&str> = caps.post_kinds.iter().map(|k| k.id()).collect();
            errors.push(FieldError::new(
                "not_offered_by_platform",
                format!(
                    "{} offers {} posts, not {}",
                    platform.display_name(),
                    offered.join(", "),
                    post.kind.id()
                ),
            ));
            if kind_given {
                return errors;
            }
        }
        match self.inner.store.connection(&post.connection).await {
            Ok(Some(c)) => {
                if let Some(t) = &post.target {
                    if !c.targets.is_empty() && !c.targets.iter().any(|x| &x.id == t) {
                        errors.push(FieldError::new(
                            "unknown_target",
                            format!("{t:?} is not a target of this connection"),
                        ));
                    }
                }
            }
            Ok(None) => errors.push(FieldError::new(
                "not_connected",
                format!(
                    "{} is not connected for this pen name",
                    platform.display_name()
                ),
            )),
            Err(e) => errors.push(FieldError::new("storage_error", e.to_string())),
        }
        match self.inner.adapters.get(&platform) {
            None => errors.push(FieldError::new(
                "platform_not_configured",
                format!(
                    "{} is not configured on this service",
                    platform.display_name()
                ),
            )),
            Some(adapter) => {
                if let Err(es) = adapter.validate(post) {
                    errors.extend(es.iter().map(FieldError::from));
                }
            }
        }
        errors
    }
}
