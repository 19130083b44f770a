//! Maker-checker approval policies (issue 15): a refund a policy holds stays `Pending` and is never
//! paid out until enough distinct approvers other than its initiator approve it; a rejection fails it
//! and releases its funds; the queue lists and pages; address changes start approvals again; policy
//! changes never release a refund already waiting; concurrent decisions serialise.

use std::time::Duration;

use ebb_core::approval::{ApprovalPolicy, RefundChannel};
use ebb_store::keys::KeyRole;
use reqwest::Method;
use serde_json::{json, Value};

use crate::chains::TestChain;
use crate::helpers::{Options, Signing, TestApp, USER_ADDRESS};

const OTHER: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
const THIRD: &str = "0x8ba1f109551bD432803012645Ac136ddd64DBA72";

crate::both_backends_paying!(
    a_refund_over_the_threshold_waits_for_two_other_keys_then_pays_out,
    a_new_destination_waits_once_and_a_paid_one_does_not,
    a_link_refund_is_held_when_its_address_is_submitted,
);
crate::both_backends!(
    a_rejection_fails_the_refund_and_releases_its_funds,
    the_queue_lists_pages_and_confines_merchant_keys,
    a_changed_address_or_policy_never_releases_a_waiting_refund,
    concurrent_decisions_serialise,
    policies_are_validated_and_only_psp_operators_manage_them,
);
crate::both_backends_with!(a_policy_from_the_configuration_file_applies_and_is_changed_only_there, super::configured());

/// Signs as `key`.
fn as_key(app: &TestApp, key: ed25519_dalek::SigningKey) -> Signing {
    Signing { key, ..app.signing() }
}

async fn call(app: &TestApp, s: &Signing, method: Method, path: &str, body: Option<Value>) -> crate::helpers::Response {
    app.call_signed(s, method, path, body.map(|b| b.to_string().into_bytes())).await
}

async fn approver(app: &TestApp) -> Signing {
    as_key(app, app.new_key_with_role(None, KeyRole::Approver).await)
}

async fn approve(app: &TestApp, s: &Signing, refund_id: &str) -> crate::helpers::Response {
    call(app, s, Method::POST, &format!("/v2/payments/refunds/{refund_id}/approve"), Some(json!({"comment": "ok"})))
        .await
}

async fn add_policy(app: &TestApp, body: Value) -> String {
    let p = app.post("/v2/payments/approval_policies", body).await;
    assert_eq!(p.status, 201, "{}", p.body);
    p.body["policy_id"].as_str().unwrap().to_owned()
}

