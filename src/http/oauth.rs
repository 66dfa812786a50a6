//! `GET /v1/oauth/callback`: where a platform sends the author's browser back after the
//! consent page. It finishes the connect and answers a small HTML page that tells the
//! window that opened it the outcome —
//! `postMessage({type: "social-studio-connect", ok, pen_name, platform, status, error}, origin)`
//! for each of its origins — the configured `app_origin` and the Social Accounts page's own
//! (the origin of `public_url`) — and closes itself. Without an opener, a connect begun on
//! the Social Accounts page (its path bound to the `state`) sends the browser back there
//! with `?connect={platform}&outcome={ok|code}`; any other shows the outcome. A failure
//! names its code, message and remedy, and the platform's own words where there are some
//! (a wrong account's two names).
//!
//! Everything put into the page's script is JSON-encoded with `<`, `>`, `&`, U+2028 and
//! U+2029 escaped, so no value can end the script or the string it is in; the page's
//! Content-Security-Policy allows only its own script (by nonce), and the message goes
//! only to those origins, never `*`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore;
use serde_json::{json, Value};

use super::error::{ApiError, NotJsonOnPurpose};
use super::AppState;

/// The message `type` the embedding app listens for.
pub const MESSAGE_TYPE: &str = "social-studio-connect";

/// The callback's parameters, each at most once: a repeated `state` or `code` is refused
/// rather than guessed at.
#[derive(Debug, Default)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn parse_params(query: Option<&str>) -> Result<CallbackParams, ApiError> {
    let mut params = CallbackParams::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = match name.as_ref() {
            "code" => &mut params.code,
            "state" => &mut params.state,
            "error" => &mut params.error,
            "error_description" => &mut params.error_description,
            _ => continue,
        };
        if slot.is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_callback",
                format!("the callback repeats the parameter {name:?}"),
            ));
        }
        *slot = Some(value.into_owned());
    }
    Ok(params)
}

