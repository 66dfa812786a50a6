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

/// The binary with `args`, the test's data directory and port in its environment.
fn binary(data: &std::path::Path, port: u16, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_social-studio"));
    command
        .args(args)
        .env_remove("SOCIAL_STUDIO_CONFIG")
        .env_remove("SOCIAL_STUDIO_ADMIN_TOKEN")
        .env_remove("SOCIAL_STUDIO_MASTER_KEY")
        .env_remove("SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS")
        .env("SOCIAL_STUDIO_DATA_DIR", data)
        .env("SOCIAL_STUDIO_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SOCIAL_STUDIO_PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The token file's first line: the current admin token.
fn current_token(file: &std::path::Path) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

#[cfg(unix)]
#[tokio::test]
async fn a_rotated_token_file_is_applied_on_sighup_without_a_restart() {
    use social_studio::wait::poll_until;

    let data = tempfile::TempDir::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = binary(data.path(), port, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Everything the server says, gathered as it says it (a full pipe would stall it).
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let gathered = said.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            gathered.lock().unwrap().push(line);
        }
    });
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/pen-names/jane/connections");
    let answer = async |token: &str| {
        client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };
    let file = data.path().join("admin.token");
    let first = poll_until(PATIENCE, Duration::from_millis(50), async || {
        let token = std::fs::read_to_string(&file)
            .ok()?
            .lines()
            .next()?
            .to_owned();
        (answer(&token).await == Some(200)).then_some(token)
    })
    .await
    .unwrap_or_else(|| panic!("the server never answered: {:#?}", said.lock().unwrap()));

    let rotate = |end: bool| {
        let mut args = vec!["rotate-admin-token"];
        if end {
            args.push("--end-transition");
        }
        let mut command = binary(data.path(), port, &args);
        async move {
            let out = command.output().await.unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let hangup = || {
        let pid = child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };

    let printed = rotate(false).await;
    let second = current_token(&file);
    assert_ne!(second, first);
    assert!(!printed.contains(&second), "the command printed the token");
    // Not before the server is told.
    assert_eq!(answer(&second).await, Some(401));
    hangup();
    assert!(
        poll_until(PATIENCE, Duration::from_millis(50), async || {
            (answer(&second).await == Some(200)).then_some(())
        })
        .await
        .is_some(),
        "the new token was never accepted: {:#?}",
        said.lock().unwrap()
    );
    assert_eq!(answer(&first).await, Some(200), "the old one still is");

    rotate(true).await;
    hangup();
    assert!(
        poll_until(PATIENCE, Duration::from_millis(50), async || {
            (answer(&first).await == Some(401)).then_some(())
        })
        .await
        .is_some(),
        "the old token stayed accepted: {:#?}",
        said.lock().unwrap()
    );
    let refused = client.get(&url).bearer_auth(&first).send().await.unwrap();
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert_eq!(answer(&second).await, Some(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the same process served throughout"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let text = said.lock().unwrap().join("\n");
    assert!(text.contains("SIGHUP: admin tokens reloaded"), "{text}");
    assert!(!text.contains(&first) && !text.contains(&second), "{text}");
}
