//! The binary's first run generates an admin token into the data directory and says
//! where it is — never what it is: the binary's output is its log (journald, a
//! container's log driver), readable by more people than the token should be.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// How long the binary may take to come up and say where its token is.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_generated_admin_token_is_named_by_its_file_never_printed() {
    let data = tempfile::TempDir::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_social-studio"))
        .arg("serve")
        .env_remove("SOCIAL_STUDIO_CONFIG")
        .env_remove("SOCIAL_STUDIO_ADMIN_TOKEN")
        .env_remove("SOCIAL_STUDIO_MASTER_KEY")
        .env("SOCIAL_STUDIO_DATA_DIR", data.path())
        .env("SOCIAL_STUDIO_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SOCIAL_STUDIO_PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let token_file = data.path().join("admin.token");
    // Everything it says up to the line about the token (stdout too: either may be a log).
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let announced = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("admin token");
            said.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        announced,
        Ok(true),
        "the binary never said where its admin token is: {said:#?}"
    );
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    said.extend(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string),
    );

    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    assert!(token.len() >= 16, "a token was generated: {token_file:?}");
    let text = said.join("\n");
    assert!(
        !text.contains(token),
        "the admin token was printed:\n{text}"
    );
    assert!(
        text.contains(&token_file.display().to_string()),
        "the output names the token's file:\n{text}"
    );
}
