//! The OpenAPI 3.1 document, generated from the handlers and wire types. A copy is committed at
//! docs/openapi.json; a test fails when the two differ.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "ebb", description = "Self-hosted crypto refunds with Cobo's Payments API (WaaS 2.0). Every /v2/payments, /v2/compliance, /v2/webhooks and /v2/sandbox request is signed (Biz-Api-Key, Biz-Api-Nonce, Biz-Api-Signature); every response carries Biz-Timestamp and Biz-Resp-Signature."),
    paths(
        routes::refunds::create, routes::refunds::list, routes::refunds::get, routes::refunds::update, routes::refunds::cancel,
        routes::links::create,
        routes::approvals::create_policy, routes::approvals::list_policies, routes::approvals::get_policy,
        routes::approvals::update_policy, routes::approvals::delete_policy, routes::approvals::queue,
        routes::approvals::approve, routes::approvals::reject,
        routes::compliance::create_kya, routes::compliance::list_kya, routes::compliance::get_kya,
        routes::compliance::kyt_status, routes::compliance::unfreeze, routes::compliance::disposition,
        routes::compliance::refund, routes::compliance::isolate, routes::compliance::manual_review,
        routes::compliance::decisions,
        routes::merchants::create, routes::merchants::list, routes::merchants::get, routes::merchants::update,
        routes::orders::create, routes::orders::list, routes::orders::get, routes::orders::update,
        routes::balances::merchants, routes::balances::psp, routes::balances::changes,
        routes::tokens::list, routes::tokens::exchange_rate, routes::sandbox::pay_order,
        routes::webhooks::create, routes::webhooks::list, routes::webhooks::get, routes::webhooks::update,
        routes::webhooks::list_events, routes::webhooks::get_event, routes::webhooks::logs, routes::webhooks::retry,
        routes::webhooks::trigger, routes::webhooks::definitions,
    ),
    modifiers(&Security),
    security(("cobo_signature" = [])),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cobo_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Biz-Api-Key",
                "Ed25519 public key (hex); with Biz-Api-Nonce and Biz-Api-Signature, see docs/API.md",
            ))),
        );
    }
}

/// OpenAPI links from each create to the operations on what it made, with the new id taken from the
/// 201's body: what a client does next, and what schemathesis' stateful phase follows (create → get →
/// update → cancel). Operation ids repeat across resources (`create`, `get`), so links name their
/// target by path (`operationRef`). They are added to the JSON: utoipa 5.5's `Link` serialises its
/// fields in snake case (`operation_ref`), which no OpenAPI reader knows.
///
/// Each entry: the create's path, the id field of its 201 body and the path parameter it fills, and
/// the targets as (link name, path, method).
const LINKS: &[(&str, &str, &[(&str, &str, &str)])] = &[
    (
        "/v2/payments/refunds",
        "refund_id",
        &[
            ("GetRefund", "/v2/payments/refunds/{refund_id}", "get"),
            ("UpdateRefund", "/v2/payments/refunds/{refund_id}", "put"),
            ("CancelRefund", "/v2/payments/refunds/{refund_id}/cancel", "put"),
            ("ApproveRefund", "/v2/payments/refunds/{refund_id}/approve", "post"),
            ("RejectRefund", "/v2/payments/refunds/{refund_id}/reject", "post"),
        ],
    ),
    (
        "/v2/payments/merchants",
        "merchant_id",
        &[
            ("GetMerchant", "/v2/payments/merchants/{merchant_id}", "get"),
            ("UpdateMerchant", "/v2/payments/merchants/{merchant_id}", "put"),
        ],
    ),
    (
        "/v2/payments/orders",
        "order_id",
        &[
            ("GetOrder", "/v2/payments/orders/{order_id}", "get"),
            ("UpdateOrder", "/v2/payments/orders/{order_id}", "put"),
            ("PayOrderInSandbox", "/v2/sandbox/orders/{order_id}/payments", "post"),
        ],
    ),
    (
        "/v2/payments/approval_policies",
        "policy_id",
        &[
            ("GetPolicy", "/v2/payments/approval_policies/{policy_id}", "get"),
            ("UpdatePolicy", "/v2/payments/approval_policies/{policy_id}", "put"),
            ("DeletePolicy", "/v2/payments/approval_policies/{policy_id}", "delete"),
        ],
    ),
    (
        "/v2/compliance/kya/screenings",
        "screening_id",
        &[("GetScreening", "/v2/compliance/kya/screenings/{screening_id}", "get")],
    ),
    (
        "/v2/webhooks/endpoints",
        "endpoint_id",
        &[
            ("GetEndpoint", "/v2/webhooks/endpoints/{endpoint_id}", "get"),
            ("UpdateEndpoint", "/v2/webhooks/endpoints/{endpoint_id}", "put"),
            ("ListEndpointEvents", "/v2/webhooks/endpoints/{endpoint_id}/events", "get"),
        ],
    ),
];

pub fn document_json() -> String {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
    for (create, id, targets) in LINKS {
        let created = &mut document["paths"][create]["post"]["responses"]["201"];
        assert!(created.is_object(), "POST {create} has a 201 response");
        for (name, path, method) in *targets {
            created["links"][name] = serde_json::json!({
                "operationRef": format!("#/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1")),
                "parameters": { *id: format!("$response.body#/{id}") },
            });
        }
    }
    serde_json::to_string_pretty(&document).expect("the OpenAPI document serialises")
}

#[cfg(test)]
mod tests {
    /// Every link names an operation the document has; a renamed path would otherwise leave links
    /// that schemathesis silently cannot follow.
    #[test]
    fn every_link_points_at_an_operation() {
        let document: serde_json::Value = serde_json::from_str(&super::document_json()).unwrap();
        let mut links = 0;
        for (create, _, targets) in super::LINKS {
            for (_, path, method) in *targets {
                assert!(document["paths"][path][method].is_object(), "{method} {path}, linked from {create}");
                links += 1;
            }
        }
        assert_eq!(links, 17);
    }

    /// The committed copy must match what the code generates; regenerate with
    /// `cargo run -p ebb -- openapi > docs/openapi.json`.
    #[test]
    fn committed_openapi_document_matches_the_code() {
        let committed = include_str!("../../../docs/openapi.json");
        assert_eq!(
            committed.trim_end(),
            super::document_json().trim_end(),
            "docs/openapi.json is stale: regenerate it"
        );
    }
}
