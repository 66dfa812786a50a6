//! `GET /v1/events` (and one pen name's, `GET /v1/pen-names/{pen}/events`): every event
//! as a server-sent event — `id: <seq>`, `event: <kind>`, `data: <EventView JSON>` — with
//! keep-alive comments.
//!
//! The seam between stored and live events: the stream subscribes to the live events
//! *before* it reads the store, so nothing committed in between is missed; it then sends
//! the stored events after `Last-Event-ID` (in pages) and remembers the highest sequence
//! number it read from the store; live events at or below that are ones it already sent
//! and are skipped. A subscriber that falls behind the broadcast channel (lagged) does
//! not drop what it missed: it reads it from the store, the same way.
//!
//! Events older than the configured retention (`retention.events_days`) are purged. A
//! replay that starts before the newest purged event — a client resuming with an old
//! `Last-Event-ID` — first sends `event: gap` with `data: {"last_event_id": N,
//! "purged_through": P}` and no `id` (the client's position stays its own): the events
//! after N up to P are gone, and the stream goes on with those after P. A client that must
//! not miss anything resynchronises from the API's listings.
//!
//! Each stream is a task feeding a small channel; it ends when the client goes away
//! (the channel closes), when the engine stops, or when the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use social_studio_storage::{Event, PenName};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::error::ApiError;
use super::extract::{ApiQuery, PenPath};
use super::AppState;
use crate::studio::views::EventView;
use crate::studio::Studio;

/// How many stored events one read of the backlog takes.
const PAGE: usize = 256;
/// Events queued for a slow client before the task waits for it.
const BUFFER: usize = 64;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// For clients that cannot set the `Last-Event-ID` header on their first connect;
    /// the header wins when both are given.
    #[serde(default)]
    pub(crate) last_event_id: Option<String>,
}

/// Where to resume: the `Last-Event-ID` header, else `?last_event_id=`, else live only.
fn resume_after(headers: &HeaderMap, query: &EventsQuery) -> Result<Option<u64>, ApiError> {
    let raw = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().map_err(|_| invalid_last_event_id())?.to_string()),
        None => query.last_event_id.clone(),
    };
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| invalid_last_event_id()),
    }
}

fn invalid_last_event_id() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_last_event_id",
        "Last-Event-ID must be the id of an event this stream sent (a non-negative integer)",
    )
}

pub(super) type BoxedEvents =
    std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>>;
pub(super) type EventStream = Sse<axum::response::sse::KeepAliveStream<BoxedEvents>>;

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id: the stored events after it come first, then live ones; if retention has purged events after it, an `event: gap` (no id, data `{\"last_event_id\", \"purged_through\"}`) comes first"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "server-sent events: `id: <seq>`, `event: <kind>`, `data: <event JSON>`; after a resume from before what retention purged, first `event: gap`", content_type = "text/event-stream"),
        (status = 400, description = "invalid_last_event_id", body = super::error::ErrorBody),
        (status = 401, description = "no or wrong admin token", body = super::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn all(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<EventStream, ApiError> {
    let since = resume_after(&headers, &query)?;
    Ok(open(&state, since, None))
}

#[utoipa::path(
    get,
    path = "/v1/pen-names/{pen}/events",
    tag = "events",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id (an `event: gap` first if retention purged events after it)"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "this pen name's events only, as server-sent events", content_type = "text/event-stream"),
        (status = 400, description = "invalid pen name or Last-Event-ID", body = super::error::ErrorBody),
        (status = 401, description = "no or wrong admin token", body = super::error::ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name = %pen))]
