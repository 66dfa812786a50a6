//! OAuth 2.0 bookkeeping shared by the simulated platforms: parsing and checking an
//! authorization request, the login-and-consent page, single-use authorization codes
//! bound to client, redirect URI and PKCE challenge, and token families with
//! single-use rotating refresh tokens whose reuse revokes the whole family.
//!
//! Each platform decides its own wording and status codes; this module only keeps the
//! facts (RFC 6749, RFC 7636, RFC 7009) straight so that nine platforms do not carry
//! nine copies of them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

/// The password every seeded sandbox account logs in with on the consent pages.
pub const SANDBOX_PASSWORD: &str = "sandbox";

/// What the shared grant controls need from an OAuth platform's world: the app
/// registration it embeds, and how a control names a user.
pub(crate) trait GrantWorld: Send + 'static {
    fn app(&self) -> &OAuthApp;

    fn app_mut(&mut self) -> &mut OAuthApp;

    /// The id the platform issues tokens to, for the user a control names (by id, or
    /// also by username where the platform's controls accept one); `UnknownUser` when
    /// there is no such user.
    fn grant_owner(&self, who: &str) -> Result<String, crate::SandboxError>;

    /// Revokes grants the platform keeps outside the shared token store (LinkedIn's
    /// partner refresh tokens) when the user removes the app; returns how many were
    /// still usable. None by default.
    fn revoke_own_grants(&mut self, _owner: &str) -> usize {
        0
    }
}

/// A random opaque token: `bytes` random bytes, base64url without padding.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// `now + lifetime`, without the panic `+` has on overflow: a lifetime set absurdly
/// long by a test means "never", which a century expresses well enough.
pub(crate) fn deadline(now: Instant, lifetime: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    now.checked_add(lifetime)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

/// A short, stable, non-reversible name for a token or code: the first 12 hex digits
/// of its SHA-256. Logs and inspection results carry this instead of the secret, and a
/// test holding a token can compute it to find that token in them.
pub fn token_fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest
        .iter()
        .take(6)
        .fold(String::with_capacity(12), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// The PKCE S256 challenge for a verifier (RFC 7636 §4.2).
pub(crate) fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
pub(crate) fn verifier_is_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is a base64url SHA-256: exactly 43 characters, no padding.
pub(crate) fn s256_challenge_is_well_formed(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Why a form or query string could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormError {
    #[error("the body must be application/x-www-form-urlencoded")]
    WrongContentType,
    /// RFC 6749 §3.1: request parameters must not be included more than once.
    #[error("parameter {0} appears more than once")]
    Repeated(String),
}

/// Reads a form-encoded request body into a map, refusing repeated parameters.
pub(crate) fn parse_form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, FormError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(FormError::WrongContentType);
    }
    parse_pairs(body)
}

/// Reads a query string into a map, refusing repeated parameters.
pub(crate) fn parse_query(query: Option<&str>) -> Result<HashMap<String, String>, FormError> {
    parse_pairs(query.unwrap_or_default().as_bytes())
}

/// The parameters of an authorize page request, or the 400 page a browser shows when
/// they cannot be read.
pub(crate) fn authorize_query(
    query: Option<&str>,
) -> Result<HashMap<String, String>, UnreadablePage> {
    parse_query(query).map_err(UnreadablePage)
}

/// The fields of a consent form the browser posted, or the 400 page.
pub(crate) fn consent_form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, UnreadablePage> {
    parse_form(headers, body).map_err(UnreadablePage)
}

/// A browser's request that could not be read: answered with a 400 page saying why.
#[derive(Debug)]
pub(crate) struct UnreadablePage(FormError);

impl IntoResponse for UnreadablePage {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, error_page(&self.0.to_string())).into_response()
    }
}

fn parse_pairs(input: &[u8]) -> Result<HashMap<String, String>, FormError> {
    let mut map = HashMap::new();
    for (key, value) in form_urlencoded::parse(input) {
        let key = key.into_owned();
        if map.contains_key(&key) {
            return Err(FormError::Repeated(key));
        }
        map.insert(key, value.into_owned());
    }
    Ok(map)
}

/// Token answers must not be cached (RFC 6749 §5.1): the two headers that say so.
pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// One request to a token endpoint, counted and logged in the world's [`OAuthApp`]
/// the way X, Pinterest and TikTok do it: an unreadable form is logged as
/// `invalid_request` and answered by `unreadable`; a `refresh_token` grant is counted
/// before anything is checked; `grant` applies the platform's rules, writes the
/// fingerprint of the code or refresh token it read into its last argument, and says
/// how a refusal is logged.
pub(crate) fn logged_grant<W: GrantWorld, T, E>(
    world: &mut W,
    form: Result<HashMap<String, String>, FormError>,
    unreadable: impl FnOnce(FormError) -> E,
    grant: impl FnOnce(
        &mut W,
        &HashMap<String, String>,
        &mut Option<String>,
    ) -> Result<T, (E, TokenOutcome)>,
) -> Result<T, E> {
    let form = match form {
        Ok(form) => form,
        Err(reason) => {
            world.app_mut().token_log.push(TokenRequest {
                grant_type: String::new(),
                credential: None,
                outcome: TokenOutcome::InvalidRequest,
            });
            return Err(unreadable(reason));
        }
    };
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    if grant_type == "refresh_token" {
        world.app_mut().refresh_calls += 1;
    }
    let mut credential = None;
    let result = grant(world, &form, &mut credential);
    let outcome = match &result {
        Ok(_) => TokenOutcome::Issued,
        Err((_, outcome)) => *outcome,
    };
    world.app_mut().token_log.push(TokenRequest {
        grant_type,
        credential,
        outcome,
    });
    result.map_err(|(error, _)| error)
}

