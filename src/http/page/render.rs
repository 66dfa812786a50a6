//! The page's HTML (maud: escaped by construction). Everything the script needs is in
//! `data-` attributes; there is no inline script or style.

use maud::{html, Markup, DOCTYPE};
use social_studio_storage::{Account, PenName, Platform, TargetKind, Timestamp};

use crate::studio::views::{ConnectionEntry, ConnectionState};

/// What the page is made of.
pub(super) struct PageInput<'a> {
    /// The host's prefix the request came through (`""`, or `/social`).
    pub(super) prefix: &'a str,
    pub(super) pen: &'a PenName,
    pub(super) csrf: &'a str,
    pub(super) connections: &'a [ConnectionEntry],
    pub(super) now: Timestamp,
    /// A same-tab connect that came back: the platform and `ok` or the refusal's code.
    pub(super) returned: Option<(Platform, String)>,
}

/// What a platform asks of the account an author connects.
fn requirement(platform: Platform) -> Markup {
    match platform {
        Platform::Facebook => {
            html! { "Needs a Facebook " strong { "Page" } " you manage — a personal profile cannot be connected." }
        }
        Platform::Instagram => {
            html! { "Needs an Instagram " strong { "professional account" } " (Business or Creator) linked to a Facebook Page." }
        }
        Platform::Tiktok => html! { "Needs a TikTok " strong { "creator" } " account." },
        Platform::Bluesky => html! {
            "Connects with an " strong { "app password" } ", never your main password. Make one in Bluesky under "
            a href="https://bsky.app/settings/app-passwords" rel="noopener noreferrer" target="_blank" { "Settings → Privacy and security → App passwords" } "."
        },
        Platform::Linkedin => html! { "Your LinkedIn profile, or a company Page you administer." },
        Platform::Pinterest => html! { "A Pinterest account with at least one board." },
        Platform::Youtube => html! { "A YouTube channel." },
        Platform::Threads => html! { "A Threads profile." },
        Platform::X => html! { "Any X account." },
    }
}

fn status_word(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Active => "Active",
        ConnectionState::Expired => "Expired",
        ConnectionState::Error => "Error",
        ConnectionState::NotConnected => "Not connected",
        ConnectionState::NotConfigured => "Unavailable",
    }
}

fn posts(n: usize) -> String {
    if n == 1 {
        "1 post".to_owned()
    } else {
        format!("{n} posts")
    }
}

/// "expires in 12 days", for a grant the engine cannot renew.
fn expiry(entry: &ConnectionEntry, now: Timestamp) -> Option<String> {
    let at = entry.expires_at?;
    if entry.renewable {
        return None;
    }
    if at <= now {
        return Some("expired".to_owned());
    }
    let hours = now.until(at).as_secs() / 3600;
    Some(match hours {
        0 => "expires within the hour".to_owned(),
        1..=47 => format!("expires in {hours} hours"),
        _ => format!("expires in {} days", hours / 24),
    })
}

fn needs_author(entry: &ConnectionEntry) -> bool {
    matches!(
        entry.status,
        ConnectionState::Expired | ConnectionState::Error
    )
}

/// "X needs reconnecting — 3 posts are paused until you do".
fn banner(entry: &ConnectionEntry) -> Markup {
    let name = entry.platform.display_name();
    let waiting = entry.paused + entry.scheduled;
    html! {
        div class="banner" role="alert" data-banner=(entry.platform.id()) {
            p {
                strong { (name) " needs reconnecting" }
                @if entry.paused > 0 {
                    " — " (posts(entry.paused)) (if entry.paused == 1 { " is" } else { " are" }) " paused until you do."
                } @else if waiting > 0 {
                    " — " (posts(waiting)) " will wait until you do."
                } @else {
                    "."
                }
            }
            @if let Some(reason) = &entry.reason {
                p { (reason.message) " " (reason.remedy) }
            }
            button type="button" class="primary" data-action="connect" data-platform=(entry.platform.id()) { "Reconnect " (name) }
        }
    }
}

