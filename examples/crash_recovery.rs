//! A child process with published posts, pending posts, a post mid-publish and a refresh
//! in flight is killed with SIGKILL. The restarted engine has every post, publishes none
//! twice, and names the interrupted refresh.
//!
//! The platform is a small fake that keeps its state in a file, so it outlives the child
//! like a real platform would: it rotates refresh tokens (a spent one is refused) and
//! logs every post it receives.
//!
//! `cargo run --example crash_recovery` — exits non-zero if any step does not hold.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use social_studio::wait::poll_until;
use social_studio_actors::testkit::{open_store, post_due};
use social_studio_actors::{
    Clock, Engine, EngineConfig, PlatformPort, PortError, RevokeOutcome, SystemClock,
};
use social_studio_storage::{
    Account, AccountKind, ConnectionKey, ConnectionStatus, Grant, PenName, Platform, Post,
    PostState, Reason, ReasonCode, Receipt, Secret, StateLabel, Timestamp,
};
use support::{Narrator, HOUR};

#[derive(Default, Serialize, Deserialize)]
struct PlatformFile {
    counter: u64,
    /// refresh token → spent
    refresh: std::collections::HashMap<String, bool>,
    access: HashSet<String>,
    published: Vec<String>,
    /// The next refresh rotates, then never answers (the process dies meanwhile).
    hang_next_refresh: bool,
    rotated_then_hung: bool,
    spent_token_sends: u64,
}

#[derive(Clone)]
struct FilePlatform {
    path: PathBuf,
    lock: Arc<std::sync::Mutex<()>>,
}

impl FilePlatform {
    fn new(path: PathBuf) -> FilePlatform {
        FilePlatform {
            path,
            lock: Arc::new(std::sync::Mutex::new(())),
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut PlatformFile) -> T) -> T {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut state: PlatformFile = std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let out = f(&mut state);
        let tmp = self.path.with_extension("tmp");
        if let Ok(mut file) = std::fs::File::create(&tmp) {
            let _ = file.write_all(&serde_json::to_vec(&state).unwrap_or_default());
            let _ = file.sync_all();
            let _ = std::fs::rename(&tmp, &self.path);
        }
        out
    }

    fn read(&self) -> PlatformFile {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn issue(&self) -> Grant {
        let now = Timestamp::now_system();
        let (a, r) = self.update(mint);
        grant(a, r, now)
    }
}

fn mint(s: &mut PlatformFile) -> (String, String) {
    s.counter += 1;
    let (a, r) = (format!("at-{}", s.counter), format!("rt-{}", s.counter));
    s.access.insert(a.clone());
    s.refresh.insert(r.clone(), false);
    (a, r)
}

fn grant(access: String, refresh: String, now: Timestamp) -> Grant {
    Grant {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(refresh)),
        token_type: "bearer".into(),
        scopes: vec![],
        issued_at: now,
        expires_at: Some(now.saturating_add(2 * HOUR)),
        refresh_expires_at: None,
        target_tokens: vec![],
        endpoint: None,
    }
}

#[async_trait]
impl PlatformPort for FilePlatform {
    fn platform(&self) -> Platform {
        Platform::X
    }

    async fn refresh(&self, g: &Grant) -> Result<Grant, PortError> {
        let token = g
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string())
            .unwrap_or_default();
        let (result, hang) = self.update(|s| match s.refresh.get(&token).copied() {
            Some(false) => {
                s.refresh.insert(token.clone(), true);
                let (a, r) = mint(s);
                let hang = std::mem::take(&mut s.hang_next_refresh);
                s.rotated_then_hung |= hang;
                (Ok(grant(a, r, Timestamp::now_system())), hang)
            }
            Some(true) => {
                s.spent_token_sends += 1;
                let reason = Reason::with_platform_message(
                    ReasonCode::AuthorizationInvalid,
                    "invalid_request: Value passed for the token was invalid.",
                );
                (Err(PortError::GrantDead(reason)), false)
            }
            None => (
                Err(PortError::GrantDead(Reason::new(
                    ReasonCode::AuthorizationInvalid,
                ))),
                false,
            ),
        });
        if hang {
            std::future::pending::<()>().await;
        }
        result
    }

    async fn check(&self, g: &Grant) -> Result<Account, PortError> {
        if self.read().access.contains(g.access_token.expose()) {
            Ok(Account {
                platform_id: "1".into(),
                handle: "@jane".into(),
                display_name: "Jane".into(),
                kind: AccountKind::Personal,
                picture: None,
            })
        } else {
            Err(PortError::Unauthorized)
        }
    }

    async fn publish(&self, g: &Grant, post: &Post) -> Result<Receipt, PortError> {
        let token = g.access_token.expose().to_string();
        self.update(|s| {
            if !s.access.contains(&token) {
                return Err(PortError::Unauthorized);
            }
            s.published.push(post.id.to_string());
            Ok(Receipt {
                platform_post_id: s.published.len().to_string(),
                url: None,
            })
        })
    }

    async fn revoke(&self, _g: &Grant) -> Result<RevokeOutcome, PortError> {
        Ok(RevokeOutcome::NotSupported)
    }
}