/// Client credentials from an `Authorization: Basic` header (RFC 6749 §2.3.1).
pub(crate) struct ClientCredentials {
    pub(crate) id: String,
    pub(crate) secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Reads HTTP Basic client credentials; `None` when absent or malformed.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<ClientCredentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // The RFC form-encodes both parts before joining them; undo that so that clients
    // which encode (as the RFC asks) and clients which do not (most) both work.
    let unescape = |part: &str| -> String {
        form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(ClientCredentials {
        id: unescape(id),
        secret: unescape(secret),
    })
}

/// The bearer token of a request, if it sent one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What a platform's app registration allows, as the authorize endpoint checks it.
pub(crate) struct ClientRegistration<'a> {
    /// The one client the simulated platform knows.
    pub(crate) client_id: &'a str,
    /// Registered callback URLs, matched exactly. Empty means "any http(s) URL", so that
    /// tests can use whatever port they got without registering it first.
    pub(crate) redirect_uris: &'a [String],
    /// Scopes the platform knows; anything else is `invalid_scope`.
    pub(crate) known_scopes: &'a [&'a str],
    /// Whether a request without `state` is refused (X requires it).
    pub(crate) require_state: bool,
}

/// A checked authorization request: every field a consent form must carry back.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizeRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) state: String,
    pub(crate) code_challenge: String,
}

impl AuthorizeRequest {
    /// The request's parameters as they appear in the authorize URL, for hidden fields.
    fn hidden_fields(&self) -> [(&'static str, String); 7] {
        [
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", self.scopes.join(" ")),
            ("state", self.state.clone()),
            ("code_challenge", self.code_challenge.clone()),
            ("code_challenge_method", "S256".to_owned()),
        ]
    }
}

/// Why an authorization request was refused, and how to say so.
#[derive(Debug)]
pub(crate) enum AuthorizeRejection {
    /// The client or redirect URI cannot be trusted: show an error page and never
    /// redirect (RFC 6749 §4.1.2.1), or the page would be an open redirector.
    Page(String),
    /// Anything else: back to the client with an error code.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

impl IntoResponse for AuthorizeRejection {
    fn into_response(self) -> Response {
        match self {
            AuthorizeRejection::Page(message) => {
                (StatusCode::BAD_REQUEST, error_page(&message)).into_response()
            }
            AuthorizeRejection::Redirect {
                redirect_uri,
                error,
                description,
                state,
            } => {
                let mut params = vec![
                    ("error", error),
                    ("error_description", description.as_str()),
                ];
                if let Some(state) = state.as_deref() {
                    params.push(("state", state));
                }
                redirect_to(&redirect_uri, &params)
            }
        }
    }
}

/// Checks an authorization request (query of the GET, or the consent form's hidden
/// fields on the POST, which a client could have tampered with).
pub(crate) fn check_authorize_request(
    params: &HashMap<String, String>,
    client: &ClientRegistration<'_>,
) -> Result<AuthorizeRequest, AuthorizeRejection> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };

    match get("client_id") {
        None => {
            return Err(AuthorizeRejection::Page(
                "The request has no client_id.".into(),
            ))
        }
        Some(id) if id != client.client_id => {
            return Err(AuthorizeRejection::Page(format!(
                "No app is registered with client_id {id}."
            )));
        }
        Some(_) => {}
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return Err(AuthorizeRejection::Page(
            "The request has no redirect_uri.".into(),
        ));
    };
    if !redirect_uri_is_allowed(redirect_uri, client.redirect_uris) {
        return Err(AuthorizeRejection::Page(format!(
            "The redirect_uri {redirect_uri} is not registered for this app."
        )));
    }

    let state = get("state").map(str::to_owned);
    let refuse = |error: &'static str, description: &str| AuthorizeRejection::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        error,
        description: description.to_owned(),
        state: state.clone(),
    };
    match get("response_type") {
        Some("code") => {}
        None => return Err(refuse("invalid_request", "Missing response_type.")),
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "response_type must be code.",
            ))
        }
    }
    if client.require_state && state.is_none() {
        return Err(refuse("invalid_request", "Missing state."));
    }
    let Some(code_challenge) = get("code_challenge") else {
        return Err(refuse(
            "invalid_request",
            "Missing code_challenge: PKCE is required.",
        ));
    };
    if get("code_challenge_method") != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "code_challenge_method must be S256.",
        ));
    }
    if !s256_challenge_is_well_formed(code_challenge) {
        return Err(refuse(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters).",
        ));
    }
    let scopes: Vec<String> = get("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(refuse("invalid_scope", "Missing scope."));
    }
    if let Some(unknown) = scopes
        .iter()
        .find(|s| !client.known_scopes.contains(&s.as_str()))
    {
        return Err(refuse(
            "invalid_scope",
            &format!("Unknown scope {unknown}."),
        ));
    }

    Ok(AuthorizeRequest {
        client_id: client.client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state: state.unwrap_or_default(),
        code_challenge: code_challenge.to_owned(),
    })
}

