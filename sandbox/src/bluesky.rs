//! Simulated Bluesky: a PDS speaking XRPC under `/bluesky/xrpc/...` and a PLC directory
//! under `/bluesky/plc/{did}`, from the atproto lexicons and the reference PDS's
//! behaviour (never from the engine's adapter).
//!
//! - Sessions: `createSession` with a handle, DID or email and a password. App passwords
//!   (`xxxx-xxxx-xxxx-xxxx`) give `com.atproto.appPass` sessions; the main password a
//!   `com.atproto.access` one. Wrong or revoked → 401 `AuthenticationRequired` "Invalid
//!   identifier or password". JWTs carry real `iat`/`exp` claims (2 h access, 90 days
//!   refresh) and a SHA-256 keyed tag as signature.
//! - `refreshSession` rotates both tokens; the previous refresh token's expiry is cut to
//!   a 2-hour grace, within which it answers with the same successor. A revoked, deleted
//!   or spent-past-grace refresh token → 400 `ExpiredToken` "Token has been revoked".
//!   Revoking an app password ends its refresh tokens, but its access tokens keep
//!   working until they expire, as on the reference PDS.
//! - `createRecord` validates posts (300 graphemes, 3000 bytes, 4 images) and refuses a
//!   second record at a key the way the reference PDS does: 500 `InternalServerError`
//!   (its repository throws on a second value at a key). `getRecord`, `listRecords`,
//!   `uploadBlob`, `getSession`, `deleteSession`, `revokeAppPassword`,
//!   `resolveHandle`.
//! - Faults: the shared 5xx / stall / lost-answer faults on every XRPC route; 429
//!   `RateLimitExceeded` with `RateLimit-*` headers on `createSession` and
//!   `createRecord`; and [`BlueskyControl::hold_next_create_record`], which writes the
//!   record and then never answers (for crash tests).
//!
//! Time is the system clock plus an offset the control can advance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};
use unicode_segmentation::UnicodeSegmentation;

use super::control::{fault_controls, Shared};
use super::faults::{inject, FaultPoint, Faults};
use super::{SandboxError, Secret};

/// Seeded accounts: handle, DID, main password, app password (named `social-studio`).
pub const JANE_HANDLE: &str = "jane.sandbox.test";
pub const JANE_DID: &str = "did:plc:janewritessandbox0000";
pub const JANE_APP_PASSWORD: &str = "abcd-efgh-ijkl-mnop";
pub const ALEX_HANDLE: &str = "alex.sandbox.test";
pub const ALEX_DID: &str = "did:plc:alexreadssandbox0000";
pub const ALEX_APP_PASSWORD: &str = "qrst-uvwx-yz23-4567";
/// Every seeded account's main password (not an app password).
pub const MAIN_PASSWORD: &str = "correct horse battery staple";
/// The name of every seeded app password.
pub const APP_PASSWORD_NAME: &str = "social-studio";

const ACCESS_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
const REFRESH_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);
const REFRESH_GRACE: Duration = Duration::from_secs(2 * 60 * 60);
const BLOB_LIMIT: usize = 5 * 1024 * 1024;
const POST: &str = "app.bsky.feed.post";
const S32: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// One record in an account's repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BskyRecord {
    pub uri: String,
    pub cid: String,
    pub did: String,
    pub collection: String,
    pub rkey: String,
    pub value: Value,
}

/// One `refreshSession` call and what it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RefreshOutcome {
    /// A new pair was issued (rotation).
    Rotated,
    /// A previous refresh token within its grace: the same successor again.
    GraceReplay,
    /// Revoked, deleted, or spent past the grace.
    Revoked,
    Expired,
    Invalid,
}

