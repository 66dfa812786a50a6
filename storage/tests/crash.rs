//! A writer process is killed with SIGKILL at random points of a stream of durable
//! writes; every reopen must find every acknowledged write, no torn record, and indexes
//! that agree with the records.
//!
//! SIGKILL leaves the page cache intact, so this shows ordering and atomicity — that an
//! acknowledgement is never given before the change is in sled's log, and that recovery
//! never exposes half a commit (the journal finishes it) — not that a flush reached the platter. That a
//! durable commit waits for its flush is shown by the store's unit tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rand::Rng;
use social_studio_storage::*;

const KILLS: usize = 24;

fn order(label: &str) -> u8 {
    match label {
        "scheduled" => 0,
        "publishing" => 1,
        "published" => 2,
        other => panic!("unexpected state {other}"),
    }
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let key_b64 = master.to_base64();
    let mut acked: HashMap<PostId, u8> = HashMap::new();
    let mut rng = rand::thread_rng();
    let mut total_acks = 0usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    for run in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
            .arg(dir.path())
            .arg(key_b64.as_str())
            .arg(rng.gen_range(1..=8).to_string())
            .arg(run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        // Kill after a random number of acknowledgements (sometimes before the first one,
        // while the store is still opening or mid-transaction).
        let kill_after = if rng.gen_bool(0.15) {
            0
        } else {
            rng.gen_range(1..400)
        };
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            let mut parts = line.split_whitespace();
            assert_eq!(parts.next(), Some("ack"), "{line}");
            let id = PostId::parse(parts.next().unwrap()).unwrap();
            let state = order(parts.next().unwrap());
            let e = acked.entry(id).or_insert(state);
            *e = (*e).max(state);
            seen += 1;
        }
        child.kill().expect("SIGKILL the writer");
        // Acknowledgements printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ack") {
                continue;
            }
            let (Some(id), Some(state)) = (parts.next(), parts.next()) else {
                continue;
            };
            let id = PostId::parse(id).unwrap();
            let e = acked.entry(id).or_insert(order(state));
            *e = (*e).max(order(state));
            seen += 1;
        }
        let _ = child.wait();
        total_acks += seen;

        let store =
            SledStore::open_with_key(&StoreConfig::new(dir.path()), &master, KeySource::Provided)
                .unwrap_or_else(|e| panic!("run {run}: store does not reopen after SIGKILL: {e}"));
        for (id, state) in &acked {
            let post = rt
                .block_on(store.post(*id))
                .unwrap_or_else(|e| panic!("run {run}: torn record {id}: {e}"))
                .unwrap_or_else(|| panic!("run {run}: acknowledged post {id} is missing"));
            let stored = order(post.state.label().as_str());
            assert!(
                stored >= *state,
                "run {run}: post {id} went back from {state} to {stored}"
            );
        }
        let report = rt.block_on(store.check_integrity()).unwrap();
        assert!(
            report.problems.is_empty(),
            "run {run}: {:?}",
            report.problems
        );
        assert!(report.posts >= acked.len());
    }
    assert!(
        total_acks > KILLS * 20,
        "the writers made real progress ({total_acks} acks)"
    );
}
