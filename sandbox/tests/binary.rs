//! The `social-studio-sandbox` binary as another process uses it: start it, read the base
//! URL and the route table it prints, talk to a platform route and a control route, and
//! stop it with SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Kills the child if a failed assertion leaves it running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn the_binary_serves_the_platforms_and_their_controls() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_social-studio-sandbox"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the sandbox binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut child = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        let first = lines.next_line().await.expect("stdout is readable");
        let second = lines.next_line().await.expect("stdout is readable");
        (first, second)
    };
    let (first, second) = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the sandbox prints its address within 30 s");
    let first = first.expect("a first line");
    let base = first
        .strip_prefix("sandbox listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let table: Value =
        serde_json::from_str(&second.expect("a second line")).expect("the second line is JSON");
    assert_eq!(table["base_url"], base.as_str());
    assert_eq!(
        table["endpoints"]["x"]["token_url"],
        format!("{base}/x/2/oauth2/token")
    );
    assert_eq!(table["endpoints"]["x"]["client_id"], "sandbox-x-client");
    assert_eq!(
        table["endpoints"]["bluesky"]["plc_directory"],
        format!("{base}/bluesky/plc")
    );

    let http = reqwest::Client::new();
    // A control route arms a fault on X...
    let armed = http
        .post(format!("{base}/sandbox/x/fail"))
        .json(&json!({"calls": 1, "status": 503}))
        .send()
        .await
        .expect("the control route answers");
    assert_eq!(armed.status(), 200);
    let pending: Value = armed.json().await.expect("JSON");
    assert_eq!(pending["fail"], 1);
    // ...that X's own API route then answers, once; after it, X asks for a token.
    let me = format!("{base}/x/2/users/me");
    let failed = http.get(&me).send().await.expect("the platform answers");
    assert_eq!(failed.status(), 503);
    let unauthenticated = http.get(&me).send().await.expect("the platform answers");
    assert_eq!(unauthenticated.status(), 401);

    #[cfg(unix)]
    {
        let pid = child.0.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(10), child.0.wait())
            .await
            .expect("the sandbox stops within 10 s of SIGTERM")
            .expect("wait succeeds");
        assert!(status.success(), "{status}");
    }
}