/// How Pinterest, TikTok and Threads read an authorization request, more loosely than
/// [`check_authorize_request`]: the redirect URI need only be an absolute http(s) URL
/// without a fragment, `state` is optional (and sent back even when empty), and PKCE is
/// optional or absent. Only what differs between them is a field.
pub(crate) struct LooseAuthorize<'a> {
    /// The one client the platform knows.
    pub(crate) client_id: &'a str,
    /// The parameters that may name the client, the first one present read (TikTok's
    /// `client_key`, which the consent form carries back as `client_id`).
    pub(crate) client_params: &'a [&'a str],
    /// The page shown when the client is missing or unknown.
    pub(crate) unknown_client: &'a str,
    /// Reads the `scope` parameter into scopes: the separators differ.
    pub(crate) split_scopes: fn(&str) -> Vec<String>,
    /// Scopes the platform knows; anything else is `invalid_scope`.
    pub(crate) known_scopes: &'a [&'a str],
    /// A scope every request must ask for, and the refusal's wording (Threads); without
    /// one, only a request with no scope at all is refused.
    pub(crate) required_scope: Option<(&'a str, &'a str)>,
    /// Whether an optional S256 challenge is read (TikTok); otherwise none is.
    pub(crate) optional_pkce: bool,
}

impl LooseAuthorize<'_> {
    /// Checks the GET's query, or the consent form's hidden fields.
    pub(crate) fn check(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<AuthorizeRequest, AuthorizeRejection> {
        let get = |name: &str| {
            params
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let page = |message: &str| AuthorizeRejection::Page(message.to_owned());
        if self.client_params.iter().find_map(|name| get(name)) != Some(self.client_id) {
            return Err(page(self.unknown_client));
        }
        let Some(redirect_uri) = get("redirect_uri").filter(|uri| {
            (uri.starts_with("http://") || uri.starts_with("https://")) && !uri.contains('#')
        }) else {
            return Err(page("The redirect_uri is missing or not an absolute URL."));
        };
        let state = get("state").unwrap_or_default().to_owned();
        let refuse = |error: &'static str, description: &str| AuthorizeRejection::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            error,
            description: description.to_owned(),
            state: Some(state.clone()),
        };
        if get("response_type") != Some("code") {
            return Err(refuse(
                "unsupported_response_type",
                "response_type must be code.",
            ));
        }
        let scopes = (self.split_scopes)(get("scope").unwrap_or_default());
        match self.required_scope {
            Some((required, refusal)) if !scopes.iter().any(|s| s == required) => {
                return Err(refuse("invalid_scope", refusal));
            }
            None if scopes.is_empty() => return Err(refuse("invalid_scope", "Missing scope.")),
            _ => {}
        }
        if let Some(unknown) = scopes
            .iter()
            .find(|s| !self.known_scopes.contains(&s.as_str()))
        {
            return Err(refuse(
                "invalid_scope",
                &format!("Unknown scope {unknown}."),
            ));
        }
        let code_challenge = if self.optional_pkce {
            get("code_challenge").unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        if !code_challenge.is_empty() && get("code_challenge_method") != Some("S256") {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256.",
            ));
        }
        Ok(AuthorizeRequest {
            client_id: self.client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state,
            code_challenge,
        })
    }
}

/// Exact match against the registered list; with none registered, any absolute http(s)
/// URL without a fragment (RFC 6749 §3.1.2).
fn redirect_uri_is_allowed(uri: &str, registered: &[String]) -> bool {
    if !registered.is_empty() {
        return registered.iter().any(|r| r == uri);
    }
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && !uri.contains('#')
            && !uri.chars().any(char::is_whitespace)
    })
}

/// A 302 to `redirect_uri` with `params` added to its query.
pub(crate) fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        query.append_pair(key, value);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", query.finish());
    match HeaderValue::from_str(&location) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        // Only reachable if a checked redirect URI held bytes a header cannot carry.
        Err(_) => (
            StatusCode::BAD_REQUEST,
            error_page("The redirect_uri cannot be used in a Location header."),
        )
            .into_response(),
    }
}

/// One platform's login-and-consent flow at its authorize endpoint. The steps are the
/// same everywhere — read the request, check it, show the page; on the posted form check
/// the hidden fields again (they come back from the browser), then cancel, sign in and
/// issue a code, or show the page again — and only these differ.
pub(crate) struct ConsentFlow {
    /// The platform's name, for the page.
    pub(crate) platform: &'static str,
    /// The path the form posts to (the authorize endpoint itself).
    pub(crate) action: &'static str,
    /// What the platform sends back when the person cancels (`state` is added).
    pub(crate) denied: &'static [(&'static str, &'static str)],
}

