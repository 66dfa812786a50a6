//! Health, readiness, the attention list, the supervisor's view of the actor tree, and
//! erasing a pen name.

use axum::extract::State;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use social_studio_actors::{BootState, QueueStats, TreeReport};
use social_studio_storage::Platform;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, PenPath};
use super::query::ConfirmQuery;
use super::AppState;
use crate::studio::schema::PlatformId;
use crate::studio::views::{AttentionItem, EngineAttentionItem, ErasureReport, UnreadableView};

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusBody {
    pub(crate) status: &'static str,
}

/// Readiness: `ready`, and — without failing it — how many stored records cannot be read.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadyBody {
    pub(crate) status: &'static str,
    pub(crate) unreadable_records: UnreadableCount,
}

/// A count and a code only: `/readyz` needs no token, so it names nothing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnreadableCount {
    pub(crate) count: usize,
    /// `record_unreadable` when `count` > 0, else null. The records are named in
    /// `/v1/supervisor` and the attention list.
    pub(crate) code: Option<&'static str>,
}

/// Why the engine is not ready, when it runs but cannot do its work:
/// `{"ready": false, "reason": {"code", "message", "remedy"}}`. Named by a code only:
/// `/readyz` needs no token (the store's own error is in the attention list).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnreadyBody {
    /// Always `false`.
    pub(crate) ready: bool,
    pub(crate) reason: UnreadyReason,
    /// While the engine starts (reason `booting`): how far the start has come.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub(crate) booting: Option<BootingBody>,
}

/// How far a start has come: its phase (`opening_store`, `starting_connections`,
/// `loading_posts`, `ready`), and the stored connections whose actor has started of how
/// many (`total` is null until the store has been read).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BootingBody {
    pub(crate) phase: &'static str,
    pub(crate) loaded: u64,
    pub(crate) total: Option<u64>,
}

impl From<BootState> for BootingBody {
    fn from(state: BootState) -> BootingBody {
        BootingBody {
            phase: state.phase.as_str(),
            loaded: state.loaded,
            total: state.total,
        }
    }
}

/// How long a client is told to wait before it asks again while the engine starts
/// (`Retry-After`, seconds): the interval the start logs its progress at.
pub(crate) const RETRY_AFTER_SECS: &str = "5";

/// `/readyz` while the engine starts: 503, reason `booting`, and how far it has come.
pub(crate) fn booting(state: BootState) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
        Json(NotReadyBody::Unready(UnreadyBody {
            ready: false,
            reason: UnreadyReason {
                code: "booting",
                message: "the engine is starting: the store is being opened, or its connections and posts loaded",
                remedy: "Wait: the engine is ready once every connection has its actor; `booting` says how far the start has come.",
            },
            booting: Some(state.into()),
        })),
    )
        .into_response()
}

/// A code (`storage_failing`), what happened, and what an operator does.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnreadyReason {
    pub(crate) code: &'static str,
    pub(crate) message: &'static str,
    pub(crate) remedy: &'static str,
}

/// A 503 of `/readyz`: the engine is not running (`{"error": …}`, code `not_ready`), or
/// it runs and cannot do its work (`{"ready": false, "reason": …}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum NotReadyBody {
    Unready(UnreadyBody),
    /// Answered through [`ApiError`], as every error is; named here for the schema.
    #[allow(dead_code)]
    Stopped(ErrorBody),
}

/// `{"attention": [...], "unreadable": [...]}`, and `"engine": [...]` when the engine
/// itself needs an operator.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttentionBody {
    pub(crate) attention: Vec<AttentionItem>,
    /// What needs an operator about the engine itself, whichever pen name is asked
    /// about (a store that refuses writes, `storage_failing`); absent when all is well.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub(crate) engine: Vec<EngineAttentionItem>,
    /// Stored records that cannot be read, each with what it belonged to.
    pub(crate) unreadable: Vec<UnreadableView>,
}

/// Connection actors by status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionCounts {
    pub(crate) active: usize,
    pub(crate) expired: usize,
    pub(crate) error: usize,
}

/// One platform queue's depth.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueBody {
    #[schema(value_type = PlatformId)]
    pub(crate) platform: Platform,
    pub(crate) scheduled: usize,
    pub(crate) paused: usize,
    pub(crate) publishing: usize,
    /// Connections currently backed off by a rate limit.
    pub(crate) backed_off_connections: usize,
    /// The whole platform is backed off (an app-wide rate limit).
    pub(crate) platform_backed_off: bool,
}

/// The actor tree at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SupervisorBody {
    pub(crate) connections: ConnectionCounts,
    /// Connection actors restarted since boot.
    pub(crate) restarts: u64,
    pub(crate) queues: Vec<QueueBody>,
    /// Stored records that cannot be read, each named with what it belonged to.
    pub(crate) unreadable: Vec<UnreadableView>,
    /// The node that answered.
    pub(crate) node: Option<String>,
    /// How many connections run on the node that answered.
    pub(crate) running_here: usize,
    /// Every live node sharing the store, with how many connections it holds a lease on
    /// (one node on sled).
    pub(crate) owners: Vec<OwnerBody>,
}

