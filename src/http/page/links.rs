//! `POST /v1/pen-names/{pen}/page-links`: a host application mints a link to one pen
//! name's Social Accounts page, to hand to the author's browser. Protected like every
//! admin route (the admin token, or the host's [`Authorize`](crate::http::Authorize)).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::PenPath;
use crate::http::AppState;

/// A page link: open `url` once, before `expires_at`, in the author's browser.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PageLinkBody {
    /// `{public_url}/page-link/{token}`: single-use.
    pub(crate) url: String,
    /// When the link stops opening (`page_link_ttl_secs` after it was minted).
    #[schema(format = DateTime)]
    pub(crate) expires_at: String,
}

#[utoipa::path(
    post,
    path = "/v1/pen-names/{pen}/page-links",
    tag = "page",
    params(("pen" = String, Path, description = "pen name")),
    responses(
        (status = 201, description = "a single-use link to the pen name's Social Accounts page; opening it sets a page cookie for this pen name only", body = PageLinkBody),
        (status = 400, description = "invalid pen name", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name = %pen))]
pub(crate) async fn mint(
    State(state): State<AppState>,
    PenPath(pen): PenPath,
) -> Result<(StatusCode, Json<PageLinkBody>), ApiError> {
    let link = state.studio.mint_page_link(&pen).await?;
    Ok((
        StatusCode::CREATED,
        Json(PageLinkBody {
            url: format!(
                "{}/page-link/{}",
                state.studio.config().public_url,
                link.token
            ),
            expires_at: link.expires_at.to_rfc3339(),
        }),
    ))
}