pub(crate) async fn of_pen(
    State(state): State<AppState>,
    PenPath(pen): PenPath,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<EventStream, ApiError> {
    let since = resume_after(&headers, &query)?;
    Ok(open(&state, since, Some(pen)))
}

/// Subscribes (now, before the backlog is read), then hands the rest to a task.
pub(super) fn open(state: &AppState, since: Option<u64>, only: Option<PenName>) -> EventStream {
    let live = state.studio.subscribe();
    let (tx, rx) = mpsc::channel(BUFFER);
    let pump = Pump {
        studio: state.studio.clone(),
        only,
        tx,
        seam: since.unwrap_or(0),
        seen: since,
    };
    tokio::spawn(pump.run(
        live,
        since.is_some(),
        [state.closing.subscribe(), state.studio.closing_signal()],
    ));
    let stream: BoxedEvents = Box::pin(ReceiverStream::new(rx).map(Ok));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Why a stream stopped early.
enum Stop {
    ClientGone,
    StoreFailed,
}

/// One stream's state.
struct Pump {
    studio: Studio,
    /// Only this pen name's events, when set.
    only: Option<PenName>,
    tx: mpsc::Sender<SseEvent>,
    /// The highest sequence number read from the store: a live event at or below it has
    /// already been sent (or filtered out).
    seam: u64,
    /// The highest sequence number handled, from either source; where a replay after a
    /// lag starts. `None` until the first event for a stream that started live.
    seen: Option<u64>,
}

impl Pump {
    async fn run(
        mut self,
        mut live: broadcast::Receiver<Event>,
        replay_first: bool,
        [mut server, mut studio]: [watch::Receiver<bool>; 2],
    ) {
        if replay_first && self.replay().await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                () = server_closing(&mut server) => return,
                () = server_closing(&mut studio) => return,
                () = self.tx.closed() => return,
                received = live.recv() => match received {
                    Ok(event) => {
                        if event.seq <= self.seam {
                            continue;
                        }
                        self.seen = Some(self.seen.map_or(event.seq, |s| s.max(event.seq)));
                        if self.send(&event).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event stream fell behind; replaying from the store");
                        if self.seen.is_none() {
                            // Nothing handled yet, so no position to replay from: what
                            // was missed predates anything this client asked for.
                            tracing::warn!(missed, "a live-only event stream lagged before its first event");
                            continue;
                        }
                        if self.replay().await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Sends the stored events after `seen`, page by page, and moves the seam past them —
    /// first a `gap` if retention purged some of them.
    async fn replay(&mut self) -> Result<(), Stop> {
        let mut position = self.seen.unwrap_or(0);
        let purged = self.studio.events_purged_through().await.map_err(|e| {
            tracing::error!(error = %e, "cannot read how far events were purged for the stream");
            Stop::StoreFailed
        })?;
        if purged > position {
            tracing::debug!(
                last_event_id = position,
                purged_through = purged,
                "a stream resumes from before what retention purged"
            );
            if let Some(gap) = gap(position, purged) {
                self.tx.send(gap).await.map_err(|_| Stop::ClientGone)?;
            }
            position = purged;
        }
        loop {
            let page = self
                .studio
                .events_after(position, PAGE)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot read stored events for the stream");
                    Stop::StoreFailed
                })?;
            for event in &page {
                position = position.max(event.seq);
                self.send(event).await?;
            }
            self.seam = self.seam.max(position);
            self.seen = Some(position);
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }

    async fn send(&self, event: &Event) -> Result<(), Stop> {
        if let Some(pen) = &self.only {
            if &event.connection.pen_name != pen {
                return Ok(());
            }
        }
        let Some(sse) = to_sse(event) else {
            return Ok(());
        };
        self.tx.send(sse).await.map_err(|_| Stop::ClientGone)
    }
}

/// Completes when the server (the router's shutdown signal) or the studio starts shutting
/// down. A router dropped without a shutdown (a test's `oneshot`) leaves its streams
/// running: the response owns them.
async fn server_closing(closing: &mut watch::Receiver<bool>) {
    loop {
        if *closing.borrow_and_update() {
            return;
        }
        if closing.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `event: gap`, `data: {"last_event_id": N, "purged_through": P}`, without an id: the
/// events after N up to P were purged by retention.
fn gap(last_event_id: u64, purged_through: u64) -> Option<SseEvent> {
    SseEvent::default()
        .event("gap")
        .json_data(serde_json::json!({
            "last_event_id": last_event_id,
            "purged_through": purged_through,
        }))
        .ok()
}

/// `id: <seq>`, `event: <kind>`, `data: <EventView JSON>`.
fn to_sse(event: &Event) -> Option<SseEvent> {
    let view = EventView::from(event);
    let kind = serde_json::to_value(view.kind).ok()?;
    let kind = kind.as_str().unwrap_or("event").to_string();
    match SseEvent::default()
        .id(event.seq.to_string())
        .event(kind)
        .json_data(&view)
    {
        Ok(sse) => Some(sse),
        Err(e) => {
            tracing::error!(error = %e, seq = event.seq, "an event could not be encoded");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn resume_position_comes_from_the_header_first() {
        let mut headers = HeaderMap::new();
        let query = EventsQuery {
            last_event_id: Some("7".into()),
        };
        assert_eq!(resume_after(&headers, &query).unwrap(), Some(7));
        headers.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(resume_after(&headers, &query).unwrap(), Some(42));
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(
            resume_after(&headers, &query).unwrap_err().code(),
            "invalid_last_event_id"
        );
        assert_eq!(
            resume_after(&HeaderMap::new(), &EventsQuery::default()).unwrap(),
            None
        );
    }
}
