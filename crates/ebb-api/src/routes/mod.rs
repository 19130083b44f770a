//! One module per resource, each exposing its handlers; `crate::router` mounts them.

pub mod approvals;
pub mod balances;
pub mod compliance;
pub mod kyt;
pub mod links;
pub mod merchants;
pub mod ops;
pub mod orders;
pub mod refunds;
pub mod sandbox;
pub mod tokens;
pub mod webhooks;

use crate::error::ApiResult;
use ebb_store::page::PageRequest;

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