/// Up to two letters standing for the account where it has no picture (or its picture
/// does not load): the first letters of the display name's first two words, or the
/// handle's first letter.
fn initials(account: &Account) -> String {
    let name = if account.display_name.trim().is_empty() {
        account.handle.trim_start_matches('@')
    } else {
        account.display_name.as_str()
    };
    name.split_whitespace()
        .filter_map(|word| word.chars().find(|c| c.is_alphanumeric()))
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

/// The account's picture, sized and loaded lazily, with its initials beside it (hidden
/// while the picture stands; the script shows them if it does not load, so the card
/// never shows a broken image). Only an `https` picture is shown (what the adapters
/// keep, and what the page's CSP admits); with none, the initials alone.
fn picture(account: &Account, platform: &str) -> Markup {
    let shown = account
        .picture
        .as_deref()
        .filter(|url| url.starts_with("https://"));
    let who = if account.display_name.trim().is_empty() {
        account.handle.as_str()
    } else {
        account.display_name.as_str()
    };
    html! {
        @if let Some(url) = shown {
            img class="avatar" src=(url) alt={ "Picture of " (who) " on " (platform) }
                width="48" height="48" loading="lazy" decoding="async" referrerpolicy="no-referrer" data-avatar;
        }
        span class="avatar initials" aria-hidden="true" hidden[shown.is_some()] { (initials(account)) }
    }
}

/// Whether the account lists targets inside it to choose from (Pages, boards,
/// organisations), not only itself.
fn has_targets_to_choose(entry: &ConnectionEntry) -> bool {
    entry.targets.iter().any(|t| !t.kind.is_the_account())
}

fn target_kind_word(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Page => "Page",
        TargetKind::Board => "board",
        TargetKind::Person => "your profile",
        TargetKind::Organisation => "organisation",
        TargetKind::Profile => "profile",
    }
}

/// Where a post that names no target goes: the account's targets, the chosen ones
/// ticked, and Save (`POST /page/{pen}/targets/{platform}`). With none chosen (right
/// after connecting a Facebook or Pinterest account) it asks the author to choose.
fn targets(entry: &ConnectionEntry) -> Markup {
    let id = entry.platform.id();
    let chosen: Vec<&str> = entry
        .targets
        .iter()
        .filter(|t| entry.chosen_targets.contains(&t.id))
        .map(|t| t.name.as_str())
        .collect();
    html! {
        form class="targets" data-targets=(id) {
            fieldset {
                legend { "Where posts go" }
                @if chosen.is_empty() {
                    p class="ask" data-ask=(id) {
                        strong { "Choose where posts go" }
                        ": tick one or more below, then Save. Until you do, a post to "
                        (entry.platform.display_name()) " must name where it goes."
                    }
                } @else {
                    p class="small" data-chosen=(id) { "Posts go to " (chosen.join(", ")) "." }
                }
                @for target in &entry.targets {
                    label class="check" {
                        input type="checkbox" name="target" value=(target.id) checked[entry.chosen_targets.contains(&target.id)];
                        " " (target.name) " "
                        span class="muted small" { "(" (target_kind_word(target.kind)) ")" }
                    }
                }
                button type="submit" data-action="save-targets" data-platform=(id) { "Save" }
            }
        }
    }
}

fn card(entry: &ConnectionEntry, now: Timestamp) -> Markup {
    let p = entry.platform;
    let name = p.display_name();
    let id = p.id();
    let connected = !matches!(
        entry.status,
        ConnectionState::NotConnected | ConnectionState::NotConfigured
    );
    html! {
        li class={ "card status-" (entry.status.as_str()) } id={ "platform-" (id) } data-platform=(id) data-status=(entry.status.as_str()) {
            div class="card-head" {
                h3 { (name) }
                span class="status" { (status_word(entry.status)) }
            }
            div class="account" data-slot="picture-and-targets" {
                @if let Some(account) = &entry.account {
                    div class="who" {
                        (picture(account, name))
                        p class="handle" {
                            @if account.display_name.is_empty() { (account.handle) }
                            @else { (account.display_name) " " span class="muted" { "(" (account.handle) ")" } }
                        }
                    }
                }
                @if connected && has_targets_to_choose(entry) {
                    (targets(entry))
                }
            }
            @if connected {
                @if let Some(reason) = &entry.reason {
                    p class="reason" { (reason.message) " " (reason.remedy) }
                }
                p class="counts" {
                    (posts(entry.scheduled)) " scheduled"
                    @if entry.paused > 0 { ", " (posts(entry.paused)) " paused" }
                    @if let Some(expiry) = expiry(entry, now) { " · " (expiry) }
                }
                div class="actions" {
                    @if needs_author(entry) {
                        button type="button" class="primary" data-action="connect" data-platform=(id) { "Reconnect" }
                    } @else {
                        button type="button" data-action="verify" data-platform=(id) { "Check connection" }
                        button type="button" data-action="test-post" data-platform=(id) { "Send a test post" }
                    }
                    button type="button" class="danger" data-action="disconnect" data-platform=(id) { "Disconnect" }
                }
            } @else if entry.status == ConnectionState::NotConfigured {
                p class="muted" { "Unavailable: this service has no app settings for " (name) " yet." }
                p class="muted small" { (requirement(p)) }
            } @else {
                p class="small" { (requirement(p)) }
            }
            div class="result" role="status" aria-live="polite" data-result=(id) {}
        }
    }
}

