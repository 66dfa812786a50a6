//! Instagram (Instagram API with Facebook Login: professional accounts linked to Pages).
//!
//! - Connect: Facebook Login, as for Facebook Pages but its own connection and grant.
//!   Scopes: `instagram_basic` (read the account), `instagram_content_publish` (create
//!   and publish containers), `pages_show_list` (find the Pages the account is linked
//!   to) and `pages_read_engagement` (which the IG User, container and `media_publish`
//!   references require). `business_management` is not asked: Meta requires `ads_read`
//!   or `ads_management`, not it, and only when the Page role came through Business
//!   Manager, which the engine does not assume.
//! - Targets: for each Page in `/me/accounts`, `GET /{page-id}?fields=
//!   instagram_business_account{id,username,name},connected_instagram_account{id,username}`.
//!   Each professional account is offered as a target. A Page with only a
//!   `connected_instagram_account` holds a personal account (`instagram_not_professional`);
//!   no Page, or Pages with neither, is `instagram_not_linked_to_page`.
//! - Lifetimes: the grant is the long-lived user token (about 60 days, read from the
//!   exchange). There is no refresh token, and Facebook Login has no refresh grant for
//!   it, so the grant is not renewable: the actors warn "expiring soon" ahead of
//!   `expires_at` and the author reconnects. `check` uses `debug_token`.
//! - Publish through a media container: `POST /{ig-user-id}/media` (image_url,
//!   video_url, media_type REELS/STORIES/CAROUSEL, caption, children), poll
//!   `GET /{container}?fields=status_code` until `FINISHED` (`ERROR` is a content
//!   refusal, `EXPIRED` a passing fault that a retry with a new container fixes; at
//!   most [`POLL_DEADLINE`]), then `POST /{ig-user-id}/media_publish`. Before any
//!   container, `GET /{ig-user-id}/content_publishing_limit` is read: a used-up quota
//!   waits ([`QUOTA_RECHECK`]) rather than spend a container.
//! - Stories are only for business accounts. Facebook Login's IG User has no field that
//!   tells business from creator, so the refusal comes from Instagram when the Story
//!   container is created; it is named `not_offered_by_platform`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use social_studio_actors::{Clock, LimitScope, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    Account, Grant, Media, MediaKind, Platform, Post, PostKind, Reason, ReasonCode, Receipt,
    Secret, Target, TargetKind, Timestamp,
};

use super::facebook::Me;
use super::graph::GraphApp;
use super::oauth::{TokenError, TokenRequest};
use super::outbound::{self, Endpoint};
use super::{
    Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, PlatformSettings,
    SettingsError,
};

/// The least scopes publishing needs (see the module documentation).
pub const SCOPES: &[&str] = &[
    "instagram_basic",
    "instagram_content_publish",
    "pages_show_list",
    "pages_read_engagement",
];

const POSTING_SCOPES: &[&str] = &["instagram_basic", "instagram_content_publish"];

/// "Maximum 2200 characters, 30 hashtags, and 20 @ tags".
pub const MAX_CAPTION: usize = 2200;
pub const MAX_HASHTAGS: usize = 30;
pub const MAX_MENTIONS: usize = 20;
/// Carousel items.
pub const MIN_CAROUSEL: usize = 2;
pub const MAX_CAROUSEL: usize = 10;