#[derive(Debug, Clone)]
struct AppPassword {
    name: String,
    password: Secret,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct SandboxAccount {
    did: String,
    handle: String,
    main_password: Secret,
    app_passwords: Vec<AppPassword>,
    takendown: bool,
}

#[derive(Debug, Clone)]
struct RefreshRow {
    did: String,
    /// The app password the session was opened with (`None`: the main password).
    app_password: Option<String>,
    expires_at: u64,
    next_id: Option<String>,
}

#[derive(Debug)]
struct World {
    /// `http://127.0.0.1:PORT/bluesky`: the PDS every DID document names.
    pds: String,
    secret: String,
    offset: Duration,
    accounts: Vec<SandboxAccount>,
    refresh_tokens: HashMap<String, RefreshRow>,
    records: Vec<BskyRecord>,
    blobs: Vec<(String, String, usize)>,
    session_did_doc: bool,
    hold_create_record: u32,
    refreshes: Vec<RefreshOutcome>,
    deleted_sessions: u32,
    sessions_created: u32,
    next_id: u64,
}

/// Handle on the simulated Bluesky, shared with its handlers.
#[derive(Clone, Debug)]
pub struct BlueskyControl {
    /// Everything the platform knows, shared with its handlers.
    world: Shared<World>,
    /// Armed faults, shared with the middleware that applies them; the handle derefs
    /// to them.
    faults: Faults,
    held: Arc<Notify>,
    written: watch::Sender<usize>,
}

fault_controls!(BlueskyControl, Some(Duration::from_secs(5 * 60)));

fn seeded(handle: &str, did: &str, app_password: &str) -> SandboxAccount {
    SandboxAccount {
        did: did.into(),
        handle: handle.into(),
        main_password: Secret::new(MAIN_PASSWORD),
        app_passwords: vec![AppPassword {
            name: APP_PASSWORD_NAME.into(),
            password: Secret::new(app_password),
            revoked: false,
        }],
        takendown: false,
    }
}

impl BlueskyControl {
    /// A fresh Bluesky whose DID documents name `{base}/bluesky` as the PDS.
    pub fn new(base: &str) -> BlueskyControl {
        let mut secret = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        BlueskyControl {
            world: Shared::new(World {
                pds: format!("{}/bluesky", base.trim_end_matches('/')),
                secret: hex(&secret),
                offset: Duration::ZERO,
                accounts: vec![
                    seeded(JANE_HANDLE, JANE_DID, JANE_APP_PASSWORD),
                    seeded(ALEX_HANDLE, ALEX_DID, ALEX_APP_PASSWORD),
                ],
                refresh_tokens: HashMap::new(),
                records: Vec::new(),
                blobs: Vec::new(),
                session_did_doc: true,
                hold_create_record: 0,
                refreshes: Vec::new(),
                deleted_sessions: 0,
                sessions_created: 0,
                next_id: 1,
            }),
            faults: Faults::default(),
            held: Arc::new(Notify::new()),
            written: watch::channel(0).0,
        }
    }

    /// The PDS URL (`{base}/bluesky`).
    pub fn pds_url(&self) -> String {
        self.world.lock().pds.clone()
    }

    /// Moves the sandbox's clock forward (tokens expire, graces end).
    pub fn advance(&self, by: Duration) {
        self.world.lock().offset += by;
    }

    /// Whether `createSession` and `refreshSession` include the DID document (the
    /// entryway does; without it a client must resolve the DID itself).
    pub fn set_session_did_doc(&self, include: bool) {
        self.world.lock().session_did_doc = include;
    }

    /// Revokes an app password, as its owner does in Bluesky's settings: its sessions'
    /// refresh tokens die now; access tokens live until they expire.
    pub fn revoke_app_password(&self, handle: &str, name: &str) -> Result<(), SandboxError> {
        let mut world = self.world.lock();
        let account = world
            .accounts
            .iter_mut()
            .find(|a| a.handle == handle)
            .ok_or_else(|| SandboxError::UnknownUser(handle.into()))?;
        let did = account.did.clone();
        let found = account.app_passwords.iter_mut().find(|p| p.name == name);
        let Some(password) = found else {
            return Err(SandboxError::InvalidSetting(format!(
                "no app password {name:?}"
            )));
        };
        password.revoked = true;
        world
            .refresh_tokens
            .retain(|_, row| !(row.did == did && row.app_password.as_deref() == Some(name)));
        Ok(())
    }

    /// Adds an app password to an account and returns it.
    pub fn create_app_password(&self, handle: &str, name: &str) -> Result<String, SandboxError> {
        let mut world = self.world.lock();
        let mut raw = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let chars: String = raw
            .iter()
            .map(|b| char::from(S32[usize::from(b % 32)]))
            .collect();
        let password = format!(
            "{}-{}-{}-{}",
            &chars[0..4],
            &chars[4..8],
            &chars[8..12],
            &chars[12..16]
        );
        let account = world
            .accounts
            .iter_mut()
            .find(|a| a.handle == handle)
            .ok_or_else(|| SandboxError::UnknownUser(handle.into()))?;
        account.app_passwords.push(AppPassword {
            name: name.into(),
            password: Secret::new(password.clone()),
            revoked: false,
        });
        Ok(password)
    }