fn key() -> ConnectionKey {
    ConnectionKey::new(
        PenName::parse("jane-doe").unwrap_or_else(|_| unreachable!()),
        Platform::X,
    )
}

/// Waits up to `within` for `cond`, looking again every 20 ms.
async fn holds_within(within: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let every = Duration::from_millis(20);
    poll_until(within, every, async || cond().await.then_some(()))
        .await
        .is_some()
}

/// The child: brings the engine into the state the parent kills it in.
async fn child(dir: &Path) -> Result<(), String> {
    let platform = FilePlatform::new(dir.join("platform.json"));
    let store = open_store(&dir.join("data")).map_err(|e| e.to_string())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::start(
        store.clone(),
        vec![Arc::new(platform.clone())],
        clock.clone(),
        EngineConfig::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let account = Account {
        platform_id: "1".into(),
        handle: "@jane".into(),
        display_name: "Jane".into(),
        kind: AccountKind::Personal,
        picture: None,
    };
    engine
        .connect(key(), account, vec![], platform.issue(), false)
        .await
        .map_err(|e| e.to_string())?;
    let now = clock.now();
    let mut published = Vec::new();
    for i in 0..4 {
        published.push(
            engine
                .schedule(post_due(&key(), now, &format!("published {i}")))
                .await
                .map_err(|e| e.to_string())?
                .id,
        );
    }
    let all_published = holds_within(Duration::from_secs(30), async || {
        for id in &published {
            let done = store
                .post(*id)
                .await
                .ok()
                .flatten()
                .is_some_and(|p| p.state.label() == StateLabel::Published);
            if !done {
                return false;
            }
        }
        true
    })
    .await;
    if !all_published {
        return Err("the first posts did not publish".into());
    }
    for i in 0..6 {
        engine
            .schedule(post_due(
                &key(),
                now.saturating_add(HOUR),
                &format!("pending {i}"),
            ))
            .await
            .map_err(|e| e.to_string())?;
    }
    // A refresh that the platform carries out but never answers.
    platform.update(|s| s.hang_next_refresh = true);
    let e = engine.clone();
    tokio::spawn(async move {
        let _ = e.verify(key()).await;
    });
    if !holds_within(Duration::from_secs(30), async || {
        platform.read().rotated_then_hung
    })
    .await
    {
        return Err("the refresh did not start".into());
    }
    // A post due now goes Publishing while the connection is stuck in that refresh.
    let mid = engine
        .schedule(post_due(&key(), clock.now(), "mid-publish"))
        .await
        .map_err(|e| e.to_string())?;
    let publishing = holds_within(Duration::from_secs(30), async || {
        store
            .post(mid.id)
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p.state.label() == StateLabel::Publishing)
    })
    .await;
    if !publishing {
        return Err("the last post did not reach Publishing".into());
    }
    // The queue writes Publishing at once and has the store's flusher make it durable
    // before the post goes to its connection; the post is read above before that flush
    // may have finished. Waiting on a flush of our own (which covers every write before
    // it) means the kill below finds Publishing on disk, not a state that was never sent.
    store.sync().await.map_err(|e| e.to_string())?;
    println!("READY");
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            std::process::exit(1);
        }
    };
    if args.get(1).map(String::as_str) == Some("child") {
        let dir = PathBuf::from(args.get(2).cloned().unwrap_or_default());
        if let Err(e) = rt.block_on(child(&dir)) {
            eprintln!("child: {e}");
            std::process::exit(2);
        }
        return;
    }
    rt.block_on(parent());
}

