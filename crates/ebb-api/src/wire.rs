//! The wire format: Cobo-shaped JSON. Only this module knows it; the domain and the store do not.
//!
//! Rules the official SDK sets (see docs/API.md): fields it requires are always present with their JSON
//! type (`""` for a string with no value, never null); refund, order and merchant timestamps are
//! seconds, transaction timestamps milliseconds.

use ebb_core::{Amount, TokenRegistry};
use ebb_store::merchants::MerchantRow;
use ebb_store::orders::OrderRow;
use ebb_store::page::Page;
use ebb_store::refunds::RefundRow;
use ebb_store::transactions::TransactionRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod approvals;
pub mod compliance;
pub mod kyt;
pub mod webhooks;

/// Formats base units of a token as a decimal string; an unknown token (removed from configuration
/// after use) falls back to base units rather than failing the read.
pub fn decimal(registry: &TokenRegistry, token_id: &str, a: Amount) -> String {
    match registry.get(token_id) {
        Some(t) => a.to_decimal_string(t.decimals),
        None => a.to_string(),
    }
}

pub fn decimal_i128(registry: &TokenRegistry, token_id: &str, v: i128) -> String {
    let s = decimal(registry, token_id, Amount::from_base_units(v.unsigned_abs()));
    if v < 0 {
        format!("-{s}")
    } else {
        s
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// Cursor of the previous (newer) page; `""` on the first page.
    pub before: String,
    /// Cursor of the next (older) page; `""` on the last page.
    pub after: String,
    pub total_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse<T: ToSchema> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

impl<T: ToSchema> ListResponse<T> {
    pub fn from_page<R>(page: Page<R>, f: impl FnMut(R) -> T) -> Self {
        ListResponse {
            data: page.items.into_iter().map(f).collect(),
            pagination: Pagination { before: page.before, after: page.after, total_count: page.total_count },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentTransaction {
    pub tx_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    pub token_id: String,
    pub from_address: String,
    pub to_address: String,
    pub amount: String,
    /// Cobo's transaction status (`Submitted`, `Broadcasting`, `Confirming`, `Completed`, `Failed`, ...).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_reason: Option<String>,
    /// Milliseconds.
    pub created_timestamp: i64,
    /// Milliseconds.
    pub updated_timestamp: i64,
}

impl PaymentTransaction {
    pub fn from_row(reg: &TokenRegistry, t: TransactionRow) -> Self {
        PaymentTransaction {
            amount: decimal(reg, &t.token_id, t.amount),
            tx_id: t.tx_id,
            tx_hash: t.tx_hash,
            token_id: t.token_id,
            from_address: t.from_address,
            to_address: t.to_address,
            status: t.status.as_str().to_owned(),
            failed_reason: t.failed_reason,
            created_timestamp: t.created_at_ms,
            updated_timestamp: t.updated_at_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommissionFee {
    pub fee_amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Refund {
    pub request_id: String,
    pub refund_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    pub token_id: String,
    pub chain_id: String,
    pub amount: String,
    /// `""` while the refund waits for an address.
    pub to_address: String,
    #[schema(example = "Pending")]
    pub status: String,
    /// `"Cancelled"` for a cancelled refund (status `Failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_reason: Option<String>,
    /// ebb extension: why a `Pending` refund is not being paid out yet (e.g. the hot wallet lacks the
    /// token or gas). Absent when nothing holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_reason: Option<String>,
    pub refund_type: String,
    /// Seconds.
    pub created_timestamp: i64,
    /// Seconds.
    pub updated_timestamp: i64,
    pub initiator: String,
    pub transactions: Vec<PaymentTransaction>,
    pub charge_merchant_fee: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_fee_amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_fee_token_id: Option<String>,
    pub commission_fee: CommissionFee,
    /// ebb extension: how the refund was made, `Api` or `Link` (approval policies match on it).
    pub source: String,
    /// ebb extension: the maker-checker approval the refund waits for (it stays `Pending` meanwhile)
    /// or passed. Absent when no approval policy applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<approvals::RefundApproval>,
    /// ebb extension: the screening of `to_address` (absent until the refund has one). docs/RISK.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screening: Option<approvals::DestinationScreening>,
    /// ebb extension: for a refund of a fiat-priced order, what it counts for against the order's
    /// price and at which rate. docs/PRICES.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing: Option<RefundPricing>,
}

/// A refund in its order's pricing currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundPricing {
    /// The order's `pricing_currency`.
    pub currency: String,
    /// What the refund counts for against the order's price, in `currency`.
    pub amount: String,
    /// `currency`: asked in it and converted to the token at `exchange_rate`; `token`: asked in the
    /// token and counted at the order's own rate.
    #[schema(example = "currency")]
    pub asked_in: String,
    /// Units of `currency` per token.
    pub exchange_rate: String,
    /// `static`, `coingecko`, `kraken`, or `order` for the order's own rate.
    pub rate_source: String,
    /// When the rate was true, Unix seconds.
    pub rate_timestamp: i64,
}

impl RefundPricing {
    pub fn from_row(p: ebb_store::refunds::RefundPricing) -> Self {
        let decimals = ebb_core::rate::fiat_decimals(&p.currency).unwrap_or(0);
        RefundPricing {
            amount: p.amount.to_decimal_string(decimals),
            asked_in: if p.asked { "currency" } else { "token" }.into(),
            currency: p.currency,
            exchange_rate: p.rate,
            rate_source: p.rate_source,
            rate_timestamp: p.rate_at,
        }
    }
}

impl Refund {
    pub fn from_row(reg: &TokenRegistry, r: RefundRow) -> Self {
        Refund {
            amount: decimal(reg, &r.token_id, r.amount),
            merchant_fee_amount: r.merchant_fee_amount.map(|f| decimal(reg, &r.token_id, f)),
            merchant_fee_token_id: r.merchant_fee_amount.map(|_| r.token_id.clone()),
            request_id: r.request_id,
            refund_id: r.refund_id,
            order_id: r.order_id,
            merchant_id: r.merchant_id,
            chain_id: r.chain_id,
            to_address: r.to_address,
            status: r.status.as_str().to_owned(),
            failed_reason: r.failed_reason,
            hold_reason: r.hold_reason,
            refund_type: r.refund_type.as_str().to_owned(),
            created_timestamp: r.created_at,
            updated_timestamp: r.updated_at,
            initiator: r.initiator,
            transactions: r.transactions.into_iter().map(|t| PaymentTransaction::from_row(reg, t)).collect(),
            charge_merchant_fee: r.charge_merchant_fee,
            commission_fee: CommissionFee { fee_amount: "0".into() },
            source: r.channel.as_str().to_owned(),
            approval: r.approval.map(Into::into),
            screening: r.screening.map(Into::into),
            pricing: r.pricing.map(RefundPricing::from_row),
            token_id: r.token_id,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRefundRequest {
    /// Your id for this request; the same request with the same id returns the same refund.
    pub request_id: String,
    pub merchant_id: Option<String>,
    /// Positive, at most two decimal places. Required unless `pricing_amount` is given.
    #[schema(example = "10.25")]
    #[serde(default)]
    pub payable_amount: String,
    /// ebb extension: the amount in the order's `pricing_currency` instead of `payable_amount`,
    /// converted at a fresh rate and rounded down (docs/PRICES.md). Needs `order_id`.
    pub pricing_amount: Option<String>,
    /// ebb extension: the currency of `pricing_amount`, which must be the order's.
    pub pricing_currency: Option<String>,
    pub to_address: Option<String>,
    pub token_id: String,
    /// `Merchant` or `Psp`: which balance pays.
    pub refund_type: String,
    pub order_id: Option<String>,
    pub charge_merchant_fee: Option<bool>,
    pub merchant_fee_amount: Option<String>,
    pub merchant_fee_token_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateRefundRequest {
    pub to_address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Merchant {
    pub merchant_id: String,
    pub name: String,
    pub wallet_id: String,
    pub developer_fee_rate: String,
    pub wallet_setup: String,
    pub created_timestamp: i64,
    pub updated_timestamp: i64,
}

impl From<MerchantRow> for Merchant {
    fn from(m: MerchantRow) -> Self {
        Merchant {
            merchant_id: m.merchant_id,
            name: m.name,
            wallet_id: m.wallet_id,
            developer_fee_rate: m.developer_fee_rate,
            wallet_setup: m.wallet_setup,
            created_timestamp: m.created_at,
            updated_timestamp: m.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateMerchantRequest {
    pub name: String,
    pub wallet_id: Option<String>,
    /// A fraction between 0 and 1, e.g. `"0.01"`.
    pub developer_fee_rate: Option<String>,
    /// `Default`, `Shared` or `Separate`.
    pub wallet_setup: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMerchantRequest {
    pub name: Option<String>,
    pub developer_fee_rate: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    pub order_id: String,
    pub merchant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_order_code: Option<String>,
    pub psp_order_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_amount: Option<String>,
    pub fee_amount: String,
    pub payable_currency: String,
    pub token_id: String,
    pub chain_id: String,
    pub payable_amount: String,
    /// Units of `pricing_currency` per token (`"1"` without a pricing currency).
    pub exchange_rate: String,
    /// ebb extension: where `exchange_rate` came from (`static`, `coingecko`, `kraken`, or `order`:
    /// price ÷ payable amount as the request gave them) and when it was true (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_timestamp: Option<i64>,
    /// ebb extension: how much of `pricing_amount` the order's live refunds count for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_pricing_amount: Option<String>,
    pub amount_tolerance: String,
    pub receive_address: String,
    #[schema(example = "Pending")]
    pub status: String,
    pub received_token_amount: String,
    /// Seconds.
    pub expired_at: i64,
    pub created_timestamp: i64,
    pub updated_timestamp: i64,
    pub transactions: Vec<PaymentTransaction>,
}

impl Order {
    pub fn from_row(reg: &TokenRegistry, o: OrderRow, now: i64) -> Self {
        let d = |a| decimal(reg, &o.token_id, a);
        let refunded_pricing = o.fiat_price().map(|(_, decimals, _)| o.refunded_pricing.to_decimal_string(decimals));
        Order {
            status: o.effective_status(now).as_str().to_owned(),
            fee_amount: d(o.fee_amount),
            payable_amount: d(o.payable_amount),
            amount_tolerance: d(o.amount_tolerance),
            received_token_amount: d(o.received_amount),
            transactions: o.transactions.into_iter().map(|t| PaymentTransaction::from_row(reg, t)).collect(),
            order_id: o.order_id,
            merchant_id: o.merchant_id,
            merchant_order_code: o.merchant_order_code,
            psp_order_code: o.psp_order_code,
            refunded_pricing_amount: refunded_pricing,
            rate_source: o.rate_source,
            rate_timestamp: o.rate_at,
            pricing_currency: o.pricing_currency,
            pricing_amount: o.pricing_amount,
            payable_currency: o.token_id.clone(),
            token_id: o.token_id,
            chain_id: o.chain_id,
            exchange_rate: o.exchange_rate,
            receive_address: o.receive_address,
            expired_at: o.expired_at,
            created_timestamp: o.created_at,
            updated_timestamp: o.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderRequest {
    pub merchant_id: String,
    pub merchant_order_code: Option<String>,
    /// Unique per PSP.
    pub psp_order_code: String,
    /// A fiat currency (`USD`, `EUR`, …) that denominates `pricing_amount` and `fee_amount`; empty, both
    /// are in the token.
    pub pricing_currency: Option<String>,
    pub pricing_amount: Option<String>,
    /// Developer fee taken from the payment; may be `"0"`. In `pricing_currency` when it is given.
    pub fee_amount: String,
    /// The token id the customer pays in.
    pub payable_currency: String,
    pub payable_amount: Option<String>,
    /// Seconds, 1 to 10800; default 1800.
    pub expired_in: Option<i64>,
    pub amount_tolerance: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateOrderRequest {
    /// `true` expires a pending order now.
    pub expired: bool,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
pub struct SandboxPaymentRequest {
    /// Defaults to what is still payable.
    pub amount: Option<String>,
    /// Defaults to a random valid address of the order's chain.
    pub from_address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantBalance {
    pub merchant_id: String,
    pub token_id: String,
    pub total_received_amount: String,
    pub settled_amount: String,
    pub refunded_amount: String,
    pub total_balance: String,
    pub available_balance: String,
    pub locked_balance: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantBalanceList {
    pub data: Vec<MerchantBalance>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PspBalance {
    pub token_id: String,
    pub developer_fee_amount: String,
    pub settled_amount: String,
    pub refunded_amount: String,
    pub total_balance: String,
    pub available_balance: String,
    pub locked_balance: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceChange {
    pub source_id: String,
    /// Cobo's source type: `OrderIn`, `LatePayment`, `UnexceptedIn` (sic, as Cobo spells it) or
    /// `RefundOut`.
    pub source_type: String,
    /// ebb extension: the finer reason — the source type, or `UnexpectedIn` (a token other than the
    /// order's at its receiving address) or `RefundFee` (a refund's developer fee, reported as
    /// `RefundOut`).
    pub reason: String,
    pub token_id: String,
    pub amount: String,
    pub amount_raw: String,
    pub balance_before: String,
    pub balance_before_raw: String,
    pub balance_after: String,
    pub balance_after_raw: String,
    /// `in` or `out`.
    pub flow_direction: String,
    /// Seconds.
    pub created_timestamp: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SupportedToken {
    pub token_id: String,
    pub name: String,
    pub symbol: String,
    pub decimal: i64,
    pub token_address: String,
    pub chain_id: String,
}

/// Cobo's `GetExchangeRate200Response`, with where the rate came from and when it was true.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExchangeRate {
    pub token_id: String,
    pub currency: String,
    /// Units of `currency` per one token, an exact decimal.
    pub rate: String,
    /// ebb's: the source that gave the rate (`static`, `coingecko`, `kraken`).
    pub rate_source: String,
    /// ebb's: when the rate was true, Unix seconds.
    pub rate_timestamp: i64,
}

/// Cobo's `CreateRefundLinkRequest`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateRefundLinkRequest {
    /// Your id for this request; it becomes the refund's `request_id`. Calling again with the same id
    /// and business info makes a new link for the same refund (the earlier link dies). Optional: without
    /// it each call makes a new refund.
    pub request_id: Option<String>,
    pub business_info: RefundLinkBusinessInfo,
    pub display_info: Option<LinkDisplayInfo>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundLinkBusinessInfo {
    /// The order refunded; exactly one of `order_id` and `transaction_id`.
    pub order_id: Option<String>,
    /// The pay-in refunded: its sender is pre-filled as the refund address, its token is refunded.
    pub transaction_id: Option<String>,
    /// Positive, at most two decimal places, in the payment's token.
    #[schema(example = "10.25")]
    pub amount: String,
    /// `Merchant` or `Psp`: which balance pays.
    pub refund_source: String,
    /// Required with `refund_source` `Merchant`.
    pub merchant_id: Option<String>,
    /// Developer fee charged to the merchant (only with `Merchant`); less than `amount`.
    pub fee_amount: Option<String>,
    /// ebb's addition: the customer's e-mail address. ebb e-mails them the link, then every change of
    /// the refund's status; the refunded order's merchant must have customer e-mail on
    /// (`ebb mail customers`), else the request is refused.
    pub customer_email: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkDisplayInfo {
    /// The brand shown on the page (at most 128 characters).
    pub developer_name: Option<String>,
    /// An http(s) URL of the logo shown on the page.
    pub logo: Option<String>,
    /// An http(s) URL the result pages link back to.
    pub return_url: Option<String>,
}

/// Cobo's `Link`: the page is at `url?token=token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    pub url: String,
    pub token: String,
}