    /// Takes an account down: refreshes and calls answer `AccountTakedown`; a sign-in
    /// with an app password is refused as a wrong password (as on the reference PDS).
    pub fn take_down(&self, handle: &str) -> Result<(), SandboxError> {
        let mut world = self.world.lock();
        let account = world
            .accounts
            .iter_mut()
            .find(|a| a.handle == handle)
            .ok_or_else(|| SandboxError::UnknownUser(handle.into()))?;
        account.takendown = true;
        Ok(())
    }

    /// Every record of an account's repository, in creation order.
    pub fn records(&self, did: &str) -> Vec<BskyRecord> {
        self.world
            .lock()
            .records
            .iter()
            .filter(|r| r.did == did)
            .cloned()
            .collect()
    }

    /// Waits until the PDS holds at least `count` records in total.
    pub async fn wait_for_records(&self, count: usize, timeout: Duration) -> bool {
        let mut rx = self.written.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n >= count))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Blobs uploaded: (cid, mime type, size).
    pub fn blobs(&self) -> Vec<(String, String, usize)> {
        self.world.lock().blobs.clone()
    }

    /// Every `refreshSession` outcome, in order.
    pub fn refreshes(&self) -> Vec<RefreshOutcome> {
        self.world.lock().refreshes.clone()
    }

    /// How many sessions `deleteSession` ended.
    pub fn deleted_sessions(&self) -> u32 {
        self.world.lock().deleted_sessions
    }

    /// How many sessions `createSession` opened.
    pub fn sessions_created(&self) -> u32 {
        self.world.lock().sessions_created
    }

    /// The next `calls` createRecord calls write their record and then never answer,
    /// until [`BlueskyControl::release_held`].
    pub fn hold_next_create_record(&self, calls: u32) {
        self.world.lock().hold_create_record = calls;
    }

    /// Lets held createRecord answers go.
    pub fn release_held(&self) {
        self.held.notify_waiters();
    }

