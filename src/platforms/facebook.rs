//! Facebook Pages (Graph API through Facebook Login).
//!
//! - Connect: Facebook Login's dialog with `state` and no PKCE (see [`super::graph`]);
//!   scopes `pages_show_list` (list the person's Pages), `pages_manage_posts` (create
//!   posts and photos) and `pages_read_engagement` (which Meta's Pages posts guide
//!   requires beside `pages_manage_posts`, and which reading a Page's fields rests on).
//!   `pages_manage_metadata` (webhooks, settings) and `publish_video` (video) are left
//!   out: the engine subscribes to nothing and publishes no video. The code becomes a
//!   short-lived user token, exchanged at once for a long-lived one
//!   (`grant_type=fb_exchange_token`); `debug_token` then says which scopes the person
//!   really granted (the dialog lets them untick some).
//! - Targets: `GET /me/accounts?fields=id,name,access_token,tasks`, every page of it. Only Pages on which
//!   the person may `CREATE_CONTENT` are offered; none at all is a personal profile
//!   (`personal_profile_not_allowed`), Pages but none with that task is `not_page_admin`.
//!   Each offered Page's token goes into the grant's `target_tokens`.
//! - Lifetimes: a Page token obtained with a long-lived user token does not expire, and
//!   publishing uses only Page tokens, so the grant has no expiry and nothing to renew
//!   (`renewable` is false: there is no refresh token). The user token (about 60 days)
//!   is kept for `DELETE /me/permissions` at disconnect. `check` asks `debug_token` about
//!   every Page token (`is_valid`, `scopes`), so a password change, a lost Page role or
//!   a removed app is found by the daily health check, before a post is due.
//! - Publish to the chosen Page with its token: text and link `POST /{page}/feed`
//!   (`message`, `link`); one image `POST /{page}/photos` (`url`, `caption`); several
//!   images are uploaded unpublished (`published=false`) and attached to one feed post
//!   (`attached_media[i]={"media_fbid":…}`). Video is refused at validation.
//! - Errors, rate limits and usage headers: [`super::graph`].

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use social_studio_actors::{Clock, PlatformPort, PortError, RevokeOutcome};
use social_studio_storage::{
    Account, AccountKind, Grant, MediaKind, Platform, Post, PostKind, Reason, ReasonCode, Receipt,
    Secret, Target, TargetKind, TargetToken, Timestamp,
};

use super::graph::GraphApp;
use super::oauth::{TokenError, TokenRequest};
use super::outbound::{self, Endpoint};
use super::{
    Adapter, AuthorizeRequest, ConnectError, Connected, ContentError, PlatformSettings,
    SettingsError,
};

/// The least scopes Page publishing needs (see the module documentation).
pub const SCOPES: &[&str] = &[
    "pages_show_list",
    "pages_manage_posts",
    "pages_read_engagement",
];

/// Without these no Page post can be created.
const POSTING_SCOPES: &[&str] = &["pages_show_list", "pages_manage_posts"];

/// The Page task publishing needs.
pub const CREATE_CONTENT: &str = "CREATE_CONTENT";

/// ⚠ Meta documents no length limit for Page posts; 63,206 characters is the limit
/// widely reported for Facebook posts \[C\].
pub const MAX_TEXT: usize = 63_206;

/// Photos attached to one post. ⚠ Not documented by Meta; ten keeps posts within what
/// the Page composer shows as one grid.
pub const MAX_IMAGES: usize = 10;

/// Pages asked for in one `/me/accounts` call (Graph's default is 25); further ones
/// are read by following the cursor.
const PAGES_LIMIT: &str = "100";

/// The Facebook Page adapter.
pub struct FacebookAdapter {
    graph: GraphApp,
}

impl std::fmt::Debug for FacebookAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacebookAdapter")
            .field("graph", &self.graph)
            .finish()
    }
}

/// `GET /me`.
#[derive(Debug, Deserialize)]
pub(crate) struct Me {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Asked for with `fields=…,picture` (the user's profile picture; no permission
    /// beyond the default `public_profile`).
    #[serde(default)]
    pub(crate) picture: Option<MePicture>,
}

/// `picture` of `GET /me`: `{"data": {"url": …, "is_silhouette": …}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct MePicture {
    data: MePictureData,
}

#[derive(Debug, Deserialize)]
struct MePictureData {
    #[serde(default)]
    url: Option<String>,
    /// The platform's placeholder for someone with no picture: no picture.
    #[serde(default)]
    is_silhouette: bool,
}

