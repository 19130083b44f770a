use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_app::links::{self, LinkRequest, RefundedPayment};
use ebb_core::token::API_AMOUNT_MAX_SCALE;
use ebb_core::RefundSource;
use ebb_store::links::LinkDisplay;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::ApiJson;
use crate::wire::{CreateRefundLinkRequest, Link};
use crate::{validate, AppState};

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
    let request_id = req.request_id.as_deref().filter(|r| !r.is_empty()).map(validate::request_id).transpose()?;
    let order_id = validate::optional_text("business_info.order_id", info.order_id.as_deref(), 128)?;
    let tx_id = validate::optional_text("business_info.transaction_id", info.transaction_id.as_deref(), 128)?;
    // The refunded payment decides the order, the token and the pre-filled address.
    let refunded = match (order_id, tx_id) {
        (Some(order_id), None) => RefundedPayment::Order(order_id),
        (None, Some(tx_id)) => RefundedPayment::Transaction(tx_id),
        _ => return Err(ApiError::invalid("business_info needs exactly one of order_id and transaction_id")),
    };
    let source = RefundSource::parse_requested(&info.refund_source).ok_or_else(|| {
        ApiError::invalid(format!("business_info.refund_source must be Merchant or Psp, not {:?}", info.refund_source))
    })?;
    let payment = links::find_payment(&state.engine, &caller, refunded).await?;
    let token = &payment.token;
    let amount = validate::positive_amount("business_info.amount", &info.amount, token, API_AMOUNT_MAX_SCALE)?;
    let merchant_id = validate::optional_text("business_info.merchant_id", info.merchant_id.as_deref(), 128)?;
    let merchant_fee = info
        .fee_amount
        .as_deref()
        .filter(|f| !f.is_empty())
        .map(|f| validate::positive_amount("business_info.fee_amount", f, token, API_AMOUNT_MAX_SCALE))
        .transpose()?;
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
    let customer_email = match info.customer_email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => Some(ebb_app::mails::check_address("business_info.customer_email", e)?),
        None => None,
    };
    let request =
        LinkRequest { request_id, payment, amount, source, merchant_id, merchant_fee, display, customer_email };
    let created = links::create(&state.engine, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(Link { url: state.links.page_url(), token: created.token.as_str().to_owned() })))
}