/// The `error` object of the message: code, message, remedy (the reason's own where the
/// error carries one).
fn error_object(error: &ApiError) -> Value {
    let reason = error.detail().and_then(|d| d.get("reason"));
    let remedy = reason
        .and_then(|r| r.get("remedy"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| error.remedy());
    let message = reason
        .and_then(|r| r.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| error.message());
    let platform_message = reason
        .and_then(|r| r.get("platform_message"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "code": error.code(),
        "message": message,
        "remedy": remedy,
        "reason": { "platform_message": platform_message },
    })
}

/// Where a same-tab author goes back to: the page's path (only ever a path the engine
/// wrote into the `state`), with the outcome.
fn return_url(return_to: Option<&str>, platform: Option<&str>, outcome: &str) -> Option<String> {
    let path = return_to.filter(|p| p.starts_with('/') && !p.starts_with("//"))?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("connect", platform.unwrap_or_default())
        .append_pair("outcome", outcome)
        .finish();
    Some(format!("{path}?{query}"))
}

/// JSON for inside a `<script>`: nothing in it can close the element or break the line.
pub fn script_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
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

fn nonce() -> String {
    let mut raw = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The page: the outcome in words for a person, and the script that tells the opener.
fn page(
    status: StatusCode,
    message: &Value,
    origins: &[String],
    return_to: Option<&str>,
) -> Response {
    let nonce = nonce();
    let ok = message.get("ok").and_then(Value::as_bool).unwrap_or(false);
    let (title, body) = if ok {
        let platform = message
            .get("platform")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let handle = message
            .pointer("/account/handle")
            .and_then(Value::as_str)
            .map(|h| format!(" as {h}"))
            .unwrap_or_default();
        (
            "Connected".to_string(),
            format!(
                "<p>{} is connected{}. You can close this window.</p>",
                escape_html(platform),
                escape_html(&handle)
            ),
        )
    } else {
        let field = |name: &str| {
            message
                .pointer(&format!("/error/{name}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        (
            "Could not connect".to_string(),
            format!(
                "<p role=\"alert\">{}</p><p>{}</p><p><small>Code: <code>{}</code></small></p>",
                escape_html(&field("message")),
                escape_html(&field("remedy")),
                escape_html(&field("code"))
            ),
        )
    };
    let body = match return_to {
        Some(back) => format!(
            "{body}<p><a href=\"{}\">Back to Social Accounts</a></p>",
            escape_html(back)
        ),
        None => body,
    };
    let script = format!(
        "(function(){{var m={};var o={};var os={};var r={};if(window.opener){{try{{window.opener.postMessage(m,o);}}catch(e){{}}os.forEach(function(x){{try{{window.opener.postMessage(m,x);}}catch(e){{}}}});window.close();}}else if(r){{location.replace(r);}}}})();",
        script_json(message),
        script_json(&json!(origins.first())),
        script_json(&json!(origins.get(1..).unwrap_or_default())),
        script_json(&json!(return_to)),
    );
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} – Social Studio</title>\
         <style nonce=\"{nonce}\">body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}</style>\
         </head><body><h1>{title}</h1>{body}\
         <script nonce=\"{nonce}\">{script}</script></body></html>"
    );
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response.extensions_mut().insert(NotJsonOnPurpose);
    response
}

/// Never logs the code or the state: either could finish someone's connect.
#[utoipa::path(
    get,
    path = "/v1/oauth/callback",
    tag = "connections",
    params(
        ("code" = Option<String>, Query, description = "authorization code"),
        ("state" = Option<String>, Query, description = "the state issued by authorize"),
        ("error" = Option<String>, Query, description = "the platform's error, instead of a code"),
        ("error_description" = Option<String>, Query, description = "the platform's words"),
    ),
    responses(
        (status = 200, description = "HTML page: connected; tells the opener and closes", content_type = "text/html"),
        (status = 400, description = "HTML page naming the failure (invalid_state, state_expired, state_used, access_denied, …)", content_type = "text/html"),
    )
)]
#[tracing::instrument(skip_all, fields(pen_name, platform))]
pub(crate) async fn callback(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let origins = state.studio.config().message_origins();
    let outcome = match parse_params(query.as_deref()) {
        Err(e) => Err((None, None, e)),
        Ok(p) => state
            .studio
            .finish_connect_returning(
                p.state.as_deref(),
                p.code.as_deref(),
                p.error.as_deref(),
                p.error_description.as_deref(),
            )
            .await
            .map_err(|f| (f.connection, f.return_to, ApiError::from(f.error))),
    };
    match outcome {
        Ok(done) => {
            let (pen, entry) = (done.pen_name, done.entry);
            let span = tracing::Span::current();
            span.record("pen_name", pen.as_str());
            span.record("platform", entry.platform.id());
            tracing::info!(status = entry.status.as_str(), "connect finished");
            let message = json!({
                "type": MESSAGE_TYPE,
                "ok": true,
                "pen_name": pen.as_str(),
                "platform": entry.platform,
                "status": entry.status,
                "account": entry.account,
                "error": Value::Null,
            });
            let back = return_url(done.return_to.as_deref(), Some(entry.platform.id()), "ok");
            page(StatusCode::OK, &message, &origins, back.as_deref())
        }
        Err((connection, return_to, error)) => {
            tracing::info!(code = error.code(), "connect failed");
            let message = json!({
                "type": MESSAGE_TYPE,
                "ok": false,
                "pen_name": connection.as_ref().map(|k| k.pen_name.as_str()),
                "platform": connection.as_ref().map(|k| k.platform),
                "status": Value::Null,
                "error": error_object(&error),
            });
            let back = return_url(
                return_to.as_deref(),
                connection.as_ref().map(|k| k.platform.id()),
                error.code(),
            );
            page(error.status(), &message, &origins, back.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_end_the_script() {
        let v = json!({"x": "</script><script>alert(1)</script>&\u{2028}\u{2029}"});
        let s = script_json(&v);
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'));
        assert!(!s.contains('\u{2028}') && !s.contains('\u{2029}'));
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(parse_params(Some("state=a&state=b")).is_err());
        let p = parse_params(Some("state=a&code=b&other=c")).unwrap();
        assert_eq!(p.state.as_deref(), Some("a"));
        assert_eq!(p.code.as_deref(), Some("b"));
    }
}
