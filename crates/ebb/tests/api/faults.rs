//! Dependency faults: what ebb does when the network to PostgreSQL or to the RPC node resets, closes or
//! stalls, and when the disk under its SQLite file fills up; and how it recovers.
//!
//! The network faults go through [`FaultProxy`], a TCP proxy written for these tests: no local tool
//! injects faults into live connections on demand (the kernel's `tc netem` needs a network namespace per
//! test and cannot reset a connection).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::chains::TestChain;
use crate::helpers::{Options, TestApp, USER_ADDRESS};

/// What the proxy does to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward bytes both ways.
    Pass,
    /// Cut every connection with a TCP reset, and reset new ones as they arrive (a peer that crashed,
    /// or a firewall that rejects).
    Reset,
    /// Close every connection quietly (FIN), and new ones as they arrive.
    Close,
    /// Accept and hold: bytes stay where they are until the fault ends, then flow again (a network
    /// partition that heals, a peer paused).
    Stall,
}

pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, _) = watch::channel(Fault::Pass);
        let fault = Arc::new(fault);
        let faults = fault.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(proxy_connection(inbound, upstream.clone(), faults.subscribe()));
            }
        });
        FaultProxy { addr, fault }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

/// Waits while the proxy stalls; returns the fault that ended the wait.
async fn unless_stalled(fault: &mut watch::Receiver<Fault>) -> Fault {
    match fault.wait_for(|f| *f != Fault::Stall).await {
        Ok(f) => *f,
        Err(_) => Fault::Close,
    }
}

async fn proxy_connection(inbound: TcpStream, upstream: String, mut fault: watch::Receiver<Fault>) {
    let ending = match unless_stalled(&mut fault).await {
        Fault::Pass => match TcpStream::connect(&upstream).await {
            Ok(outbound) => {
                let ending = tokio::select! {
                    f = pump(&inbound, &outbound, fault.clone()) => f,
                    f = pump(&outbound, &inbound, fault.clone()) => f,
                };
                if ending == Fault::Reset {
                    reset(&outbound);
                }
                ending
            }
            Err(_) => Fault::Reset,
        },
        other => other,
    };
    if ending == Fault::Reset {
        reset(&inbound);
    }
}

/// SO_LINGER 0: the close that follows is a reset, not a FIN.
fn reset(stream: &TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// Copies `from` to `to` while the proxy passes, holding bytes while it stalls. Returns the fault that
/// ended the connection (`Close` for an ordinary end).
async fn pump(from: &TcpStream, to: &TcpStream, mut fault: watch::Receiver<Fault>) -> Fault {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match unless_stalled(&mut fault).await {
            Fault::Pass => {}
            other => return other,
        }
        let n = tokio::select! {
            read = read(from, &mut buf) => match read {
                Ok(0) | Err(_) => return Fault::Close,
                Ok(n) => n,
            },
            _ = fault.changed() => continue,
        };
        match unless_stalled(&mut fault).await {
            Fault::Pass => {}
            other => return other,
        }
        if write_all(to, &buf[..n]).await.is_err() {
            return Fault::Close;
        }
    }
}

