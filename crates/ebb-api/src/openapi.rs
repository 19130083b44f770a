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

pub fn document_json() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises")
}

#[cfg(test)]
mod tests {
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