async fn refund(app: &TestApp, merchant: &str, request_id: &str, amount: &str, to: Option<&str>) -> Value {
    let mut body = json!({"request_id": request_id, "merchant_id": merchant, "payable_amount": amount,
                          "token_id": "ETH_USDT", "refund_type": "Merchant"});
    if let Some(to) = to {
        body["to_address"] = json!(to);
    }
    let r = app.post("/v2/payments/refunds", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

fn id(v: &Value) -> String {
    v["refund_id"].as_str().unwrap().to_owned()
}

/// Gives the payout executor (every 20 ms) and the sandbox time to pay a refund that is payable, and
/// shows this one was not: still `Pending`, no transaction.
async fn assert_not_paid(app: &TestApp, refund_id: &str) -> Value {
    let chain = app.sandbox("ETH");
    for _ in 0..5 {
        chain.mine().await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let r = app.get(&format!("/v2/payments/refunds/{refund_id}")).await.ok();
    assert_eq!(r["status"], "Pending", "{r}");
    assert_eq!(r["transactions"], json!([]), "nothing was sent: {r}");
    r
}

/// The approval events raised for a refund, in order, as a subscribed endpoint's event list shows them.
async fn approval_events(app: &TestApp, endpoint_id: &str, refund_id: &str) -> Vec<Value> {
    let events = app.get(&format!("/v2/webhooks/endpoints/{endpoint_id}/events?limit=50")).await.ok();
    let mut mine: Vec<Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "payment.refund.approval.updated" && e["data"]["refund_id"] == refund_id)
        .cloned()
        .collect();
    mine.reverse();
    mine
}

async fn a_refund_over_the_threshold_waits_for_two_other_keys_then_pays_out(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    let endpoint = app
        .post(
            "/v2/webhooks/endpoints",
            json!({"url": "http://127.0.0.1:9/x", "subscribed_events": ["payment.refund.approval.updated"]}),
        )
        .await
        .ok()["endpoint_id"]
        .as_str()
        .unwrap()
        .to_owned();
    add_policy(app, json!({"name": "large", "min_amount": "5", "approvals_required": 2})).await;

    // Below the threshold: no approval, paid at once.
    let small = refund(app, &m, "small", "4.99", Some(USER_ADDRESS)).await;
    assert!(small.get("approval").is_none(), "{small}");
    app.mine_until(&chain, &id(&small), "Completed").await;

    // At the threshold: held.
    let large = refund(app, &m, "large", "5", Some(USER_ADDRESS)).await;
    let large_id = id(&large);
    assert_eq!(large["status"], "Pending");
    assert_eq!(large["approval"]["status"], "Pending", "{large}");
    assert_eq!(large["approval"]["required"], 2);
    assert_not_paid(app, &large_id).await;

    // The initiator's key may not approve its own refund, nor may a merchant's key.
    approve(app, &app.signing(), &large_id).await.error(403, 40300);
    let merchant_key = as_key(app, app.new_key(Some(&m)).await);
    approve(app, &merchant_key, &large_id).await.error(403, 40300);

    let (a, b) = (approver(app).await, approver(app).await);
    let once = approve(app, &a, &large_id).await.ok();
    assert_eq!(once["approval"]["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(once["approval"]["approvals"][0]["comment"], "ok");
    assert_eq!(once["approval"]["status"], "Pending");
    let again = approve(app, &a, &large_id).await.ok();
    assert_eq!(again["approval"]["approvals"].as_array().unwrap().len(), 1, "one approver counts once: {again}");
    assert_not_paid(app, &large_id).await;

    let twice = approve(app, &b, &large_id).await.ok();
    assert_eq!(twice["approval"]["status"], "Approved", "{twice}");
    let done = app.mine_until(&chain, &large_id, "Completed").await;
    assert_eq!(done["approval"]["status"], "Approved");
    approve(app, &approver(app).await, &large_id).await.error(409, 40901);

    // One event when the policy took it, one per counted approval (the repeated one changed nothing).
    let events = approval_events(app, &endpoint, &large_id).await;
    let statuses: Vec<(&str, usize)> = events
        .iter()
        .map(|e| {
            let a = &e["data"]["approval"];
            (a["status"].as_str().unwrap(), a["approvals"].as_array().unwrap().len())
        })
        .collect();
    assert_eq!(statuses, vec![("Pending", 0), ("Pending", 1), ("Approved", 2)], "{events:?}");
}

async fn a_rejection_fails_the_refund_and_releases_its_funds(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "10", "0").await;
    add_policy(app, json!({"name": "all", "approvals_required": 1})).await;
    let r = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "r", "merchant_id": m, "order_id": order["order_id"], "payable_amount": "10",
                   "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS}),
        )
        .await
        .ok();
    let refund_id = id(&r);
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["available_balance"], "0");
    let a = approver(app).await;
    let path = format!("/v2/payments/refunds/{refund_id}/reject");
    call(app, &a, Method::POST, &path, Some(json!({"reason": ""}))).await.error(400, 40000);
    call(app, &app.signing(), Method::POST, &path, Some(json!({"reason": "mine"}))).await.error(403, 40300);
    let rejected = call(app, &a, Method::POST, &path, Some(json!({"reason": "customer not verified"}))).await.ok();
    assert_eq!(rejected["status"], "Failed");
    assert_eq!(rejected["failed_reason"], "Rejected: customer not verified");
    assert_eq!(rejected["approval"]["status"], "Rejected");
    assert_eq!(rejected["approval"]["rejection"]["comment"], "customer not verified");
    let balance = app.merchant_balance(&m, "ETH_USDT").await;
    assert_eq!(balance["available_balance"], "10", "the reservation is released: {balance}");
    // Decided: neither approve nor reject again; the order can be refunded in full again.
    approve(app, &approver(app).await, &refund_id).await.error(409, 40901);
    call(app, &a, Method::POST, &path, Some(json!({"reason": "again"}))).await.error(409, 40901);
    let again = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "r2", "merchant_id": m, "order_id": order["order_id"], "payable_amount": "10",
                   "token_id": "ETH_USDT", "refund_type": "Merchant"}),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    // A refund under no policy (no address yet) has nothing to approve.
    approve(app, &a, &id(&again.body)).await.error(409, 40901);
    approve(app, &a, "R-unknown").await.error(404, 40400);
}

