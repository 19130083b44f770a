//! The soak's mix of operations: what each does against ebb, and what the load has made.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ebb_bench::Client;
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    CreateWithAddress,
    CreateThenAddress,
    CreateThenCancel,
    Link,
    PaidOrder,
    GetRefund,
    ListRefunds,
    GetOrder,
    ListOrders,
}

impl Op {
    /// The mix: operation `n` is `MIX[n % 100]`'s kind, interleaved so that every window of the run
    /// sees the whole mix.
    pub fn of(n: u64) -> Op {
        // Weights per 100, spread by a fixed stride (37 is coprime with 100).
        const WEIGHTS: [(Op, u64); 9] = [
            (Op::CreateWithAddress, 10),
            (Op::CreateThenAddress, 2),
            (Op::CreateThenCancel, 1),
            (Op::Link, 3),
            (Op::PaidOrder, 3),
            (Op::GetRefund, 50),
            (Op::ListRefunds, 20),
            (Op::GetOrder, 6),
            (Op::ListOrders, 5),
        ];
        let mut slot = (n * 37) % 100;
        for (op, w) in WEIGHTS {
            if slot < w {
                return op;
            }
            slot -= w;
        }
        unreachable!("the weights sum to 100")
    }
}

pub struct Merchant {
    pub id: String,
    /// A paid order of this merchant that refund links refund against.
    pub order: String,
}

/// What the load has made, for the gets and for the checks at the end.
#[derive(Default)]
pub struct Made {
    pub refunds: Vec<String>,
    pub orders: Vec<String>,
    pub cancelled: HashSet<String>,
}

pub struct Load {
    pub client: Arc<Client>,
    pub merchants: Vec<Merchant>,
    /// Makes this run's request ids and order codes unique.
    pub run: String,
    pub made: Mutex<Made>,
    /// The first errors, with what was asked and answered.
    pub errors: Mutex<Vec<String>>,
}

/// The customers who pay orders and get refunds: a population of 10,000 addresses, each seen many times
/// over a long run, as a shop's customers are (and so the sandbox chain's accounts stay as many as the
/// customers).
fn random_address() -> String {
    format!("0x{:040x}", 0x5eed_0000_u64 + rand::random::<u64>() % 10_000)
}

impl Load {
    fn error(&self, what: String) {
        let mut e = self.errors.lock().unwrap();
        if e.len() < 50 {
            e.push(what);
        }
    }

    async fn expect(&self, method: Method, path: &str, body: Option<&Value>, status: u16) -> Option<Value> {
        match self.client.call(method.clone(), path, body).await {
            Ok((s, v)) if s == status => Some(v),
            Ok((s, v)) => {
                self.error(format!("{method} {path}: {s} {v}"));
                None
            }
            Err(e) => {
                self.error(format!("{method} {path}: {e:#}"));
                None
            }
        }
    }

    fn pick<T: Clone>(list: &[T], n: u64) -> Option<T> {
        // Mostly the recent ones, as a PSP's reads are.
        let len = list.len() as u64;
        if len == 0 {
            return None;
        }
        let back = (n.wrapping_mul(2654435761) % len.min(2_000)) + 1;
        Some(list[(len - back) as usize].clone())
    }

    async fn create_refund(&self, n: u64, with_address: bool) -> Option<String> {
        let merchant = &self.merchants[n as usize % self.merchants.len()];
        let mut body = json!({"request_id": format!("{}-{n}", self.run), "merchant_id": merchant.id,
                              "payable_amount": "0.01", "token_id": "ETH_USDT", "refund_type": "Merchant"});
        if with_address {
            body["to_address"] = json!(random_address());
        }
        let r = self.expect(Method::POST, "/v2/payments/refunds", Some(&body), 201).await?;
        let id = r["refund_id"].as_str()?.to_owned();
        Some(id)
    }

