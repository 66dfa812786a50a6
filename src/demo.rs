//! `social-studio demo`: the service with the sandbox, and a narrated scenario a newcomer
//! can watch — connect through the sandbox's authorize page, schedule posts, the
//! platform revokes the grant, the connection is Expired with its reason and the posts
//! pause, reconnect, the posts publish. Everything goes through the public HTTP API, as
//! the product would use it. Without `--once` it prints a link to the pen name's Social
//! Accounts page as the scenario starts (open it in a browser to watch the connection go
//! from connected to expired, with its banner, and back) and a fresh one when it ends.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use social_studio::config::Config;
use social_studio::sandbox::{browser, Sandbox};
use social_studio::studio::{Studio, StudioOptions};
use social_studio::wait::poll_until;

use crate::table::connections_table;

const PEN: &str = "jane-doe";
const X_USER_ID: &str = "2244994945";

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await?;
        if s >= 400 {
            return Err(anyhow!("GET {path} answered {s}: {v}"));
        }
        Ok(v)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let (s, v) = self.call(reqwest::Method::POST, path, Some(body)).await?;
        if s >= 400 {
            return Err(anyhow!("POST {path} answered {s}: {v}"));
        }
        Ok(v)
    }

    /// The connect flow as the product's popup runs it: authorize, the platform's page,
    /// consent, and our callback page.
    async fn connect_oauth(&self, platform: &str, name: &str, username: &str) -> Result<()> {
        let start = self
            .post(
                &format!("/v1/pen-names/{PEN}/connections/{platform}/authorize"),
                json!({}),
            )
            .await?;
        let url = start["authorize_url"]
            .as_str()
            .ok_or_else(|| anyhow!("no authorize_url"))?;
        step(&format!(
            "the author opens {name}'s authorize page: {}",
            short(url)
        ));
        let back = browser::consent(url, username, "authorize").await?;
        step(&format!(
            "signed in as {username}, chose \"Authorize app\"; {name} sends the browser back to {}",
            short(&back)
        ));
        let page = self.client.get(&back).send().await?;
        let ok = page.status().is_success();
        let html = page.text().await?;
        if !ok || !html.contains("postMessage") {
            return Err(anyhow!("the callback page did not report success"));
        }
        step(
            "the callback page tells the app's window the outcome (postMessage) and closes itself",
        );
        Ok(())
    }

    async fn connect_x(&self, username: &str) -> Result<()> {
        self.connect_oauth("x", "X", username).await
    }

    async fn entry(&self, platform: &str) -> Result<Value> {
        let detail = self
            .get(&format!("/v1/pen-names/{PEN}/connections/{platform}"))
            .await?;
        Ok(detail.get("connection").cloned().unwrap_or(detail))
    }

    async fn x_entry(&self) -> Result<Value> {
        self.entry("x").await
    }

    async fn posts(&self, state: &str) -> Result<Vec<Value>> {
        let v = self
            .get(&format!("/v1/pen-names/{PEN}/posts?state={state}"))
            .await?;
        Ok(v.get("posts")
            .unwrap_or(&v)
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

fn short(url: &str) -> String {
    if url.len() > 90 {
        format!("{}…", &url[..90])
    } else {
        url.to_string()
    }
}

fn step(line: &str) {
    println!("   {line}");
}

fn heading(line: &str) {
    println!("\n== {line}");
}

/// How often the demo looks again at something it waits for.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

fn check(holds: bool, claim: &str) -> Result<()> {
    if holds {
        println!("   ok  {claim}");
        Ok(())
    } else {
        Err(anyhow!("{claim}: did not hold"))
    }
}

async fn scenario(api: &Api, sandbox: &Sandbox) -> Result<()> {
    heading("1. Connect X through the sandbox's authorize page (OAuth 2.0 with PKCE and state)");
    api.connect_x("jane_writes").await?;
    let entry = api.x_entry().await?;
    check(entry["status"] == "active", "X is connected and active")?;
    step(&format!(
        "account {} — tokens sealed at rest, refreshed before they lapse",
        entry["account"]["handle"].as_str().unwrap_or("?")
    ));

    heading("2. Schedule three posts");
    let texts = [
        "Chapter one is out today",
        "Signing books in Leeds on Saturday",
        "Thank you for reading",
    ];
    for (i, text) in texts.iter().enumerate() {
        let at = time_in(Duration::from_secs(6 + 2 * i as u64));
        let p = api
            .post(
                &format!("/v1/pen-names/{PEN}/posts"),
                json!({"platform": "x", "text": text, "scheduled_at": at}),
            )
            .await?;
        let post = p["posts"].get(0).cloned().unwrap_or(p.clone());
        step(&format!(
            "{} due {} — {}",
            post["state"].as_str().unwrap_or("?"),
            at,
            text
        ));
    }

    heading("3. The author revokes the app in X's settings");
    sandbox.x().revoke_user_grants(X_USER_ID)?;
    step("the sandbox now refuses every token of that user");
    let (status, verify) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/pen-names/{PEN}/connections/x/verify"),
            Some(json!({})),
        )
        .await?;
    step(&format!(
        "the app asks the engine to verify the connection: HTTP {status} {}",
        verify["error"]["code"].as_str().unwrap_or("")
    ));
    let entry = api.x_entry().await?;
    check(
        entry["status"] == "expired",
        "the engine noticed: the connection is expired",
    )?;
    step(&format!(
        "reason {}: {} Remedy: {} (X said: {})",
        entry["reason"]["code"].as_str().unwrap_or("?"),
        entry["reason"]["message"].as_str().unwrap_or(""),
        entry["reason"]["remedy"].as_str().unwrap_or(""),
        entry["reason"]["platform_message"].as_str().unwrap_or("-")
    ));
    let paused = api.posts("paused").await?;
    check(paused.len() == 3, "its three posts are paused — not failed")?;
    check(api.posts("failed").await?.is_empty(), "no post failed")?;

    heading("4. The author reconnects the same account");
    api.connect_x("jane_writes").await?;
    let entry = api.x_entry().await?;
    check(entry["status"] == "active", "active again")?;
    let published = poll_until(Duration::from_secs(60), LOOK_AGAIN, async || {
        match api.posts("published").await {
            Ok(posts) if posts.len() == 3 => Some(Ok(())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    })
    .await
    .transpose()?;
    check(
        published.is_some(),
        "the three posts published at their times, in order",
    )?;
    let tweets = sandbox.x().tweets(X_USER_ID);
    let order: Vec<&str> = tweets.iter().map(|t| t.text.as_str()).collect();
    step(&format!("on the sandbox's X: {order:?}"));
    check(order == texts, "exactly once each, in due order")?;

    tour(api, sandbox, 5, &stops()).await
}

/// Every other platform, each with the post it is for.
fn stops() -> Vec<Stop> {
    vec![
        Stop {
            platform: "linkedin",
            name: "LinkedIn",
            login: Login::OAuth("jane_writes"),
            post: json!({"text": "New chapter (and a giveaway) — details below!"}),
        },
        Stop {
            platform: "pinterest",
            name: "Pinterest",
            login: Login::OAuth("jane_writes"),
            post: json!({
                "kind": "pin",
                "title": "The cover of book two",
                "text": "Out in the spring",
                "links": ["https://example.com/book-two"],
                "media": [{"url": "https://example.com/covers/book-two.jpg", "kind": "image", "alt": "A blue book cover"}],
            }),
        },
        Stop {
            platform: "tiktok",
            name: "TikTok",
            login: Login::OAuth("jane_tok"),
            post: json!({
                "kind": "video",
                "text": "Chapter one, read aloud. #booktok",
                "media": [{"url": "{sandbox}/tiktok/media/sample.mp4", "kind": "video"}],
            }),
        },
        Stop {
            platform: "youtube",
            name: "YouTube",
            login: Login::OAuth("jane_writes"),
            post: json!({
                "kind": "video",
                "title": "Book two: chapter one",
                "text": "Chapter one, read aloud.",
                "media": [{"url": "{sandbox}/sandbox/youtube/media/sample.mp4", "kind": "video"}],
            }),
        },
        Stop {
            platform: "facebook",
            name: "Facebook Page",
            login: Login::OAuth("meta_publisher"),
            post: json!({
                "text": "Book two is out.",
                "links": ["https://example.com/book-two"],
                "media": [{"url": "{sandbox}/facebook/media/cover.jpg", "kind": "image", "alt": "The cover of book two"}],
            }),
        },
        Stop {
            platform: "instagram",
            name: "Instagram",
            login: Login::OAuth("meta_publisher"),
            post: json!({
                "text": "The cover. #books",
                "media": [{"url": "{sandbox}/instagram/media/cover.jpg", "kind": "image", "alt": "The cover of book two"}],
            }),
        },
        Stop {
            platform: "threads",
            name: "Threads",
            login: Login::OAuth("jane_threads"),
            post: json!({
                "text": "Book two is out",
                "links": ["https://example.com/book-two"],
                "media": [{"url": "{sandbox}/threads/media/cover.jpg", "kind": "image", "alt": "The cover of book two"}],
            }),
        },
        Stop {
            platform: "bluesky",
            name: "Bluesky",
            login: Login::AppPassword {
                identifier: "jane.sandbox.test",
                password: "abcd-efgh-ijkl-mnop",
            },
            post: json!({
                "text": "Book two is out! https://example.com/book-two thanks @alex.sandbox.test #amwriting",
                "links": ["https://example.com/book-two"],
            }),
        },
    ]
}

/// How the author connects one platform in the tour.
enum Login {
    /// OAuth through the sandbox's authorize page, signed in as this user.
    OAuth(&'static str),
    /// Bluesky: handle and app password (the engine keeps only the session).
    AppPassword {
        identifier: &'static str,
        password: &'static str,
    },
}

/// One platform of the tour: how to connect, and a post it publishes.
struct Stop {
    platform: &'static str,
    name: &'static str,
    login: Login,
    /// The post's fields besides platform, target and time; `{sandbox}` in a string is
    /// the sandbox's base URL (it serves the images and videos).
    post: Value,
}

/// Connects each platform and publishes one post of the kind it is for, through the
/// same HTTP API, waiting for the platform's receipt.
async fn tour(api: &Api, sandbox: &Sandbox, first: usize, stops: &[Stop]) -> Result<()> {
    for (i, stop) in stops.iter().enumerate() {
        heading(&format!(
            "{}. {}: connect, then publish",
            first + i,
            stop.name
        ));
        match &stop.login {
            Login::OAuth(username) => {
                api.connect_oauth(stop.platform, stop.name, username)
                    .await?
            }
            Login::AppPassword {
                identifier,
                password,
            } => {
                api.post(
                    &format!("/v1/pen-names/{PEN}/connections/{}", stop.platform),
                    json!({"identifier": identifier, "app_password": password}),
                )
                .await?;
                step(&format!(
                    "signed in as {identifier} with an app password; the engine keeps the session, never the password"
                ));
            }
        }
        let entry = api.entry(stop.platform).await?;
        check(
            entry["status"] == "active",
            &format!("{} is connected and active", stop.name),
        )?;
        let mut body = sandbox.fill_in(&stop.post);
        body["platform"] = json!(stop.platform);
        if let Some(target) = entry["targets"].get(0) {
            step(&format!(
                "account {}; publishing to {} {}",
                entry["account"]["handle"].as_str().unwrap_or("?"),
                target["kind"].as_str().unwrap_or("target"),
                target["name"].as_str().unwrap_or("?")
            ));
            body["target"] = target["id"].clone();
        }
        body["scheduled_at"] = json!(time_in(Duration::from_secs(2)));
        let created = api
            .post(&format!("/v1/pen-names/{PEN}/posts"), body)
            .await?;
        let id = created["posts"][0]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("the schedule answer has no post id: {created}"))?
            .to_string();
        let path = format!("/v1/pen-names/{PEN}/posts/{id}");
        let mut post = Value::Null;
        let published = poll_until(Duration::from_secs(60), LOOK_AGAIN, async || {
            let answer = match api.get(&path).await {
                Ok(answer) => answer,
                Err(e) => return Some(Err(e)),
            };
            post = answer.get("post").cloned().unwrap_or(answer);
            (post["state"] == "published").then_some(Ok(()))
        })
        .await
        .transpose()?;
        if published.is_none() {
            return Err(anyhow!(
                "the {} post did not publish: state {}, reason {}",
                stop.name,
                post["state"],
                post["reason"]
            ));
        }
        check(true, &format!("published on {}", stop.name))?;
        step(&format!(
            "receipt: {} {}",
            post["receipt"]["id"].as_str().unwrap_or("?"),
            post["receipt"]["url"].as_str().unwrap_or("")
        ));
    }
    Ok(())
}

fn time_in(d: Duration) -> String {
    social_studio_storage::Timestamp::now_system()
        .saturating_add(d)
        .to_rfc3339()
}

/// How long the demo's page links can be opened.
const PAGE_LINK_TTL: Duration = Duration::from_secs(3600);

/// Mints a page link for the demo's pen name, as a host application would, and prints it.
async fn print_page_link(api: &Api, what: &str) -> Result<()> {
    let link = api
        .post(&format!("/v1/pen-names/{PEN}/page-links"), json!({}))
        .await?;
    println!(
        "\n{what} (opens once, within the hour): {}",
        link["url"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Runs the demo. `Ok(true)` when every step held.
pub async fn run(data_dir: PathBuf, once: bool) -> Result<bool> {
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)
            .with_context(|| format!("resetting {}", data_dir.display()))?;
    }
    let sandbox = Sandbox::start().await.context("starting the sandbox")?;
    let mut config = Config::load(
        None,
        std::env::vars().filter(|(k, _)| k != "SOCIAL_STUDIO_DATA_DIR"),
    )
    .context("configuration")?;
    config.data_dir = data_dir;
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?,
    };
    let addr = listener.local_addr()?;
    config.public_url = format!("http://{addr}");
    config.app_origin = format!("http://{addr}");
    config.use_sandbox_for_unconfigured(&sandbox.base_url());
    // The sandbox serves the demo's media on 127.0.0.1, which the engine otherwise
    // refuses to fetch.
    config.allow_private_media_urls = true;
    // Long enough to open the page while the scenario runs, or later.
    config.page_link_ttl = PAGE_LINK_TTL;
    let studio = Studio::open(config, StudioOptions::default())
        .await
        .context("opening the engine")?;
    let token = studio.admin_token().expose().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(social_studio::http::serve(
        studio.clone(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    println!(
        "Social Studio demo — engine on http://{addr}, sandbox platforms on {}",
        sandbox.base_url()
    );
    let api = Api {
        base: format!("http://{addr}"),
        token: token.clone(),
        client: reqwest::Client::new(),
    };
    if !once {
        print_page_link(&api, "Watch it in a browser").await?;
    }
    let outcome = scenario(&api, &sandbox).await;
    let ok = match &outcome {
        Ok(()) => {
            heading("Every step held.");
            let table = api
                .get(&format!("/v1/pen-names/{PEN}/connections"))
                .await
                .map(|b| connections_table(&b))
                .unwrap_or_default();
            print!("{table}");
            true
        }
        Err(e) => {
            println!("\n   FAILED  {e:#}");
            false
        }
    };
    if once || !ok {
        let _ = stop_tx.send(());
        let _ = server.await;
        studio.shutdown().await;
        sandbox.shutdown().await;
        return Ok(ok);
    }
    print_page_link(&api, "The Social Accounts page").await?;
    println!(
        "\nStill serving; explore it (Ctrl-C to stop):\n  export TOKEN={token}\n  curl -s -H \"Authorization: Bearer $TOKEN\" http://{addr}/v1/pen-names/{PEN}/connections\n  curl -s -H \"Authorization: Bearer $TOKEN\" http://{addr}/v1/pen-names/{PEN}/posts\n  curl -sN -H \"Authorization: Bearer $TOKEN\" http://{addr}/v1/events\n  curl -s -X POST {}/sandbox/x/users/{X_USER_ID}/revoke   # revoke again, then POST …/connections/x/verify",
        sandbox.base_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop_tx.send(());
    let _ = server.await;
    studio.shutdown().await;
    sandbox.shutdown().await;
    Ok(true)
}
