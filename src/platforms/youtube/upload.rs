//! YouTube's resumable upload (Google's resumable protocol for `videos.insert`).
//!
//! 1. The video is fetched from its public URL (nothing has reached YouTube yet, so no
//!    failure here can have published anything).
//! 2. `POST {api_base}/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`
//!    with the metadata as JSON and `X-Upload-Content-Length` / `X-Upload-Content-Type`;
//!    Google answers 200 with the session URI in `Location`. This is the call Google
//!    charges the quota for.
//! 3. The bytes, `PUT` to the session URI in chunks (multiples of 256 KiB but the last)
//!    with `Content-Range: bytes FIRST-LAST/TOTAL`. Google answers 308 Resume Incomplete
//!    with `Range: bytes=0-N` (what it kept) until the last chunk, then 200 or 201 with
//!    the video resource.
//! 4. A chunk whose answer is lost (a dropped connection, a 5xx) is followed by a status
//!    query — an empty `PUT` with `Content-Range: bytes */TOTAL` — and the upload goes on
//!    from the byte after Google's `Range`, which may be before the chunk it lost.
//!
//! A video is created only by the last byte, so a failure is `maybe_delivered` only when
//! the chunk that failed carried it.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use serde::Deserialize;
use serde_json::{json, Value};
use social_studio_actors::PortError;
use social_studio_storage::{Grant, Media, MediaKind, Post, Reason, ReasonCode};

use super::{description, Call, YoutubeAdapter};
use crate::platforms::outbound::{self, body_excerpt, MediaBytes};

/// Google wants every chunk but the last to be a multiple of 256 KiB.
pub const CHUNK_UNIT: usize = 256 * 1024;
/// The default chunk: large enough that a video takes few requests, small enough that a
/// lost chunk costs little to send again.
pub const DEFAULT_CHUNK_SIZE: usize = 32 * CHUNK_UNIT;
/// The engine holds the video in memory while uploading it; this bounds that.
pub const DEFAULT_MAX_VIDEO_BYTES: usize = 256 * 1024 * 1024;
/// Status queries after lost chunk answers, per upload, before giving up for now.
const MAX_RESUMES: u32 = 5;
/// First wait after a 5xx on a chunk; doubled each time (Google's advice for resumable
/// uploads is exponential backoff).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// YouTube's category "People & Blogs": a category is part of every insert in Google's
/// own samples, and this one fits an author's post.
const DEFAULT_CATEGORY_ID: &str = "22";

/// How uploads are sent and what a video is published as.
#[derive(Debug, Clone)]
pub(super) struct UploadSettings {
    pub(super) chunk_size: usize,
    pub(super) privacy_status: String,
    pub(super) max_video_bytes: usize,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            chunk_size: DEFAULT_CHUNK_SIZE,
            privacy_status: "public".into(),
            max_video_bytes: DEFAULT_MAX_VIDEO_BYTES,
        }
    }
}

/// `bytes` rounded down to a multiple of [`CHUNK_UNIT`], at least one unit.
pub(super) fn chunk_size(bytes: usize) -> usize {
    (bytes / CHUNK_UNIT).max(1) * CHUNK_UNIT
}

/// The created video, as far as the receipt needs it.
#[derive(Debug, Deserialize)]
struct Video {
    id: String,
}

/// Where the upload stands after one chunk or status query.
enum Progress {
    /// Google kept bytes up to (not including) this offset.
    Kept(usize),
    /// The last byte arrived: the video exists.
    Done(String),
}

impl YoutubeAdapter {
    /// Fetches the post's video, starts a resumable session and sends the bytes; returns
    /// the new video's id.
    pub(super) async fn upload_video(
        &self,
        grant: &Grant,
        post: &Post,
    ) -> Result<String, PortError> {
        let Some(media) = post
            .content
            .media
            .iter()
            .find(|media| media.kind == MediaKind::Video)
        else {
            return Err(PortError::ContentRejected(Reason::with_platform_message(
                ReasonCode::ContentRejected,
                "a YouTube post needs a video",
            )));
        };
        let (bytes, content_type) = self.fetch_video(media).await?;
        let session = self
            .start_session(grant, post, bytes.len(), &content_type)
            .await?;
        self.send_bytes(grant, &session, &bytes, &content_type)
            .await
    }