impl ConsentFlow {
    /// `GET`: the consent page for a request `check` accepts, or its refusal.
    pub(crate) fn page<R: IntoResponse>(
        &self,
        query: Option<&str>,
        check: impl FnOnce(&HashMap<String, String>) -> Result<AuthorizeRequest, R>,
    ) -> Response {
        let params = match authorize_query(query) {
            Ok(params) => params,
            Err(page) => return page.into_response(),
        };
        match check(&params) {
            Ok(request) => self.show(&request, None, ""),
            Err(rejection) => rejection.into_response(),
        }
    }

    /// `POST`: the person's choice. `check` re-checks the hidden fields against the
    /// platform's `world`; with the sandbox password, `sign_in` finds the account the
    /// username names, issues a code for it and says what goes back with `state`
    /// (`code`, and whatever else the platform adds); `None`: no such account.
    pub(crate) fn decide<W, R: IntoResponse>(
        &self,
        world: &mut W,
        headers: &HeaderMap,
        body: &[u8],
        check: impl FnOnce(&W, &HashMap<String, String>) -> Result<AuthorizeRequest, R>,
        sign_in: impl FnOnce(&mut W, &AuthorizeRequest, &str) -> Option<Vec<(&'static str, String)>>,
    ) -> Response {
        let form = match consent_form(headers, body) {
            Ok(form) => form,
            Err(page) => return page.into_response(),
        };
        let request = match check(world, &form) {
            Ok(request) => request,
            Err(rejection) => return rejection.into_response(),
        };
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        let username = field("username").trim();
        match field("decision") {
            "cancel" => redirect_with_state(&request, self.denied),
            "authorize" => {
                let granted = (field("password") == SANDBOX_PASSWORD)
                    .then(|| sign_in(world, &request, username))
                    .flatten();
                match granted {
                    Some(params) => {
                        let pairs: Vec<(&str, &str)> =
                            params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        redirect_with_state(&request, &pairs)
                    }
                    None => self.show(&request, Some("Wrong username or password."), username),
                }
            }
            _ => self.show(&request, Some("Choose Authorize app or Cancel."), username),
        }
    }

    /// [`ConsentFlow::decide`] for a platform whose world embeds an [`OAuthApp`]:
    /// `find_user` names the account a username signs in as, the registration issues
    /// the code, and `also` says what goes back beside `code` (TikTok echoes the scopes).
    pub(crate) fn decide_with_code<W: GrantWorld, R: IntoResponse>(
        &self,
        world: &mut W,
        headers: &HeaderMap,
        body: &[u8],
        check: impl FnOnce(&W, &HashMap<String, String>) -> Result<AuthorizeRequest, R>,
        find_user: impl FnOnce(&W, &str) -> Option<String>,
        also: impl FnOnce(&AuthorizeRequest) -> Vec<(&'static str, String)>,
    ) -> Response {
        self.decide(world, headers, body, check, |world, request, username| {
            let user = find_user(world, username)?;
            let code = world.app_mut().issue_code(request, &user);
            tracing::info!(
                platform = self.platform,
                user,
                "user authorized the app; code issued"
            );
            let mut answer = vec![("code", code)];
            answer.extend(also(request));
            Some(answer)
        })
    }

    fn show(&self, request: &AuthorizeRequest, error: Option<&str>, username: &str) -> Response {
        consent_page(&ConsentPage {
            platform: self.platform,
            action: self.action,
            request,
            error,
            username,
        })
        .into_response()
    }
}

/// A 302 back to the client with `params` and the request's `state` (when it had one).
fn redirect_with_state(request: &AuthorizeRequest, params: &[(&str, &str)]) -> Response {
    let mut all = params.to_vec();
    if !request.state.is_empty() {
        all.push(("state", &request.state));
    }
    redirect_to(&request.redirect_uri, &all)
}

/// What the login-and-consent page shows.
pub(crate) struct ConsentPage<'a> {
    /// The platform's name, for the title.
    pub(crate) platform: &'a str,
    /// Path the form posts to (the authorize endpoint itself).
    pub(crate) action: &'a str,
    pub(crate) request: &'a AuthorizeRequest,
    /// Shown above the form after a failed login.
    pub(crate) error: Option<&'a str>,
    /// Kept after a failed login so the person only retypes the password.
    pub(crate) username: &'a str,
}

/// The login-and-consent page: a plain HTML form that a program can also fill in with
/// one POST (the hidden fields, `username`, `password` and `decision=authorize` or
/// `decision=cancel`).
pub(crate) fn consent_page(page: &ConsentPage<'_>) -> Html<String> {
    let mut html = String::with_capacity(2048);
    let platform = escape_html(page.platform);
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize app – {platform} (sandbox)</title></head><body>\
         <h1>Authorize app to use your {platform} account</h1>"
    );
    if let Some(error) = page.error {
        let _ = write!(
            html,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape_html(error)
        );
    }
    html.push_str("<p>The app will be able to:</p><ul>");
    for scope in &page.request.scopes {
        let _ = write!(html, "<li><code>{}</code></li>", escape_html(scope));
    }
    let _ = write!(
        html,
        "</ul><form method=\"post\" action=\"{}\">",
        escape_html(page.action)
    );
    for (name, value) in page.request.hidden_fields() {
        let _ = write!(
            html,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape_html(&value)
        );
    }
    let _ = write!(
        html,
        "<p><label>Username <input type=\"text\" name=\"username\" value=\"{}\" autocomplete=\"username\"></label></p>\
         <p><label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label></p>\
         <p><button type=\"submit\" name=\"decision\" value=\"authorize\">Authorize app</button> \
         <button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button></p>\
         </form><p><small>Sandbox: any seeded username, password <code>sandbox</code>.</small></p></body></html>",
        escape_html(page.username)
    );
    Html(html)
}