    fn state(&self) -> Value {
        let world = self.world.lock();
        json!({
            "pds": world.pds,
            "accounts": world.accounts.iter().map(|a| json!({
                "did": a.did, "handle": a.handle, "takendown": a.takendown,
                "app_passwords": a.app_passwords.iter().map(|p| json!({"name": p.name, "revoked": p.revoked})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "records": world.records,
            "live_refresh_tokens": world.refresh_tokens.len(),
            "faults": self.faults.pending_faults(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl World {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            + self.offset.as_secs()
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        let mut raw = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        format!("{}{}", self.next_id, hex(&raw))
    }

    fn tag(&self, signed: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret.as_bytes());
        h.update(signed.as_bytes());
        b64(&h.finalize())
    }

    fn jwt(&self, claims: &Value) -> String {
        let header = b64(br#"{"typ":"at+jwt","alg":"HS256"}"#);
        let payload = b64(claims.to_string().as_bytes());
        let signed = format!("{header}.{payload}");
        let tag = self.tag(&signed);
        format!("{signed}.{tag}")
    }

    fn verify(&self, jwt: &str) -> Option<Value> {
        let mut parts = jwt.split('.');
        let (header, payload, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || self.tag(&format!("{header}.{payload}")) != tag {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn did_doc(&self, account: &SandboxAccount) -> Value {
        json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": account.did,
            "alsoKnownAs": [format!("at://{}", account.handle)],
            "verificationMethod": [],
            "service": [{
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": self.pds,
            }],
        })
    }

    /// Issues a pair; the refresh token's id is `refresh_id`.
    fn issue(
        &mut self,
        did: &str,
        scope: &str,
        refresh_id: &str,
        refresh_exp: u64,
    ) -> (String, String) {
        let now = self.now();
        let access = self.jwt(&json!({
            "scope": scope, "sub": did, "aud": "did:web:sandbox.bsky", "iat": now,
            "exp": now + ACCESS_LIFETIME.as_secs(),
        }));
        let refresh = self.jwt(&json!({
            "scope": "com.atproto.refresh", "sub": did, "aud": "did:web:sandbox.bsky",
            "jti": refresh_id, "iat": now, "exp": refresh_exp,
        }));
        (access, refresh)
    }

    fn session_body(&self, did: &str, access: &str, refresh: &str) -> Value {
        let account = self.accounts.iter().find(|a| a.did == did);
        let mut body = json!({
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": account.map(|a| a.handle.clone()).unwrap_or_default(),
            "did": did,
            "active": true,
        });
        if self.session_did_doc {
            if let Some(account) = account {
                body["didDoc"] = self.did_doc(account);
            }
        }
        body
    }

    fn account_by_did(&self, did: &str) -> Option<&SandboxAccount> {
        self.accounts.iter().find(|a| a.did == did)
    }
}

/// An XRPC error answer.
fn xrpc_error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({"error": error, "message": message}))).into_response()
}

fn server_error(status: StatusCode) -> Response {
    let (error, message) = match status {
        StatusCode::INTERNAL_SERVER_ERROR => ("InternalServerError", "Internal Server Error"),
        StatusCode::BAD_GATEWAY => ("UpstreamFailure", "Upstream Failure"),
        StatusCode::GATEWAY_TIMEOUT => ("UpstreamTimeout", "Upstream Timeout"),
        _ => ("NotEnoughResources", "Service Unavailable"),
    };
    xrpc_error(status, error, message)
}

fn rate_limited(reset: u64, limit: u32, window: u64) -> Response {
    let mut response = xrpc_error(
        StatusCode::TOO_MANY_REQUESTS,
        "RateLimitExceeded",
        "Rate Limit Exceeded",
    );
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", limit.to_string()),
        ("ratelimit-remaining", "0".to_owned()),
        ("ratelimit-reset", reset.to_string()),
        ("ratelimit-policy", format!("{limit};w={window}")),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// An authentication failure, answered as an XRPC error.
#[derive(Debug, Clone, Copy)]
struct XrpcFail {
    status: StatusCode,
    error: &'static str,
    message: &'static str,
}

impl IntoResponse for XrpcFail {
    fn into_response(self) -> Response {
        xrpc_error(self.status, self.error, self.message)
    }
}

fn fail(status: StatusCode, error: &'static str, message: &'static str) -> XrpcFail {
    XrpcFail {
        status,
        error,
        message,
    }
}

/// Authenticates an access token: the account's DID, or the XRPC error.
fn access(world: &World, headers: &HeaderMap) -> Result<String, XrpcFail> {
    let Some(token) = bearer(headers) else {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "AuthMissing",
            "Authentication Required",
        ));
    };
    let Some(claims) = world.verify(token) else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Token could not be verified",
        ));
    };
    let scope = claims["scope"].as_str().unwrap_or_default();
    if scope == "com.atproto.refresh" {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Invalid token type",
        ));
    }
    if claims["exp"].as_u64().is_none_or(|exp| exp <= world.now()) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Token has expired",
        ));
    }
    let did = claims["sub"].as_str().unwrap_or_default().to_owned();
    match world.account_by_did(&did) {
        Some(a) if a.takendown => Err(fail(
            StatusCode::UNAUTHORIZED,
            "AccountTakedown",
            "Account has been taken down",
        )),
        Some(_) => Ok(did),
        None => Err(fail(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Token could not be verified",
        )),
    }
}