/// The part of the page that the script replaces on every event: banners and cards.
fn live(input: &PageInput<'_>) -> Markup {
    html! {
        div id="live" {
            div id="banners" {
                @for entry in input.connections.iter().filter(|e| needs_author(e)) {
                    (banner(entry))
                }
            }
            ul id="accounts" class="cards" {
                @for entry in input.connections {
                    (card(entry, input.now))
                }
            }
        }
    }
}

fn head(prefix: &str, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="stylesheet" href={ (prefix) "/page-assets/page.css" };
        }
    }
}

/// The Social Accounts page.
pub(super) fn page(input: &PageInput<'_>) -> String {
    let connectable: Vec<&ConnectionEntry> = input
        .connections
        .iter()
        .filter(|e| e.status != ConnectionState::NotConfigured)
        .collect();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(input.prefix, "Social Accounts – Social Studio"))
            body data-csrf=(input.csrf) data-pen=(input.pen.as_str()) {
                a class="skip" href="#main" { "Skip to the accounts" }
                main id="main" {
                    header {
                        p class="muted" { "Settings" }
                        h1 { "Social Accounts" }
                        p class="muted" { "Pen name " strong { (input.pen.as_str()) } }
                    }
                    div id="notice" role="status" aria-live="polite" {
                        @if let Some((platform, outcome)) = &input.returned {
                            @if outcome == "ok" {
                                p class="ok" { (platform.display_name()) " is connected." }
                            } @else {
                                p class="error" { (platform.display_name()) " was not connected (" code { (outcome) } "). Try again below." }
                            }
                        }
                    }
                    section aria-labelledby="connect-heading" class="connect" {
                        h2 id="connect-heading" { "Connect an account" }
                        button type="button" id="connect-open" class="primary" aria-expanded="false" aria-controls="connect-panel" { "+ Connect Account" }
                        div id="connect-panel" hidden {
                            label for="connect-platform" { "Platform" }
                            select id="connect-platform" {
                                @for entry in &connectable {
                                    option value=(entry.platform.id()) { (entry.platform.display_name()) }
                                }
                            }
                            button type="button" id="connect-go" class="primary" { "Connect" }
                            form id="bluesky-form" hidden {
                                p class="small" { (requirement(Platform::Bluesky)) }
                                label for="bluesky-identifier" { "Bluesky handle" }
                                input id="bluesky-identifier" name="identifier" autocomplete="username" placeholder="you.bsky.social" required;
                                label for="bluesky-password" { "App password" }
                                input id="bluesky-password" name="app_password" type="password" autocomplete="off" placeholder="xxxx-xxxx-xxxx-xxxx" required;
                                button type="submit" class="primary" { "Connect Bluesky" }
                            }
                        }
                    }
                    section aria-labelledby="accounts-heading" {
                        h2 id="accounts-heading" { "Accounts" }
                        (live(input))
                    }
                }
                script src={ (input.prefix) "/page-assets/page.js" } {}
            }
        }
    };
    markup.into_string()
}

/// A page link's first step (`GET /page-link/{token}`): a form that POSTs to `action`, the
/// link itself, submitted at once by `open.js`, or by the author where scripts do not run.
pub(super) fn opening(prefix: &str, action: &str) -> String {
    notice_page(
        prefix,
        html! {
            form id="open-link" method="post" action=(action) {
                p { "Opening your Social Accounts…" }
                button type="submit" { "Open Social Accounts" }
            }
        },
        html! { script src={ (prefix) "/page-assets/open.js" } {} },
    )
}

/// A page that says why the Social Accounts page cannot be shown.
pub(super) fn refused(prefix: &str, message: &str, remedy: &str) -> String {
    notice_page(
        prefix,
        html! {
            p role="alert" { (message) }
            p { (remedy) }
        },
        html! {},
    )
}

