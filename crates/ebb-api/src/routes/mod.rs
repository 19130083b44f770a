//! One module per resource, each exposing its handlers; `crate::router` mounts them.

pub mod balances;
pub mod merchants;
pub mod ops;
pub mod orders;
pub mod refunds;
pub mod sandbox;
pub mod tokens;

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiResult;
use ebb_store::page::PageRequest;

/// Cobo's paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 50, default 10.
    pub limit: Option<i64>,
    /// Cursor from `pagination.before`: the previous (newer) page.
    pub before: Option<String>,
    /// Cursor from `pagination.after`: the next (older) page.
    pub after: Option<String>,
}

pub(crate) fn page_request(
    limit: Option<i64>,
    before: Option<String>,
    after: Option<String>,
) -> ApiResult<PageRequest> {
    Ok(PageRequest {
        limit: crate::validate::limit(limit)?,
        before: before.filter(|s| !s.is_empty()),
        after: after.filter(|s| !s.is_empty()),
    })
}
