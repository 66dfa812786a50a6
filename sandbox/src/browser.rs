//! A scripted "author at the browser" for the sandbox's consent pages: opens an
//! authorize URL, fills the login and consent form as a person would, and returns where
//! the platform redirects back to. Used by the demo and the end-to-end tests; it speaks
//! only HTML and HTTP, as a browser does.

use std::collections::HashMap;

/// A consent step that did not go as a person would expect.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("the authorize page could not be loaded: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the authorize page answered {status}: {excerpt}")]
    Refused { status: u16, excerpt: String },
    #[error("the authorize page has no consent form")]
    NoForm,
    /// OAuth 2.0 sends the browser back with `302 Found` and a `Location`.
    #[error("the platform answered the consent with {status}, not a redirect back (302 with a Location)")]
    NoRedirect { status: u16 },
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("{name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// The form's action and hidden fields.
fn parse_form(html: &str) -> Option<(String, HashMap<String, String>)> {
    let form_start = html.find("<form")?;
    let form_tag_end = html[form_start..].find('>')? + form_start;
    let action = unescape(attr(&html[form_start..form_tag_end], "action")?);
    let mut fields = HashMap::new();
    let mut rest = &html[form_tag_end..];
    while let Some(i) = rest.find("<input") {
        let end = rest[i..].find('>').map(|e| e + i)?;
        let tag = &rest[i..end];
        if attr(tag, "type") == Some("hidden") {
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                fields.insert(unescape(n), unescape(v));
            }
        }
        rest = &rest[end..];
    }
    Some((action, fields))
}

/// Opens `authorize_url`, signs in as `username` and chooses `decision` (`authorize` or
/// `cancel`). Returns the `Location` the platform redirects the browser to.
pub async fn consent(
    authorize_url: &str,
    username: &str,
    decision: &str,
) -> Result<String, ConsentError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = client.get(authorize_url).send().await?;
    let status = page.status();
    let base = page.url().clone();
    let html = page.text().await?;
    if !status.is_success() {
        return Err(ConsentError::Refused {
            status: status.as_u16(),
            excerpt: html.chars().take(200).collect(),
        });
    }
    let (action, mut fields) = parse_form(&html).ok_or(ConsentError::NoForm)?;
    let action = base.join(&action).map_err(|_| ConsentError::NoForm)?;
    fields.insert("username".into(), username.into());
    fields.insert("password".into(), crate::oauth::SANDBOX_PASSWORD.into());
    fields.insert("decision".into(), decision.into());
    let answer = client.post(action).form(&fields).send().await?;
    let status = answer.status();
    answer
        .headers()
        .get(reqwest::header::LOCATION)
        .filter(|_| status == reqwest::StatusCode::FOUND)
        .and_then(|l| l.to_str().ok())
        .map(str::to_string)
        .ok_or(ConsentError::NoRedirect {
            status: status.as_u16(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_action_and_hidden_fields() {
        let html = r#"<p>x</p><form method="post" action="/x/i/oauth2/authorize?a=1&amp;b=2"><input type="hidden" name="state" value="s&quot;1"><input type="text" name="username" value=""></form>"#;
        let (action, fields) = parse_form(html).unwrap();
        assert_eq!(action, "/x/i/oauth2/authorize?a=1&b=2");
        assert_eq!(fields.get("state").map(String::as_str), Some("s\"1"));
        assert!(!fields.contains_key("username"));
    }
}
