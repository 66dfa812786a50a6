//! Server-sent events read off a streaming `reqwest` response, for the tests that read
//! the engine's event streams (`tests/api/`, `tests/postgres_processes.rs`).

use std::time::Duration;

use serde_json::Value;

/// One server-sent event as read off the wire.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: Value,
}

/// Reads server-sent events off a streaming response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
    /// How long [`SseReader::expect_next`] waits for an event.
    patience: Duration,
}

impl SseReader {
    /// Reads `response`'s body as a stream of events, waiting up to `patience` for each.
    pub fn new(response: reqwest::Response, patience: Duration) -> SseReader {
        SseReader {
            response,
            buffer: String::new(),
            patience,
        }
    }

    /// The next event (comments and keep-alives skipped), or `None` if the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = self.response.chunk().await.expect("stream readable")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event, failing the test if none comes within the reader's patience.
    pub async fn expect_next(&mut self) -> SseEvent {
        tokio::time::timeout(self.patience, self.next())
            .await
            .expect("an event within the deadline")
            .expect("the stream is still open")
    }

    /// Reads until an event satisfies `wanted`; returns it and everything read before.
    pub async fn until(&mut self, wanted: impl Fn(&SseEvent) -> bool) -> (SseEvent, Vec<SseEvent>) {
        let mut before = Vec::new();
        loop {
            let event = self.expect_next().await;
            if wanted(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut event = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(SseEvent {
        id,
        event,
        data: serde_json::from_str(&data).expect("event data is JSON"),
    })
}
