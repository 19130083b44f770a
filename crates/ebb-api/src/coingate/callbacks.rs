//! CoinGate's callbacks: the body POSTed to an order's or a refund's `callback_url` when its status
//! changes, rendered from the event's snapshot for the webhook dispatcher (docs/COINGATE.md).
//!
//! An order's callback carries the order's fields as CoinGate's order callback has them, with the
//! merchant's `token`; a refund's carries the fields of CoinGate's refund callback, and the `token` of
//! the order it refunds. Either is form-encoded (nested fields as `a[b]`) or JSON, as the token that
//! made the object asks.

use ebb_store::events::EventKind;
use ebb_store::orders::OrderRow;
use ebb_store::refunds::RefundRow;
use ebb_store::webhooks::{BodyFormat, DeliveryRow};
use serde_json::{json, Map, Value};

use super::orders::order_json_at;
use super::refunds::refund_json;
use crate::AppState;

/// The fields of CoinGate's order callback, in the order it sends them.
const ORDER_FIELDS: [&str; 14] = [
    "id",
    "order_id",
    "status",
    "pay_amount",
    "pay_currency",
    "price_amount",
    "price_currency",
    "receive_currency",
    "receive_amount",
    "created_at",
    "token",
    "underpaid_amount",
    "overpaid_amount",
    "is_refundable",
];

/// A callback delivery's content type and body.
pub(crate) async fn render(state: &AppState, d: &DeliveryRow) -> Result<(&'static str, String), String> {
    let fields = match d.kind {
        EventKind::Refund => refund_fields(state, &d.snapshot).await?,
        EventKind::Order => order_fields(state, &d.snapshot).await?,
        other => return Err(format!("a CoinGate callback is sent for orders and refunds, not a {}", other.as_str())),
    };
    match d.format {
        BodyFormat::CoinGateJson => Ok(("application/json", fields.to_string())),
        BodyFormat::CoinGateForm => Ok(("application/x-www-form-urlencoded", form_encode(&fields))),
        BodyFormat::Cobo => Err("a Cobo endpoint's body is Cobo's envelope".into()),
    }
}

async fn refund_fields(state: &AppState, snapshot: &str) -> Result<Value, String> {
    let r: RefundRow = serde_json::from_str(snapshot).map_err(|e| format!("stored refund snapshot: {e}"))?;
    let reference = state
        .store
        .coingate_refund_of(&r.refund_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("refund {} refunds no CoinGate order", r.refund_id))?;
    let order = state.store.coingate_order(reference.order_seq).await.map_err(|e| e.to_string())?;
    let full = refund_json(state, &r, &reference, None);
    let currency = |c: &Value| json!({"id": c["id"], "symbol": c["symbol"]});
    let mut v = json!({
        "id": full["id"],
        "order_id": reference.order_seq,
        "status": full["status"],
        "request_amount": full["request_amount"],
        "request_currency": currency(&full["request_currency"]),
        "address": full["address"],
        "additional_address_field": reference.extra.address_memo,
        "refund_amount": full["refund_amount"],
        "refund_currency": {
            "id": full["refund_currency"]["id"],
            "symbol": full["refund_currency"]["symbol"],
            "platform": full["refund_currency"]["platform"],
        },
        "email": full["email"],
        "reason": full["reason"],
        "ledger_account": {
            "id": full["ledger_account"]["id"],
            "currency": currency(&full["ledger_account"]["currency"]),
        },
        "token": order.and_then(|o| o.token),
    });
    if full["status"] == "rejected" {
        v["compliance_rejection_reason"] = full["rejection_reason"].clone();
    }
    Ok(v)
}

async fn order_fields(state: &AppState, snapshot: &str) -> Result<Value, String> {
    let o: OrderRow = serde_json::from_str(snapshot).map_err(|e| format!("stored order snapshot: {e}"))?;
    let cg = state
        .store
        .coingate_order_of(&o.order_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("order {} is no CoinGate order's", o.order_id))?;
    // The status as of the change, not as of the attempt.
    let full = order_json_at(state, &cg, Some(&o), o.updated_at);
    let mut v = Map::new();
    for name in ORDER_FIELDS {
        v.insert(name.into(), full.get(name).cloned().unwrap_or(Value::Null));
    }
    Ok(Value::Object(v))
}

/// `application/x-www-form-urlencoded` of a JSON object: nested objects as `a[b]=…`, `null` as an empty
/// value, `true`/`false` and numbers as their text.
fn form_encode(v: &Value) -> String {
    fn walk(out: &mut url::form_urlencoded::Serializer<'_, String>, key: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, inner) in m {
                    let name = if key.is_empty() { k.clone() } else { format!("{key}[{k}]") };
                    walk(out, &name, inner);
                }
            }
            Value::Array(items) => {
                for inner in items {
                    walk(out, &format!("{key}[]"), inner);
                }
            }
            Value::Null => {
                out.append_pair(key, "");
            }
            Value::String(s) => {
                out.append_pair(key, s);
            }
            other => {
                out.append_pair(key, &other.to_string());
            }
        }
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    walk(&mut out, "", v);
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::form_encode;
    use serde_json::json;

    #[test]
    fn form_encoding_nests_with_brackets() {
        let v = json!({
            "id": 7,
            "status": "completed",
            "request_currency": {"id": 1001, "symbol": "EUR"},
            "refund_currency": {"platform": {"id": 1, "title": "Ethereum"}},
            "additional_address_field": null,
            "is_refundable": false,
            "email": "a+b@example.com",
        });
        let body = form_encode(&v);
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("id"), Some("7"));
        assert_eq!(get("request_currency[symbol]"), Some("EUR"));
        assert_eq!(get("request_currency[id]"), Some("1001"));
        assert_eq!(get("refund_currency[platform][title]"), Some("Ethereum"));
        assert_eq!(get("additional_address_field"), Some(""));
        assert_eq!(get("is_refundable"), Some("false"));
        assert_eq!(get("email"), Some("a+b@example.com"), "a + survives: {body}");
    }
}
