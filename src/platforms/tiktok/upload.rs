//! The video for a `FILE_UPLOAD`: fetched from its public URL, then cut into the chunks
//! TikTok's media transfer guide allows.
//!
//! Chunk rules [O content-posting-api-media-transfer-guide]: a video under 5 MB goes
//! whole, as one chunk; otherwise every chunk is 5–64 MB, `total_chunk_count =
//! floor(video_size / chunk_size)`, and the last chunk takes the remainder (at most
//! 128 MB); 1 to 1000 chunks, uploaded in order, each a `PUT` with `Content-Range:
//! bytes {first}-{last}/{total}`.

use social_studio_actors::PortError;
use social_studio_storage::Media;

use super::super::outbound::fetch_media;

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

/// Fetches the video (see [`fetch_media`]): MP4, WebM or MOV (an untyped body is sent as
/// MP4), at most [`MAX_UPLOAD_BYTES`].
pub(super) async fn fetch_video(
    client: &super::super::outbound::GuardedClient,
    media: &Media,
) -> Result<(super::super::outbound::MediaBytes, String), PortError> {
    fetch_media(client, media, |content_type| match content_type {
        "video/mp4" | "video/quicktime" | "video/webm" => {
            Ok((content_type.to_owned(), MAX_UPLOAD_BYTES))
        }
        // TikTok takes MP4 (recommended), WebM and MOV; an untyped body is sent as MP4.
        "application/octet-stream" => Ok(("video/mp4".to_owned(), MAX_UPLOAD_BYTES)),
        other => Err(format!(
            "is not a video TikTok takes (MP4, WebM or MOV): {other}"
        )),
    })
    .await
}

/// How long an MP4 or MOV video lasts, from its movie header (`moov/mvhd`): `None` when
/// the header cannot be read (WebM, or a file the parser does not take), and then TikTok
/// judges the length itself (`duration_check_failed`).
pub(super) fn video_duration(bytes: &[u8]) -> Option<std::time::Duration> {
    // The parser trusts box sizes; a malformed file must not take the adapter down.
    std::panic::catch_unwind(|| {
        let reader =
            mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), bytes.len() as u64).ok()?;
        let mvhd = &reader.moov.mvhd;
        let millis = u128::from(mvhd.duration) * 1000 / u128::from(mvhd.timescale).max(1);
        Some(std::time::Duration::from_millis(
            u64::try_from(millis).unwrap_or(u64::MAX),
        ))
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_readable_mp4_has_no_length_and_does_not_panic() {
        assert_eq!(video_duration(b""), None);
        assert_eq!(video_duration(b"\x1aE\xdf\xa3 a WebM header"), None);
        // A box claiming more than the file holds.
        let mut lying = vec![0xff, 0xff, 0xff, 0xf0];
        lying.extend_from_slice(b"moov");
        lying.extend_from_slice(&[0; 64]);
        assert_eq!(video_duration(&lying), None);
    }

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