/// One live node and the connections it runs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OwnerBody {
    pub(crate) node: String,
    pub(crate) connections: u64,
}

impl From<&TreeReport> for SupervisorBody {
    fn from(report: &TreeReport) -> SupervisorBody {
        SupervisorBody {
            connections: ConnectionCounts {
                active: report.connections_active,
                expired: report.connections_expired,
                error: report.connections_error,
            },
            restarts: report.restarts,
            queues: report
                .queues
                .iter()
                .map(|(platform, stats)| QueueBody::new(*platform, stats))
                .collect(),
            unreadable: report.unreadable.iter().map(UnreadableView::from).collect(),
            node: report.node.as_ref().map(|n| n.to_string()),
            running_here: report.running_here,
            owners: report
                .owners
                .iter()
                .map(|(node, connections)| OwnerBody {
                    node: node.to_string(),
                    connections: *connections,
                })
                .collect(),
        }
    }
}

impl QueueBody {
    fn new(platform: Platform, stats: &QueueStats) -> QueueBody {
        QueueBody {
            platform,
            scheduled: stats.scheduled,
            paused: stats.paused,
            publishing: stats.publishing,
            backed_off_connections: stats.backed_off_connections,
            platform_backed_off: stats.platform_backed_off,
        }
    }
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "status",
    responses((status = 200, description = "the process is up", body = StatusBody))
)]
pub(crate) async fn healthz() -> Json<StatusBody> {
    Json(StatusBody { status: "ok" })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "status",
    responses(
        (status = 200, description = "the engine is running; unreadable records are counted, never a reason to fail", body = ReadyBody),
        (status = 503, description = "not_ready (the engine is not running), storage_failing (the store refuses writes), or — from a server still opening the engine (`http::Booting`) — booting, with how far the start has come", body = NotReadyBody),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.studio.readiness();
    if !readiness.running {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the engine is not running (starting or stopping)",
        )
        .into_response();
    }
    if readiness.storage_failing {
        let reason = crate::studio::views::storage_failing();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReadyBody::Unready(UnreadyBody {
                ready: false,
                reason: UnreadyReason {
                    code: reason.code,
                    message: reason.message,
                    remedy: reason.remedy,
                },
                booting: None,
            })),
        )
            .into_response();
    }
    let count = readiness.unreadable_records;
    Json(ReadyBody {
        status: "ready",
        unreadable_records: UnreadableCount {
            count,
            code: (count > 0).then_some("record_unreadable"),
        },
    })
    .into_response()
}

#[utoipa::path(
    get,
    path = "/v1/attention",
    tag = "status",
    responses(
        (status = 200, description = "connections across pen names that need a person", body = AttentionBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn attention_all(
    State(state): State<AppState>,
) -> Result<Json<AttentionBody>, ApiError> {
    let (attention, unreadable) = state.studio.attention(None).await?;
    Ok(Json(AttentionBody {
        attention,
        engine: state.studio.engine_attention(),
        unreadable,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/pen-names/{pen}/attention",
    tag = "status",
    params(("pen" = String, Path, description = "pen name")),
    responses(
        (status = 200, description = "this pen name's connections that need a person", body = AttentionBody),
        (status = 400, description = "invalid pen name", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(level = "debug", skip_all, fields(pen_name = %pen))]
pub(crate) async fn attention_of_pen(
    State(state): State<AppState>,
    PenPath(pen): PenPath,
) -> Result<Json<AttentionBody>, ApiError> {
    let (attention, unreadable) = state.studio.attention(Some(&pen)).await?;
    Ok(Json(AttentionBody {
        attention,
        engine: state.studio.engine_attention(),
        unreadable,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/supervisor",
    tag = "status",
    responses(
        (status = 200, description = "connections by status, restarts, queue depths per platform", body = SupervisorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 503, description = "the engine is not available", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn supervisor(
    State(state): State<AppState>,
) -> Result<Json<SupervisorBody>, ApiError> {
    let report = state.studio.supervisor().await?;
    Ok(Json(SupervisorBody::from(&report)))
}

#[utoipa::path(
    delete,
    path = "/v1/pen-names/{pen}",
    tag = "status",
    params(("pen" = String, Path, description = "pen name"), ConfirmQuery),
    responses(
        (status = 200, description = "erased: grants revoked where possible; connections, posts and events removed", body = ErasureReport),
        (status = 400, description = "invalid pen name or query", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 409, description = "confirmation_required, with what would be removed", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name = %pen))]
pub(crate) async fn erase_pen_name(
    State(state): State<AppState>,
    PenPath(pen): PenPath,
    ApiQuery(query): ApiQuery<ConfirmQuery>,
) -> Result<Json<ErasureReport>, ApiError> {
    let erased = state.studio.erase_pen_name(&pen, query.confirm).await?;
    tracing::info!(confirmed = query.confirm, "pen name erased");
    Ok(Json(erased))
}