async fn the_queue_lists_pages_and_confines_merchant_keys(app: &TestApp) {
    let (m, other) = (app.create_merchant("Shop").await, app.create_merchant("Other").await);
    app.paid_order(&m, "100", "0").await;
    app.paid_order(&other, "100", "0").await;
    add_policy(app, json!({"name": "over 1", "min_amount": "1", "approvals_required": 1})).await;
    let mut waiting = Vec::new();
    for i in 0..3 {
        waiting.push(id(&refund(app, &m, &format!("w{i}"), "2", Some(USER_ADDRESS)).await));
    }
    refund(app, &m, "small", "0.5", Some(USER_ADDRESS)).await;
    let theirs = id(&refund(app, &other, "theirs", "2", Some(USER_ADDRESS)).await);
    let a = approver(app).await;
    approve(app, &a, &waiting[0]).await.ok();
    app.put(&format!("/v2/payments/refunds/{}/cancel", waiting[1]), None).await.ok();

    let ids = |page: &Value| -> Vec<String> {
        page["data"].as_array().unwrap().iter().map(|r| r["refund_id"].as_str().unwrap().to_owned()).collect()
    };
    let pending = app.get("/v2/payments/approvals?status=Pending&limit=1").await.ok();
    assert_eq!(ids(&pending), vec![theirs.clone()], "newest first; approved and cancelled ones left out");
    let after = pending["pagination"]["after"].as_str().unwrap();
    let next = app.get(&format!("/v2/payments/approvals?status=Pending&limit=1&after={after}")).await.ok();
    assert_eq!(ids(&next), vec![waiting[2].clone()]);
    assert_eq!(next["pagination"]["after"], "", "{next}");
    let approved = app.get("/v2/payments/approvals?status=Approved").await.ok();
    assert_eq!(ids(&approved), vec![waiting[0].clone()]);
    let all = app.get(&format!("/v2/payments/approvals?merchant_id={m}")).await.ok();
    assert_eq!(ids(&all).len(), 3, "every refund under a policy, the small one not: {all}");
    app.get("/v2/payments/approvals?status=Maybe").await.error(400, 40000);

    // An approver's key reads the queue; a merchant's key sees only its own merchant.
    call(app, &a, Method::GET, "/v2/payments/approvals", None).await.ok();
    let merchant_key = as_key(app, app.new_key(Some(&m)).await);
    let own = call(app, &merchant_key, Method::GET, "/v2/payments/approvals?status=Pending", None).await.ok();
    assert_eq!(ids(&own), vec![waiting[2].clone()]);
    call(app, &merchant_key, Method::GET, &format!("/v2/payments/approvals?merchant_id={other}"), None)
        .await
        .error(404, 40400);
}

async fn a_changed_address_or_policy_never_releases_a_waiting_refund(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    let policy = add_policy(app, json!({"name": "two", "approvals_required": 2})).await;
    let r = refund(app, &m, "r", "3", Some(USER_ADDRESS)).await;
    let refund_id = id(&r);
    let first = approve(app, &approver(app).await, &refund_id).await.ok();
    assert_eq!(first["approval"]["approvals"].as_array().unwrap().len(), 1);

    // The address changes: what was approved no longer stands.
    let moved = app.put(&format!("/v2/payments/refunds/{refund_id}"), Some(json!({"to_address": OTHER}))).await.ok();
    assert_eq!(moved["approval"]["status"], "Pending");
    assert_eq!(moved["approval"]["approvals"], json!([]), "{moved}");

    // Loosening or deleting the policy releases nothing already waiting.
    let loose = app
        .put(&format!("/v2/payments/approval_policies/{policy}"), Some(json!({"name": "one", "approvals_required": 1})))
        .await
        .ok();
    assert_eq!(loose["approvals_required"], 1);
    let a = approver(app).await;
    let after_loosening = approve(app, &a, &refund_id).await.ok();
    assert_eq!(after_loosening["approval"]["status"], "Pending", "still two needed: {after_loosening}");
    let deleted = app.call(Method::DELETE, &format!("/v2/payments/approval_policies/{policy}"), None).await.ok();
    assert_eq!(deleted["policy_id"], policy);
    app.get(&format!("/v2/payments/approval_policies/{policy}")).await.error(404, 40400);
    // A new address with no policy left still starts approvals again under the old one.
    let again = app.put(&format!("/v2/payments/refunds/{refund_id}"), Some(json!({"to_address": THIRD}))).await.ok();
    assert_eq!(again["approval"]["approvals"], json!([]));
    assert_eq!(again["approval"]["required"], 2);
    // A stricter policy that now applies takes over.
    add_policy(app, json!({"name": "three", "approvals_required": 3})).await;
    let stricter = app.put(&format!("/v2/payments/refunds/{refund_id}"), Some(json!({"to_address": OTHER}))).await.ok();
    assert_eq!(stricter["approval"]["required"], 3, "{stricter}");
    // A new refund falls under the policy in force now.
    let r = refund(app, &m, "later", "1", Some(USER_ADDRESS)).await;
    assert_eq!(r["approval"]["required"], 3, "{r}");
}