/// Authenticates a refresh token: its id and row, or the XRPC error.
fn refresh_auth(
    world: &World,
    headers: &HeaderMap,
) -> Result<(String, RefreshRow), (XrpcFail, RefreshOutcome)> {
    let Some(token) = bearer(headers) else {
        return Err((
            fail(
                StatusCode::UNAUTHORIZED,
                "AuthMissing",
                "Authentication Required",
            ),
            RefreshOutcome::Invalid,
        ));
    };
    let invalid = |m: &'static str| {
        (
            fail(StatusCode::BAD_REQUEST, "InvalidToken", m),
            RefreshOutcome::Invalid,
        )
    };
    let Some(claims) = world.verify(token) else {
        return Err(invalid("Token could not be verified"));
    };
    if claims["scope"] != "com.atproto.refresh" {
        return Err(invalid("Invalid token type"));
    }
    let now = world.now();
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now) {
        return Err((
            fail(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired"),
            RefreshOutcome::Expired,
        ));
    }
    let id = claims["jti"].as_str().unwrap_or_default().to_owned();
    let revoked = || {
        (
            fail(
                StatusCode::BAD_REQUEST,
                "ExpiredToken",
                "Token has been revoked",
            ),
            RefreshOutcome::Revoked,
        )
    };
    let row = world.refresh_tokens.get(&id).cloned().ok_or_else(revoked)?;
    if row.expires_at <= now {
        return Err(revoked());
    }
    if world.account_by_did(&row.did).is_some_and(|a| a.takendown) {
        return Err((
            fail(
                StatusCode::UNAUTHORIZED,
                "AccountTakedown",
                "Account has been taken down",
            ),
            RefreshOutcome::Invalid,
        ));
    }
    Ok((id, row))
}

#[derive(Deserialize)]
struct CreateSessionBody {
    identifier: String,
    password: String,
}

async fn create_session(State(bsky): State<BlueskyControl>, body: Bytes) -> Response {
    let Ok(input) = serde_json::from_slice::<CreateSessionBody>(&body) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Input must have the property \"identifier\"",
        );
    };
    if let Some(reset) = bsky.faults.take_rate_limit() {
        return rate_limited(reset, 30, 300);
    }
    let mut world = bsky.world.lock();
    let identifier = input.identifier.trim().to_ascii_lowercase();
    let found = world
        .accounts
        .iter()
        .find(|a| a.handle == identifier || a.did == identifier)
        .cloned();
    let wrong = || {
        xrpc_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "Invalid identifier or password",
        )
    };
    let Some(account) = found else { return wrong() };
    // As the reference PDS (`AccountManager.login`): a taken-down account is named only
    // to its main password; an app password of it is simply not accepted.
    if account.takendown {
        return if account.main_password.expose() == input.password {
            xrpc_error(
                StatusCode::UNAUTHORIZED,
                "AccountTakedown",
                "Account has been taken down",
            )
        } else {
            wrong()
        };
    }
    let (scope, app_password) = if account.main_password.expose() == input.password {
        ("com.atproto.access", None)
    } else if let Some(p) = account
        .app_passwords
        .iter()
        .find(|p| !p.revoked && p.password.expose() == input.password)
    {
        ("com.atproto.appPass", Some(p.name.clone()))
    } else {
        return wrong();
    };
    let id = world.id();
    let refresh_exp = world.now() + REFRESH_LIFETIME.as_secs();
    world.refresh_tokens.insert(
        id.clone(),
        RefreshRow {
            did: account.did.clone(),
            app_password,
            expires_at: refresh_exp,
            next_id: None,
        },
    );
    world.sessions_created += 1;
    let (access, refresh) = world.issue(&account.did, scope, &id, refresh_exp);
    Json(world.session_body(&account.did, &access, &refresh)).into_response()
}

async fn refresh_session(State(bsky): State<BlueskyControl>, headers: HeaderMap) -> Response {
    let mut world = bsky.world.lock();
    let (id, row) = match refresh_auth(&world, &headers) {
        Ok(found) => found,
        Err((response, outcome)) => {
            world.refreshes.push(outcome);
            return response.into_response();
        }
    };
    let now = world.now();
    let scope = if row.app_password.is_some() {
        "com.atproto.appPass"
    } else {
        "com.atproto.access"
    };
    let (next_id, outcome) = match &row.next_id {
        Some(next) => (next.clone(), RefreshOutcome::GraceReplay),
        None => (world.id(), RefreshOutcome::Rotated),
    };
    let next_exp = now + REFRESH_LIFETIME.as_secs();
    if let Some(old) = world.refresh_tokens.get_mut(&id) {
        old.expires_at = old.expires_at.min(now + REFRESH_GRACE.as_secs());
        old.next_id = Some(next_id.clone());
    }
    world
        .refresh_tokens
        .entry(next_id.clone())
        .or_insert(RefreshRow {
            did: row.did.clone(),
            app_password: row.app_password.clone(),
            expires_at: next_exp,
            next_id: None,
        });
    world.refreshes.push(outcome);
    let (access, refresh) = world.issue(&row.did, scope, &next_id, next_exp);
    Json(world.session_body(&row.did, &access, &refresh)).into_response()
}

