//! Crash-test writer: a stream of durable multi-tree changes from concurrent writers.
//! Prints `ack <post-id> <state>` after each durable commit returns; the crash test kills
//! this process with SIGKILL at random points and checks what the acknowledgements promised.
//!
//! Usage: storage-crash-writer DATA_DIR MASTER_KEY_BASE64 WRITERS RUN

use std::io::Write;
use std::sync::{Arc, Mutex};

use social_studio_storage::fixtures::{connection, key, post};
use social_studio_storage::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: storage-crash-writer DATA_DIR MASTER_KEY_BASE64 WRITERS RUN");
        std::process::exit(2);
    }
    let key_b64 = &args[2];
    let writers: usize = args[3].parse().unwrap_or(4);
    let run: u64 = args[4].parse().unwrap_or(0);
    let master = match MasterKey::from_base64(key_b64) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let store =
        match SledStore::open_with_key(&StoreConfig::new(&args[1]), &master, KeySource::Provided) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("open failed: {e}");
                std::process::exit(3);
            }
        };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(4);
        }
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let k = key(&format!("pen-{run}-{w}"), Platform::ALL[w % 9]);
                let mut conn = connection(&k);
                for n in 0u64.. {
                    // Each post goes Scheduled → Publishing → Published, one durable commit
                    // per step, each step touching the post, its counts, an event and the
                    // connection in one atomic commit.
                    let mut p = post(&k, n);
                    let mut first = true;
                    for state in [
                        PostState::Scheduled,
                        PostState::Publishing,
                        PostState::Published(Receipt {
                            platform_post_id: format!("{n}"),
                            url: None,
                        }),
                    ] {
                        let from = p.state.label();
                        let new = std::mem::take(&mut first);
                        p.state = state;
                        p.attempts += 1;
                        conn.status_since = Timestamp::from_unix_millis(n as i64);
                        let mut b = Batch::new();
                        if new {
                            b.put_post(&p);
                        } else {
                            b.put_post_status(&p);
                        }
                        b.put_connection(&conn).event(
                            Event::new(
                                Timestamp::from_unix_millis(0),
                                k.clone(),
                                EventKind::PostState,
                            )
                            .post(p.id)
                            .transition(Some(from), Some(p.state.label())),
                        );
                        if let Err(e) = store.commit(b, Durability::Durable).await {
                            eprintln!("commit failed: {e}");
                            std::process::exit(5);
                        }
                        let line = format!("ack {} {}\n", p.id, p.state.label());
                        if let Ok(mut o) = out.lock() {
                            let _ = o.write_all(line.as_bytes());
                            let _ = o.flush();
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}
