//! What each kind of key may do: every endpoint called with a PSP-wide key, a key restricted to the
//! merchant the call is about, and a key restricted to another merchant. A restricted key moves only
//! its own merchant's money: the PSP's balance, the PSP's fees and every PSP-wide setting are refused
//! with 403 (code 40300); another merchant's objects do not exist for it (404).

use reqwest::Method;
use serde_json::{json, Value};

use ebb_store::keys::KeyRole;
use ed25519_dalek::SigningKey;

use crate::both_backends;
use crate::helpers::{Signing, TestApp, USER_ADDRESS};

both_backends!(every_endpoint_answers_each_key_as_its_scope_allows);
both_backends!(an_approvers_key_reads_and_changes_nothing);

async fn every_endpoint_answers_each_key_as_its_scope_allows(app: &TestApp) {
    let mine = app.create_merchant("Mine").await;
    let theirs = app.create_merchant("Theirs").await;
    app.put(&format!("/v2/payments/merchants/{mine}"), Some(json!({"developer_fee_rate": "0.01"}))).await.ok();
    let order = app.paid_order(&mine, "100", "1").await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    // The PSP balance holds the order's developer fee (1), enough for the PSP-funded refunds below.
    let refund = |request_id: String, address: Option<&str>| {
        let mut body = json!({"request_id": request_id, "merchant_id": mine, "payable_amount": "1",
                              "token_id": "ETH_USDT", "refund_type": "Merchant"});
        if let Some(a) = address {
            body["to_address"] = json!(a);
        }
        async move { app.post("/v2/payments/refunds", body).await.ok()["refund_id"].as_str().unwrap().to_owned() }
    };
    let seen = refund("seen".into(), Some(USER_ADDRESS)).await;
    let endpoint = app
        .post(
            "/v2/webhooks/endpoints",
            json!({"url": "http://127.0.0.1:9/x", "subscribed_events": ["payment.refund.status.updated"]}),
        )
        .await
        .ok()["endpoint_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut signings = Vec::new();
    for (name, merchant) in [("psp", None), ("own", Some(mine.as_str())), ("other", Some(theirs.as_str()))] {
        let mut s = app.signing();
        if merchant.is_some() {
            s.key = app.new_key(merchant).await;
        }
        signings.push((name, s));
    }

    // (method, path, body, expected status for the psp, own and other key). `{k}` in a path or body
    // becomes the key's name; `{update}`, `{cancel}` and `{expire}` a fresh object of its own.
    let psp_fee = json!({"request_id": "psp-{k}", "merchant_id": mine, "payable_amount": "0.1",
                         "token_id": "ETH_USDT", "refund_type": "Psp", "to_address": USER_ADDRESS});
    let rows: Vec<(Method, String, Option<Value>, [u16; 3])> = vec![
        (
            Method::POST,
            "/v2/payments/refunds".into(),
            Some(json!({"request_id": "m-{k}", "merchant_id": mine, "payable_amount": "1", "token_id": "ETH_USDT",
                     "refund_type": "Merchant", "to_address": USER_ADDRESS})),
            [201, 201, 404],
        ),
        (Method::POST, "/v2/payments/refunds".into(), Some(psp_fee), [201, 403, 403]),
        (Method::GET, format!("/v2/payments/refunds/{seen}"), None, [200, 200, 404]),
        (Method::GET, format!("/v2/payments/refunds?merchant_id={mine}"), None, [200, 200, 404]),
        (
            Method::PUT,
            "/v2/payments/refunds/{update}".into(),
            Some(json!({"to_address": USER_ADDRESS})),
            [200, 200, 404],
        ),
        (Method::PUT, "/v2/payments/refunds/{cancel}/cancel".into(), None, [200, 200, 404]),
        (
            Method::POST,
            "/v2/payments/links/refunds".into(),
            Some(json!({"request_id": "lm-{k}", "business_info": {"order_id": order_id, "amount": "1",
                     "refund_source": "Merchant", "merchant_id": mine}})),
            [201, 201, 404],
        ),
        (
            Method::POST,
            "/v2/payments/links/refunds".into(),
            Some(json!({"request_id": "lp-{k}", "business_info": {"order_id": order_id, "amount": "0.1",
                     "refund_source": "Psp"}})),
            [201, 403, 404],
        ),
        (Method::POST, "/v2/payments/merchants".into(), Some(json!({"name": "new-{k}"})), [201, 403, 403]),
        (Method::GET, "/v2/payments/merchants".into(), None, [200, 200, 200]),
        (Method::GET, format!("/v2/payments/merchants/{mine}"), None, [200, 200, 404]),
        (Method::PUT, format!("/v2/payments/merchants/{mine}"), Some(json!({"name": "Mine {k}"})), [200, 200, 404]),
        (
            Method::PUT,
            format!("/v2/payments/merchants/{mine}"),
            Some(json!({"developer_fee_rate": "0.01"})),
            [200, 403, 404],
        ),
        (
            Method::POST,
            "/v2/payments/orders".into(),
            Some(json!({"merchant_id": mine, "psp_order_code": "nofee-{k}", "payable_currency": "ETH_USDT",
                     "payable_amount": "50", "fee_amount": "0"})),
            [201, 403, 404],
        ),
        (
            Method::POST,
            "/v2/payments/orders".into(),
            Some(json!({"merchant_id": mine, "psp_order_code": "fee-{k}", "payable_currency": "ETH_USDT",
                     "payable_amount": "50", "fee_amount": "0.5"})),
            [201, 201, 404],
        ),
        (Method::GET, format!("/v2/payments/orders?merchant_id={mine}"), None, [200, 200, 404]),
        (Method::GET, format!("/v2/payments/orders/{order_id}"), None, [200, 200, 404]),
        (Method::PUT, "/v2/payments/orders/{expire}".into(), Some(json!({"expired": true})), [200, 200, 404]),
        (
            Method::POST,
            "/v2/sandbox/orders/{expire_not}/payments".into(),
            Some(json!({"amount": "1"})),
            [201, 201, 404],
        ),
        (Method::GET, format!("/v2/payments/balance/merchants?merchant_ids={mine}"), None, [200, 200, 404]),
        (Method::GET, "/v2/payments/balance/psp?token_id=ETH_USDT".into(), None, [200, 403, 403]),
        (Method::GET, format!("/v2/payments/balance_changes?source_account={mine}"), None, [200, 200, 404]),
        (Method::GET, "/v2/payments/balance_changes?source_account=developer".into(), None, [200, 403, 403]),
        (Method::GET, "/v2/payments/supported_tokens".into(), None, [200, 200, 200]),
        (
            Method::POST,
            "/v2/webhooks/endpoints".into(),
            Some(json!({"url": "http://127.0.0.1:9/{k}", "subscribed_events": ["payment.order.status.updated"]})),
            [201, 403, 403],
        ),
        (Method::GET, "/v2/webhooks/endpoints".into(), None, [200, 403, 403]),
        (Method::GET, format!("/v2/webhooks/endpoints/{endpoint}"), None, [200, 403, 403]),
        (
            Method::PUT,
            format!("/v2/webhooks/endpoints/{endpoint}"),
            Some(json!({"description": "{k}"})),
            [200, 403, 403],
        ),
        (Method::GET, format!("/v2/webhooks/endpoints/{endpoint}/events"), None, [200, 403, 403]),
        (
            Method::POST,
            "/v2/webhooks/events/trigger".into(),
            Some(json!({"event_type": "payment.refund.status.updated"})),
            [201, 403, 403],
        ),
        (Method::GET, "/v2/webhooks/events/definitions".into(), None, [200, 403, 403]),
        (
            Method::POST,
            "/v2/payments/approval_policies".into(),
            Some(json!({"name": "p-{k}", "min_amount": "1000000", "approvals_required": 2})),
            [201, 403, 403],
        ),
        (Method::GET, "/v2/payments/approval_policies".into(), None, [200, 403, 403]),
        (Method::GET, "/v2/payments/approvals".into(), None, [200, 200, 200]),
        (Method::GET, format!("/v2/payments/approvals?merchant_id={mine}"), None, [200, 200, 404]),
        // The PSP key made `seen`: as its initiator it may not decide on it either.
        (Method::POST, format!("/v2/payments/refunds/{seen}/approve"), Some(json!({})), [403, 403, 403]),
        (Method::POST, format!("/v2/payments/refunds/{seen}/reject"), Some(json!({"reason": "x"})), [403, 403, 403]),
    ];

    let mut failures = Vec::new();
    for (method, path, body, expected) in rows {
        for ((name, signing), want) in signings.iter().zip(expected) {
            let path = if path.contains("{update}") || path.contains("{cancel}") {
                path.replace("{update}", &refund(format!("u-{name}"), None).await)
                    .replace("{cancel}", &refund(format!("c-{name}"), None).await)
            } else if path.contains("{expire}") || path.contains("{expire_not}") {
                let o = app
                    .post(
                        "/v2/payments/orders",
                        json!({"merchant_id": mine, "psp_order_code": format!("{path}-{name}"),
                          "payable_currency": "ETH_USDT", "payable_amount": "5", "fee_amount": "0.05"}),
                    )
                    .await
                    .ok();
                let id = o["order_id"].as_str().unwrap();
                path.replace("{expire}", id).replace("{expire_not}", id)
            } else {
                path.clone()
            };
            let body = body.as_ref().map(|b| b.to_string().replace("{k}", name).into_bytes());
            let resp = app.call_signed(signing, method.clone(), &path, body).await;
            let code = resp.body["error_code"].as_i64();
            let ok = resp.status.as_u16() == want
                && match want {
                    403 => code == Some(40300),
                    404 => code == Some(40400),
                    _ => true,
                };
            if !ok {
                failures.push(format!("{method} {path} as {name}: {} {} (wanted {want})", resp.status, resp.body));
            }
            if name != &"psp" && !resp.status.is_success() {
                let text = resp.body.to_string();
                assert!(
                    !text.contains("available"),
                    "{method} {path} as {name} tells a balance in its refusal: {text}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{} calls answered otherwise:\n{}", failures.len(), failures.join("\n"));

    // The own key's refused PSP-funded refund moved nothing: the PSP balance is the fee less the PSP
    // key's own two refunds (one direct, one link).
    let psp = app.get("/v2/payments/balance/psp?token_id=ETH_USDT").await.ok();
    assert_eq!(psp["total_balance"], "0.8", "{psp}");
}

/// An approver's key (issue 15) reads everything a PSP-wide key reads and changes nothing: every
/// method but GET is refused with 403 (40300) before any handler runs, and nothing is written. A
/// merchant's key is never an approver's.
async fn an_approvers_key_reads_and_changes_nothing(app: &TestApp) {
    let merchant = app.create_merchant("M").await;
    app.paid_order(&merchant, "100", "0").await;
    let refund = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "r1", "merchant_id": merchant, "payable_amount": "1", "token_id": "ETH_USDT",
                   "refund_type": "Merchant"}),
        )
        .await
        .ok();
    let refund_id = refund["refund_id"].as_str().unwrap();
    let approver = Signing { key: app.new_key_with_role(None, KeyRole::Approver).await, ..app.signing() };
    let call = |method: Method, path: String, body: Option<Value>| {
        let approver = approver.clone();
        async move { app.call_signed(&approver, method, &path, body.map(|b| b.to_string().into_bytes())).await }
    };

    let read = call(Method::GET, format!("/v2/payments/refunds/{refund_id}"), None).await.ok();
    assert_eq!(read["status"], "PendingConfirmation");
    call(Method::GET, "/v2/payments/merchants".into(), None).await.ok();
    call(Method::GET, "/v2/webhooks/endpoints".into(), None).await.ok();

    let changes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/v2/payments/refunds".into(),
            Some(json!({"request_id": "by-approver", "merchant_id": merchant, "payable_amount": "1",
                        "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS})),
        ),
        (Method::PUT, format!("/v2/payments/refunds/{refund_id}"), Some(json!({"to_address": USER_ADDRESS}))),
        (Method::PUT, format!("/v2/payments/refunds/{refund_id}/cancel"), None),
        (Method::POST, "/v2/payments/merchants".into(), Some(json!({"name": "by approver"}))),
        (
            Method::POST,
            "/v2/payments/approval_policies".into(),
            Some(json!({"name": "by approver", "approvals_required": 1})),
        ),
        (
            Method::POST,
            "/v2/webhooks/endpoints".into(),
            Some(json!({"url": "http://127.0.0.1:9/x", "subscribed_events": ["payment.refund.status.updated"]})),
        ),
    ];
    for (method, path, body) in changes {
        let refused = call(method.clone(), path.clone(), body).await.error(403, 40300);
        assert!(refused["error_message"].as_str().unwrap().contains("approver"), "{method} {path}: {refused}");
    }
    // Nothing changed: the refund still waits for its address, no refund or merchant was made.
    assert_eq!(app.get(&format!("/v2/payments/refunds/{refund_id}")).await.ok()["status"], "PendingConfirmation");
    let refunds = app.get("/v2/payments/refunds?limit=50").await.ok();
    assert_eq!(refunds["pagination"]["total_count"], 1, "{refunds}");
    let merchants = app.get("/v2/payments/merchants?limit=50").await.ok();
    assert_eq!(merchants["pagination"]["total_count"], 1, "{merchants}");

    let key = SigningKey::from_bytes(&crate::helpers::rand_bytes());
    let public = hex::encode(key.verifying_key().to_bytes());
    let refused = ebb_app::keys::add(&app.store, &public, "x", Some(&merchant), KeyRole::Approver).await;
    assert!(matches!(refused, Err(ebb_app::AppError::Invalid(_))), "{refused:?}");
}