async fn concurrent_decisions_serialise(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    add_policy(app, json!({"name": "two", "approvals_required": 2})).await;
    let (a, b) = (approver(app).await, approver(app).await);

    // Two approvers at once: both count.
    let r = id(&refund(app, &m, "both", "1", Some(USER_ADDRESS)).await);
    let (x, y) = tokio::join!(approve(app, &a, &r), approve(app, &b, &r));
    x.ok();
    y.ok();
    let both = app.get(&format!("/v2/payments/refunds/{r}")).await.ok();
    assert_eq!(both["approval"]["status"], "Approved", "{both}");
    assert_eq!(both["approval"]["approvals"].as_array().unwrap().len(), 2);

    // One approver twice at once: counts once.
    let r = id(&refund(app, &m, "same", "1", Some(USER_ADDRESS)).await);
    let (x, y) = tokio::join!(approve(app, &a, &r), approve(app, &a, &r));
    x.ok();
    y.ok();
    let same = app.get(&format!("/v2/payments/refunds/{r}")).await.ok();
    assert_eq!(same["approval"]["approvals"].as_array().unwrap().len(), 1, "{same}");
    assert_eq!(same["approval"]["status"], "Pending");

    // Approve against cancel: the cancel always wins (a refund waiting or approved but unpaid may be
    // cancelled); the approval either came first or is refused; the funds are released once.
    for i in 0..4 {
        let before = app.merchant_balance(&m, "ETH_USDT").await["available_balance"].clone();
        let r = id(&refund(app, &m, &format!("race{i}"), "1", Some(USER_ADDRESS)).await);
        let cancel = format!("/v2/payments/refunds/{r}/cancel");
        let (approved, cancelled) = tokio::join!(approve(app, &a, &r), app.put(&cancel, None));
        assert_eq!(cancelled.status, 200, "{}", cancelled.body);
        assert!(approved.status == 200 || approved.body["error_code"] == 40901, "{}", approved.body);
        let after = app.get(&format!("/v2/payments/refunds/{r}")).await.ok();
        assert_eq!((after["status"].as_str(), after["failed_reason"].as_str()), (Some("Failed"), Some("Cancelled")));
        assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["available_balance"], before);
    }
}

async fn a_new_destination_waits_once_and_a_paid_one_does_not(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    add_policy(app, json!({"name": "new addresses", "new_destination_only": true, "approvals_required": 1})).await;
    let first = refund(app, &m, "first", "1", Some(OTHER)).await;
    assert_eq!(first["approval"]["status"], "Pending", "{first}");
    // Another refund to the same address while the first is unpaid: still never paid before.
    let second = refund(app, &m, "second", "1", Some(OTHER)).await;
    assert_eq!(second["approval"]["status"], "Pending");
    approve(app, &approver(app).await, &id(&first)).await.ok();
    app.mine_until(&chain, &id(&first), "Completed").await;
    let third = refund(app, &m, "third", "1", Some(OTHER)).await;
    assert!(third.get("approval").is_none(), "paid before: {third}");
    app.mine_until(&chain, &id(&third), "Completed").await;
    assert_not_paid(app, &id(&second)).await;
}

async fn a_link_refund_is_held_when_its_address_is_submitted(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "100", "0").await;
    add_policy(app, json!({"name": "links", "sources": ["Link"], "approvals_required": 1})).await;
    // Made through the API: not held.
    let api = refund(app, &m, "api", "1", Some(USER_ADDRESS)).await;
    assert!(api.get("approval").is_none(), "{api}");
    assert_eq!(api["source"], "Api");
    let link = app
        .post(
            "/v2/payments/links/refunds",
            json!({"request_id": "link", "business_info": {"order_id": order["order_id"], "amount": "2",
                   "refund_source": "Merchant", "merchant_id": m}}),
        )
        .await
        .ok();
    let token = ebb_app::links::LinkToken::parse(link["token"].as_str().unwrap()).unwrap();
    let address = ebb_core::Address::parse(ebb_core::ChainFamily::Evm, OTHER).unwrap();
    let submitted = ebb_app::links::submit(&app.engine, &token, address).await.unwrap().unwrap();
    let refund_id = submitted.refund_id.clone();
    let r = app.get(&format!("/v2/payments/refunds/{refund_id}")).await.ok();
    assert_eq!(r["source"], "Link");
    assert_eq!(r["approval"]["status"], "Pending", "{r}");
    assert_not_paid(app, &refund_id).await;
    approve(app, &approver(app).await, &refund_id).await.ok();
    app.mine_until(&chain, &refund_id, "Completed").await;
}

