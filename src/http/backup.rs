//! `GET /v1/admin/backup`: a consistent copy of the store, as a backup archive
//! (`social_studio_storage::archive`), for `social-studio backup`.
//!
//! The store copies its records with commits held ([`Store::backup`]), so the copy is
//! written to a spool file first — an unnamed temporary file in the data directory, gone
//! when the answer is sent or dropped — and commits wait for the disk, never for a slow
//! client. The spool is then streamed with its length, so a client can tell a cut-short
//! answer from a whole one (and the archive's own checksum tells it too).
//!
//! [`Store::backup`]: social_studio_storage::Store::backup

use std::io::{Read, Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use tokio_stream::wrappers::ReceiverStream;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::studio::EngineRefusal;

// Only described in the OpenAPI document, never built: the handler streams the spool file.
/// A backup archive: bytes in the format `social-studio restore` reads (magic `SSBACKUP`,
/// versions, every record as stored, a SHA-256 at the end).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(crate) struct BackupArchive(Vec<u8>);

/// Bytes per chunk of the streamed archive.
const CHUNK: usize = 64 * 1024;

#[utoipa::path(
    get,
    path = "/v1/admin/backup",
    tag = "status",
    responses(
        (status = 200, description = "a backup archive of the whole store, taken with commits held so no change is half in it; grants stay sealed and the master key is not in it (see the README's Backup and restore)", content_type = "application/octet-stream", body = BackupArchive),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 503, description = "storage_error: the copy could not be made (the store or the disk under the data directory failed)", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn backup(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.studio.store().clone();
    let spool_dir = state.studio.data_dir();
    let runtime = tokio::runtime::Handle::current();
    let spooled = tokio::task::spawn_blocking(move || {
        let spool_failed = |e: std::io::Error| {
            ApiError::internal(format!(
                "cannot write the backup's spool file in {}: {e}",
                spool_dir.display()
            ))
        };
        let mut file = tempfile::tempfile_in(&spool_dir).map_err(spool_failed)?;
        let summary = runtime
            .block_on(store.backup(&mut file))
            .map_err(|e| ApiError::from(EngineRefusal::Storage(e)))?;
        file.seek(SeekFrom::Start(0)).map_err(spool_failed)?;
        Ok::<_, ApiError>((file, summary))
    })
    .await
    .map_err(|e| ApiError::internal(format!("the backup task failed: {e}")))?;
    let (mut file, summary) = spooled?;
    tracing::info!(
        records = summary.records,
        bytes = summary.bytes,
        commits_held_ms = summary.commits_held.as_millis() as u64,
        "backup taken"
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || loop {
        let mut buf = vec![0u8; CHUNK];
        let sent = match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                tx.blocking_send(Ok(Bytes::from(buf)))
            }
            Err(e) => tx.blocking_send(Err(e)),
        };
        if sent.is_err() {
            // The client went away; dropping the file removes the spool.
            return;
        }
    });
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(summary.bytes));
    let name = format!(
        "attachment; filename=\"social-studio-{}.ssbackup\"",
        state.studio.now().unix_millis()
    );
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