/// The page shown when a request cannot even be sent back to the client.
pub(crate) fn error_page(message: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Something went wrong (sandbox)</title></head>\
         <body><h1>Something went wrong</h1><p class=\"error\" role=\"alert\">{}</p></body></html>",
        escape_html(message)
    ))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a code was issued for; redeeming it must present the same facts.
#[derive(Debug, Clone)]
pub(crate) struct CodeGrant {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) user_id: String,
    pub(crate) scopes: Vec<String>,
}

struct CodeRecord {
    grant: CodeGrant,
    expires_at: Instant,
    /// Codes are single-use; a spent one is kept (until it would have expired) so that
    /// a replay can be recognised and the tokens it produced revoked.
    spent: bool,
    /// The token family the code was exchanged for, revoked if the code is replayed
    /// (RFC 6749 §4.1.2).
    family: Option<FamilyId>,
}

/// Why a code could not be exchanged. Platforms answer all of these alike; the
/// distinction is for the sandbox's own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeRejection {
    Unknown,
    Expired,
    Replayed { family: Option<FamilyId> },
    ClientMismatch,
    RedirectMismatch,
    VerifierMismatch,
}

/// Single-use authorization codes.
#[derive(Default)]
pub(crate) struct AuthorizationCodes {
    codes: HashMap<String, CodeRecord>,
}

impl AuthorizationCodes {
    /// Issues a code for `grant`, valid for `lifetime`.
    pub(crate) fn issue(&mut self, grant: CodeGrant, lifetime: Duration) -> String {
        let now = Instant::now();
        self.codes.retain(|_, record| record.expires_at > now);
        let code = random_token(32);
        self.codes.insert(
            code.clone(),
            CodeRecord {
                grant,
                expires_at: deadline(now, lifetime),
                spent: false,
                family: None,
            },
        );
        code
    }

    /// Redeems a code. Any attempt on a known code spends it, successful or not, so a
    /// stolen code cannot be tried against many verifiers.
    pub(crate) fn redeem(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<CodeGrant, CodeRejection> {
        let record = self.codes.get_mut(code).ok_or(CodeRejection::Unknown)?;
        if record.spent {
            return Err(CodeRejection::Replayed {
                family: record.family,
            });
        }
        record.spent = true;
        if record.expires_at <= Instant::now() {
            return Err(CodeRejection::Expired);
        }
        if record.grant.client_id != client_id {
            return Err(CodeRejection::ClientMismatch);
        }
        if record.grant.redirect_uri != redirect_uri {
            return Err(CodeRejection::RedirectMismatch);
        }
        // A code issued without a challenge (a platform without PKCE) asks for no
        // verifier; one issued with a challenge must be redeemed with its verifier.
        if !record.grant.code_challenge.is_empty()
            && (!verifier_is_well_formed(verifier)
                || s256_challenge(verifier) != record.grant.code_challenge)
        {
            return Err(CodeRejection::VerifierMismatch);
        }
        Ok(record.grant.clone())
    }

    /// Remembers which family a code produced, for replay detection.
    pub(crate) fn link_family(&mut self, code: &str, family: FamilyId) {
        if let Some(record) = self.codes.get_mut(code) {
            record.family = Some(family);
        }
    }
}

/// Identifies one grant: the tokens that descend from one authorization.
pub(crate) type FamilyId = u64;

/// Which kind of token an inspection result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// Why the sandbox revoked a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeCause {
    /// The user removed the app in their settings (`revoke_user_grants`).
    UserRevokedApp,
    /// A spent refresh token was presented again: the whole family goes.
    RefreshTokenReused,
    /// An authorization code was presented again: what it produced goes.
    CodeReplayed,
    /// The client called the revoke endpoint.
    RevokeEndpoint,
}

/// A token the sandbox revoked, named by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedToken {
    /// [`token_fingerprint`] of the token.
    pub fingerprint: String,
    pub kind: TokenKind,
    /// Whose token it was.
    pub user_id: String,
    pub cause: RevokeCause,
}

/// One request to a token endpoint, as the sandbox saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRequest {
    /// The `grant_type` sent (empty when missing).
    pub grant_type: String,
    /// [`token_fingerprint`] of the refresh token or code sent, when one was.
    pub credential: Option<String>,
    pub outcome: TokenOutcome,
}

/// How the sandbox answered a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenOutcome {
    /// Tokens were issued.
    Issued,
    /// A refresh token that had already been used was sent: a client bug, and the
    /// family was revoked. Tests assert this never happens.
    RefreshTokenReused,
    /// A revoked refresh token was sent.
    RefreshTokenRevoked,
    /// A refresh token the sandbox never issued was sent.
    UnknownRefreshToken,
    /// The refresh token belongs to another client.
    RefreshTokenOfAnotherClient,
    /// The code was unknown, expired, replayed, or its redirect URI or verifier did not match.
    InvalidCode,
    /// Client authentication failed.
    UnauthorizedClient,
    /// A required parameter was missing or malformed.
    InvalidRequest,
    /// A `grant_type` the platform does not support.
    UnsupportedGrantType,
}

