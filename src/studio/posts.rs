//! A pen name's posts through the engine: scheduling (a request parsed into a
//! [`NewPost`] first, then one post per connection with a shared group id — one platform
//! failing or pausing later never touches the others), listing, reading, editing (the
//! edit validated like a new post), cancel, retry, resolve, and verify's test post.

use serde::{Deserialize, Serialize};
use social_studio_storage::{
    fingerprint, Batch, ConnectionKey, Durability, IdempotentRequest, PenName, Post, PostAction,
    PostBody, PostId, PostState, StateLabel, Timestamp,
};
use utoipa::ToSchema;

use super::error::{ConnectionError, EngineRefusal, PlatformRefusal, PostError};
use super::new_post::{parse_media, MediaInput, NewPost, PostRequest};
use super::views::{PostView, UnreadableView};
use super::Studio;

/// A pen name's posts as listed: every one that can be read, and every one that cannot,
/// by id — a listing never fails because one post is unreadable.
#[derive(Debug, Clone, Serialize)]
pub struct PostList {
    pub posts: Vec<PostView>,
    pub unreadable: Vec<UnreadableView>,
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

impl Studio {
    /// Validates the request for every platform it names, then schedules one post per
    /// connection. With an `Idempotency-Key`, a retried request returns what the first
    /// one created and creates nothing new — looked up before the request is validated
    /// again, so a retry gets the first answer even if the request would not pass now.
    ///
    /// The key is stored, with the posts the request will create, before any of them is
    /// scheduled; the posts then go through their platforms' queues one by one. If that
    /// is cut short (a refusal, a storage failure, the process stopping), the next attempt
    /// with the key schedules what is missing before it answers — it never answers with
    /// a post missing.
    pub async fn schedule(
        &self,
        pen: &PenName,
        request: PostRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(Vec<PostView>, bool), PostError> {
        let digest = fingerprint(&serde_json::to_string(&request).unwrap_or_default());
        if let Some(key) = idempotency_key {
            if let Some(prior) = self.inner.store.idempotent_result(pen, key).await? {
                return Ok((self.replay(pen, key, prior, digest).await?, false));
            }
        }
        let new_post = NewPost::parse(self, pen, &request).await?;
        let mut claimed = None;
        if let Some(key) = idempotency_key {
            // Claimed before scheduling: of two concurrent attempts, one writes the record
            // and the other replays it.
            let record = IdempotentRequest {
                request_digest: digest,
                posts: new_post.posts.iter().map(|p| p.id).collect(),
                created_at: new_post.created_at,
                unfinished: new_post.posts.iter().map(Post::body).collect(),
            };
            let winner = self
                .inner
                .store
                .remember_idempotent(pen, key, &record)
                .await?;
            if winner != record {
                return Ok((self.replay(pen, key, winner, digest).await?, false));
            }
            claimed = Some((key, record));
        }
        let mut out = Vec::with_capacity(new_post.posts.len());
        for p in new_post.posts {
            let scheduled = self.inner.engine.schedule(p).await?;
            out.push(PostView::from(&scheduled));
        }
        if let Some((key, record)) = claimed {
            self.mark_finished(pen, key, &record).await;
        }
        Ok((out, true))
    }

    /// The answer to a request whose `Idempotency-Key` is stored: refused if the body
    /// differs; otherwise its posts, after scheduling those an earlier attempt did not
    /// (the queue answers a post it already holds as it is, so a post is never created
    /// twice). A post that still cannot be scheduled fails the replay with its error.
    async fn replay(
        &self,
        pen: &PenName,
        key: &str,
        prior: IdempotentRequest,
        digest: [u8; 8],
    ) -> Result<Vec<PostView>, PostError> {
        if prior.request_digest != digest {
            return Err(PostError::IdempotencyKeyReused);
        }
        if !prior.is_finished() {
            for body in &prior.unfinished {
                self.inner.engine.schedule(planned(body.clone())).await?;
            }
            self.mark_finished(pen, key, &prior).await;
        }
        self.posts_by_id(&prior.posts).await
    }

    /// Records that every post of a keyed request is scheduled. Not fatal when it fails:
    /// the posts exist and the answer says so; the record keeps its plan, and the next
    /// attempt with the key finds every post already there.
    async fn mark_finished(&self, pen: &PenName, key: &str, record: &IdempotentRequest) {
        let mut batch = Batch::new();
        batch.put_idempotent(pen, key, &record.finished());
        if let Err(error) = self.commit(batch, Durability::Buffered).await {
            tracing::warn!(%error, "could not record that a keyed request's posts are all scheduled; a retry will find them there");
        }
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
        // Refused here, before the patch is validated, as the queue would refuse it.
        post.allows(PostAction::Edit)
            .map_err(social_studio_actors::EngineError::from)?;
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
            let request = PostRequest {
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

/// A post as a keyed request planned it, before any queue took it: Scheduled, never tried
/// (its queue decides whether it waits Paused).
fn planned(body: PostBody) -> Post {
    Post {
        id: body.id,
        group_id: body.group_id,
        connection: body.connection,
        target: body.target,
        kind: body.kind,
        content: body.content,
        due_at: body.due_at,
        next_attempt_at: None,
        state: PostState::Scheduled,
        attempts: 0,
        created_at: body.created_at,
        updated_at: body.created_at,
        waiting: None,
    }
}
