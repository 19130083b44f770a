//! Cobo's webhook shapes: endpoints, events (the `WebhookEvent` envelope), delivery logs, and the
//! rendering of a stored event snapshot into the envelope's `data`.

use ebb_core::TokenRegistry;
use ebb_store::events::EventKind;
use ebb_store::orders::OrderRow;
use ebb_store::refunds::RefundRow;
use ebb_store::transactions::TransactionRow;
use ebb_store::webhooks::{AttemptRow, DeliveryRow, EndpointRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::{decimal, Order, PaymentTransaction, Refund};

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub endpoint_id: String,
    pub url: String,
    pub subscribed_events: Vec<String>,
    /// `STATUS_ACTIVE` or `STATUS_INACTIVE`.
    pub status: String,
    pub description: String,
    /// Seconds.
    pub created_timestamp: i64,
    /// ebb extension: whether deliveries also carry Standard Webhooks signatures.
    pub standard_webhooks: bool,
    /// ebb extension: the Standard Webhooks secret (`whsec_…`), in the answer to the creating request
    /// only. Store it then; it is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// ebb extension: why ebb disabled the endpoint by itself (it answered 410 Gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

impl WebhookEndpoint {
    /// The endpoint as listed: its secret is never shown.
    pub fn from_row(e: EndpointRow) -> Self {
        WebhookEndpoint {
            standard_webhooks: e.signing_secret.is_some(),
            signing_secret: None,
            endpoint_id: e.endpoint_id,
            url: e.url,
            subscribed_events: e.subscribed_events,
            status: e.status,
            description: e.description,
            created_timestamp: e.created_at,
            disabled_reason: e.disabled_reason,
        }
    }

    /// The endpoint as answered to its creation, with its secret.
    pub fn created(e: EndpointRow) -> Self {
        let secret = e.signing_secret.clone();
        WebhookEndpoint { signing_secret: secret, ..Self::from_row(e) }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhookEndpointRequest {
    /// An http or https URL, at most 500 characters.
    pub url: String,
    pub subscribed_events: Vec<String>,
    pub description: Option<String>,
    /// ebb extension: also sign deliveries the Standard Webhooks way; the answer shows the secret once.
    pub standard_webhooks: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateWebhookEndpointRequest {
    pub subscribed_events: Option<Vec<String>>,
    /// `STATUS_ACTIVE` or `STATUS_INACTIVE`.
    pub status: Option<String>,
    pub description: Option<String>,
    /// ebb extension: move the endpoint.
    pub url: Option<String>,
}

/// Cobo's `WebhookEvent`, as listed for an endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEvent {
    pub event_id: String,
    pub url: String,
    /// Milliseconds; the same on every retry.
    pub created_timestamp: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `data_type` (`PaymentRefund`, `PaymentOrder`, `PaymentTransaction`) and the object's fields as
    /// they were right after the change.
    #[schema(value_type = Object)]
    pub data: Value,
    /// `Success`, `Retrying` or `Failed`.
    pub status: String,
    /// Milliseconds; only while `Retrying`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_retry_timestamp: Option<i64>,
    /// Only while `Retrying`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries_left: Option<i64>,
    /// ebb extension: increases with every event of the same refund (with its payout transactions) or
    /// order (with its pay-ins); a receiver keeps the highest it has processed and drops older ones.
    pub sequence: i64,
    /// ebb extension: `true` on a test event (`POST /webhooks/events/trigger`), absent on real ones. A
    /// test event's `data` is a sample that names no real object; a receiver acts on no event with it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

impl WebhookEvent {
    pub fn from_row(reg: &TokenRegistry, d: &DeliveryRow, full_schedule: i64) -> Self {
        let data = event_data(reg, d.kind, &d.snapshot).unwrap_or_else(|e| json!({ "error": e }));
        let retrying = d.status == "Retrying";
        WebhookEvent {
            event_id: d.event_id.clone(),
            url: d.url.clone(),
            created_timestamp: d.created_at_ms,
            event_type: d.event_type.clone(),
            data,
            status: d.status.clone(),
            next_retry_timestamp: retrying.then_some(d.next_attempt_ms),
            retries_left: retrying.then(|| d.retries_left.unwrap_or(full_schedule)),
            sequence: d.event_seq,
            test: d.kind == EventKind::Test,
        }
    }
}

/// The body POSTed to an endpoint: the envelope without the delivery's own state, so every attempt
/// sends the same bytes.
pub fn delivery_body(reg: &TokenRegistry, d: &DeliveryRow) -> Result<String, String> {
    let mut body = json!({
        "event_id": d.event_id,
        "url": d.url,
        "created_timestamp": d.created_at_ms,
        "type": d.event_type,
        "data": event_data(reg, d.kind, &d.snapshot)?,
        "sequence": d.event_seq,
    });
    if d.kind == EventKind::Test {
        body["test"] = Value::Bool(true);
    }
    serde_json::to_string(&body).map_err(|e| e.to_string())
}

fn with_data_type(data_type: &str, v: impl Serialize) -> Result<Value, String> {
    let mut object = Map::new();
    object.insert("data_type".into(), Value::String(data_type.into()));
    match serde_json::to_value(v).map_err(|e| e.to_string())? {
        Value::Object(fields) => object.extend(fields),
        other => return Err(format!("not an object: {other}")),
    }
    Ok(Value::Object(object))
}

/// The envelope's `data` for a stored snapshot.
pub fn event_data(reg: &TokenRegistry, kind: EventKind, snapshot: &str) -> Result<Value, String> {
    let bad = |e: serde_json::Error| format!("stored {} snapshot: {e}", kind.as_str());
    match kind {
        EventKind::Refund => {
            let r: RefundRow = serde_json::from_str(snapshot).map_err(bad)?;
            with_data_type("PaymentRefund", Refund::from_row(reg, r))
        }
        EventKind::Order => {
            let o: OrderRow = serde_json::from_str(snapshot).map_err(bad)?;
            // The status as of the change, not as of now.
            let at = o.updated_at;
            with_data_type("PaymentOrder", Order::from_row(reg, o, at))
        }
        EventKind::Transaction => {
            let t: TransactionRow = serde_json::from_str(snapshot).map_err(bad)?;
            Ok(transaction_data(reg, t))
        }
        EventKind::CryptoRefund => {
            let s: ebb_store::kyt::CryptoRefundSnapshot = serde_json::from_str(snapshot).map_err(bad)?;
            with_data_type("CryptoRefund", super::kyt::CryptoRefund::new(reg, s))
        }
        EventKind::KytScreening => {
            let s: ebb_store::dispositions::KytScreeningSnapshot = serde_json::from_str(snapshot).map_err(bad)?;
            let mut v = serde_json::to_value(&s).map_err(|e| e.to_string())?;
            v["transaction_type"] = Value::String("Deposit".into());
            with_data_type("ComplianceKytScreenings", v)
        }
        EventKind::Disposition => {
            let s: ebb_store::dispositions::DispositionSnapshot = serde_json::from_str(snapshot).map_err(bad)?;
            Ok(json!({
                "data_type": "ComplianceDisposition",
                "transaction_id": s.transaction_id,
                "disposition_status": ebb_app::dispositions::status_label(&s.disposition_type, s.refund_status.as_deref()),
                "disposition_type": s.disposition_type,
                "destination_address": s.destination_address,
                "disposition_amount": decimal(reg, &s.token_id, s.amount),
                "updated_timestamp": s.updated_timestamp,
            }))
        }
        EventKind::KyaScreening => {
            let s: ebb_store::kya::KyaSnapshot = serde_json::from_str(snapshot).map_err(bad)?;
            with_data_type("ComplianceKyaScreenings", s)
        }
        EventKind::Test => serde_json::from_str(snapshot).map_err(bad),
    }
}

/// Cobo's `PaymentTransactionEventData` (a WaaS transaction with the payment's fields), plus ebb's
/// `PaymentTransaction` fields.
fn transaction_data(reg: &TokenRegistry, t: TransactionRow) -> Value {
    let amount = decimal(reg, &t.token_id, t.amount);
    let incoming = t.direction == ebb_core::TxDirection::In;
    let (source, destination, kind, wallet) = if incoming {
        (
            json!({ "source_type": "DepositFromAddress", "addresses": [t.from_address] }),
            json!({ "destination_type": "DepositToAddress", "wallet_id": t.to_address, "wallet_type": "Custodial",
                    "address": t.to_address, "amount": amount }),
            "Deposit",
            t.to_address.clone(),
        )
    } else {
        (
            json!({ "source_type": "Asset", "wallet_id": t.from_address }),
            json!({ "destination_type": "Address", "account_output": { "address": t.to_address, "amount": amount } }),
            "Withdrawal",
            t.from_address.clone(),
        )
    };
    let mut v = json!({
        "data_type": "PaymentTransaction",
        "transaction_id": t.tx_id,
        "wallet_id": wallet,
        "type": kind,
        "status": t.status.as_str(),
        "chain_id": t.chain_id,
        "token_id": t.token_id,
        "source": source,
        "destination": destination,
        "initiator_type": "API",
        "created_timestamp": t.created_at_ms,
        "updated_timestamp": t.updated_at_ms,
        "acquiring_type": "Order",
    });
    let object = v.as_object_mut().expect("an object");
    if let Some(reason) = &t.failed_reason {
        object.insert("failed_reason".into(), reason.clone().into());
    }
    if let Some(hash) = &t.tx_hash {
        object.insert("transaction_hash".into(), hash.clone().into());
    }
    if let Some(order_id) = &t.order_id {
        object.insert("order_id".into(), order_id.clone().into());
    }
    if let Some(refund_id) = &t.refund_id {
        object.insert("refund_id".into(), refund_id.clone().into());
    }
    if let Ok(Value::Object(fields)) = serde_json::to_value(PaymentTransaction::from_row(reg, t)) {
        for (k, val) in fields {
            object.entry(k).or_insert(val);
        }
    }
    v
}

/// Cobo's `WebhookEventLog`: one attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEventLog {
    pub id: String,
    /// Milliseconds: when the attempt started.
    pub created_timestamp: i64,
    #[schema(value_type = Object)]
    pub request_headers: Value,
    /// The event as sent (Cobo's `WebhookEvent`), as a JSON object.
    #[schema(value_type = Object)]
    pub request_body: Value,
    /// The first 2 KiB of the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status_code: Option<i64>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_time: Option<i64>,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl From<AttemptRow> for WebhookEventLog {
    fn from(a: AttemptRow) -> Self {
        WebhookEventLog {
            id: a.attempt_id,
            created_timestamp: a.created_at_ms,
            request_headers: serde_json::from_str(&a.request_headers).unwrap_or(Value::Object(Map::new())),
            // A body that is not JSON (nothing was sent: the event could not be rendered) shows as `{}`.
            request_body: serde_json::from_str(&a.request_body).unwrap_or_else(|_| Value::Object(Map::new())),
            response_body: a.response_body,
            response_status_code: a.response_status,
            response_time: a.response_time_ms,
            success: a.success,
            failure_reason: a.failure_reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEventDefinition {
    pub event_type: String,
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryWebhookEventResponse {
    /// False while an attempt of this event is in flight.
    pub retried: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TriggerTestWebhookEventRequest {
    pub event_type: String,
    /// Fields to set in the test event's `data`, over a sample object of the type.
    #[schema(value_type = Option<Object>)]
    pub override_data: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerTestWebhookEventResponse {
    pub triggered: bool,
}