/// Tokens freshly issued by [`TokenStore`].
pub(crate) struct IssuedTokens {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) expires_in: u64,
    pub(crate) scopes: Vec<String>,
    pub(crate) family: FamilyId,
}

/// Who an access token speaks for.
#[derive(Debug, Clone)]
pub(crate) struct TokenOwner {
    pub(crate) user_id: String,
    pub(crate) scopes: Vec<String>,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessRejection {
    Unknown,
    Revoked,
    Expired,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshRejection {
    Unknown,
    Revoked,
    /// It had been used already; the family has now been revoked.
    Reused,
    WrongClient,
}

struct Family {
    user_id: String,
    client_id: String,
    scopes: Vec<String>,
}

struct AccessRecord {
    family: FamilyId,
    expires_at: Instant,
    revoked: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Live,
    Spent,
    Revoked,
}

struct RefreshRecord {
    family: FamilyId,
    state: RefreshState,
}

/// Every access and refresh token a platform issued, grouped in families.
///
/// Tokens are kept in memory as issued (the sandbox must recognise them), but never
/// leave this store except to the client they were issued to: logs and inspection
/// results use fingerprints.
#[derive(Default)]
pub(crate) struct TokenStore {
    families: HashMap<FamilyId, Family>,
    access: HashMap<String, AccessRecord>,
    refresh: HashMap<String, RefreshRecord>,
    revoked: Vec<RevokedToken>,
    next_family: FamilyId,
}

impl TokenStore {
    /// Starts a family for a fresh authorization.
    pub(crate) fn issue(
        &mut self,
        user_id: &str,
        client_id: &str,
        scopes: Vec<String>,
        access_lifetime: Duration,
        with_refresh_token: bool,
    ) -> IssuedTokens {
        self.next_family += 1;
        let family = self.next_family;
        self.families.insert(
            family,
            Family {
                user_id: user_id.to_owned(),
                client_id: client_id.to_owned(),
                scopes: scopes.clone(),
            },
        );
        self.mint(family, scopes, access_lifetime, with_refresh_token)
    }

    fn mint(
        &mut self,
        family: FamilyId,
        scopes: Vec<String>,
        access_lifetime: Duration,
        with_refresh_token: bool,
    ) -> IssuedTokens {
        let access_token = random_token(48);
        self.access.insert(
            access_token.clone(),
            AccessRecord {
                family,
                expires_at: deadline(Instant::now(), access_lifetime),
                revoked: false,
            },
        );
        let refresh_token = with_refresh_token.then(|| {
            let token = random_token(48);
            self.refresh.insert(
                token.clone(),
                RefreshRecord {
                    family,
                    state: RefreshState::Live,
                },
            );
            token
        });
        IssuedTokens {
            access_token,
            refresh_token,
            expires_in: access_lifetime.as_secs(),
            scopes,
            family,
        }
    }

    /// Who a bearer token speaks for, if it is live.
    pub(crate) fn authenticate(&self, access_token: &str) -> Result<TokenOwner, AccessRejection> {
        let record = self
            .access
            .get(access_token)
            .ok_or(AccessRejection::Unknown)?;
        if record.revoked {
            return Err(AccessRejection::Revoked);
        }
        if record.expires_at <= Instant::now() {
            return Err(AccessRejection::Expired);
        }
        let family = self
            .families
            .get(&record.family)
            .ok_or(AccessRejection::Unknown)?;
        Ok(TokenOwner {
            user_id: family.user_id.clone(),
            scopes: family.scopes.clone(),
        })
    }

    /// Exchanges a live refresh token for a new access token and a new refresh token;
    /// the one presented is spent. Presenting a spent one revokes its whole family —
    /// the newest refresh token and every access token included — because the server
    /// cannot tell the legitimate client from a thief replaying an old token.
    ///
    /// Earlier access tokens of the family stay valid until they expire.
    pub(crate) fn rotate(
        &mut self,
        refresh_token: &str,
        client_id: &str,
        access_lifetime: Duration,
    ) -> Result<IssuedTokens, RefreshRejection> {
        let record = self
            .refresh
            .get_mut(refresh_token)
            .ok_or(RefreshRejection::Unknown)?;
        let family_id = record.family;
        match record.state {
            RefreshState::Revoked => return Err(RefreshRejection::Revoked),
            RefreshState::Spent => {
                self.revoke_family(family_id, RevokeCause::RefreshTokenReused);
                return Err(RefreshRejection::Reused);
            }
            RefreshState::Live => {}
        }
        let family = self
            .families
            .get(&family_id)
            .ok_or(RefreshRejection::Unknown)?;
        if family.client_id != client_id {
            return Err(RefreshRejection::WrongClient);
        }
        let scopes = family.scopes.clone();
        record.state = RefreshState::Spent;
        Ok(self.mint(family_id, scopes, access_lifetime, true))
    }

    /// RFC 7009 revocation of one token. Revoking a refresh token revokes its family
    /// (the RFC's SHOULD); revoking an access token revokes only that token. Unknown
    /// tokens are not an error.
    pub(crate) fn revoke_token(&mut self, token: &str) {
        if let Some(family) = self.refresh.get(token).map(|r| r.family) {
            self.revoke_family(family, RevokeCause::RevokeEndpoint);
            return;
        }
        let Some(record) = self.access.get_mut(token) else {
            return;
        };
        if record.revoked {
            return;
        }
        record.revoked = true;
        let user_id = self
            .families
            .get(&record.family)
            .map(|f| f.user_id.clone())
            .unwrap_or_default();
        self.revoked.push(RevokedToken {
            fingerprint: token_fingerprint(token),
            kind: TokenKind::Access,
            user_id,
            cause: RevokeCause::RevokeEndpoint,
        });
    }

    /// Revokes every token of a family; returns how many were still usable.
    pub(crate) fn revoke_family(&mut self, family: FamilyId, cause: RevokeCause) -> usize {
        let user_id = self
            .families
            .get(&family)
            .map(|f| f.user_id.clone())
            .unwrap_or_default();
        let mut count = 0;
        for (token, record) in self.access.iter_mut().filter(|(_, r)| r.family == family) {
            if !record.revoked {
                record.revoked = true;
                count += 1;
                self.revoked.push(RevokedToken {
                    fingerprint: token_fingerprint(token),
                    kind: TokenKind::Access,
                    user_id: user_id.clone(),
                    cause,
                });
            }
        }
        for (token, record) in self.refresh.iter_mut().filter(|(_, r)| r.family == family) {
            // A spent refresh token is already unusable, but it is still revoked so that
            // presenting it again reads as "revoked", not as a second reuse.
            if record.state != RefreshState::Revoked {
                if record.state == RefreshState::Live {
                    count += 1;
                }
                record.state = RefreshState::Revoked;
                self.revoked.push(RevokedToken {
                    fingerprint: token_fingerprint(token),
                    kind: TokenKind::Refresh,
                    user_id: user_id.clone(),
                    cause,
                });
            }
        }
        count
    }

    /// Revokes every family of a user; returns how many tokens were still usable.
    pub(crate) fn revoke_user(&mut self, user_id: &str, cause: RevokeCause) -> usize {
        let families: Vec<FamilyId> = self
            .families
            .iter()
            .filter(|(_, f)| f.user_id == user_id)
            .map(|(id, _)| *id)
            .collect();
        families
            .into_iter()
            .map(|family| self.revoke_family(family, cause))
            .sum()
    }

    /// Makes every live access token of a user expire now; returns how many did.
    pub(crate) fn expire_access_of_user(&mut self, user_id: &str) -> usize {
        let now = Instant::now();
        let families = &self.families;
        let mut count = 0;
        for record in self.access.values_mut() {
            let owned = families
                .get(&record.family)
                .is_some_and(|f| f.user_id == user_id);
            if owned && !record.revoked && record.expires_at > now {
                record.expires_at = now;
                count += 1;
            }
        }
        count
    }

    /// Every token revoked so far, oldest first.
    pub(crate) fn revoked(&self) -> &[RevokedToken] {
        &self.revoked
    }

    /// A new access token for a live refresh token that stays live: refresh tokens that
    /// do not rotate (Google). Nothing is spent, so the same refresh token works again.
    pub(crate) fn renew(
        &mut self,
        refresh_token: &str,
        client_id: &str,
        access_lifetime: Duration,
    ) -> Result<IssuedTokens, RefreshRejection> {
        let record = self
            .refresh
            .get(refresh_token)
            .ok_or(RefreshRejection::Unknown)?;
        if record.state != RefreshState::Live {
            return Err(RefreshRejection::Revoked);
        }
        let family_id = record.family;
        let family = self
            .families
            .get(&family_id)
            .ok_or(RefreshRejection::Unknown)?;
        if family.client_id != client_id {
            return Err(RefreshRejection::WrongClient);
        }
        let scopes = family.scopes.clone();
        Ok(self.mint(family_id, scopes, access_lifetime, false))
    }

    /// Revokes the whole grant a live access or refresh token belongs to (Google revokes
    /// the refresh token with its access tokens and the other way round). False when the
    /// token is unknown or no longer usable.
    pub(crate) fn revoke_grant_of(&mut self, token: &str) -> bool {
        let now = Instant::now();
        let family = self
            .refresh
            .get(token)
            .filter(|r| r.state == RefreshState::Live)
            .map(|r| r.family)
            .or_else(|| {
                self.access
                    .get(token)
                    .filter(|a| !a.revoked && a.expires_at > now)
                    .map(|a| a.family)
            });
        match family {
            Some(family) => {
                self.revoke_family(family, RevokeCause::RevokeEndpoint);
                true
            }
            None => false,
        }
    }
}

/// One platform's app registration and everything granted to it: the client the
/// platform knows, how long what it issues lives, the callback URLs it accepts, the
/// codes and token families it issued, and the log of token-endpoint requests. Each
/// OAuth platform's world embeds one, so that the controls over it
/// ([`crate::control::GrantControl`]) are written once.
pub(crate) struct OAuthApp {
    /// The one client the platform knows (TikTok calls it the client key).
    pub(crate) client_id: String,
    /// Its secret, checked at the token and revoke endpoints.
    pub(crate) client_secret: crate::Secret,
    /// Registered callback URLs; empty accepts any http(s) URL (see [`ClientRegistration`]).
    pub(crate) redirect_uris: Vec<String>,
    /// Lifetime of access tokens issued from now on.
    pub(crate) access_lifetime: Duration,
    /// Lifetime of authorization codes issued from now on.
    pub(crate) code_lifetime: Duration,
    /// Codes issued at the consent page, waiting to be exchanged.
    pub(crate) codes: AuthorizationCodes,
    /// Every access and refresh token issued, in families.
    pub(crate) tokens: TokenStore,
    /// Every request that reached the token endpoint, for tests to assert on.
    pub(crate) token_log: Vec<TokenRequest>,
    /// How many of those were `grant_type=refresh_token`, whatever their outcome.
    pub(crate) refresh_calls: u64,
}

impl OAuthApp {
    /// The sandbox's registration for `platform_id` (client `sandbox-{id}-client`), any
    /// redirect URI, and the platform's documented lifetimes.
    pub(crate) fn new(
        platform_id: &str,
        access_lifetime: Duration,
        code_lifetime: Duration,
    ) -> Self {
        let (client_id, client_secret) = crate::sandbox_client(platform_id);
        OAuthApp {
            client_id,
            client_secret,
            redirect_uris: Vec::new(),
            access_lifetime,
            code_lifetime,
            codes: AuthorizationCodes::default(),
            tokens: TokenStore::default(),
            token_log: Vec::new(),
            refresh_calls: 0,
        }
    }

    /// The registration the authorize endpoint checks requests against.
    pub(crate) fn registration<'a>(
        &'a self,
        known_scopes: &'a [&'a str],
        require_state: bool,
    ) -> ClientRegistration<'a> {
        ClientRegistration {
            client_id: &self.client_id,
            redirect_uris: &self.redirect_uris,
            known_scopes,
            require_state,
        }
    }

    /// Issues a code for the checked `request`, signed in as `user_id`, valid for the
    /// registration's code lifetime. A request without a challenge (a platform without
    /// PKCE) gives a code that asks for no verifier.
    pub(crate) fn issue_code(&mut self, request: &AuthorizeRequest, user_id: &str) -> String {
        self.codes.issue(
            CodeGrant {
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                user_id: user_id.to_owned(),
                scopes: request.scopes.clone(),
            },
            self.code_lifetime,
        )
    }

    /// Whether `id` and `secret` are the registered client's.
    pub(crate) fn is_client(&self, id: &str, secret: &str) -> bool {
        id == self.client_id && secret == self.client_secret.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn loose(required_scope: Option<(&'static str, &'static str)>) -> LooseAuthorize<'static> {
        LooseAuthorize {
            client_id: "app",
            client_params: &["client_key", "client_id"],
            unknown_client: "unknown app",
            split_scopes: |raw| {
                raw.split(',')
                    .map(str::to_owned)
                    .filter(|s| !s.is_empty())
                    .collect()
            },
            known_scopes: &["a", "b"],
            required_scope,
            optional_pkce: true,
        }
    }

    fn refusal(result: Result<AuthorizeRequest, AuthorizeRejection>) -> String {
        match result {
            Ok(_) => "accepted".into(),
            Err(AuthorizeRejection::Page(message)) => format!("page: {message}"),
            Err(AuthorizeRejection::Redirect { description, .. }) => description,
        }
    }

    #[test]
    fn a_loose_check_reads_the_client_from_the_first_parameter_present() {
        let base = [
            ("client_id", "app"),
            ("redirect_uri", "http://127.0.0.1:1/cb"),
            ("response_type", "code"),
            ("scope", "a,b"),
        ];
        let request = loose(None).check(&params(&base)).unwrap();
        assert_eq!(request.scopes, ["a", "b"]);
        assert_eq!(request.state, "");
        let mut other = base.to_vec();
        other.push(("client_key", "other"));
        assert_eq!(
            refusal(loose(None).check(&params(&other))),
            "page: unknown app"
        );
    }

    #[test]
    fn a_required_scope_is_checked_in_place_of_a_missing_one() {
        let without_scope = [
            ("client_id", "app"),
            ("redirect_uri", "http://127.0.0.1:1/cb"),
            ("response_type", "code"),
        ];
        assert_eq!(
            refusal(loose(None).check(&params(&without_scope))),
            "Missing scope."
        );
        assert_eq!(
            refusal(loose(Some(("a", "a is required"))).check(&params(&without_scope))),
            "a is required"
        );
    }

    #[test]
    fn an_optional_challenge_must_be_s256_when_sent() {
        let with_plain = [
            ("client_id", "app"),
            ("redirect_uri", "http://127.0.0.1:1/cb"),
            ("response_type", "code"),
            ("scope", "a"),
            ("code_challenge", "abc"),
            ("code_challenge_method", "plain"),
        ];
        assert_eq!(
            refusal(loose(None).check(&params(&with_plain))),
            "code_challenge_method must be S256."
        );
        let ignored = LooseAuthorize {
            optional_pkce: false,
            ..loose(None)
        };
        assert_eq!(
            ignored.check(&params(&with_plain)).unwrap().code_challenge,
            ""
        );
    }
}