async fn get_session(State(bsky): State<BlueskyControl>, headers: HeaderMap) -> Response {
    let world = bsky.world.lock();
    let did = match access(&world, &headers) {
        Ok(did) => did,
        Err(response) => return response.into_response(),
    };
    let Some(account) = world.account_by_did(&did) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "Token could not be verified",
        );
    };
    let mut body = json!({"handle": account.handle, "did": did, "active": true});
    if world.session_did_doc {
        body["didDoc"] = world.did_doc(account);
    }
    Json(body).into_response()
}

async fn delete_session(State(bsky): State<BlueskyControl>, headers: HeaderMap) -> Response {
    let mut world = bsky.world.lock();
    match refresh_auth(&world, &headers) {
        Ok((id, _)) => {
            world.refresh_tokens.remove(&id);
            world.deleted_sessions += 1;
            StatusCode::OK.into_response()
        }
        Err((response, _)) => response.into_response(),
    }
}

#[derive(Deserialize)]
struct RevokeAppPasswordBody {
    name: String,
}

async fn revoke_app_password(
    State(bsky): State<BlueskyControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let handle = {
        let world = bsky.world.lock();
        let did = match access(&world, &headers) {
            Ok(did) => did,
            Err(response) => return response.into_response(),
        };
        world
            .account_by_did(&did)
            .map(|a| a.handle.clone())
            .unwrap_or_default()
    };
    let Ok(input) = serde_json::from_slice::<RevokeAppPasswordBody>(&body) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Input must have the property \"name\"",
        );
    };
    match bsky.revoke_app_password(&handle, &input.name) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", &e.to_string()),
    }
}

#[derive(Deserialize)]
struct HandleQuery {
    handle: Option<String>,
}

async fn resolve_handle(
    State(bsky): State<BlueskyControl>,
    Query(q): Query<HandleQuery>,
) -> Response {
    let world = bsky.world.lock();
    let handle = q.handle.unwrap_or_default().to_ascii_lowercase();
    match world.accounts.iter().find(|a| a.handle == handle) {
        Some(a) => Json(json!({"did": a.did})).into_response(),
        None => xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Unable to resolve handle",
        ),
    }
}

async fn plc_document(State(bsky): State<BlueskyControl>, Path(did): Path<String>) -> Response {
    let world = bsky.world.lock();
    match world.account_by_did(&did) {
        Some(a) => Json(world.did_doc(a)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("DID not registered: {did}")})),
        )
            .into_response(),
    }
}