impl Me {
    pub(crate) fn account(&self) -> Account {
        let name = self.name.clone().unwrap_or_else(|| self.id.clone());
        Account {
            platform_id: self.id.clone(),
            handle: name.clone(),
            display_name: name,
            kind: AccountKind::Personal,
            picture: self
                .picture
                .as_ref()
                .filter(|p| !p.data.is_silhouette)
                .and_then(|p| super::picture_url(p.data.url.as_deref())),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    id: String,
    name: String,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    tasks: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
    /// `/photos` answers the feed post's id here.
    #[serde(default)]
    post_id: Option<String>,
}

impl FacebookAdapter {
    pub fn new(settings: &PlatformSettings) -> Result<FacebookAdapter, SettingsError> {
        Ok(FacebookAdapter {
            graph: GraphApp::new(settings, &outbound::Outbound::default(), Platform::Facebook)?,
        })
    }

    /// [`new`](Self::new), with clients built, and calls counted, by `outbound`.
    pub fn new_with(
        settings: &PlatformSettings,
        outbound: &outbound::Outbound,
    ) -> Result<FacebookAdapter, SettingsError> {
        Ok(FacebookAdapter {
            graph: GraphApp::new(settings, outbound, Platform::Facebook)?,
        })
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> FacebookAdapter {
        self.graph.clock = clock;
        self
    }

    /// The Page token for `page_id`, from the grant.
    fn page_token<'g>(grant: &'g Grant, page_id: &str) -> Result<&'g Secret, PortError> {
        grant
            .target_tokens
            .iter()
            .find(|t| t.target_id == page_id)
            .map(|t| &t.token)
            .ok_or_else(|| {
                PortError::RequirementUnmet(Reason::with_platform_message(
                    ReasonCode::NotPageAdmin,
                    format!(
                        "the connection holds no token for Page {page_id}; reconnect and \
                         choose that Page"
                    ),
                ))
            })
    }
}

fn rejected(words: String) -> PortError {
    PortError::ContentRejected(Reason::with_platform_message(
        ReasonCode::ContentRejected,
        words,
    ))
}

fn receipt(id: String) -> Receipt {
    Receipt {
        url: Some(format!("https://www.facebook.com/{id}")),
        platform_post_id: id,
    }
}

#[async_trait]
impl PlatformPort for FacebookAdapter {
    fn platform(&self) -> Platform {
        Platform::Facebook
    }

    /// Re-exchanges the user token (`fb_exchange_token`) and keeps the Page tokens,
    /// which do not expire. The actors never call it (`renewable` is false); it is the
    /// only renewal Meta offers, and fails once the user token has lapsed.
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
            ..grant.clone()
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "facebook"))]
    async fn check(&self, grant: &Grant) -> Result<Account, PortError> {
        if grant.target_tokens.is_empty() {
            return Err(PortError::RequirementUnmet(Reason::new(
                ReasonCode::PersonalProfileNotAllowed,
            )));
        }
        let mut user_id = None;
        for page in &grant.target_tokens {
            let debug = self.graph.debug_token(&page.token).await?;
            debug.proves("Facebook", POSTING_SCOPES)?;
            user_id = user_id.or(debug.user_id);
        }
        let id = user_id
            .or_else(|| grant.endpoint.clone())
            .unwrap_or_default();
        Ok(Me {
            id,
            name: None,
            picture: None,
        }
        .account())
    }

    #[tracing::instrument(skip_all, fields(platform = "facebook", post = %post.id))]
    async fn publish(&self, grant: &Grant, post: &Post) -> Result<Receipt, PortError> {
        if let Err(errors) = self.validate(post) {
            let words: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(rejected(words.join("; ")));
        }
        let Some(page_id) = post.target.as_deref() else {
            return Err(rejected("choose a Page to publish to".into()));
        };
        let token = Self::page_token(grant, page_id)?;
        self.graph.held(token)?;
        let content = &post.content;
        let message = content.text.trim().to_owned();
        let link = content.links.first().cloned();
        let images: Vec<&str> = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Image)
            .map(|m| m.url.as_str())
            .collect();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        // A photo post has no link attachment: the link rides in the caption.
        let caption = match &link {
            Some(link) if !images.is_empty() && !message.contains(link.as_str()) => {
                format!("{message}\n{link}").trim().to_owned()
            }
            _ => message.clone(),
        };
        let created: Created = match images.as_slice() {
            [] => {
                let mut form = Vec::new();
                if !message.is_empty() {
                    form.push(pair("message", &message));
                }
                if let Some(link) = &link {
                    form.push(pair("link", link));
                }
                self.graph
                    .post(Endpoint::Publish, &format!("/{page_id}/feed"), &form, token)
                    .await?
            }
            [url] => {
                let form = vec![pair("url", url), pair("caption", &caption)];
                self.graph
                    .post(
                        Endpoint::Publish,
                        &format!("/{page_id}/photos"),
                        &form,
                        token,
                    )
                    .await?
            }
            many => {
                let mut form = vec![pair("message", &caption)];
                for (i, url) in many.iter().enumerate() {
                    let photo: Created = self
                        .graph
                        .post(
                            Endpoint::Publish,
                            &format!("/{page_id}/photos"),
                            &[pair("url", url), pair("published", "false")],
                            token,
                        )
                        .await?;
                    form.push((
                        format!("attached_media[{i}]"),
                        serde_json::json!({"media_fbid": photo.id}).to_string(),
                    ));
                }
                self.graph
                    .post(Endpoint::Publish, &format!("/{page_id}/feed"), &form, token)
                    .await?
            }
        };
        let id = created.post_id.unwrap_or(created.id);
        tracing::info!(platform = "facebook", post_id = %id, "Page post published");
        Ok(receipt(id))
    }

    /// `DELETE /me/permissions` with the user token: Meta de-authorizes this app for the
    /// person, which also ends its Page tokens. Only this app: an Instagram connection
    /// made through another Meta app keeps working.
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, PortError> {
        self.graph.revoke(&grant.access_token).await
    }
}