    /// Fetches the video from its public URL, bounded by the configured size (see
    /// [`outbound::fetch_media`]).
    async fn fetch_video(&self, media: &Media) -> Result<(MediaBytes, String), PortError> {
        let limit = self.upload.max_video_bytes;
        outbound::fetch_media(&self.media, media, |content_type| {
            if content_type.starts_with("video/") || content_type == "application/octet-stream" {
                Ok((content_type.to_owned(), limit))
            } else {
                Err(format!("is not a video ({content_type})"))
            }
        })
        .await
    }

    /// The metadata Google receives.
    fn metadata(&self, post: &Post) -> Value {
        let title = post.content.title.as_deref().unwrap_or_default().trim();
        json!({
            "snippet": {
                "title": title,
                "description": description(&post.content),
                "categoryId": DEFAULT_CATEGORY_ID,
            },
            "status": {
                "privacyStatus": self.upload.privacy_status,
            },
        })
    }

    /// Starts the resumable session; returns its URI.
    async fn start_session(
        &self,
        grant: &Grant,
        post: &Post,
        length: usize,
        content_type: &str,
    ) -> Result<String, PortError> {
        let now = self.clock.now();
        // Spent when asked, as Google charges it; a concurrent upload may have taken
        // the last of the day since the check in `publish`.
        if !self.quota.try_spend(now, self.quota.policy().upload_units) {
            return Err(self.quota_spent(now));
        }
        let request = self
            .http
            .post(self.url("/upload/youtube/v3/videos"))
            .query(&[("uploadType", "resumable"), ("part", "snippet,status")])
            .bearer_auth(grant.access_token.expose())
            .header("X-Upload-Content-Length", length.to_string())
            .header("X-Upload-Content-Type", content_type)
            .json(&self.metadata(post));
        let call = self.meter.call(outbound::Endpoint::Publish);
        let (status, headers, body) = outbound::exchange(request, call)
            .await
            .map_err(not_published)?;
        if !status.is_success() {
            return Err(not_published(self.classify(
                status,
                &headers,
                &body,
                Call::Upload,
            )));
        }
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| PortError::Unavailable {
                detail: format!(
                    "YouTube started an upload session without a Location (HTTP {status})"
                ),
                maybe_delivered: false,
            })?;
        let base = url::Url::parse(&self.api_base).map_err(|error| PortError::Unavailable {
            detail: format!("api_base {:?} is not a URL: {error}", self.api_base),
            maybe_delivered: false,
        })?;
        let session = base
            .join(location)
            .map_err(|error| PortError::Unavailable {
                detail: format!("YouTube's session URI {location:?} is not a URL: {error}"),
                maybe_delivered: false,
            })?;
        if !matches!(session.scheme(), "https" | "http") {
            return Err(PortError::Unavailable {
                detail: format!("YouTube's session URI {location:?} is not http(s)"),
                maybe_delivered: false,
            });
        }
        Ok(session.into())
    }

    /// Sends the bytes in chunks, resuming after lost chunks; returns the video id.
    async fn send_bytes(
        &self,
        grant: &Grant,
        session: &str,
        bytes: &MediaBytes,
        content_type: &str,
    ) -> Result<String, PortError> {
        let total = bytes.len();
        let mut offset = 0;
        let mut resumes = 0;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let end = (offset + self.upload.chunk_size).min(total);
            let carries_last_byte = end == total;
            let request = self
                .http
                .put(session)
                .bearer_auth(grant.access_token.expose())
                .header(CONTENT_TYPE, content_type)
                .header(
                    CONTENT_RANGE,
                    format!("bytes {offset}-{}/{total}", end.saturating_sub(1)),
                )
                .body(bytes.slice(offset..end).unwrap_or_default());
            let lost = match self.progress(request, carries_last_byte).await {
                Ok(Progress::Done(id)) => return Ok(id),
                Ok(Progress::Kept(kept)) => {
                    offset = kept.min(total);
                    continue;
                }
                Err(lost @ PortError::Unavailable { .. }) => lost,
                Err(other) => return Err(other),
            };
            if resumes >= MAX_RESUMES {
                return Err(lost);
            }
            resumes += 1;
            if is_server_answer(&lost) {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            tracing::info!(platform = "youtube", offset, %lost, "a chunk was lost; asking where the upload stands");
            let status = self
                .http
                .put(session)
                .bearer_auth(grant.access_token.expose())
                .header(CONTENT_LENGTH, "0")
                .header(CONTENT_RANGE, format!("bytes */{total}"));
            match self.progress(status, carries_last_byte).await {
                Ok(Progress::Done(id)) => return Ok(id),
                Ok(Progress::Kept(kept)) => offset = kept.min(total),
                Err(PortError::Unavailable { .. }) if resumes < MAX_RESUMES => {
                    // Try the status query again on the next turn, from where we were.
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Sends one chunk or status query and reads where the upload stands.
    async fn progress(
        &self,
        request: reqwest::RequestBuilder,
        carries_last_byte: bool,
    ) -> Result<Progress, PortError> {
        let lost = |error: PortError| match error {
            PortError::Unavailable { detail, .. } => PortError::Unavailable {
                detail,
                maybe_delivered: carries_last_byte,
            },
            other => other,
        };
        let call = self.meter.call(outbound::Endpoint::MediaUpload);
        let (status, headers, body) = outbound::exchange(request, call).await.map_err(lost)?;
        match status.as_u16() {
            200 | 201 => {
                let video: Video =
                    serde_json::from_slice(&body).map_err(|error| PortError::Unavailable {
                        // The video exists, but without its id it cannot be confirmed.
                        detail: format!(
                            "YouTube's answer to the upload could not be read ({}): {}",
                            outbound::json_failure(&error),
                            body_excerpt(&body)
                        ),
                        maybe_delivered: true,
                    })?;
                Ok(Progress::Done(video.id))
            }
            308 => Ok(Progress::Kept(kept_until(&headers))),
            404 | 410 => Err(PortError::Unavailable {
                detail: format!(
                    "YouTube's upload session expired (HTTP {status}); the upload starts over"
                ),
                maybe_delivered: false,
            }),
            _ => Err(lost(self.classify(status, &headers, &body, Call::Upload))),
        }
    }
}

/// The offset after the bytes Google's `Range: bytes=0-N` says it kept; 0 without one.
fn kept_until(headers: &HeaderMap) -> usize {
    headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(_, last)| last.trim().parse::<usize>().ok())
        .map_or(0, |last| last.saturating_add(1))
}

/// Whether a lost chunk was answered by a server (a 5xx), which asks for a backoff,
/// rather than lost in transport.
fn is_server_answer(error: &PortError) -> bool {
    matches!(error, PortError::Unavailable { detail, .. } if detail.starts_with("HTTP 5"))
}

/// Starting a session publishes nothing, whatever happened to its answer.
fn not_published(error: PortError) -> PortError {
    match error {
        PortError::Unavailable { detail, .. } => PortError::Unavailable {
            detail,
            maybe_delivered: false,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_range_header_says_where_to_resume() {
        let mut headers = HeaderMap::new();
        assert_eq!(kept_until(&headers), 0);
        headers.insert(RANGE, HeaderValue::from_static("bytes=0-262143"));
        assert_eq!(kept_until(&headers), 262_144);
    }

    #[test]
    fn chunks_are_multiples_of_256_kib() {
        assert_eq!(chunk_size(1), CHUNK_UNIT);
        assert_eq!(chunk_size(3 * CHUNK_UNIT + 5), 3 * CHUNK_UNIT);
    }
}