    pub async fn op(&self, n: u64) -> bool {
        match Op::of(n) {
            Op::CreateWithAddress => {
                let Some(id) = self.create_refund(n, true).await else { return false };
                self.made.lock().unwrap().refunds.push(id);
                true
            }
            Op::CreateThenAddress => {
                let Some(id) = self.create_refund(n, false).await else { return false };
                self.made.lock().unwrap().refunds.push(id.clone());
                let body = json!({"to_address": random_address()});
                self.expect(Method::PUT, &format!("/v2/payments/refunds/{id}"), Some(&body), 200).await.is_some()
            }
            Op::CreateThenCancel => {
                let Some(id) = self.create_refund(n, false).await else { return false };
                self.made.lock().unwrap().cancelled.insert(id.clone());
                self.made.lock().unwrap().refunds.push(id.clone());
                self.expect(Method::PUT, &format!("/v2/payments/refunds/{id}/cancel"), None, 200).await.is_some()
            }
            Op::Link => self.link(n).await,
            Op::PaidOrder => {
                let merchant = &self.merchants[n as usize % self.merchants.len()];
                let body = json!({"merchant_id": merchant.id, "psp_order_code": format!("{}-{n}", self.run),
                                  "payable_currency": "ETH_USDT", "payable_amount": "1", "fee_amount": "0"});
                let Some(o) = self.expect(Method::POST, "/v2/payments/orders", Some(&body), 201).await else {
                    return false;
                };
                let Some(id) = o["order_id"].as_str().map(str::to_owned) else { return false };
                self.made.lock().unwrap().orders.push(id.clone());
                // Paid by one of the customers, as refunds go to them.
                let payer = json!({"from_address": random_address()});
                let path = format!("/v2/sandbox/orders/{id}/payments");
                self.expect(Method::POST, &path, Some(&payer), 201).await.is_some()
            }
            Op::GetRefund => {
                let Some(id) = Self::pick(&self.made.lock().unwrap().refunds, n) else { return true };
                self.expect(Method::GET, &format!("/v2/payments/refunds/{id}"), None, 200).await.is_some()
            }
            Op::ListRefunds => {
                let merchant = &self.merchants[n as usize % self.merchants.len()];
                let path = format!("/v2/payments/refunds?limit=20&merchant_id={}", merchant.id);
                self.expect(Method::GET, &path, None, 200).await.is_some()
            }
            Op::GetOrder => {
                let Some(id) = Self::pick(&self.made.lock().unwrap().orders, n) else { return true };
                self.expect(Method::GET, &format!("/v2/payments/orders/{id}"), None, 200).await.is_some()
            }
            Op::ListOrders => {
                let merchant = &self.merchants[n as usize % self.merchants.len()];
                let path = format!("/v2/payments/orders?limit=20&merchant_id={}", merchant.id);
                self.expect(Method::GET, &path, None, 200).await.is_some()
            }
        }
    }

    /// A refund link made by API, its page opened and its form posted as a customer's browser does,
    /// each customer from an address of its own (ebb limits form posts per client address).
    async fn link(&self, n: u64) -> bool {
        let merchant = &self.merchants[n as usize % self.merchants.len()];
        let body = json!({
            "request_id": format!("{}-{n}", self.run),
            "business_info": {"order_id": merchant.order, "amount": "0.01", "refund_source": "Merchant",
                              "merchant_id": merchant.id},
            "display_info": {"developer_name": "Soak Shop"},
        });
        let Some(link) = self.expect(Method::POST, "/v2/payments/links/refunds", Some(&body), 201).await else {
            return false;
        };
        let Some(token) = link["token"].as_str() else { return false };
        let client_ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        let base = &self.client.base;
        let http = &self.client.http;
        let page = match http
            .get(format!("{base}/refund-link?token={token}"))
            .header("X-Forwarded-For", &client_ip)
            .send()
            .await
        {
            Ok(p) if p.status() == 200 => p,
            other => {
                self.error(format!("GET /refund-link: {:?}", other.map(|p| p.status())));
                return false;
            }
        };
        let cookie = page
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").to_owned());
        let Ok(html) = page.text().await else { return false };
        let field = |name: &str| {
            let needle = format!("name=\"{name}\" value=\"");
            let start = html.find(&needle)? + needle.len();
            Some(html[start..start + html[start..].find('"')?].to_owned())
        };
        let (Some(form_token), Some(csrf), Some(cookie)) = (field("token"), field("csrf"), cookie) else {
            self.error("the refund page has no form".into());
            return false;
        };
        let form = format!("token={}&csrf={}&address={}", urlencode(&form_token), urlencode(&csrf), random_address());
        let posted = http
            .post(format!("{base}/refund-link/submit"))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::COOKIE, cookie)
            .header("X-Forwarded-For", &client_ip)
            .body(form)
            .send()
            .await;
        match posted {
            Ok(r) if r.status() == 303 => {}
            other => {
                self.error(format!("POST /refund-link/submit: {:?}", other.map(|r| r.status())));
                return false;
            }
        }
        let path = format!("/v2/payments/refunds?request_id={}-{n}", self.run);
        let Some(found) = self.expect(Method::GET, &path, None, 200).await else { return false };
        match found["data"][0]["refund_id"].as_str() {
            Some(id) => {
                self.made.lock().unwrap().refunds.push(id.to_owned());
                true
            }
            None => {
                self.error(format!("the link's refund {}-{n} is not listed", self.run));
                false
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
