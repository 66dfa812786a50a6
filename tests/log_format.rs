//! The binary's log formats: with `--log-format json` (or `SOCIAL_STUDIO_LOG_FORMAT=json`)
//! every line it writes to stderr is a JSON object — the start-up notes, the shutdown,
//! a failure — and a value it does not know is refused, naming the ones it does.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use social_studio::wait::poll_until;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long the binary may take to come up, or to stop.
const PATIENCE: Duration = Duration::from_secs(60);
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// The binary with a data directory and loopback port of its own, nothing inherited that
/// would change what it does.
fn binary(data: &std::path::Path, port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_social-studio"));
    command
        .env_remove("SOCIAL_STUDIO_CONFIG")
        .env_remove("SOCIAL_STUDIO_ADMIN_TOKEN")
        .env_remove("SOCIAL_STUDIO_MASTER_KEY")
        .env_remove("SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS")
        .env_remove("SOCIAL_STUDIO_LOG_FORMAT")
        .env("SOCIAL_STUDIO_DATA_DIR", data)
        .env("SOCIAL_STUDIO_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SOCIAL_STUDIO_PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every line is a JSON object with a timestamp, a level and a message: the shape a log
/// collector reads.
fn assert_json_lines(lines: &[String]) {
    assert!(!lines.is_empty(), "the binary said nothing");
    for line in lines {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {line}\nall:\n{lines:#?}"));
        assert!(parsed["timestamp"].is_string(), "no timestamp: {line}");
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&parsed["level"].as_str().unwrap_or("")),
            "no level: {line}"
        );
        assert!(
            parsed["fields"]["message"].is_string(),
            "no message: {line}"
        );
    }
}

fn messages(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["fields"]["message"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(unix)]
#[tokio::test]
async fn serve_writes_only_json_lines_from_start_to_shutdown() {
    let data = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let mut child = binary(data.path(), port)
        .arg("serve")
        .env("SOCIAL_STUDIO_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Everything it says, gathered as it says it (a full pipe would stall it).
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let gathered = said.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            gathered.lock().unwrap().push(line);
        }
    });
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let answers = async |path: &str| {
        client
            .get(format!("{base}{path}"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };
    let up = poll_until(PATIENCE, LOOK_AGAIN, async || {
        (answers("/healthz").await == Some(200)).then_some(())
    })
    .await;
    assert!(up.is_some(), "no /healthz: {:#?}", said.lock().unwrap());
    let ready = poll_until(PATIENCE, LOOK_AGAIN, async || {
        (answers("/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert!(ready.is_some(), "never ready: {:#?}", said.lock().unwrap());
    // The notes written once the engine has started are there too.
    let noted = poll_until(PATIENCE, LOOK_AGAIN, async || {
        let said = said.lock().unwrap();
        messages(&said)
            .iter()
            .any(|m| m.contains("admin token generated"))
            .then_some(())
    })
    .await;
    assert!(
        noted.is_some(),
        "no start-up notes: {:#?}",
        said.lock().unwrap()
    );

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the binary stops on SIGTERM")
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("stderr closes")
        .unwrap();

    let said = said.lock().unwrap().clone();
    assert_json_lines(&said);
    let messages = messages(&said);
    let listening = format!("listening on http://127.0.0.1:{port}");
    assert!(
        messages.iter().any(|m| m.contains(&listening)),
        "no line says where it listens: {messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("boot: ready in")),
        "no line says the start finished: {messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("shutting down")),
        "no line says it shuts down: {messages:#?}"
    );
}

#[tokio::test]
async fn a_failure_is_a_json_line_too() {
    let data = tempfile::TempDir::new().unwrap();
    let output = binary(data.path(), free_port())
        .args(["--log-format", "json", "serve"])
        .env("SOCIAL_STUDIO_LISTEN", "not an address")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
    assert_json_lines(&lines);
    let failure: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["level"] == "ERROR")
        .collect();
    assert_eq!(failure.len(), 1, "{lines:#?}");
    let message = failure[0]["fields"]["message"].as_str().unwrap();
    assert!(message.contains("SOCIAL_STUDIO_LISTEN"), "{message}");
}

#[tokio::test]
async fn an_unknown_log_format_is_refused_naming_the_known_ones() {
    let data = tempfile::TempDir::new().unwrap();
    for (flag, env) in [(Some("xml"), None), (None, Some("yaml"))] {
        let mut command = binary(data.path(), free_port());
        if let Some(flag) = flag {
            command.args(["--log-format", flag]);
        }
        if let Some(env) = env {
            command.env("SOCIAL_STUDIO_LOG_FORMAT", env);
        }
        let output = command.arg("serve").output().await.unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let given = flag.or(env).unwrap();
        assert!(
            stderr.contains(&format!("invalid value '{given}'")),
            "{stderr}"
        );
        assert!(stderr.contains("[possible values: text, json]"), "{stderr}");
    }
}
