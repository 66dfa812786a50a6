//! Group commit, and the durable event feed.
//!
//! One thread makes the database durable for everyone: durable commits queue a waiter; the
//! thread takes every waiter queued so far, flushes sled's log, `fdatasync`s the log file
//! (sled itself only asks the kernel to write back the range it wrote, which does not
//! flush the disk's cache), and answers them all. Waiters that arrive during a flush ride
//! the next one, which necessarily begins after their change was applied.
//!
//! Events are published here too: a flush covers every commit applied before it began,
//! so after it the events of all those commits are durable and go out, in sequence
//! order. A commit with events and nobody waiting asks for a flush as well; the thread
//! then waits a few milliseconds for company, so a stream of buffered commits (publish
//! outcomes) costs a few hundred flushes a second, not one each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::{Event, StoreError};

/// How long a flush asked for by events alone waits for more work to share it.
const EVENT_FLUSH_DELAY: Duration = Duration::from_millis(3);

pub(crate) type FlushResult = Result<(), String>;
pub(crate) type FlushHook = Box<dyn Fn() + Send + 'static>;

pub(crate) enum Request {
    /// Answer once everything applied before this request is durable.
    Wait(tokio::sync::oneshot::Sender<FlushResult>),
    /// Events were applied: make them durable soon and publish them.
    Events,
}

/// What the flusher shares with the writer and the readers.
pub(crate) struct Feed {
    /// Highest event sequence number whose commit is completely applied.
    pub(crate) applied_seq: AtomicU64,
    /// Highest event sequence number known durable.
    pub(crate) durable_seq: AtomicU64,
    /// Applied events not yet published, in sequence order.
    pub(crate) pending: Mutex<VecDeque<Event>>,
    /// Notified (under `pending`'s lock) after every publication.
    published: Condvar,
    pub(crate) sender: broadcast::Sender<Event>,
    pub(crate) flushes: AtomicU64,
    pub(crate) acknowledged: AtomicU64,
}

impl Feed {
    pub(crate) fn new(seq_high: u64, capacity: usize) -> Feed {
        Feed {
            applied_seq: AtomicU64::new(seq_high),
            durable_seq: AtomicU64::new(seq_high),
            pending: Mutex::new(VecDeque::new()),
            published: Condvar::new(),
            sender: broadcast::channel(capacity.max(16)).0,
            flushes: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
        }
    }

    /// Publishes the pending events up to `durable`, in order.
    fn publish_through(&self, durable: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while pending.front().is_some_and(|e| e.seq <= durable) {
            if let Some(e) = pending.pop_front() {
                let _ = self.sender.send(e);
            }
        }
        self.published.notify_all();
    }

    /// Blocks this thread until the events through `seq` are durable and published, or
    /// `timeout` has passed.
    pub(crate) fn wait_published(&self, seq: u64, timeout: Duration) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.published.wait_timeout_while(pending, timeout, |_| {
            self.durable_seq.load(Ordering::Acquire) < seq
        });
    }
}

pub(crate) struct Flusher {
    sender: Option<std::sync::mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(
        db: sled::Db,
        log_file: std::fs::File,
        feed: Arc<Feed>,
        before_flush: Option<FlushHook>,
    ) -> Flusher {
        let (sender, rx) = std::sync::mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || run(rx, db, log_file, feed, before_flush))
            .ok();
        Flusher {
            sender: thread.as_ref().map(|_| sender),
            thread,
        }
    }

    pub(crate) fn request(&self, r: Request) -> Result<(), StoreError> {
        self.sender
            .as_ref()
            .ok_or(StoreError::FlusherStopped)?
            .send(r)
            .map_err(|_| StoreError::FlusherStopped)
    }

    pub(crate) fn wait(&self) -> Result<tokio::sync::oneshot::Receiver<FlushResult>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.request(Request::Wait(tx))?;
        Ok(rx)
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it answers what is queued; joining it
        // releases its handle on the database, so the directory can be reopened at once.
        self.sender.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    rx: std::sync::mpsc::Receiver<Request>,
    db: sled::Db,
    log_file: std::fs::File,
    feed: Arc<Feed>,
    before_flush: Option<FlushHook>,
) {
    while let Ok(first) = rx.recv() {
        let mut waiters = Vec::new();
        let take = |r: Request, waiters: &mut Vec<_>| {
            if let Request::Wait(w) = r {
                waiters.push(w);
            }
        };
        take(first, &mut waiters);
        for r in rx.try_iter() {
            take(r, &mut waiters);
        }
        if waiters.is_empty() {
            // Only events asked: give other commits a moment to share this flush.
            let deadline = Instant::now() + EVENT_FLUSH_DELAY;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(r) => {
                        take(r, &mut waiters);
                        if !waiters.is_empty() {
                            for r in rx.try_iter() {
                                take(r, &mut waiters);
                            }
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        // Everything applied up to here is covered by the flush that starts now.
        let target = feed.applied_seq.load(Ordering::Acquire);
        if let Some(hook) = &before_flush {
            hook();
        }
        let result = db
            .flush()
            .map(|_| ())
            .map_err(|e| e.to_string())
            .and_then(|()| {
                log_file
                    .sync_data()
                    .map_err(|e| format!("fdatasync of the log: {e}"))
            });
        feed.flushes.fetch_add(1, Ordering::Relaxed);
        feed.acknowledged
            .fetch_add(waiters.len() as u64, Ordering::Relaxed);
        // Durable readers see the flush before any waiter hears of it: a durable commit's
        // events are in `events_after` by the time the commit resolves.
        match &result {
            Ok(()) => {
                feed.durable_seq.fetch_max(target, Ordering::AcqRel);
                feed.publish_through(target);
            }
            Err(error) => tracing::error!(%error, "the store's flush failed"),
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}
