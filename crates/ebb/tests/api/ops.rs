use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(operational_endpoints_answer, made_up_methods_do_not_grow_the_metrics);

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

/// Unauthenticated requests with made-up methods and paths fold into fixed labels: after the first
/// two, 300 more add no line to `/metrics`.
async fn made_up_methods_do_not_grow_the_metrics(app: &TestApp) {
    let metrics = || async { app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let probe = |i: usize| async move {
        let method = reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
        app.client.request(method.clone(), app.url("/healthz")).send().await.unwrap();
        app.client.request(method, app.url(&format!("/no/such/path/{i}"))).send().await.unwrap();
    };
    probe(0).await;
    metrics().await;
    let before = metrics().await.lines().count();
    for i in 1..=300 {
        probe(i).await;
    }
    let after = metrics().await;
    assert_eq!(after.lines().count(), before, "{after}");
    assert!(after.contains("method=\"OTHER\""), "{after}");
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let settings = || ebb::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: ebb_store::Store::sqlite_url_for_dir(dir.path()),
        server_key: ed25519_dalek::SigningKey::from_bytes(&crate::helpers::rand_bytes()),
        sandbox: false,
        max_connections: 2,
        registry: ebb_core::TokenRegistry::cobo_defaults(),
        chains: Vec::new(),
        workers: Default::default(),
        webhooks: Default::default(),
        links: Default::default(),
        approval_policies: Vec::new(),
        screening: Default::default(),
        prices: Default::default(),
        mail: None,
        console: Default::default(),
    };
    let first = ebb::Application::build(settings()).await.expect("the first server starts");
    let second = ebb::Application::build(settings()).await.err().expect("a second server on the file is refused");
    assert!(format!("{second:#}").contains("another ebb server"), "{second:#}");
    drop(first);
    ebb::Application::build(settings()).await.expect("the file is free again once the first server is gone");
}

/// `ebb openapi | head`: a reader that stops early ends the command quietly, never with a panic.
#[test]
fn the_openapi_command_stops_quietly_when_its_reader_goes() {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here, with most of the document (larger than a pipe's buffer) unwritten.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