async fn upload_blob(
    State(bsky): State<BlueskyControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut world = bsky.world.lock();
    if let Err(response) = access(&world, &headers) {
        return response.into_response();
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let cid = format!("bafkrei{}", &hex(&Sha256::digest(&body))[..40]);
    world.blobs.push((cid.clone(), mime.clone(), body.len()));
    Json(json!({"blob": {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": body.len()}}))
        .into_response()
}

/// Why a post record is invalid, in the reference PDS's words.
fn invalid_post(record: &Value) -> Option<String> {
    let text = record["text"].as_str()?;
    let graphemes = text.graphemes(true).count();
    if graphemes > 300 {
        return Some(format!(
            "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes (grapheme too big (maximum 300, got {graphemes}))"
        ));
    }
    if text.len() > 3000 {
        return Some(format!(
            "Invalid app.bsky.feed.post record: Record/text must not be longer than 3000 characters (got {})",
            text.len()
        ));
    }
    if record["createdAt"].as_str().is_none() {
        return Some(
            "Invalid app.bsky.feed.post record: Record must have the property \"createdAt\"".into(),
        );
    }
    if let Some(images) = record["embed"]["images"].as_array() {
        if images.len() > 4 {
            return Some("Invalid app.bsky.feed.post record: Record/embed/images must not have more than 4 elements".into());
        }
        if images.iter().any(|i| i["alt"].as_str().is_none()) {
            return Some("Invalid app.bsky.feed.post record: Record/embed/images/0 must have the property \"alt\"".into());
        }
    }
    for facet in record["facets"].as_array().into_iter().flatten() {
        let start = facet["index"]["byteStart"].as_u64().unwrap_or(u64::MAX) as usize;
        let end = facet["index"]["byteEnd"].as_u64().unwrap_or(0) as usize;
        if start >= end || end > text.len() {
            return Some(
                "Invalid app.bsky.feed.post record: Record/facets has an index outside the text"
                    .into(),
            );
        }
    }
    None
}

fn tid(micros: u64, clock: u64) -> String {
    let v = ((micros & ((1 << 53) - 1)) << 10) | (clock & 0x3ff);
    (0..13)
        .map(|i| char::from(S32[((v >> (60 - 5 * i)) & 31) as usize]))
        .collect()
}

#[derive(Deserialize)]
struct CreateRecordBody {
    repo: String,
    collection: String,
    #[serde(default)]
    rkey: Option<String>,
    record: Value,
    #[serde(default)]
    validate: Option<bool>,
}

async fn create_record(
    State(bsky): State<BlueskyControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hold = {
        let mut world = bsky.world.lock();
        let did = match access(&world, &headers) {
            Ok(did) => did,
            Err(response) => return response.into_response(),
        };
        if let Some(reset) = bsky.faults.take_rate_limit() {
            return rate_limited(reset, 5000, 3600);
        }
        let input = match serde_json::from_slice::<CreateRecordBody>(&body) {
            Ok(input) => input,
            Err(e) => return xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", &e.to_string()),
        };
        let repo_did = world
            .accounts
            .iter()
            .find(|a| a.did == input.repo || a.handle == input.repo)
            .map(|a| a.did.clone());
        match repo_did {
            None => {
                return xrpc_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    &format!("Could not find repo: {}", input.repo),
                )
            }
            Some(d) if d != did => {
                return xrpc_error(
                    StatusCode::UNAUTHORIZED,
                    "AuthenticationRequired",
                    "Authentication Required",
                )
            }
            Some(_) => {}
        }
        if input.collection == POST && input.validate != Some(false) {
            if let Some(message) = invalid_post(&input.record) {
                return xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", &message);
            }
        }
        let rkey = match input.rkey {
            Some(rkey) => rkey,
            None => {
                let micros = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or_default();
                tid(micros, world.next_id)
            }
        };
        if rkey.is_empty()
            || rkey.len() > 512
            || !rkey
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:~-".contains(&b))
        {
            return xrpc_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Invalid record key",
            );
        }
        if world
            .records
            .iter()
            .any(|r| r.did == did && r.collection == input.collection && r.rkey == rkey)
        {
            // The reference PDS's repository throws on a second value at a key, which
            // its XRPC server answers as an unhandled error.
            return server_error(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let uri = format!("at://{did}/{}/{rkey}", input.collection);
        let cid = format!(
            "bafyrei{}",
            &hex(&Sha256::digest(input.record.to_string().as_bytes()))[..40]
        );
        world.records.push(BskyRecord {
            uri: uri.clone(),
            cid: cid.clone(),
            did: did.clone(),
            collection: input.collection.clone(),
            rkey,
            value: input.record,
        });
        let count = world.records.len();
        bsky.written.send_replace(count);
        let hold = world.hold_create_record > 0;
        if hold {
            world.hold_create_record -= 1;
        }
        if !hold {
            return Json(json!({"uri": uri, "cid": cid, "validationStatus": "valid"}))
                .into_response();
        }
        (uri, cid)
    };
    tracing::debug!("sandbox holding a createRecord answer, as asked");
    bsky.held.notified().await;
    Json(json!({"uri": hold.0, "cid": hold.1, "validationStatus": "valid"})).into_response()
}

#[derive(Deserialize)]
struct RecordQuery {
    repo: String,
    collection: String,
    rkey: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn repo_did(world: &World, repo: &str) -> Option<String> {
    world
        .accounts
        .iter()
        .find(|a| a.did == repo || a.handle == repo)
        .map(|a| a.did.clone())
}

async fn get_record(State(bsky): State<BlueskyControl>, Query(q): Query<RecordQuery>) -> Response {
    let world = bsky.world.lock();
    let Some(did) = repo_did(&world, &q.repo) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            &format!("Could not find repo: {}", q.repo),
        );
    };
    let rkey = q.rkey.unwrap_or_default();
    match world
        .records
        .iter()
        .find(|r| r.did == did && r.collection == q.collection && r.rkey == rkey)
    {
        Some(r) => Json(json!({"uri": r.uri, "cid": r.cid, "value": r.value})).into_response(),
        None => xrpc_error(
            StatusCode::BAD_REQUEST,
            "RecordNotFound",
            &format!(
                "Could not locate record: at://{did}/{}/{rkey}",
                q.collection
            ),
        ),
    }
}

async fn list_records(
    State(bsky): State<BlueskyControl>,
    Query(q): Query<RecordQuery>,
) -> Response {
    let world = bsky.world.lock();
    let Some(did) = repo_did(&world, &q.repo) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            &format!("Could not find repo: {}", q.repo),
        );
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 100);
    let mut records: Vec<&BskyRecord> = world
        .records
        .iter()
        .filter(|r| r.did == did && r.collection == q.collection)
        .collect();
    // Newest key first, as the reference PDS lists by default.
    records.sort_by(|a, b| b.rkey.cmp(&a.rkey));
    if let Some(cursor) = &q.cursor {
        records.retain(|r| r.rkey < *cursor);
    }
    let page: Vec<Value> = records
        .iter()
        .take(limit)
        .map(|r| json!({"uri": r.uri, "cid": r.cid, "value": r.value}))
        .collect();
    let mut body = json!({"records": page});
    if records.len() > limit {
        if let Some(last) = records.get(limit - 1) {
            body["cursor"] = Value::String(last.rkey.clone());
        }
    }
    Json(body).into_response()
}

/// Bluesky's routes, to be mounted under `/bluesky`.
pub(crate) fn platform_routes(bsky: &BlueskyControl) -> Router {
    let fault_point = FaultPoint {
        faults: bsky.faults.clone(),
        render_failure: server_error,
    };
    Router::new()
        .route(
            "/xrpc/com.atproto.server.createSession",
            post(create_session),
        )
        .route(
            "/xrpc/com.atproto.server.refreshSession",
            post(refresh_session),
        )
        .route("/xrpc/com.atproto.server.getSession", get(get_session))
        .route(
            "/xrpc/com.atproto.server.deleteSession",
            post(delete_session),
        )
        .route(
            "/xrpc/com.atproto.server.revokeAppPassword",
            post(revoke_app_password),
        )
        .route(
            "/xrpc/com.atproto.identity.resolveHandle",
            get(resolve_handle),
        )
        .route(
            "/xrpc/com.atproto.repo.uploadBlob",
            post(upload_blob).layer(DefaultBodyLimit::max(BLOB_LIMIT)),
        )
        .route("/xrpc/com.atproto.repo.createRecord", post(create_record))
        .route("/xrpc/com.atproto.repo.getRecord", get(get_record))
        .route("/xrpc/com.atproto.repo.listRecords", get(list_records))
        .route_layer(middleware::from_fn_with_state(fault_point, inject))
        .route("/plc/{did}", get(plc_document))
        .with_state(bsky.clone())
}

/// A 1×1 PNG, served for demos and tests as an image to attach.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00,
    0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa, 0xdc, 0xd8, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82,
];

async fn control_state(State(bsky): State<BlueskyControl>) -> Json<Value> {
    Json(bsky.state())
}

#[derive(Deserialize)]
struct RevokeControl {
    handle: String,
    name: String,
}

async fn control_revoke(
    State(bsky): State<BlueskyControl>,
    Json(body): Json<RevokeControl>,
) -> Result<Json<Value>, SandboxError> {
    bsky.revoke_app_password(&body.handle, &body.name)?;
    Ok(Json(bsky.state()))
}

async fn control_image(Path(_name): Path<String>) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], PIXEL_PNG).into_response()
}

/// Controls for a person poking the demo, under `/sandbox/bluesky`: `GET /state`
/// (accounts, records, faults), `POST /revoke-app-password {"handle","name"}`, and
/// `GET /media/{name}` (a PNG to attach to posts); the sandbox mounts the shared fault
/// controls beside them.
pub(crate) fn control_routes(bsky: &BlueskyControl) -> Router {
    Router::new()
        .route("/state", get(control_state))
        .route("/revoke-app-password", post(control_revoke))
        .route("/media/{name}", get(control_image))
        .with_state(bsky.clone())
}