async fn policies_are_validated_and_only_psp_operators_manage_them(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let path = "/v2/payments/approval_policies";
    for bad in [
        json!({"name": "zero", "approvals_required": 0}),
        json!({"name": "six", "approvals_required": 6}),
        json!({"name": "", "approvals_required": 1}),
        json!({"name": "tok", "token_ids": ["NOPE"], "approvals_required": 1}),
        json!({"name": "type", "refund_types": ["Someone"], "approvals_required": 1}),
        json!({"name": "src", "sources": ["Email"], "approvals_required": 1}),
        json!({"name": "amt", "min_amount": "-1", "approvals_required": 1}),
        json!({"name": "amt", "min_amount": "1e3", "approvals_required": 1}),
        json!({"name": "typo", "approval_required": 1}),
        json!({"name": "extra", "approvals_required": 1, "approvers": ["x"]}),
    ] {
        let resp = app.post(path, bad.clone()).await;
        assert_eq!(resp.status, 400, "{bad} -> {}", resp.body);
    }
    app.post(path, json!({"name": "ghost", "merchant_ids": ["M-none"], "approvals_required": 1}))
        .await
        .error(404, 40400);

    let merchant_key = as_key(app, app.new_key(Some(&m)).await);
    let a = approver(app).await;
    let body = json!({"name": "p", "merchant_ids": [m], "token_ids": ["ETH_USDT"], "refund_types": ["Merchant"],
                      "sources": ["Api", "Link"], "min_amount": "1.5", "approvals_required": 2});
    call(app, &merchant_key, Method::POST, path, Some(body.clone())).await.error(403, 40300);
    call(app, &a, Method::POST, path, Some(body.clone())).await.error(403, 40300);
    let created = app.post(path, body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let p = created.body;
    assert_eq!(p["origin"], "api");
    assert_eq!(p["min_amount"], "1.5");
    assert_eq!(p["sources"], json!(["Api", "Link"]));
    let policy_id = p["policy_id"].as_str().unwrap();
    let one = format!("{path}/{policy_id}");
    assert_eq!(call(app, &a, Method::GET, &one, None).await.ok()["name"], "p", "an approver reads policies");
    call(app, &merchant_key, Method::GET, path, None).await.error(403, 40300);
    call(app, &a, Method::DELETE, &one, None).await.error(403, 40300);
    call(app, &a, Method::PUT, &one, Some(json!({"name": "q", "approvals_required": 1}))).await.error(403, 40300);
    let listed = app.get(path).await.ok();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    app.put(&format!("{path}/AP-none"), Some(json!({"name": "q", "approvals_required": 1}))).await.error(404, 40400);
    app.put(&one, Some(json!({"name": "q", "approvals_required": 9}))).await.error(400, 40000);
    assert_eq!(app.get(&one).await.ok()["approvals_required"], 2, "a refused change changes nothing");
}

fn configured() -> Options {
    Options {
        approval_policies: vec![ApprovalPolicy {
            policy_id: "ops-large".into(),
            name: "Large refunds".into(),
            token_ids: vec!["ETH_USDT".into()],
            merchant_ids: Vec::new(),
            refund_types: Vec::new(),
            min_amount: Some("50".into()),
            min_fiat: None,
            new_destination_only: false,
            channels: vec![RefundChannel::Api],
            approvals_required: 1,
        }],
        ..Options::default()
    }
}

async fn a_policy_from_the_configuration_file_applies_and_is_changed_only_there(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    let p = app.get("/v2/payments/approval_policies/ops-large").await.ok();
    assert_eq!(p["origin"], "config");
    app.put("/v2/payments/approval_policies/ops-large", Some(json!({"name": "x", "approvals_required": 1})))
        .await
        .error(409, 40901);
    app.call(Method::DELETE, "/v2/payments/approval_policies/ops-large", None).await.error(409, 40901);
    assert!(refund(app, &m, "small", "49.99", Some(USER_ADDRESS)).await.get("approval").is_none());
    let large = refund(app, &m, "large", "50", Some(USER_ADDRESS)).await;
    assert_eq!(large["approval"]["policy_id"], "ops-large", "{large}");
}
