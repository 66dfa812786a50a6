//! Tests of the sandbox over real loopback HTTP: each starts its own sandbox on port 0
//! and drives it with reqwest, the way an adapter would. The X tests read as the
//! behaviour an X adapter can rely on.
//!
//! PKCE values, Basic auth and form parsing are computed here independently of the
//! sandbox's own helpers, so that a test cannot pass merely because both sides share
//! a mistake.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, Url};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{token_fingerprint, RevokeCause, Sandbox, TokenKind, TokenOutcome, XUser};

const CLIENT_ID: &str = "sandbox-x-client";
const CLIENT_SECRET: &str = "sandbox-x-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/x/callback";
const SCOPES: &str = "tweet.read tweet.write users.read offline.access media.write";
const JANE: &str = "2244994945";
const OTHER: &str = "1111111111";

/// A sandbox plus a client that, like an adapter, does not follow redirects.
struct Harness {
    sandbox: Sandbox,
    http: Client,
}

/// Tokens as the token endpoint answered them.
#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: Option<String>,
}

async fn harness() -> Harness {
    let sandbox = Sandbox::start().await.unwrap();
    let http = Client::builder()
        .redirect(Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    Harness { sandbox, http }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    fn authorize_url(&self, params: &[(&str, &str)]) -> Url {
        Url::parse_with_params(&self.url("/x/i/oauth2/authorize"), params).unwrap()
    }

    /// The full browser dance: open the consent page, fill in its form, follow the
    /// redirect back; returns the redirect's query.
    async fn consent(
        &self,
        username: &str,
        scope: &str,
        challenge: &str,
        state: &str,
    ) -> Vec<(String, String)> {
        let page = self
            .http
            .get(self.authorize_url(&[
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT_URI),
                ("scope", scope),
                ("state", state),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(
            html.contains("Authorize app") && html.contains("Cancel"),
            "{html}"
        );
        assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));

        let mut form = hidden_fields(&html);
        form.push(("username".into(), username.into()));
        form.push(("password".into(), "sandbox".into()));
        form.push(("decision".into(), "authorize".into()));
        let answer = self
            .http
            .post(self.url("/x/i/oauth2/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FOUND);
        redirect_query(&answer)
    }

    /// Consent plus code exchange.
    async fn login(&self, username: &str, scope: &str) -> Tokens {
        let (verifier, challenge) = pkce();
        let query = self.consent(username, scope, &challenge, "state-123").await;
        assert_eq!(param(&query, "state"), Some("state-123"));
        let code = param(&query, "code").unwrap().to_owned();
        let answer = self.exchange_code(&code, &verifier).await;
        assert_eq!(answer.status(), StatusCode::OK);
        tokens(answer).await
    }

    async fn exchange_code(&self, code: &str, verifier: &str) -> Response {
        self.http
            .post(self.url("/x/2/oauth2/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn refresh(&self, refresh_token: &str) -> Response {
        self.http
            .post(self.url("/x/2/oauth2/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap()
    }

    /// X's control page, `GET /sandbox/x/state`.
    async fn x_state(&self) -> Value {
        self.http
            .get(self.url("/sandbox/x/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn me(&self, access_token: &str) -> Response {
        self.http
            .get(self.url("/x/2/users/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    async fn tweet(&self, access_token: &str, body: Value) -> Response {
        self.http
            .post(self.url("/x/2/tweets"))
            .bearer_auth(access_token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// A PKCE verifier and its S256 challenge, computed by the book (RFC 7636 §4.1-4.2).
fn pkce() -> (String, String) {
    let verifier = format!("verifier-{}-{}", unix_now(), rand::random::<u64>()).repeat(2);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The hidden inputs of a form, as a program filling it in would read them.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = start + tag[start..].find('"')?;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
        .collect()
}

/// `base` with parameter `name` replaced by `value`, or left out when `value` is `None`.
fn replaced<'a>(
    base: &[(&'a str, &'a str)],
    name: &str,
    value: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    base.iter()
        .filter_map(|&(k, v)| match (k == name, value) {
            (true, Some(replacement)) => Some((k, replacement)),
            (true, None) => None,
            (false, _) => Some((k, v)),
        })
        .collect()
}

fn redirect_query(response: &Response) -> Vec<(String, String)> {
    let location = response.headers()[LOCATION].to_str().unwrap();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn tokens(response: Response) -> Tokens {
    let body: Value = response.json().await.unwrap();
    Tokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().map(str::to_owned),
    }
}

fn rate_header(response: &Response, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

fn invalid_token_body() -> Value {
    json!({"error": "invalid_request", "error_description": "Value passed for the token was invalid."})
}

fn unauthorized_body() -> Value {
    json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
}

#[tokio::test]
async fn consent_form_code_and_pkce_exchange_give_working_tokens() {
    let h = harness().await;
    let (verifier, challenge) = pkce();
    let query = h.consent("jane_writes", SCOPES, &challenge, "s-1").await;
    assert_eq!(param(&query, "state"), Some("s-1"));
    let code = param(&query, "code").unwrap().to_owned();

    let answer = h.exchange_code(&code, &verifier).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[CACHE_CONTROL], "no-store");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["scope"], SCOPES);
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_ne!(access, refresh);

    let me = h.me(access).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(rate_header(&me, "x-rate-limit-limit"), 75);
    assert_eq!(rate_header(&me, "x-rate-limit-remaining"), 74);
    assert!(rate_header(&me, "x-rate-limit-reset") > unix_now());
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        me,
        json!({"data": {"id": JANE, "name": "Jane Writes", "username": "jane_writes"}})
    );

    // A code is single-use; replaying it also revokes what it produced (RFC 6749 §4.1.2).
    let replay = h.exchange_code(&code, &verifier).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(replay.json::<Value>().await.unwrap(), invalid_token_body());
    assert_eq!(h.me(access).await.status(), StatusCode::UNAUTHORIZED);
    let log = h.sandbox.x().token_requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].grant_type, "authorization_code");
    assert_eq!(
        log[0].credential.as_deref(),
        Some(token_fingerprint(&code).as_str())
    );
    assert_eq!(log[0].outcome, TokenOutcome::Issued);
    assert_eq!(log[1].outcome, TokenOutcome::InvalidCode);
}

#[tokio::test]
async fn authorize_refuses_bad_requests_as_oauth_prescribes() {
    let h = harness().await;
    let (_, challenge) = pkce();
    let base = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", SCOPES),
        ("state", "s-2"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let with = |name: &str, value: Option<&'static str>| replaced(&base, name, value);

    // An unknown client cannot be trusted with a redirect: an error page instead.
    let unknown = h
        .http
        .get(h.authorize_url(&with("client_id", Some("who"))))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.headers().get(LOCATION).is_none());
    assert!(unknown.text().await.unwrap().contains("who"));

    // With a trustworthy redirect URI, the client hears about its mistake.
    for (params, expected_state) in [
        (with("code_challenge_method", Some("plain")), Some("s-2")),
        (with("code_challenge", None), Some("s-2")),
        (with("state", None), None),
    ] {
        let answer = h.http.get(h.authorize_url(&params)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::FOUND);
        let query = redirect_query(&answer);
        assert_eq!(
            param(&query, "error"),
            Some("invalid_request"),
            "{params:?}"
        );
        assert_eq!(param(&query, "state"), expected_state);
        assert!(param(&query, "code").is_none());
    }

    // Wrong password: the page again, with the reason.
    let form: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .chain([
            ("username", "jane_writes"),
            ("password", "guess"),
            ("decision", "authorize"),
        ])
        .collect();
    let wrong = h
        .http
        .post(h.url("/x/i/oauth2/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::OK);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("Wrong username or password."));

    // Cancel: back to the client with access_denied.
    let form: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .chain([("decision", "cancel")])
        .collect();
    let cancel = h
        .http
        .post(h.url("/x/i/oauth2/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::FOUND);
    let query = redirect_query(&cancel);
    assert_eq!(param(&query, "error"), Some("access_denied"));
    assert_eq!(param(&query, "state"), Some("s-2"));
}

#[tokio::test]
async fn no_refresh_token_without_offline_access() {
    let h = harness().await;
    let tokens = h.login("other_account", "tweet.read users.read").await;
    assert!(tokens.refresh.is_none());
    let me: Value = h.me(&tokens.access).await.json().await.unwrap();
    assert_eq!(me["data"]["id"], OTHER);
}

#[tokio::test]
async fn code_exchange_checks_verifier_lifetime_and_client() {
    let h = harness().await;
    let (verifier, challenge) = pkce();
    let (other_verifier, _) = pkce();

    let query = h.consent("jane_writes", SCOPES, &challenge, "s").await;
    let code = param(&query, "code").unwrap().to_owned();
    let wrong = h.exchange_code(&code, &other_verifier).await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json::<Value>().await.unwrap(), invalid_token_body());

    h.sandbox.x().set_code_lifetime(Duration::ZERO);
    let query = h.consent("jane_writes", SCOPES, &challenge, "s").await;
    let expired = h
        .exchange_code(param(&query, "code").unwrap(), &verifier)
        .await;
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST);

    h.sandbox.x().set_code_lifetime(Duration::from_secs(30));
    let query = h.consent("jane_writes", SCOPES, &challenge, "s").await;
    let bad_client = h
        .http
        .post(h.url("/x/2/oauth2/token"))
        .basic_auth(CLIENT_ID, Some("not-the-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", param(&query, "code").unwrap()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_client.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad_client.json::<Value>().await.unwrap(),
        json!({"error": "unauthorized_client", "error_description": "Missing valid authorization header"})
    );
    let no_auth = h
        .http
        .post(h.url("/x/2/oauth2/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let h = harness().await;
    let first = h.login("jane_writes", SCOPES).await;
    let answer = h.refresh(first.refresh.as_deref().unwrap()).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["scope"], SCOPES);
    let second_access = body["access_token"].as_str().unwrap();
    let second_refresh = body["refresh_token"].as_str().unwrap();
    assert_ne!(second_access, first.access);
    assert_ne!(Some(second_refresh), first.refresh.as_deref());
    assert_eq!(h.me(second_access).await.status(), StatusCode::OK);

    let x = h.sandbox.x();
    assert_eq!(x.refresh_calls(), 1);
    assert!(x
        .token_requests()
        .iter()
        .all(|r| r.outcome == TokenOutcome::Issued));
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_family() {
    let h = harness().await;
    let first = h.login("jane_writes", SCOPES).await;
    let spent = first.refresh.unwrap();
    let newest = tokens(h.refresh(&spent).await).await;

    let reuse = h.refresh(&spent).await;
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    assert_eq!(reuse.json::<Value>().await.unwrap(), invalid_token_body());

    // The newest refresh token and its access token went with it.
    let newest_refresh = newest.refresh.unwrap();
    let after = h.refresh(&newest_refresh).await;
    assert_eq!(after.status(), StatusCode::BAD_REQUEST);
    assert_eq!(after.json::<Value>().await.unwrap(), invalid_token_body());
    let me = h.me(&newest.access).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me.json::<Value>().await.unwrap(), unauthorized_body());

    let x = h.sandbox.x();
    let log = x.token_requests();
    let reused: Vec<_> = log
        .iter()
        .filter(|r| r.outcome == TokenOutcome::RefreshTokenReused)
        .collect();
    assert_eq!(reused.len(), 1);
    assert_eq!(reused[0].credential, Some(token_fingerprint(&spent)));
    assert_eq!(
        log.last().unwrap().outcome,
        TokenOutcome::RefreshTokenRevoked
    );
    assert!(x.revoked_tokens().iter().any(|t| {
        t.fingerprint == token_fingerprint(&newest_refresh)
            && t.kind == TokenKind::Refresh
            && t.cause == RevokeCause::RefreshTokenReused
            && t.user_id == JANE
    }));
    assert_eq!(x.refresh_calls(), 3);
}

#[tokio::test]
async fn revoke_endpoint_revokes_access_and_refresh_tokens() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    let revoke = |token: String, hint: &'static str| {
        h.http
            .post(h.url("/x/2/oauth2/revoke"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token), ("token_type_hint", hint.to_owned())])
            .send()
    };

    let answer = revoke(tokens.access.clone(), "access_token").await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"revoked": true})
    );
    assert_eq!(
        h.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let refresh = tokens.refresh.unwrap();
    assert_eq!(
        revoke(refresh.clone(), "refresh_token")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(h.refresh(&refresh).await.status(), StatusCode::BAD_REQUEST);

    // RFC 7009: unknown tokens are not an error.
    let unknown = revoke("never-issued".into(), "access_token").await.unwrap();
    assert_eq!(unknown.status(), StatusCode::OK);
    let revoked = h.sandbox.x().revoked_tokens();
    assert!(revoked
        .iter()
        .all(|t| t.cause == RevokeCause::RevokeEndpoint));
    assert!(revoked
        .iter()
        .any(|t| t.fingerprint == token_fingerprint(&refresh)));
}

#[tokio::test]
async fn publishing_posts_with_media_and_refusing_duplicates() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;

    let part = reqwest::multipart::Part::bytes(vec![0x89, b'P', b'N', b'G', 1, 2, 3])
        .file_name("cover.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("media_category", "tweet_image")
        .part("media", part);
    let upload = h
        .http
        .post(h.url("/x/2/media/upload"))
        .bearer_auth(&tokens.access)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    assert!(upload.headers().contains_key("x-rate-limit-remaining"));
    let upload: Value = upload.json().await.unwrap();
    let media_id = upload["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(upload["data"]["media_key"], format!("3_{media_id}"));
    assert_eq!(upload["data"]["size"], 7);
    assert_eq!(upload["data"]["expires_after_secs"], 86400);

    let json_upload = h
        .http
        .post(h.url("/x/2/media/upload"))
        .bearer_auth(&tokens.access)
        .json(&json!({"media": "aGVsbG8=", "media_category": "tweet_image"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_upload.status(), StatusCode::OK);

    let text = "Chapter one is out today.";
    let post = h
        .tweet(
            &tokens.access,
            json!({"text": text, "media": {"media_ids": [media_id]}}),
        )
        .await;
    assert_eq!(post.status(), StatusCode::CREATED);
    assert!(post.headers().contains_key("x-rate-limit-reset"));
    let post: Value = post.json().await.unwrap();
    let tweet_id = post["data"]["id"].as_str().unwrap();
    assert_eq!(post["data"]["text"], text);

    let duplicate = h.tweet(&tokens.access, json!({"text": text})).await;
    assert_eq!(duplicate.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        duplicate.json::<Value>().await.unwrap(),
        json!({"detail": "You are not allowed to create a Tweet with duplicate content.",
               "type": "about:blank", "title": "Forbidden", "status": 403})
    );

    let too_long = h
        .tweet(&tokens.access, json!({"text": "a".repeat(281)}))
        .await;
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        too_long.json::<Value>().await.unwrap()["title"],
        "Invalid Request"
    );
    assert_eq!(
        h.tweet(&tokens.access, json!({"text": "b".repeat(280)}))
            .await
            .status(),
        StatusCode::CREATED
    );

    let bad_media = h
        .tweet(
            &tokens.access,
            json!({"text": "with a stranger's media", "media": {"media_ids": ["42"]}}),
        )
        .await;
    assert_eq!(bad_media.status(), StatusCode::BAD_REQUEST);

    let x = h.sandbox.x();
    let published = x.tweets(JANE);
    assert_eq!(published.len(), 2);
    assert_eq!(published[0].id, tweet_id);
    assert_eq!(published[0].text, text);
    assert_eq!(published[0].media_ids, vec![media_id]);
    assert!(x.tweets(OTHER).is_empty());
}

#[tokio::test]
async fn endpoints_check_scopes() {
    let h = harness().await;
    let tokens = h
        .login("jane_writes", "tweet.read tweet.write users.read")
        .await;
    let upload = h
        .http
        .post(h.url("/x/2/media/upload?media_category=tweet_image"))
        .bearer_auth(&tokens.access)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(
        upload.status(),
        StatusCode::FORBIDDEN,
        "media.write was not granted"
    );
    assert_eq!(
        h.tweet(&tokens.access, json!({"text": "hi"}))
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn rate_limit_next_answers_429_with_headers() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    assert_eq!(
        rate_header(&h.me(&tokens.access).await, "x-rate-limit-remaining"),
        74
    );

    let reset = unix_now() + 600;
    h.sandbox.x().rate_limit_next(2, reset);
    for _ in 0..2 {
        let limited = h.me(&tokens.access).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(rate_header(&limited, "x-rate-limit-limit"), 75);
        assert_eq!(rate_header(&limited, "x-rate-limit-remaining"), 0);
        assert_eq!(rate_header(&limited, "x-rate-limit-reset"), reset);
        assert_eq!(
            limited.json::<Value>().await.unwrap(),
            json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})
        );
    }
    let again = h.me(&tokens.access).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(rate_header(&again, "x-rate-limit-remaining"), 73);

    // A bad token is refused before any rate limit, and still carries the headers.
    let unauthorized = h.me("not-a-token").await;
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert!(unauthorized.headers().contains_key("x-rate-limit-limit"));
}

#[tokio::test]
async fn fail_next_answers_server_errors_then_recovers() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    let x = h.sandbox.x();
    assert!(x.fail_next(1, StatusCode::NOT_FOUND).is_err());

    x.fail_next(2, StatusCode::SERVICE_UNAVAILABLE).unwrap();
    let refresh = tokens.refresh.unwrap();
    let failed = h.refresh(&refresh).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        h.me(&tokens.access).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        x.refresh_calls(),
        0,
        "an injected failure never reaches the token logic"
    );

    assert_eq!(h.me(&tokens.access).await.status(), StatusCode::OK);
    assert_eq!(
        h.refresh(&refresh).await.status(),
        StatusCode::OK,
        "the token was not spent"
    );
}

#[tokio::test]
async fn revoking_the_app_fails_api_calls_and_refreshes() {
    let h = harness().await;
    let jane = h.login("jane_writes", SCOPES).await;
    let other = h.login("other_account", SCOPES).await;
    let x = h.sandbox.x();

    assert_eq!(x.revoke_user_grants(JANE).unwrap(), 2);
    assert!(x.revoke_user_grants("999").is_err());

    let me = h.me(&jane.access).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me.json::<Value>().await.unwrap(), unauthorized_body());
    let refresh = h.refresh(jane.refresh.as_deref().unwrap()).await;
    assert_eq!(refresh.status(), StatusCode::BAD_REQUEST);
    assert_eq!(refresh.json::<Value>().await.unwrap(), invalid_token_body());
    assert_eq!(
        x.token_requests().last().unwrap().outcome,
        TokenOutcome::RefreshTokenRevoked
    );
    assert!(x
        .revoked_tokens()
        .iter()
        .all(|t| t.user_id == JANE && t.cause == RevokeCause::UserRevokedApp));

    // Another user's grant is untouched.
    assert_eq!(h.me(&other.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn expired_access_tokens_are_renewed_by_refreshing() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    assert_eq!(h.sandbox.x().expire_access_tokens(JANE).unwrap(), 1);
    assert_eq!(
        h.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let renewed = tokens_after_ok(h.refresh(tokens.refresh.as_deref().unwrap()).await).await;
    assert_eq!(h.me(&renewed.access).await.status(), StatusCode::OK);
}

async fn tokens_after_ok(response: Response) -> Tokens {
    assert_eq!(response.status(), StatusCode::OK);
    tokens(response).await
}

#[tokio::test]
async fn a_lost_answer_still_rotated_the_token() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    let refresh = tokens.refresh.unwrap();
    let x = h.sandbox.x();
    x.drop_next(1);

    let lost = h
        .http
        .post(h.url("/x/2/oauth2/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await;
    let lost = lost.expect_err("the connection closes without an answer");
    assert!(lost.is_request() && !lost.is_timeout(), "{lost:?}");
    assert_eq!(x.refresh_calls(), 1);
    assert_eq!(
        x.token_requests().last().unwrap().outcome,
        TokenOutcome::Issued
    );

    // The client never saw the new token; sending the old one again is a reuse.
    assert_eq!(h.refresh(&refresh).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        x.token_requests().last().unwrap().outcome,
        TokenOutcome::RefreshTokenReused
    );

    // A lost post answer still published the post.
    let fresh = h.login("jane_writes", SCOPES).await;
    x.drop_next(1);
    let lost = h
        .http
        .post(h.url("/x/2/tweets"))
        .bearer_auth(&fresh.access)
        .json(&json!({"text": "Did this go out?"}))
        .send()
        .await;
    assert!(lost.is_err());
    assert_eq!(x.tweets(JANE).len(), 1);
}

#[tokio::test]
async fn stalled_calls_answer_late_or_time_out() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    let x = h.sandbox.x();

    x.stall_next(1, Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(h.me(&tokens.access).await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    x.stall_next(1, Duration::from_secs(30));
    let timed_out = h
        .http
        .get(h.url("/x/2/users/me"))
        .bearer_auth(&tokens.access)
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    assert_eq!(x.pending_faults().stall, 0);
}

#[tokio::test]
async fn controls_over_http_drive_the_simulation() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    let control = |path: &str| h.http.post(h.url(&format!("/sandbox/x{path}")));

    let armed = control("/fail")
        .json(&json!({"calls": 1, "status": 502}))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), StatusCode::OK);
    assert_eq!(armed.json::<Value>().await.unwrap()["fail"], 1);
    assert_eq!(h.me(&tokens.access).await.status(), StatusCode::BAD_GATEWAY);

    let bad = control("/fail")
        .json(&json!({"calls": 1, "status": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"],
        "invalid_setting"
    );

    control("/rate-limit")
        .json(&json!({"calls": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        h.me(&tokens.access).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    assert_eq!(
        h.tweet(&tokens.access, json!({"text": "hello"}))
            .await
            .status(),
        StatusCode::CREATED
    );
    let listed: Value = h
        .http
        .get(h.url(&format!("/sandbox/x/users/{JANE}/tweets")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["text"], "hello");
    assert_eq!(listed[0]["author_id"], JANE);

    let revoked = control(&format!("/users/{JANE}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        h.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let unknown = control("/users/999/expire").send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"],
        "unknown_user"
    );

    let state = h.x_state().await;
    assert_eq!(state["tweets"], 1);
    assert_eq!(state["users"][0]["username"], "jane_writes");
    assert!(
        !state.to_string().contains("sandbox-x-secret"),
        "the state page never shows the client secret"
    );
}

#[tokio::test]
async fn the_access_token_lifetime_is_set_over_http_for_tokens_issued_after() {
    let h = harness().await;
    let first = h.login("jane_writes", SCOPES).await;
    let set = |body: Value| {
        h.http
            .put(h.url("/sandbox/x/access-token-lifetime"))
            .json(&body)
            .send()
    };

    let answer = set(json!({"secs": 10})).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.json::<Value>().await.unwrap()["access_token_lifetime_secs"],
        10
    );
    let refreshed: Value = h
        .refresh(first.refresh.as_deref().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refreshed["expires_in"], 10, "{refreshed}");

    // Bad settings change nothing.
    for bad in [
        json!({"secs": 0}),
        json!({"seconds": 5}),
        json!({"secs": -1}),
    ] {
        let answer = set(bad.clone()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            answer.json::<Value>().await.unwrap()["error"],
            "invalid_setting",
            "{bad}"
        );
    }
    let state = h.x_state().await;
    assert_eq!(state["access_token_lifetime_secs"], 10);
}

#[tokio::test]
async fn added_users_can_log_in_and_configured_clients_are_required() {
    let h = harness().await;
    let x = h.sandbox.x();
    x.add_user(XUser::new("42", "new_author", "New Author"))
        .unwrap();
    assert!(x.add_user(XUser::new("43", "NEW_AUTHOR", "Clash")).is_err());
    let tokens = h.login("@new_author", SCOPES).await;
    let me: Value = h.me(&tokens.access).await.json().await.unwrap();
    assert_eq!(me["data"]["username"], "new_author");

    x.set_client("other-client", "other-secret");
    assert_eq!(
        h.refresh(tokens.refresh.as_deref().unwrap()).await.status(),
        StatusCode::UNAUTHORIZED,
        "the old client credentials no longer authenticate"
    );
}

#[tokio::test]
async fn shutdown_frees_the_port() {
    let sandbox = Sandbox::start().await.unwrap();
    let base = sandbox.base_url();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    sandbox.shutdown().await;
    let http = Client::builder().no_proxy().build().unwrap();
    assert!(http.get(format!("{base}/")).send().await.is_err());
    let again = Sandbox::start_on(addr).await.unwrap();
    assert_eq!(again.base_url(), base);
}

#[tokio::test]
async fn faults_aimed_at_a_path_cut_bodies_and_add_retry_after() {
    let h = harness().await;
    let tokens = h.login("jane_writes", SCOPES).await;
    let x = h.sandbox.x();

    // Aimed at publishing: a refresh and an identity call go through untouched.
    x.fail_next_on(1, StatusCode::BAD_GATEWAY, Some("/tweets"))
        .unwrap();
    x.garble_next(1, Some("/tweets"));
    let refresh = tokens.refresh.clone().unwrap();
    let renewed = tokens_after_ok(h.refresh(&refresh).await).await;
    assert_eq!(h.me(&renewed.access).await.status(), StatusCode::OK);
    assert_eq!(x.pending_faults().fail, 1);
    assert_eq!(x.pending_faults().garble, 1);
    let failed = h.tweet(&renewed.access, json!({"text": "first"})).await;
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    assert!(x.tweets(JANE).is_empty(), "a failed call is not processed");

    // A cut body: processed, its status kept, its JSON broken.
    let cut = h.tweet(&renewed.access, json!({"text": "second"})).await;
    assert_eq!(cut.status(), StatusCode::CREATED);
    let text = cut.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert!(!text.is_empty(), "half of the body is kept");
    assert_eq!(x.tweets(JANE).len(), 1, "the post went out");
    assert_eq!(x.pending_faults().garble, 0);
    let whole = h.tweet(&renewed.access, json!({"text": "third"})).await;
    assert_eq!(whole.status(), StatusCode::CREATED);
    assert!(whole.json::<Value>().await.is_ok());

    // An armed rate limit with a Retry-After carries it beside the platform's headers;
    // one without carries none.
    x.rate_limit_next_with(1, unix_now() + 7, Some(5));
    let limited = h.me(&renewed.access).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rate_header(&limited, "retry-after"), 5);
    assert!(limited.headers().contains_key("x-rate-limit-reset"));
    x.rate_limit_next(1, unix_now() + 7);
    let limited = h.me(&renewed.access).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!limited.headers().contains_key("retry-after"));

    // The same over the control routes.
    let armed: Value = h
        .http
        .post(h.url("/sandbox/x/garble"))
        .json(&json!({"calls": 2, "on": "/tweets"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(armed["garble"], 2);
    let armed: Value = h
        .http
        .post(h.url("/sandbox/x/rate-limit"))
        .json(&json!({"calls": 1, "reset": unix_now() + 3, "retry_after": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(armed["rate_limit_retry_after"], 2);
}
