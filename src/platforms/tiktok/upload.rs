//! The video for a `FILE_UPLOAD`: fetched from its public URL, then cut into the chunks
//! TikTok's media transfer guide allows.
//!
//! Chunk rules [O content-posting-api-media-transfer-guide]: a video under 5 MB goes
//! whole, as one chunk; otherwise every chunk is 5–64 MB, `total_chunk_count =
//! floor(video_size / chunk_size)`, and the last chunk takes the remainder (at most
//! 128 MB); 1 to 1000 chunks, uploaded in order, each a `PUT` with `Content-Range:
//! bytes {first}-{last}/{total}`.

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use social_studio_actors::PortError;
use social_studio_storage::{Media, Reason, ReasonCode};

use super::super::http::describe;

pub(super) const MB: u64 = 1024 * 1024;
pub(super) const MIN_CHUNK: u64 = 5 * MB;
pub(super) const MAX_CHUNK: u64 = 64 * MB;
const MAX_CHUNKS: u64 = 1000;

/// The most the engine buffers for one upload. TikTok takes up to 4 GB; the engine
/// holds the video in memory between the fetch and the upload, so it stops well short.
pub const MAX_UPLOAD_BYTES: usize = 512 * 1024 * 1024;

/// How a video of `size` bytes is cut: `(chunk_size, total_chunk_count)`.
pub(super) fn plan(size: u64, preferred_chunk: u64) -> (u64, u64) {
    if size < MIN_CHUNK {
        return (size, 1);
    }
    let mut chunk = preferred_chunk.clamp(MIN_CHUNK, MAX_CHUNK).min(size);
    // Never more than 1000 chunks: grow the chunk until the count fits.
    if size / chunk > MAX_CHUNKS {
        chunk = size.div_ceil(MAX_CHUNKS).min(MAX_CHUNK);
    }
    (chunk, (size / chunk).max(1))
}

/// The byte ranges of each chunk, last one holding the remainder.
pub(super) fn ranges(size: u64, chunk: u64, count: u64) -> Vec<(u64, u64)> {
    (0..count)
        .map(|i| {
            let first = i * chunk;
            let last = if i + 1 == count {
                size - 1
            } else {
                first + chunk - 1
            };
            (first, last)
        })
        .collect()
}

/// Fetches the video. Nothing has reached TikTok yet, so no failure here can have
/// published anything: a refusal of the video is `ContentRejected`, a passing fault of
/// its host `Unavailable` (never delivered). Redirects are not followed, and the body is
/// read in chunks so that a host lying about its length cannot make the engine buffer
/// more than [`MAX_UPLOAD_BYTES`].
pub(super) async fn fetch_video(
    client: &reqwest::Client,
    media: &Media,
) -> Result<(Vec<u8>, String), PortError> {
    let unusable = |why: String| {
        PortError::ContentRejected(Reason::with_platform_message(
            ReasonCode::ContentRejected,
            format!("the video at {} {why}", media.url),
        ))
    };
    let not_sent = |detail: String| PortError::Unavailable {
        detail,
        maybe_delivered: false,
    };
    let fetch_failed =
        |error: reqwest::Error| not_sent(format!("fetching {}: {}", media.url, describe(&error)));
    let mut response = client.get(&media.url).send().await.map_err(fetch_failed)?;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(not_sent(format!(
            "fetching {} answered HTTP {status}",
            media.url
        )));
    }
    if status.is_redirection() {
        return Err(unusable(format!(
            "redirects (HTTP {status}); redirects are not followed, so give the video's final address"
        )));
    }
    if !status.is_success() {
        return Err(unusable(format!("could not be fetched (HTTP {status})")));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let content_type = match content_type.as_str() {
        "video/mp4" | "video/quicktime" | "video/webm" => content_type,
        // TikTok takes MP4 (recommended), WebM and MOV; an untyped body is sent as MP4.
        "application/octet-stream" => "video/mp4".to_owned(),
        other => {
            return Err(unusable(format!(
                "is not a video TikTok takes (MP4, WebM or MOV): {other}"
            )))
        }
    };
    let too_large = || {
        unusable(format!(
            "is larger than the engine's upload limit of {MAX_UPLOAD_BYTES} bytes"
        ))
    };
    let announced = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|length| length > MAX_UPLOAD_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(MAX_UPLOAD_BYTES));
    while let Some(chunk) = response.chunk().await.map_err(fetch_failed)? {
        if bytes.len() + chunk.len() > MAX_UPLOAD_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(unusable("is empty".to_owned()));
    }
    Ok((bytes, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_videos_go_whole_and_large_ones_in_bounded_chunks() {
        assert_eq!(plan(1000, 10 * MB), (1000, 1));
        assert_eq!(plan(11 * MB, 5 * MB), (5 * MB, 2));
        assert_eq!(
            ranges(11 * MB, 5 * MB, 2),
            [(0, 5 * MB - 1), (5 * MB, 11 * MB - 1)]
        );
        // A preferred chunk outside 5–64 MB is brought inside.
        assert_eq!(plan(20 * MB, MB), (5 * MB, 4));
        assert_eq!(plan(300 * MB, 100 * MB), (64 * MB, 4));
        let (chunk, count) = plan(6 * MB, 10 * MB);
        assert_eq!((chunk, count), (6 * MB, 1));
    }
}
