//! The memory the engine may hold in fetched media at once, across every platform.
//!
//! A platform that wants the bytes uploaded (a TikTok or YouTube video, an image for X,
//! LinkedIn or Bluesky) has them fetched from the author's URL and held in memory until
//! the upload ends. Each platform bounds one file (TikTok 512 MiB, YouTube 256 MiB) and
//! each queue runs several calls at once, so without a common bound the engine could try
//! to hold gigabytes. A fetch reserves its bytes here before it reads the body — the
//! announced length, or the platform's limit when the host announces none, given back
//! down to the real size once read — and waits, in arrival order, while the budget is
//! taken; the reservation is released when the fetched bytes are dropped, after the
//! upload. A file larger than the whole budget is refused before anything is read.
//!
//! Configuration key `media_memory_bytes` (default [`DEFAULT_MEDIA_MEMORY_BYTES`]).

use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default budget: 1 GiB, room for two of the largest videos any platform takes.
pub const DEFAULT_MEDIA_MEMORY_BYTES: usize = 1024 * 1024 * 1024;

/// The budget is counted in units of this many bytes (a reservation rounds up).
const UNIT: usize = 1024;

/// The shared budget. Cheap to clone; clones share one budget.
#[derive(Clone)]
pub struct MediaBudget {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    capacity_units: usize,
    /// Units granted to reservations (a waiter's partly assigned permits are not).
    held_units: AtomicUsize,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for MediaBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaBudget")
            .field("capacity", &self.capacity())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Default for MediaBudget {
    fn default() -> MediaBudget {
        MediaBudget::new(DEFAULT_MEDIA_MEMORY_BYTES)
    }
}

/// Bytes reserved in a [`MediaBudget`]; given back when dropped.
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    budget: Arc<Inner>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.permit.num_permits().saturating_mul(UNIT))
            .finish()
    }
}

impl Reservation {
    /// Gives back all but what `bytes` need.
    fn shrink_to(&mut self, bytes: usize) {
        let keep = units(bytes).min(self.permit.num_permits());
        let surplus = self.permit.num_permits() - keep;
        if surplus > 0 {
            self.budget.held_units.fetch_sub(surplus, Ordering::SeqCst);
            drop(self.permit.split(surplus));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget
            .held_units
            .fetch_sub(self.permit.num_permits(), Ordering::SeqCst);
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT).max(1)
}

impl MediaBudget {
    /// A budget of `bytes` (rounded down to whole KiB, at least one).
    pub fn new(bytes: usize) -> MediaBudget {
        let capacity_units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        MediaBudget {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(capacity_units)),
                capacity_units,
                held_units: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The whole budget, in bytes: no single file larger than this is ever fetched.
    pub fn capacity(&self) -> usize {
        self.inner.capacity_units.saturating_mul(UNIT)
    }

    /// Bytes reserved now, by fetches reading and by fetched files not yet dropped.
    pub fn in_use(&self) -> usize {
        self.inner
            .held_units
            .load(Ordering::SeqCst)
            .saturating_mul(UNIT)
    }

    /// Fetches waiting for room now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Reserves `bytes`, waiting (first come, first served) until they are free. `None`
    /// when `bytes` exceed the whole budget: such a file can never be held.
    pub async fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let needed = units(bytes);
        if needed > self.inner.capacity_units {
            return None;
        }
        let needed = u32::try_from(needed).ok()?;
        let permits = self.inner.permits.clone();
        let permit = match permits.clone().try_acquire_many_owned(needed) {
            Ok(permit) => permit,
            Err(_) => {
                self.inner.waiting.fetch_add(1, Ordering::SeqCst);
                let _done = Decrement(&self.inner.waiting);
                tracing::debug!(
                    bytes,
                    in_use = self.in_use(),
                    capacity = self.capacity(),
                    "media waits for room in the media memory budget"
                );
                // The semaphore is never closed.
                permits.acquire_many_owned(needed).await.ok()?
            }
        };
        self.inner
            .held_units
            .fetch_add(needed as usize, Ordering::SeqCst);
        Some(Reservation {
            permit,
            budget: self.inner.clone(),
        })
    }
}

/// Counts a waiter out however its wait ends (done, or its future dropped).
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fetched file: its bytes, held against the [`MediaBudget`] until dropped. Sending it
/// shares the bytes rather than copying them ([`MediaBytes::body`],
/// [`MediaBytes::slice`]); keep it alive until the upload's answer, so that the budget
/// counts the bytes the upload still holds.
#[derive(Debug)]
pub struct MediaBytes {
    bytes: Bytes,
    _reserved: Reservation,
}

impl MediaBytes {
    pub(super) fn new(bytes: Vec<u8>, mut reserved: Reservation) -> MediaBytes {
        reserved.shrink_to(bytes.len());
        MediaBytes {
            bytes: Bytes::from(bytes),
            _reserved: reserved,
        }
    }

    /// The whole file as a request body (shared, not copied).
    pub fn body(&self) -> reqwest::Body {
        reqwest::Body::from(self.bytes.clone())
    }

    /// Part of the file (shared, not copied); `None` outside it.
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        (range.start <= range.end && range.end <= self.bytes.len()).then(|| self.bytes.slice(range))
    }
}

