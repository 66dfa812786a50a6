//! Scheduling: a request names one or several platforms; it is validated for every one
//! of them before anything is stored (any refusal refuses the whole request, with each
//! platform's errors), then becomes one post per connection with a shared group id.
//! One platform failing or pausing later never touches the others.

use serde::{Deserialize, Serialize};
use social_studio_storage::{
    fingerprint, ConnectionKey, Content, IdempotentRequest, Media, MediaKind, PenName, Platform,
    Post, PostId, PostKind, PostState, StateLabel, Timestamp,
};
use utoipa::ToSchema;

use super::error::{ConnectionError, EngineRefusal, FieldError, PlatformRefusal, PostError};
use super::views::{PostView, UnreadableView};
use super::Studio;

/// A pen name's posts as listed: every one that can be read, and every one that cannot,
/// by id — a listing never fails because one post is unreadable.
#[derive(Debug, Clone, Serialize)]
pub struct PostList {
    pub posts: Vec<PostView>,
    pub unreadable: Vec<UnreadableView>,
}

/// One platform a request posts to, with its target where the platform needs one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformTarget {
    pub platform: String,
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
pub struct NewPost {
    /// One platform…
    #[serde(default)]
    pub platform: Option<String>,
    /// …or several (connect once, post everywhere).
    #[serde(default)]
    pub platforms: Option<Vec<PlatformTarget>>,
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

/// A change to a post that has not been published (`PATCH`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostPatch {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub links: Option<Vec<String>>,
    #[serde(default)]
    pub media: Option<Vec<MediaInput>>,
    /// RFC 3339.
    #[serde(default)]
    pub scheduled_at: Option<String>,
}

