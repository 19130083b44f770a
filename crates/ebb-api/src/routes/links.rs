use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_core::token::API_AMOUNT_MAX_SCALE;
use ebb_core::RefundSource;
use ebb_store::links::{LinkDisplay, NewRefundLink};
use ebb_store::refunds::NewRefund;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorResponse};
use crate::extract::ApiJson;
use crate::wire::{CreateRefundLinkRequest, Link};
use crate::{pages, validate, AppState};

/// Creates a refund link: a one-time page where the customer submits the address the refund pays out
/// to. The refund exists, with its funds reserved, from now on (status `PendingConfirmation`, then
/// `AddressPending` once the page is opened). The same request again makes a new link for the same
/// refund and the earlier link dies.
#[utoipa::path(post, path = "/v2/payments/links/refunds", tag = "refunds", request_body = CreateRefundLinkRequest,
    responses((status = 201, body = Link), (status = "4XX", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateRefundLinkRequest>,
) -> ApiResult<(StatusCode, Json<Link>)> {
    let info = &req.business_info;
    let request_id = match req.request_id.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => validate::text("request_id", r, 128)?,
        None => ebb_store::ids::new_id("link_"),
    };
    let order_id = validate::optional_text("business_info.order_id", info.order_id.as_deref(), 128)?;
    let tx_id = validate::optional_text("business_info.transaction_id", info.transaction_id.as_deref(), 128)?;
    // The refunded payment decides the order, the token and the pre-filled address.
    let (order_id, token_id, default_address) = match (order_id, &tx_id) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::invalid("business_info needs exactly one of order_id and transaction_id"))
        }
        (Some(order_id), None) => {
            let order = state.store.order(&order_id).await?.ok_or_else(|| ApiError::not_found("order", &order_id))?;
            if let Some(m) = &caller.merchant {
                if m != &order.merchant_id {
                    return Err(ApiError::not_found("order", &order_id));
                }
            }
            let payer = state.store.original_payer(&order_id).await?.unwrap_or_default();
            (order_id, order.token_id, payer)
        }
        (None, Some(tx_id)) => {
            let tx =
                state.store.payin_transaction(tx_id).await?.ok_or_else(|| ApiError::not_found("transaction", tx_id))?;
            if tx.status != ebb_core::TxStatus::Completed {
                return Err(ApiError::new(
                    ErrorCode::InvalidState,
                    format!("transaction {tx_id} is {}; only a completed pay-in can be refunded", tx.status),
                ));
            }
            let order_id = tx.order_id.clone().ok_or_else(|| ApiError::not_found("transaction", tx_id))?;
            if let Some(m) = &caller.merchant {
                let order = state.store.order(&order_id).await?;
                if order.is_none_or(|o| &o.merchant_id != m) {
                    return Err(ApiError::not_found("transaction", tx_id));
                }
            }
            (order_id, tx.token_id, tx.from_address)
        }
    };
    let token = validate::token(&state.registry, "token_id", &token_id)?.clone();
    let amount = validate::positive_amount("business_info.amount", &info.amount, &token, API_AMOUNT_MAX_SCALE)?;
    let source = RefundSource::parse(&info.refund_source).ok_or_else(|| {
        ApiError::invalid(format!("business_info.refund_source must be Merchant or Psp, not {:?}", info.refund_source))
    })?;
    if source == RefundSource::Psp {
        caller.require_psp_for("spend the PSP's balance (refund_source Psp)")?;
    }
    let merchant_id = validate::optional_text("business_info.merchant_id", info.merchant_id.as_deref(), 128)?;
    if source == RefundSource::Merchant && merchant_id.is_none() {
        return Err(ApiError::invalid("business_info.merchant_id is required when refund_source is Merchant"));
    }
    if let Some(m) = &merchant_id {
        caller.check_merchant(m)?;
    }
    let fee = match info.fee_amount.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(_) if source != RefundSource::Merchant => {
            return Err(ApiError::invalid("business_info.fee_amount is only valid when refund_source is Merchant"))
        }
        Some(f) => {
            let fee = validate::positive_amount("business_info.fee_amount", f, &token, API_AMOUNT_MAX_SCALE)?;
            if fee >= amount {
                return Err(ApiError::new(
                    ErrorCode::InvalidAmount,
                    "business_info.fee_amount must be less than amount",
                ));
            }
            Some(fee)
        }
    };
    let display = match &req.display_info {
        None => LinkDisplay::default(),
        Some(d) => LinkDisplay {
            developer_name: validate::optional_text("display_info.developer_name", d.developer_name.as_deref(), 128)?,
            logo_url: d
                .logo
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| validate::http_url("display_info.logo", s, 2048))
                .transpose()?,
            return_url: d
                .return_url
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| validate::http_url("display_info.return_url", s, 2048))
                .transpose()?,
        },
    };
    let token_secret = pages::new_link_token();
    let new = NewRefundLink {
        refund: NewRefund {
            request_id,
            idem_scope: caller.idem_scope(),
            merchant_id: merchant_id.or_else(|| caller.merchant.clone()),
            order_id: Some(order_id),
            token,
            amount,
            to_address: None,
            source,
            merchant_fee: fee,
            initiator: caller.initiator(),
            via_link: true,
        },
        token_hash: pages::hash_link_token(&token_secret),
        default_address,
        source_tx_id: tx_id,
        display,
        expires_at_ms: crate::now_ms().saturating_add(state.links.settings.ttl.as_millis() as i64),
    };
    state.store.create_refund_link(new).await?;
    Ok((StatusCode::CREATED, Json(Link { url: state.links.page_url(), token: token_secret })))
}