/// A short page of the Social Accounts heading and `content`, with `after` (a script)
/// after the main content.
fn notice_page(prefix: &str, content: Markup, after: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(prefix, "Social Accounts – Social Studio"))
            body {
                main id="main" {
                    h1 { "Social Accounts" }
                    (content)
                }
                (after)
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(expires_in_hours: Option<u64>, renewable: bool, now: Timestamp) -> ConnectionEntry {
        ConnectionEntry {
            status: ConnectionState::Active,
            expires_at: expires_in_hours
                .map(|h| now.saturating_add(std::time::Duration::from_secs(h * 3600))),
            renewable,
            ..ConnectionEntry::not_connected(Platform::Linkedin, true)
        }
    }

    #[test]
    fn only_a_grant_that_cannot_renew_says_when_it_expires() {
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        assert_eq!(
            expiry(&granted(Some(12 * 24 + 5), false, now), now).as_deref(),
            Some("expires in 12 days")
        );
        assert_eq!(
            expiry(&granted(Some(30), false, now), now).as_deref(),
            Some("expires in 30 hours")
        );
        assert_eq!(expiry(&granted(Some(12 * 24), true, now), now), None);
        assert_eq!(expiry(&granted(None, false, now), now), None);
    }

    #[test]
    fn the_banner_counts_the_paused_posts() {
        let entry = ConnectionEntry {
            status: ConnectionState::Expired,
            paused: 3,
            ..ConnectionEntry::not_connected(Platform::X, true)
        };
        let html = banner(&entry).into_string();
        assert!(
            html.contains("X needs reconnecting</strong> — 3 posts are paused until you do."),
            "{html}"
        );
    }
    fn account(display_name: &str, handle: &str, picture: Option<&str>) -> Account {
        Account {
            platform_id: "1".into(),
            handle: handle.into(),
            display_name: display_name.into(),
            kind: social_studio_storage::AccountKind::Personal,
            picture: picture.map(String::from),
        }
    }

    #[test]
    fn a_picture_is_an_https_image_with_words_and_otherwise_initials() {
        let html = picture(
            &account("Jane Writes", "@jane", Some("https://pbs.example/j.png")),
            "X",
        )
        .into_string();
        assert!(
            html.contains(r#"src="https://pbs.example/j.png""#),
            "{html}"
        );
        assert!(
            html.contains(r#"alt="Picture of Jane Writes on X""#),
            "{html}"
        );
        assert!(html.contains(r#"loading="lazy""#) && html.contains(r#"width="48""#));
        // The initials wait, hidden, in case the picture does not load.
        assert!(
            html.contains(r#"<span class="avatar initials" aria-hidden="true" hidden>JW</span>"#),
            "{html}"
        );
        // No picture, or one that is not https: no image at all, the initials shown.
        for url in [
            None,
            Some("http://plain.example/j.png"),
            Some("javascript:alert(1)"),
        ] {
            let html = picture(&account("", "@jane_writes", url), "X").into_string();
            assert!(!html.contains("<img"), "{html}");
            assert_eq!(
                html,
                r#"<span class="avatar initials" aria-hidden="true">J</span>"#
            );
        }
    }

    fn pinterest(chosen: &[&str]) -> ConnectionEntry {
        let board = |id: &str, name: &str| social_studio_storage::Target {
            kind: TargetKind::Board,
            id: id.into(),
            name: name.into(),
        };
        ConnectionEntry {
            status: ConnectionState::Active,
            targets: vec![board("b1", "Book covers"), board("b2", "Writing desk")],
            chosen_targets: chosen.iter().map(|s| s.to_string()).collect(),
            ..ConnectionEntry::not_connected(Platform::Pinterest, true)
        }
    }

    #[test]
    fn targets_are_listed_ticked_as_chosen_and_none_chosen_asks() {
        let html = card(&pinterest(&[]), Timestamp::from_unix_millis(0)).into_string();
        assert!(html.contains("Choose where posts go"), "{html}");
        assert!(
            html.contains(r#"<form class="targets" data-targets="pinterest">"#),
            "{html}"
        );
        assert!(!html.contains("checked"), "{html}");
        let html = card(&pinterest(&["b2"]), Timestamp::from_unix_millis(0)).into_string();
        assert!(!html.contains("Choose where posts go"), "{html}");
        assert!(html.contains(r#"value="b2" checked"#), "{html}");
        assert!(html.contains(r#"value="b1">"#), "{html}");
        assert!(html.contains("Posts go to Writing desk."), "{html}");
        // Only the account itself (X's profile): nothing to choose, no form.
        let x = ConnectionEntry {
            status: ConnectionState::Active,
            targets: vec![social_studio_storage::Target {
                kind: TargetKind::Profile,
                id: "me".into(),
                name: "Jane".into(),
            }],
            chosen_targets: vec!["me".into()],
            ..ConnectionEntry::not_connected(Platform::X, true)
        };
        assert!(!card(&x, Timestamp::from_unix_millis(0))
            .into_string()
            .contains("<form"));
    }
}