#[async_trait]
impl Adapter for FacebookAdapter {
    fn authorize(&self, state: &str, redirect_uri: &str) -> Result<AuthorizeRequest, ConnectError> {
        self.graph.authorize(state, redirect_uri, SCOPES)
    }

    #[tracing::instrument(skip_all, fields(platform = "facebook"))]
    async fn connect(
        &self,
        code: &str,
        _pkce_verifier: Option<&Secret>,
        redirect_uri: &str,
        now: Timestamp,
    ) -> Result<Connected, ConnectError> {
        let user = self.graph.connect_token(code, redirect_uri, now).await?;
        let debug = self.graph.debug_token(&user.token).await?;
        debug.proves("Facebook", POSTING_SCOPES)?;
        let me: Me = self
            .graph
            .get(
                Endpoint::Identity,
                "/me",
                &[("fields", "id,name,picture")],
                &user.token,
            )
            .await?;
        let pages: Vec<Page> = self
            .graph
            .get_all(
                Endpoint::Targets,
                "/me/accounts",
                &[
                    ("fields", "id,name,access_token,tasks"),
                    ("limit", PAGES_LIMIT),
                ],
                &user.token,
            )
            .await?;
        if pages.is_empty() {
            return Err(ConnectError::RequirementUnmet(
                Reason::with_platform_message(
                    ReasonCode::PersonalProfileNotAllowed,
                    "the Facebook account manages no Page",
                ),
            ));
        }
        let mut targets = Vec::new();
        let mut target_tokens = Vec::new();
        let mut refused = Vec::new();
        for page in pages {
            match page.access_token {
                Some(token) if page.tasks.iter().any(|t| t == CREATE_CONTENT) => {
                    target_tokens.push(TargetToken {
                        target_id: page.id.clone(),
                        token: Secret::new(token),
                        // Page tokens from a long-lived user token do not expire.
                        expires_at: None,
                    });
                    targets.push(Target {
                        kind: TargetKind::Page,
                        id: page.id,
                        name: page.name,
                    });
                }
                _ => refused.push(page.name),
            }
        }
        if targets.is_empty() {
            return Err(ConnectError::RequirementUnmet(
                Reason::with_platform_message(
                    ReasonCode::NotPageAdmin,
                    format!("no task {CREATE_CONTENT} on {}", refused.join(", ")),
                ),
            ));
        }
        tracing::info!(
            platform = "facebook",
            pages = targets.len(),
            "account connected"
        );
        Ok(Connected {
            grant: Grant {
                access_token: user.token,
                refresh_token: None,
                token_type: "bearer".into(),
                scopes: debug.scopes.clone(),
                issued_at: now,
                // Publishing uses only the non-expiring Page tokens.
                expires_at: None,
                refresh_expires_at: None,
                target_tokens,
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
        if !Platform::Facebook.supports(post.kind) || post.kind != PostKind::Feed {
            errors.push(ContentError::KindNotOffered { kind: post.kind });
        }
        if post.target.as_deref().is_none_or(|t| t.trim().is_empty()) {
            errors.push(ContentError::TargetRequired {
                target: "Page".into(),
            });
        }
        let content = &post.content;
        if content.text.trim().is_empty() && content.media.is_empty() && content.links.is_empty() {
            errors.push(ContentError::EmptyPost);
        }
        let length = content.text.chars().count();
        if length > MAX_TEXT {
            errors.push(ContentError::TextTooLong {
                limit: MAX_TEXT,
                actual: length,
            });
        }
        if content.media.iter().any(|m| m.kind == MediaKind::Video) {
            errors.push(ContentError::VideoNotSupported);
        }
        let images = content
            .media
            .iter()
            .filter(|m| m.kind == MediaKind::Image)
            .count();
        if images > MAX_IMAGES {
            errors.push(ContentError::TooManyImages {
                limit: MAX_IMAGES,
                actual: images,
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