async fn read(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn refund_body(merchant: &str, request_id: &str) -> Value {
    json!({"request_id": request_id, "merchant_id": merchant, "payable_amount": "1", "token_id": "ETH_USDT",
           "refund_type": "Merchant", "to_address": USER_ADDRESS})
}

/// A create sent while the database may be away: the answer, and how long it took. Whatever the fault,
/// ebb must answer (within its request timeout) with a signed 201 or a signed 503 — never another 5xx
/// (`send_checked` fails the test on one).
async fn create_timed(app: &TestApp, merchant: &str, request_id: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let r = app
        .call_signed(
            &app.signing(),
            Method::POST,
            "/v2/payments/refunds",
            Some(refund_body(merchant, request_id).to_string().into_bytes()),
        )
        .await;
    (r.status.as_u16(), r.body, started.elapsed())
}

async fn wait_ready(app: &TestApp) -> Duration {
    let started = Instant::now();
    loop {
        let status = app.client.get(app.url("/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        if status == 200 {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "ebb never became ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PostgreSQL behind a network that resets, closes and stalls. While it resets or closes, every request
/// ebb cannot serve is answered 503 (code 50300, "retry later"), signed, within the pool's acquire
/// timeout; `/readyz` says 503. When it heals, the pool opens new connections by itself, the requests a
/// client repeats with the same request ids make one refund each, and the payout executor, which met the
/// same errors, pays every refund once. A stall shorter than the request timeout only delays the
/// requests in flight: they finish when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_behind_a_faulty_network() {
    if !crate::helpers::postgres_wanted().await {
        return;
    }
    let upstream = reqwest::Url::parse(&crate::helpers::postgres_admin_url()).unwrap();
    let upstream = format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap_or(5432));
    let proxy = FaultProxy::start(&upstream).await;
    let options = Options { postgres_via: Some(proxy.addr), ..Options::paying() };
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Postgres, options).await;
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    for i in 0..5 {
        assert_eq!(create_timed(&app, &m, &format!("before-{i}")).await.0, 201);
    }

    for fault in [Fault::Reset, Fault::Close] {
        proxy.set(fault);
        let during: Vec<String> = (0..4).map(|i| format!("{fault:?}-{i}")).collect();
        let answers = futures::future::join_all(during.iter().map(|id| create_timed(&app, &m, id))).await;
        for (status, body, took) in &answers {
            assert_eq!(*status, 503, "{fault:?}: {body}");
            assert_eq!(body["error_code"], 50300, "{body}");
            assert!(*took < Duration::from_secs(12), "{fault:?}: answered after {took:?}");
        }
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 503);
        eprintln!(
            "{fault:?}: 503 in {:?}",
            answers.iter().map(|(_, _, took)| format!("{:.1}s", took.as_secs_f64())).collect::<Vec<_>>()
        );

        proxy.set(Fault::Pass);
        let back = wait_ready(&app).await;
        eprintln!("{fault:?} lifted: ready again after {back:?}");
        for id in &during {
            let (status, body, _) = create_timed(&app, &m, id).await;
            assert_eq!(status, 201, "{body}");
        }
    }

    // A stall shorter than the request timeout: the requests in flight wait and then succeed.
    proxy.set(Fault::Stall);
    let stalled = tokio::spawn({
        let client = app.client.clone();
        let url = app.url("/readyz");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let (status, body, took) = {
        let lift = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.set(Fault::Pass);
        };
        let (answer, ()) = tokio::join!(create_timed(&app, &m, "stalled"), lift);
        answer
    };
    assert_eq!(status, 201, "{body}");
    assert!(took >= Duration::from_secs(2), "the stall held the request: {took:?}");
    assert_eq!(stalled.await.unwrap().unwrap(), 200);

    // One refund per request id, each charged once, and every one paid once.
    let listed = app.get(&format!("/v2/payments/refunds?merchant_id={m}&limit=50")).await.ok();
    let refunds = listed["data"].as_array().unwrap();
    assert_eq!(refunds.len(), 5 + 4 + 4 + 1, "{listed}");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "86");
    for r in refunds {
        app.mine_until(&app.sandbox("ETH"), r["refund_id"].as_str().unwrap(), "Completed").await;
    }
    app.finish().await;
}

/// A tmpfs of its own, for a disk that fills up: mounting needs root, which CI has; elsewhere the test
/// says it is skipped (with `CI=true` it fails instead).
struct SmallDisk {
    dir: tempfile::TempDir,
    ballast: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "could not mount a tmpfs (root is needed) and CI=true: failing"
            );
            eprintln!("SKIPPED: could not mount a tmpfs for the full-disk test (run as root)");
            return None;
        }
        let ballast = dir.path().join("ballast");
        Some(SmallDisk { dir, ballast })
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("db")
    }

    /// Writes a file until the filesystem has no room left.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(&self.ballast).unwrap();
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        while f.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        // A partial block may still fit.
        while f.write_all(&block[..512]).is_ok() {}
        let _ = f.sync_all();
        eprintln!("disk filled with {} KiB of ballast", written / 1024);
    }

    fn free(&self) {
        std::fs::remove_file(&self.ballast).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// The SQLite file's disk fills up (another file takes the space) while refunds are created and a
/// customer pays. Writes are refused with a signed 503 (code 50300, "retry later"), never a 500; reads go
/// on; the pay-in watcher waits instead of skipping the payment. Once space is freed, the refused
/// requests, sent again with their request ids, make one refund each, the payment is credited once,
/// every refund is paid once, the ledger balances and SQLite's integrity check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_disk_that_fills_up() {
    let Some(disk) = SmallDisk::mount(64) else { return };
    std::fs::create_dir(disk.path()).unwrap();
    let options = Options { sqlite_dir: Some(disk.path()), ..Options::paying() };
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, options).await;
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "500", "0").await;
    let unpaid = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "paid-while-full", "payable_currency": "ETH_USDT",
                   "payable_amount": "20", "fee_amount": "0"}),
        )
        .await
        .ok();
    let first = create_timed(&app, &m, "before").await;
    assert_eq!(first.0, 201, "{}", first.1);
    let mut refund_ids = vec![first.1["refund_id"].as_str().unwrap().to_owned()];

    disk.fill();
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for i in 0..500 {
        let id = format!("full-{i}");
        let (status, body, _) = create_timed(&app, &m, &id).await;
        match status {
            201 => {
                refund_ids.push(body["refund_id"].as_str().unwrap().to_owned());
                accepted.push(id);
            }
            503 => {
                assert_eq!(body["error_code"], 50300, "{body}");
                refused.push(id);
            }
            other => panic!("a create on a full disk answered {other}: {body}"),
        }
        if refused.len() == 5 {
            break;
        }
    }
    assert_eq!(refused.len(), 5, "the full disk never refused a write ({} accepted)", accepted.len());
    eprintln!("full disk: {} creates accepted (pages already in the WAL), then 503s", accepted.len());
    // Reads go on.
    let before = app.get(&format!("/v2/payments/refunds/{}", first.1["refund_id"].as_str().unwrap())).await.ok();
    assert_eq!(before["request_id"], "before");
    // A customer pays meanwhile; the watcher cannot record it yet.
    chain.0.pay_from_outside(
        USER_ADDRESS,
        unpaid["receive_address"].as_str().unwrap(),
        "ETH_USDT",
        crate::payouts::base_units("20"),
    );
    for _ in 0..10 {
        chain.mine().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    disk.free();
    for id in &refused {
        let (status, body, _) = create_timed(&app, &m, id).await;
        assert_eq!(status, 201, "{body}");
        refund_ids.push(body["refund_id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let order_id = unpaid["order_id"].as_str().unwrap();
    loop {
        let order = app.get(&format!("/v2/payments/orders/{order_id}")).await.ok();
        if order["status"] == "Completed" {
            assert_eq!(order["transactions"].as_array().unwrap().len(), 1, "{order}");
            break;
        }
        assert!(Instant::now() < deadline, "the payment made while the disk was full was never credited: {order}");
        chain.mine().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let refunds = 1 + accepted.len() + refused.len();
    let balance = app.merchant_balance(&m, "ETH_USDT").await;
    assert_eq!(balance["total_balance"], (520 - refunds).to_string(), "{balance}");
    let listed = app.get(&format!("/v2/payments/refunds?merchant_id={m}&limit=1")).await.ok();
    assert_eq!(listed["pagination"]["total_count"], refunds, "{listed}");
    for id in &refund_ids {
        app.mine_until(&chain, id, "Completed").await;
    }
    let check: String =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(app.store.pool()).await.expect("integrity_check");
    assert_eq!(check, "ok");
    app.finish().await;
}

/// PostgreSQL itself restarted (`pg_ctlcluster … restart`) while clients create refunds and the executor
/// pays them. It restarts the machine's shared server, so it is not in `cargo test`'s default run (other
/// tests would fail with it): scripts/test.sh runs it alone after the suite. Every answer is a 201 or a
/// signed 503; the 503s, sent again once ebb is ready, make one refund each; all are paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared PostgreSQL server; run alone"]
async fn postgres_restarted_mid_run() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Postgres, Options::paying()).await;
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "1000", "0").await;
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("Debian's PostgreSQL (pg_ctlcluster)")
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let restart = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let status = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .status()
            .unwrap();
        assert!(status.success());
        started.elapsed()
    });
    let (mut created, mut refused) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let id = format!("restart-{i}");
        i += 1;
        let (status, body, _) = create_timed(&app, &m, &id).await;
        match status {
            201 => created.push(body["refund_id"].as_str().unwrap().to_owned()),
            _ => {
                assert_eq!(body["error_code"], 50300, "{body}");
                refused.push(id);
            }
        }
    }
    let took = restart.await.unwrap();
    let back = wait_ready(&app).await;
    eprintln!(
        "restart took {took:?}; {} creates answered 201 and {} answered 503 meanwhile; ready {back:?} after",
        created.len(),
        refused.len()
    );
    // How many requests meet the restart depends on timing (a request waiting for a connection is served
    // once the server is back); what must hold is that none is a 500 and none is lost or paid twice.
    for id in &refused {
        let (status, body, _) = create_timed(&app, &m, id).await;
        assert_eq!(status, 201, "{body}");
        created.push(body["refund_id"].as_str().unwrap().to_owned());
    }
    let balance = app.merchant_balance(&m, "ETH_USDT").await;
    assert_eq!(balance["total_balance"], (1000 - created.len()).to_string(), "{balance}");
    let chain = app.sandbox("ETH");
    for id in &created {
        app.mine_until(&chain, id, "Completed").await;
    }
    app.finish().await;
}
