use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(operational_endpoints_answer);

async fn operational_endpoints_answer(app: &TestApp) {
    let get = |p: &str| app.client.get(app.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let doc: serde_json::Value = get("/v2/openapi.json").await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v2/payments/refunds"]["post"].is_object());
    app.get("/v2/payments/supported_tokens").await.ok();
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            "ebb_http_requests_total{method=\"GET\",route=\"/v2/payments/supported_tokens\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    let resp = get("/healthz").await.unwrap();
    assert!(resp.headers().get("x-request-id").is_some());
}