/// First wait between container status polls; doubles up to [`POLL_MAX_INTERVAL`].
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
const POLL_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Give up on a container that is not ready by then (Meta suggests polling once a
/// minute for up to five minutes).
pub const POLL_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// With the publishing quota used up, check again after this (the window is rolling:
/// a slot frees when the oldest post of the last 24 h leaves it).
pub const QUOTA_RECHECK: Duration = Duration::from_secs(60 * 60);

/// The Instagram adapter.
pub struct InstagramAdapter {
    graph: GraphApp,
}

impl std::fmt::Debug for InstagramAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstagramAdapter")
            .field("graph", &self.graph)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct PageRef {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PageInstagram {
    #[serde(default)]
    instagram_business_account: Option<IgUser>,
    #[serde(default)]
    connected_instagram_account: Option<IgUser>,
}

#[derive(Debug, Deserialize)]
struct IgUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Id {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    status_code: Option<String>,
    /// Meta's words for an `ERROR`.
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Limits {
    #[serde(default)]
    data: Vec<Limit>,
}

#[derive(Debug, Deserialize)]
struct Limit {
    #[serde(default)]
    quota_usage: u64,
    #[serde(default)]
    config: Option<LimitConfig>,
}

#[derive(Debug, Deserialize)]
struct LimitConfig {
    #[serde(default)]
    quota_total: Option<u64>,
    /// Seconds.
    #[serde(default)]
    quota_duration: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Permalink {
    #[serde(default)]
    permalink: Option<String>,
}

/// Hashtags in a caption: `#` followed by a letter, digit or underscore.
pub fn hashtags(text: &str) -> usize {
    tagged(text, '#')
}

/// `@` mentions in a caption.
pub fn mentions(text: &str) -> usize {
    tagged(text, '@')
}

fn tagged(text: &str, sign: char) -> usize {
    let mut count = 0;
    let mut previous: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let starts_word = previous.is_none_or(|p| !(p.is_alphanumeric() || p == '_'));
        if c == sign
            && starts_word
            && chars
                .peek()
                .is_some_and(|n| n.is_alphanumeric() || *n == '_')
        {
            count += 1;
        }
        previous = Some(c);
    }
    count
}

fn rejected(code: ReasonCode, words: impl Into<String>) -> PortError {
    PortError::ContentRejected(Reason::with_platform_message(code, words))
}

impl InstagramAdapter {
    pub fn new(settings: &PlatformSettings) -> Result<InstagramAdapter, SettingsError> {
        Ok(InstagramAdapter {
            graph: GraphApp::new(
                settings,
                &outbound::Outbound::default(),
                Platform::Instagram,
            )?,
        })
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<InstagramAdapter, SettingsError> {
        Ok(InstagramAdapter {
            graph: GraphApp::new(settings, outbound, Platform::Instagram)?,
        })
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> InstagramAdapter {
        self.graph.clock = clock;
        self
    }

    /// Refuses to spend a container when the rolling 24-hour quota is used up.
    async fn check_quota(&self, ig: &str, token: &Secret) -> Result<(), PortError> {
        let limits: Limits = self
            .graph
            .get(
                Endpoint::Identity,
                &format!("/{ig}/content_publishing_limit"),
                &[("fields", "quota_usage,config")],
                token,
            )
            .await?;
        let Some(limit) = limits.data.first() else {
            return Ok(());
        };
        let Some(config) = &limit.config else {
            return Ok(());
        };
        match config.quota_total {
            Some(total) if limit.quota_usage >= total => {
                let window = Duration::from_secs(config.quota_duration.unwrap_or(86_400));
                tracing::info!(
                    platform = "instagram",
                    usage = limit.quota_usage,
                    total,
                    "publishing quota used up"
                );
                Err(PortError::RateLimited {
                    retry_after: QUOTA_RECHECK.min(window),
                    scope: LimitScope::Connection,
                })
            }
            _ => Ok(()),
        }
    }

    /// Creates one container; a Story refused for its account is named.
    async fn container(
        &self,
        ig: &str,
        form: Vec<(String, String)>,
        token: &Secret,
        kind: PostKind,
    ) -> Result<String, PortError> {
        match self
            .graph
            .post::<Id>(Endpoint::Publish, &format!("/{ig}/media"), &form, token)
            .await
        {
            Ok(id) => Ok(id.id),
            Err(PortError::RequirementUnmet(reason) | PortError::ContentRejected(reason))
                if kind == PostKind::Story =>
            {
                Err(rejected(
                    ReasonCode::NotOfferedByPlatform,
                    format!(
                        "Instagram publishes Stories through apps only for business accounts, \
                         not creator accounts: {}",
                        reason.platform_message.unwrap_or_default()
                    ),
                ))
            }
            Err(other) => Err(other),
        }
    }

    /// Polls a container until it is `FINISHED`, sleeping between polls (tokio time, so
    /// paused-time tests run it at once) and giving up at [`POLL_DEADLINE`].
    async fn wait_finished(&self, container: &str, token: &Secret) -> Result<(), PortError> {
        let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
        let mut interval = POLL_INTERVAL;
        loop {
            let status: Status = self
                .graph
                .get(
                    Endpoint::PublishStatus,
                    &format!("/{container}"),
                    &[("fields", "status_code,status")],
                    token,
                )
                .await?;
            match status.status_code.as_deref() {
                Some("FINISHED") => return Ok(()),
                Some("ERROR") => {
                    return Err(rejected(
                        ReasonCode::ContentRejected,
                        format!(
                            "Instagram could not process the media: {}",
                            status.status.unwrap_or_else(|| "ERROR".into())
                        ),
                    ))
                }
                Some("EXPIRED") => {
                    return Err(PortError::Unavailable {
                        detail: format!(
                            "container {container} expired before it was published; a retry \
                             creates a new one"
                        ),
                        maybe_delivered: false,
                    })
                }
                Some("PUBLISHED") => {
                    return Err(PortError::Unavailable {
                        detail: format!("container {container} is already published"),
                        maybe_delivered: true,
                    })
                }
                _ => {}
            }
            if tokio::time::Instant::now() + interval > deadline {
                return Err(PortError::Unavailable {
                    detail: format!("container {container} was not ready within {POLL_DEADLINE:?}"),
                    maybe_delivered: false,
                });
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(POLL_MAX_INTERVAL);
        }
    }

    fn media_fields(media: &Media, form: &mut Vec<(String, String)>, video_type: &str) {
        match media.kind {
            MediaKind::Image => form.push(("image_url".into(), media.url.clone())),
            MediaKind::Video => {
                form.push(("media_type".into(), video_type.into()));
                form.push(("video_url".into(), media.url.clone()));
            }
        }
    }
}

#[async_trait]
impl PlatformPort for InstagramAdapter {
    fn platform(&self) -> Platform {
        Platform::Instagram
    }

    /// Re-exchanges the long-lived user token. The actors never call it (`renewable` is
    /// false): Meta documents no renewal of a Facebook Login user token.
    async fn refresh(&self, grant: &Grant) -> Result<Grant, PortError> {
        let now = self.graph.clock.now();
        let user = self
            .graph
            .exchange_long_lived(&grant.access_token, now, TokenRequest::Refresh)
            .await
            .map_err(TokenError::into_port_error)?;
        Ok(Grant {
            access_token: user.token,
            issued_at: now,
            expires_at: user.expires_at.or(grant.expires_at),
            ..grant.clone()
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "instagram"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        let debug = self.graph.debug_token(&grant.access_token).await?;
        debug.proves("Instagram", POSTING_SCOPES)?;
        let id = debug
            .user_id
            .or_else(|| grant.endpoint.clone())
            .unwrap_or_default();
        Ok(Me {
            id,
            name: None,
            picture: None,
        }
        .account())
    }

    #[tracing::instrument(skip_all, fields(platform = "instagram", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(rejected(ReasonCode::ContentRejected, words.join("; ")));
        }
        let Some(ig) = post.target.as_deref() else {
            return Err(rejected(
                ReasonCode::ContentRejected,
                "choose an Instagram account",
            ));
        };
        let token = &grant.access_token;
        self.graph.held(token)?;
        self.check_quota(ig, token).await?;
        let media = &post.content.media;
        let caption = post.content.text.trim().to_owned();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let container = match (post.kind, media.as_slice()) {
            (PostKind::Story, [item]) => {
                let mut form = Vec::new();
                match item.kind {
                    MediaKind::Image => form.push(pair("image_url", &item.url)),
                    MediaKind::Video => form.push(pair("video_url", &item.url)),
                }
                form.push(pair("media_type", "STORIES"));
                self.container(ig, form, token, PostKind::Story).await?
            }
            // A single video is a Reel (Instagram publishes feed videos as Reels).
            (PostKind::Reel | PostKind::Feed, [item]) if item.kind == MediaKind::Video => {
                let form = vec![
                    pair("media_type", "REELS"),
                    pair("video_url", &item.url),
                    pair("caption", &caption),
                    pair("share_to_feed", "true"),
                ];
                self.container(ig, form, token, post.kind).await?
            }
            (PostKind::Feed, [item]) => {
                let mut form = Vec::new();
                Self::media_fields(item, &mut form, "REELS");
                form.push(pair("caption", &caption));
                self.container(ig, form, token, post.kind).await?
            }
            (PostKind::Feed, items) => {
                let mut children = Vec::new();
                for item in items {
                    let mut form = vec![pair("is_carousel_item", "true")];
                    Self::media_fields(item, &mut form, "VIDEO");
                    let child = self.container(ig, form, token, post.kind).await?;
                    self.wait_finished(&child, token).await?;
                    children.push(child);
                }
                let form = vec![
                    pair("media_type", "CAROUSEL"),
                    pair("children", &children.join(",")),
                    pair("caption", &caption),
                ];
                self.container(ig, form, token, post.kind).await?
            }
            _ => {
                return Err(rejected(
                    ReasonCode::ContentRejected,
                    "the post's media do not make an Instagram post of its kind",
                ))
            }
        };
        self.wait_finished(&container, token).await?;
        let published: Id = self
            .graph
            .post(
                Endpoint::Publish,
                &format!("/{ig}/media_publish"),
                &[pair("creation_id", &container)],
                token,
            )
            .await?;
        // The permalink is a courtesy: the post is published whether or not it is read.
        let url = self
            .graph
            .get::<Permalink>(
                Endpoint::PublishStatus,
                &format!("/{}", published.id),
                &[("fields", "permalink")],
                token,
            )
            .await
            .ok()
            .and_then(|p| p.permalink);
        tracing::info!(platform = "instagram", media_id = %published.id, "media published");
        Ok(Receipt {
            platform_post_id: published.id,
            url,
        })
    }

    /// `DELETE /me/permissions` with this connection's user token: de-authorizes the
    /// Instagram connection's Meta app only.
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        self.graph.revoke(&grant.access_token).await
    }
}

#[async_trait]
impl Adapter for InstagramAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        self.graph.authorize(state, redirect_uri, SCOPES)
    }

    #[tracing::instrument(skip_all, fields(platform = "instagram"))]
    async fn connect(
        &self,
        code: &str,
        _pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        let user = self.graph.connect_token(code, redirect_uri, now).await?;
        let debug = self.graph.debug_token(&user.token).await?;
        // The Pages the accounts are linked to are listed with pages_show_list.
        let needed: Vec<&str> = POSTING_SCOPES
            .iter()
            .copied()
            .chain(["pages_show_list"])
            .collect();
        debug.proves("Facebook", &needed)?;
        let me: Me = self
            .graph
            .get(
                Endpoint::Identity,
                "/me",
                &[("fields", "id,name,picture")],
                &user.token,
            )
            .await?;
        let pages: Vec<PageRef> = self
            .graph
            .get_all(
                Endpoint::Targets,
                "/me/accounts",
                &[("fields", "id,name"), ("limit", "100")],
                &user.token,
            )
            .await?;
        let mut targets = Vec::new();
        let mut personal = Vec::new();
        for page in &pages {
            let linked: PageInstagram = self
                .graph
                .get(
                    Endpoint::Targets,
                    &format!("/{}", page.id),
                    &[(
                        "fields",
                        "instagram_business_account{id,username,name},\
                         connected_instagram_account{id,username}",
                    )],
                    &user.token,
                )
                .await?;
            let page_name = page.name.clone().unwrap_or_else(|| page.id.clone());
            match (
                linked.instagram_business_account,
                linked.connected_instagram_account,
            ) {
                (Some(ig), _) => targets.push(Target {
                    kind: TargetKind::Profile,
                    name: format!(
                        "@{} (Page {page_name})",
                        ig.username.clone().unwrap_or_else(|| ig.id.clone())
                    ),
                    id: ig.id,
                }),
                (None, Some(ig)) => personal.push(ig.username.unwrap_or(ig.id)),
                (None, None) => {}
            }
        }
        if targets.is_empty() {
            let reason = if personal.is_empty() {
                Reason::with_platform_message(
                    ReasonCode::InstagramNotLinkedToPage,
                    if pages.is_empty() {
                        "the Facebook account manages no Page".to_owned()
                    } else {
                        "no Page the Facebook account manages has an Instagram account".to_owned()
                    },
                )
            } else {
                Reason::with_platform_message(
                    ReasonCode::InstagramNotProfessional,
                    format!("@{} is a personal account", personal.join(", @")),
                )
            };
            return Err(ConnectError::RequirementUnmet(reason));
        }
        tracing::info!(
            platform = "instagram",
            accounts = targets.len(),
            "account connected"
        );
        Ok(Connected {
            grant: Grant {
                access_token: user.token,
                refresh_token: None,
                token_type: "bearer".into(),
                scopes: debug.scopes.clone(),
                issued_at: now,
                expires_at: user.expires_at,
                refresh_expires_at: None,
                target_tokens: Vec::new(),
                endpoint: Some(me.id.clone()),
            },
            account: me.account(),
            targets,
        })
    }

    fn scopes(&self) -> &'static [&'static str] {
        SCOPES
    }

    fn validate(&self, post: &Post) -> Result<(), Vec<ContentError>> {
        let mut errors = Vec::new();
        if !Platform::Instagram.supports(post.kind) {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        if post.target.as_deref().is_none_or(|t| t.trim().is_empty()) {
            errors.push(ContentError::TargetRequired {
                target: "Instagram account".into(),
            });
        }
        let content = &post.content;
        let length = content.text.chars().count();
        if length > MAX_CAPTION {
            errors.push(ContentError::TextTooLong {
                limit: MAX_CAPTION,
                actual: length,
            });
        }
        let tags = hashtags(&content.text);
        if tags > MAX_HASHTAGS {
            errors.push(ContentError::TooManyHashtags {
                limit: MAX_HASHTAGS,
                actual: tags,
            });
        }
        let at = mentions(&content.text);
        if at > MAX_MENTIONS {
            errors.push(ContentError::TooManyMentions {
                limit: MAX_MENTIONS,
                actual: at,
            });
        }
        let images = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Image)
            .count();
        let videos = content.media.len() - images;
        match post.kind {
            PostKind::Feed if content.media.is_empty() => {
                errors.push(ContentError::MediaRequired {
                    what: "an image or a video".into(),
                })
            }
            PostKind::Feed if content.media.len() > MAX_CAROUSEL => {
                errors.push(ContentError::TooManyImages {
                    limit: MAX_CAROUSEL,
                    actual: content.media.len(),
                })
            }
            PostKind::Reel if videos == 0 => errors.push(ContentError::MediaRequired {
                what: "one video".into(),
            }),
            PostKind::Reel if images > 0 => errors.push(ContentError::MixedMedia),
            PostKind::Reel if videos > 1 => errors.push(ContentError::TooManyVideos {
                limit: 1,
                actual: videos,
            }),
            PostKind::Story if content.media.is_empty() => {
                errors.push(ContentError::MediaRequired {
                    what: "one image or video".into(),
                })
            }
            PostKind::Story if images > 1 => errors.push(ContentError::TooManyImages {
                limit: 1,
                actual: images,
            }),
            PostKind::Story if videos > 1 || (images > 0 && videos > 0) => {
                errors.push(ContentError::TooManyVideos {
                    limit: 1,
                    actual: videos,
                })
            }
            _ => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_counted_where_words_start() {
        assert_eq!(hashtags("#one #two a#three ## #_x"), 3);
        assert_eq!(mentions("@jane and @bob, mail me@example.com"), 2);
    }
}