async fn parent() {
    let mut n = Narrator::new(
        "crash_recovery",
        "SIGKILL with a refresh in flight and posts pending",
    );
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            n.check(false, format!("a temporary directory: {e}"));
            return;
        }
    };
    let exe = std::env::current_exe().unwrap_or_default();
    let mut child = match std::process::Command::new(exe)
        .arg("child")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            n.check(false, format!("start the child: {e}"));
            return;
        }
    };
    n.say(format!("child {} runs the engine: 4 posts published, 6 pending, 1 mid-publish, a refresh in flight", child.id()));
    let ready = child
        .stdout
        .take()
        .map(|out| {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .any(|l| l == "READY")
        })
        .unwrap_or(false);
    n.check(ready, "the child reached the moment to kill it");
    let _ = child.kill();
    let _ = child.wait();
    n.say("SIGKILL sent; the platform had rotated the refresh token, the engine never heard the answer");

    let platform = FilePlatform::new(dir.path().join("platform.json"));
    let before = platform.read().published.len();
    let store = match open_store(&dir.path().join("data")) {
        Ok(s) => s,
        Err(e) => {
            n.check(false, format!("the store reopens after SIGKILL: {e}"));
            return;
        }
    };
    let engine = Engine::start(
        store.clone(),
        vec![Arc::new(platform.clone())],
        Arc::new(SystemClock),
        EngineConfig::default(),
    )
    .await;
    n.check(
        engine.is_ok(),
        "the engine restarts on the same data directory",
    );
    let Ok(engine) = engine else { return };
    let expired = holds_within(Duration::from_secs(30), async || {
        store
            .connection(&key())
            .await
            .ok()
            .flatten()
            .is_some_and(|c| !c.status.is_active())
    })
    .await;
    let status = store
        .connection(&key())
        .await
        .ok()
        .flatten()
        .map(|c| c.status);
    n.say(format!(
        "after restart the connection is {:?}",
        status.as_ref().map(|s| s.label())
    ));
    n.check(expired, "the interrupted refresh was recognised at restart");
    n.check(
        matches!(&status, Some(ConnectionStatus::Expired(r)) if r.code == ReasonCode::RefreshInterrupted),
        "and named: refresh_interrupted (not revoked_by_user)",
    );
    if let Some(ConnectionStatus::Expired(r)) = &status {
        n.say(format!("  {} Remedy: {}", r.message(), r.remedy()));
    }
    n.check(
        platform.read().spent_token_sends == 1,
        "the old refresh token was resent exactly once, at recovery",
    );

    let posts = store
        .posts_of_connection(&key())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let count = |label: StateLabel| posts.iter().filter(|p| p.state.label() == label).count();
    n.say(format!(
        "posts: {} published, {} paused, {} unconfirmed, {} failed",
        count(StateLabel::Published),
        count(StateLabel::Paused),
        count(StateLabel::Unconfirmed),
        count(StateLabel::Failed)
    ));
    n.check(
        posts.len() == 11,
        format!("every post is there ({} of 11)", posts.len()),
    );
    n.check(
        count(StateLabel::Published) == 4,
        "the 4 published posts are still Published",
    );
    n.check(
        count(StateLabel::Paused) == 6,
        "the 6 pending posts are Paused, waiting for a reconnect",
    );
    n.check(
        posts
            .iter()
            .any(|p| p.content.text == "mid-publish" && matches!(p.state, PostState::Unconfirmed)),
        "the post that was mid-publish is Unconfirmed, not silently re-sent",
    );
    let published = platform.read().published;
    let unique: HashSet<_> = published.iter().collect();
    n.check(
        unique.len() == published.len(),
        "the platform received no post twice",
    );
    n.check(
        published.len() == before && before == 4,
        "nothing was published again after the restart",
    );
    engine.shutdown().await;
    n.done();
}
