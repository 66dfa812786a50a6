//! Query strings more than one resource reads.

use serde::Deserialize;

/// `?confirm=true` on destructive routes (disconnect, pen-name erasure).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConfirmQuery {
    /// Without it the route answers 409 `confirmation_required` with what it would affect.
    #[serde(default)]
    pub(crate) confirm: bool,
}