impl Deref for MediaBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reservation_waits_for_room_and_is_given_back_when_dropped() {
        let budget = MediaBudget::new(10 * UNIT);
        let first = budget.reserve(6 * UNIT).await.unwrap();
        assert_eq!(budget.in_use(), 6 * UNIT);
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(6 * UNIT).await.map(|_| ()) })
        };
        let ms = std::time::Duration::from_millis;
        crate::wait::poll_until(ms(5_000), ms(2), async || {
            (budget.waiting() == 1).then_some(())
        })
        .await
        .expect("the second reservation waits");
        assert_eq!(budget.in_use(), 6 * UNIT, "the second waits instead");
        drop(first);
        assert!(waiting.await.unwrap().is_some());
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.waiting(), 0);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_never_reserved() {
        let budget = MediaBudget::new(10 * UNIT);
        assert!(budget.reserve(10 * UNIT + 1).await.is_none());
        assert!(budget.reserve(10 * UNIT).await.is_some());
    }

    #[tokio::test]
    async fn fetched_bytes_keep_only_what_they_hold() {
        let budget = MediaBudget::new(100 * UNIT);
        let reserved = budget.reserve(50 * UNIT).await.unwrap();
        let media = MediaBytes::new(vec![7; 3 * UNIT + 1], reserved);
        assert_eq!(budget.in_use(), 4 * UNIT, "rounded up to whole units");
        assert_eq!(media.slice(0..2).as_deref(), Some(&[7u8, 7][..]));
        assert!(media.slice(0..3 * UNIT + 2).is_none());
        drop(media);
        assert_eq!(budget.in_use(), 0);
    }

    /// Fetches through [`super::super::fetch_media`] against files on a loopback server.
    mod fetching {
        use super::super::super::{fetch_media, GuardedClient, Reach};
        use super::super::*;
        use axum::body::Body;
        use axum::routing::get;
        use social_studio_actors::PortError;
        use social_studio_storage::{Media, MediaKind};
        use std::time::Duration;

        const MIB: usize = 1024 * 1024;

        /// `/announced/{n}`: n KiB with a Content-Length; `/unannounced/{n}`: the same,
        /// streamed in 16 KiB pieces without one.
        async fn serve() -> String {
            async fn announced(
                axum::extract::Path(kib): axum::extract::Path<usize>,
            ) -> impl axum::response::IntoResponse {
                ([("content-type", "video/mp4")], vec![1u8; kib * 1024])
            }
            async fn unannounced(
                axum::extract::Path(kib): axum::extract::Path<usize>,
            ) -> impl axum::response::IntoResponse {
                let pieces = (0..kib / 16).map(|_| Ok::<_, std::io::Error>(vec![2u8; 16 * 1024]));
                (
                    [("content-type", "video/mp4")],
                    Body::from_stream(tokio_stream::iter(pieces)),
                )
            }
            let app = axum::Router::new()
                .route("/announced/{kib}", get(announced))
                .route("/unannounced/{kib}", get(unannounced));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}")
        }

        fn client(budget: &MediaBudget) -> GuardedClient {
            GuardedClient::new(Duration::from_secs(30), Reach::Any)
                .unwrap()
                .with_media_budget(budget.clone())
        }

        fn video(url: String) -> Media {
            Media {
                url,
                kind: MediaKind::Video,
                alt: None,
            }
        }

        async fn fetch(
            client: &GuardedClient,
            url: String,
        ) -> Result<(MediaBytes, String), PortError> {
            fetch_media(client, &video(url), |t| Ok((t.to_owned(), 64 * MIB))).await
        }

        /// Two videos that do not both fit: the second is not read until the first,
        /// uploaded, is dropped.
        #[tokio::test]
        async fn a_video_waits_while_others_hold_the_budget() {
            let base = serve().await;
            let budget = MediaBudget::new(3 * MIB);
            let client = client(&budget);
            let (first, _) = fetch(&client, format!("{base}/announced/2048"))
                .await
                .unwrap();
            assert_eq!(budget.in_use(), 2 * MIB);
            let second = {
                let client = client.clone();
                let url = format!("{base}/announced/2048");
                tokio::spawn(async move { fetch(&client, url).await.map(|(bytes, _)| bytes.len()) })
            };
            let ms = Duration::from_millis;
            crate::wait::poll_until(ms(10_000), ms(5), async || {
                (budget.waiting() == 1).then_some(())
            })
            .await
            .expect("the second video waits for room");
            assert_eq!(budget.in_use(), 2 * MIB, "never more than the budget held");
            assert!(!second.is_finished());
            drop(first);
            assert_eq!(second.await.unwrap().unwrap(), 2 * MIB);
            assert_eq!(
                budget.in_use(),
                0,
                "the second's bytes were dropped with it"
            );
        }

        #[tokio::test]
        async fn a_file_larger_than_the_whole_budget_is_refused_by_name() {
            let base = serve().await;
            let budget = MediaBudget::new(MIB);
            let client = client(&budget);
            for path in ["announced", "unannounced"] {
                let refused = fetch(&client, format!("{base}/{path}/2048"))
                    .await
                    .unwrap_err();
                let PortError::ContentRejected(reason) = refused else {
                    panic!("{path}: {refused:?}");
                };
                let message = format!("{reason:?}");
                assert!(message.contains("media_memory_bytes"), "{path}: {message}");
                assert_eq!(budget.in_use(), 0, "{path}");
            }
        }

        /// Without a length, room for the platform's limit is taken while reading, and
        /// all but the real size given back.
        #[tokio::test]
        async fn an_unannounced_file_keeps_only_its_size() {
            let base = serve().await;
            let budget = MediaBudget::new(128 * MIB);
            let client = client(&budget);
            let (bytes, _) = fetch(&client, format!("{base}/unannounced/160"))
                .await
                .unwrap();
            assert_eq!(bytes.len(), 160 * 1024);
            assert_eq!(budget.in_use(), 160 * 1024);
        }
    }
}