fn absolute_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn parse_media(items: &[MediaInput], errors: &mut Vec<FieldError>) -> Vec<Media> {
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
    async fn validate_for(&self, post: &Post, kind_given: bool) -> Vec<FieldError> {
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

    /// Validates the request for every platform it names, then schedules one post per
    /// connection. With an `Idempotency-Key`, a retried request returns what the first
    /// one created and creates nothing new.
    pub async fn schedule(
        &self,
        pen: &PenName,
        request: NewPost,
        idempotency_key: Option<&str>,
    ) -> Result<(Vec<PostView>, bool), PostError> {
        let digest = fingerprint(&serde_json::to_string(&request).unwrap_or_default());
        if let Some(key) = idempotency_key {
            if let Some(prior) = self.inner.store.idempotent_result(pen, key).await? {
                if prior.request_digest != digest {
                    return Err(PostError::IdempotencyKeyReused);
                }
                return Ok((self.posts_by_id(&prior.posts).await?, false));
            }
        }
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
        let now = self.now();
        let group = (targets.len() > 1).then(PostId::new);
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
            let post = Post {
                id: PostId::new(),
                group_id: group,
                connection: ConnectionKey::new(pen.clone(), platform),
                target: t.target.clone(),
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
            errors.extend(self.validate_for(&post, request.kind.is_some()).await);
            if errors.is_empty() {
                posts.push(post);
            } else {
                refusals.push(PlatformRefusal {
                    platform: platform.id().to_string(),
                    errors,
                });
            }
        }
        if !refusals.is_empty() {
            return Err(PostError::ValidationFailed(refusals));
        }
        if let Some(key) = idempotency_key {
            // Claimed before scheduling: of two concurrent retries, one creates the posts.
            let record = IdempotentRequest {
                request_digest: digest,
                posts: posts.iter().map(|p| p.id).collect(),
                created_at: now,
            };
            let winner = self
                .inner
                .store
                .remember_idempotent(pen, key, &record)
                .await?;
            if winner != record {
                return Ok((self.posts_by_id(&winner.posts).await?, false));
            }
        }
        let mut out = Vec::with_capacity(posts.len());
        for p in posts {
            let scheduled = self.inner.engine.schedule(p).await?;
            out.push(PostView::from(&scheduled));
        }
        Ok((out, true))
    }

    async fn posts_by_id(&self, ids: &[PostId]) -> Result<Vec<PostView>, PostError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = self.inner.store.post(*id).await? {
                out.push(PostView::from(&p));
            }
        }
        Ok(out)
    }

    /// A pen name's posts, optionally in one state, newest due first — and, never hidden,
    /// the posts of it that cannot be read.
    pub async fn posts(
        &self,
        pen: &PenName,
        state: Option<StateLabel>,
    ) -> Result<PostList, PostError> {
        let loaded = self.inner.store.posts_of_pen(pen).await?;
        let mut posts = loaded.items;
        if let Some(s) = state {
            posts.retain(|p| p.state.label() == s);
        }
        posts.sort_by_key(|p| std::cmp::Reverse((p.due_at, p.id)));
        Ok(PostList {
            posts: posts.iter().map(PostView::from).collect(),
            unreadable: loaded.unreadable.iter().map(UnreadableView::from).collect(),
        })
    }

    async fn owned(&self, pen: &PenName, id: PostId) -> Result<Post, PostError> {
        match self.inner.store.post(id).await? {
            Some(p) if p.connection.pen_name == *pen => Ok(p),
            _ => Err(EngineRefusal::PostNotFound(id).into()),
        }
    }

    pub async fn post(&self, pen: &PenName, id: PostId) -> Result<PostView, PostError> {
        Ok(PostView::from(&self.owned(pen, id).await?))
    }

    /// Edits text, media or time of a post that is Scheduled, Paused or Held; the result
    /// is validated for its platform like a new post.
    pub async fn update_post(
        &self,
        pen: &PenName,
        id: PostId,
        patch: PostPatch,
    ) -> Result<PostView, PostError> {
        let mut post = self.owned(pen, id).await?;
        if !matches!(
            post.state,
            PostState::Scheduled | PostState::Paused(_) | PostState::Held(_)
        ) {
            return Err(EngineRefusal::InvalidTransition {
                id,
                state: post.state.label(),
                action: "edited",
            }
            .into());
        }
        let mut errors = Vec::new();
        if let Some(t) = patch.text {
            post.content.text = t;
        }
        if let Some(t) = patch.title {
            post.content.title = Some(t);
        }
        if let Some(l) = patch.links {
            post.content.links = l;
        }
        if let Some(m) = &patch.media {
            post.content.media = parse_media(m, &mut errors);
        }
        if let Some(at) = &patch.scheduled_at {
            post.due_at =
                Timestamp::parse_rfc3339(at).map_err(|source| PostError::InvalidTime {
                    field: "scheduled_at",
                    source,
                })?;
        }
        errors.extend(self.validate_for(&post, true).await);
        if !errors.is_empty() {
            return Err(PostError::ValidationFailed(vec![PlatformRefusal {
                platform: post.connection.platform.id().into(),
                errors,
            }]));
        }
        Ok(PostView::from(&self.inner.engine.update(post).await?))
    }

    pub async fn cancel_post(&self, pen: &PenName, id: PostId) -> Result<PostView, PostError> {
        self.owned(pen, id).await?;
        Ok(PostView::from(
            &self.inner.engine.cancel(pen.clone(), id).await?,
        ))
    }

    /// Sends a Failed or Held post again.
    pub async fn retry_post(&self, pen: &PenName, id: PostId) -> Result<PostView, PostError> {
        self.owned(pen, id).await?;
        Ok(PostView::from(
            &self.inner.engine.retry(pen.clone(), id).await?,
        ))
    }

    /// A person says whether an Unconfirmed post appeared; `false` sends it again.
    pub async fn resolve_post(
        &self,
        pen: &PenName,
        id: PostId,
        published: bool,
    ) -> Result<PostView, PostError> {
        self.owned(pen, id).await?;
        Ok(PostView::from(
            &self
                .inner
                .engine
                .resolve(pen.clone(), id, published)
                .await?,
        ))
    }

    /// Proves the grant alive (refreshing where a token can outlive a revocation); with a
    /// `test_post`, also publishes that text now and waits for its outcome.
    pub async fn verify(
        &self,
        key: &ConnectionKey,
        test_post: Option<String>,
    ) -> Result<super::views::VerifyView, ConnectionError> {
        if self.inner.store.connection(key).await?.is_none() {
            return Err(EngineRefusal::NotConnected(key.platform).into());
        }
        self.inner.engine.verify(key.clone()).await?;
        let mut test = None;
        if let Some(text) = test_post {
            let mut events = self.subscribe();
            let request = NewPost {
                platform: Some(key.platform.id().to_string()),
                platforms: None,
                target: None,
                kind: None,
                text,
                title: None,
                links: vec![],
                media: vec![],
                scheduled_at: self.now().to_rfc3339(),
            };
            let (created, _) = self.schedule(&key.pen_name, request, None).await?;
            let id = created
                .first()
                .and_then(|p| PostId::parse(&p.id))
                .ok_or(ConnectionError::TestPostMissing)?;
            let done = async {
                loop {
                    if let Ok(Some(p)) = self.inner.store.post(id).await {
                        if !matches!(p.state, PostState::Scheduled | PostState::Publishing) {
                            return p;
                        }
                    }
                    let _ = events.recv().await;
                }
            };
            let post = tokio::time::timeout(std::time::Duration::from_secs(60), done)
                .await
                .map_err(|_| {
                    EngineRefusal::Unavailable("the test post did not finish within 60 s".into())
                })?;
            if let Some(reason) = post.state.reason() {
                return Err(ConnectionError::TestPostFailed {
                    reason: reason.clone(),
                });
            }
            test = Some(PostView::from(&post));
        }
        Ok(super::views::VerifyView {
            connection: self.connection(key).await?,
            test_post: test,
        })
    }
}
