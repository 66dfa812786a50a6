//! The tests' own PostgreSQL (`tests/support/postgres.rs`): a real server from the
//! package pinned in `tests/pg/`, started by the test itself, reached with the client the
//! PostgreSQL store will use (tokio-postgres). These tests hold the harness to what the
//! store's tests will rely on: queries run (and fail when they should), the version is
//! the pinned one, the password is required, instances run side by side without sharing
//! anything, a server that cannot start says why, a dropped server is gone, and so is the
//! server of a test process killed outright.

#[path = "support/node.rs"]
#[allow(dead_code)] // only its npm install is used here, not its server scripts
mod node;
#[path = "support/postgres.rs"]
mod postgres;

use std::time::Duration;

use postgres::Postgres;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Connects to `url`, the connection driven by a task of the test's runtime.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

async fn connect_to(pg: &Postgres) -> Client {
    connect(pg.url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}\n{}", pg.url(), pg.log_tail()))
}

#[tokio::test]
async fn a_started_server_is_the_pinned_version_and_runs_queries() {
    let pg = Postgres::start().await;
    let client = connect_to(&pg).await;

    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .expect("SHOW server_version")
        .get(0);
    let pinned = postgres::pinned_version();
    let major = |v: &str| v.split('.').next().unwrap_or_default().to_owned();
    assert_eq!(
        major(&version),
        major(&pinned),
        "server {version}, pinned package {pinned}"
    );

    client
        .batch_execute("CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)")
        .await
        .expect("CREATE TABLE");
    for (id, body) in [(1_i64, "first"), (2, "second")] {
        client
            .execute(
                "INSERT INTO notes (id, body) VALUES ($1, $2)",
                &[&id, &body],
            )
            .await
            .expect("INSERT");
    }
    let rows = client
        .query("SELECT id, body FROM notes ORDER BY id", &[])
        .await
        .expect("SELECT");
    let read: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(read, [(1, "first".to_owned()), (2, "second".to_owned())]);

    // A statement the server refuses comes back as that error, not as success.
    let duplicate = client
        .execute(
            "INSERT INTO notes (id, body) VALUES ($1, $2)",
            &[&1_i64, &"again"],
        )
        .await
        .expect_err("a second row with id 1");
    assert_eq!(duplicate.code(), Some(&SqlState::UNIQUE_VIOLATION));
}

#[tokio::test]
async fn the_password_in_the_url_is_required() {
    let pg = Postgres::start().await;
    let url = pg.url();
    let (without_password, at_host) = url
        .split_once('@')
        .map(|(user, host)| (user.rsplit_once(':').map_or(user, |(u, _)| u), host))
        .expect("the URL has user@host");
    let wrong = format!("{without_password}:not-the-password@{at_host}");
    let refused = connect(&wrong)
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(
        refused.code(),
        Some(&SqlState::INVALID_PASSWORD),
        "{refused}"
    );
    connect_to(&pg).await;
}

#[tokio::test]
async fn two_servers_run_at_once_and_share_nothing() {
    let (a, b) = tokio::join!(Postgres::start(), Postgres::start());
    assert_ne!(a.url(), b.url());
    let (on_a, on_b) = tokio::join!(connect_to(&a), connect_to(&b));
    on_a.batch_execute("CREATE TABLE only_on_a (x int)")
        .await
        .expect("CREATE TABLE on a");
    let on_b_too: Option<String> = on_b
        .query_one("SELECT to_regclass('only_on_a')::text", &[])
        .await
        .expect("to_regclass on b")
        .get(0);
    assert_eq!(
        on_b_too, None,
        "a table made on one server shows on the other"
    );
}

#[tokio::test]
async fn a_server_that_cannot_start_says_why() {
    let why = Postgres::start_with(&[("shared_buffers", "plenty")])
        .await
        .err()
        .expect("postgres refuses shared_buffers=plenty");
    // The server's own words, from its log.
    assert!(
        why.contains("invalid value for parameter \"shared_buffers\""),
        "{why}"
    );
}

#[tokio::test]
async fn a_dropped_server_is_stopped() {
    let pg = Postgres::start().await;
    let postmaster = std::path::PathBuf::from(format!("/proc/{}", pg.pid()));
    let client = connect_to(&pg).await;
    assert!(postmaster.exists());
    // Dropped with a client still connected: the fast shutdown ends its session too.
    drop(pg);
    // The drop waited for the server to exit (the port could already serve another
    // test's server, so look at the process).
    assert!(!postmaster.exists(), "the postmaster outlived its drop");
    client
        .batch_execute("SELECT 1")
        .await
        .expect_err("the session ended with the server");
}

/// Set in the child process of `a_killed_test_process_leaves_no_server`.
const HOLDER: &str = "POSTGRES_HARNESS_HOLD_A_SERVER";

#[tokio::test]
async fn a_killed_test_process_leaves_no_server() {
    let exe = std::env::current_exe().expect("this test binary");
    let mut holder = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "hold_a_server_until_killed",
            "--include-ignored",
            "--nocapture",
        ])
        .env(HOLDER, "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the holder process");
    let mut lines = BufReader::new(holder.stdout.take().expect("piped stdout")).lines();
    let held = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("the holder's stdout") {
            if let Some(held) = line.strip_prefix("HOLDING ") {
                return Some(held.to_owned());
            }
        }
        None
    })
    .await
    .expect("the holder started a server within 2 minutes")
    .expect("the holder said which server it holds");
    let (pid, dir) = held.split_once(' ').expect("HOLDING <pid> <dir>");

    // No drop runs: the process is gone at once, as under a CI timeout.
    holder.start_kill().expect("SIGKILL to the holder");
    holder.wait().await.expect("the holder's end");
    let postmaster = std::path::PathBuf::from(format!("/proc/{pid}"));
    let gone = social_studio::wait::poll_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        async || (!postmaster.exists()).then_some(()),
    )
    .await;
    // What a killed process cannot remove: its temporary directory.
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        gone.is_some(),
        "postgres {pid} still runs 30 s after its test process was killed"
    );
}

/// The child process of `a_killed_test_process_leaves_no_server`: starts a server, says
/// which, and waits to be killed. Run any other way, it does nothing.
#[tokio::test]
#[ignore = "a helper that a_killed_test_process_leaves_no_server runs in a child process"]
async fn hold_a_server_until_killed() {
    if std::env::var_os(HOLDER).is_none() {
        return;
    }
    let pg = Postgres::start().await;
    println!("HOLDING {} {}", pg.pid(), pg.dir().display());
    std::future::pending::<()>().await;
}
