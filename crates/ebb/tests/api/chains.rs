//! The chains payout tests run on: the built-in sandbox, and anvil (a real EVM node) with a test
//! ERC-20. One trait, so one test body runs on both.

use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use ebb::config::ChainSetting;
use ebb_chain::evm::EvmConfig;
use ebb_chain::sandbox::SandboxChain;
use ebb_core::{ChainFamily, Token};
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[async_trait]
pub trait TestChain: Send + Sync {
    fn hot_wallet(&self) -> String;
    /// Produces one block.
    async fn mine(&self);
    async fn token_balance(&self, address: &str) -> u128;
    async fn set_hot_wallet_tokens(&self, amount: u128);
    /// Undoes the last block mined by [`TestChain::mine`]; its transactions are gone from the chain.
    async fn reorg_last_block(&self);
    /// Pays an order (the JSON ebb returned) in full from a customer account; returns the tx hash.
    async fn pay_order(&self, app: &TestApp, order: &Value) -> String;
    /// A customer sends `amount` base units of `token_id` (`ETH_USDT`, or `ETH_USDC`: a second token
    /// with [`TestChain::usdc_decimals`]) to `to`, unmined; returns the tx hash.
    async fn send(&self, to: &str, token_id: &str, amount: U256) -> String;
    fn usdc_decimals(&self) -> u32;
    /// The largest transfer this chain can carry: more than ebb's ledger holds.
    fn absurd_amount(&self) -> U256;
}

pub struct Sandbox(pub Arc<SandboxChain>);

#[async_trait]
impl TestChain for Sandbox {
    fn hot_wallet(&self) -> String {
        self.0.hot_wallet_address()
    }
    async fn mine(&self) {
        self.0.mine();
    }
    async fn token_balance(&self, address: &str) -> u128 {
        self.0.balance(address, "ETH_USDT")
    }
    async fn set_hot_wallet_tokens(&self, amount: u128) {
        self.0.set_balance(&self.0.hot_wallet_address(), "ETH_USDT", amount);
    }
    async fn reorg_last_block(&self) {
        self.0.reorg(1);
    }
    async fn pay_order(&self, app: &TestApp, order: &Value) -> String {
        let id = order["order_id"].as_str().unwrap();
        let tx = app.post(&format!("/v2/sandbox/orders/{id}/payments"), json!({})).await.ok();
        tx["tx_hash"].as_str().unwrap().to_owned()
    }
    async fn send(&self, to: &str, token_id: &str, amount: U256) -> String {
        self.0.pay_from_outside(crate::helpers::USER_ADDRESS, to, token_id, u128::try_from(amount).unwrap())
    }
    fn usdc_decimals(&self) -> u32 {
        6
    }
    fn absurd_amount(&self) -> U256 {
        U256::from(u128::MAX)
    }
}

alloy::sol! {
    #[sol(rpc)]
    interface TestToken {
        function mint(address to, uint256 amount) external;
        function setBalance(address who, uint256 amount) external;
        function setBlocked(address who, bool value) external;
        function setFrozen(bool value) external;
        function transfer(address to, uint256 amount) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
        event Transfer(address indexed from, address indexed to, uint256 value);
    }
}

/// anvil's well-known development accounts (from its default mnemonic).
pub const OWNER_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const CUSTOMER_KEY: &str = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804ccab365a";
pub const HOT_WALLET_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// The anvil binary: `EBB_ANVIL`, else the one `npm ci` in scripts/node installs.
fn anvil_binary() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("EBB_ANVIL") {
        return Some(p.into());
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    p.exists().then_some(p)
}

pub struct Anvil {
    child: Child,
    pub url: String,
    /// Signs as the token owner (account 0).
    pub owner: DynProvider,
    pub token: Address,
    /// A second test token, ebb's `ETH_USDC` with 18 decimals (see [`Anvil::second_token_as_eth_usdc`]).
    pub token2: Address,
    hot_wallet: Address,
    snapshots: Mutex<Vec<Value>>,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    /// Starts anvil on a free port, deploys the test token, gives the hot wallet 1,000,000 TUSD, and
    /// turns automatic mining off (tests mine). `None` (with a loud line) if anvil is not installed,
    /// unless `CI=true`, where that fails the test.
    pub async fn start() -> Option<Anvil> {
        Self::start_with(false).await
    }

    /// As [`Anvil::start`]; with `automine`, every transaction is mined as it arrives.
    pub async fn start_with(automine: bool) -> Option<Anvil> {
        let Some(bin) = anvil_binary() else {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "anvil is missing: run `npm ci` in scripts/node (scripts/test.sh does)"
            );
            eprintln!("SKIPPED: anvil not installed (npm ci in scripts/node, or set EBB_ANVIL)");
            return None;
        };
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--chain-id", "31337"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining anvil's log, or it blocks once the pipe is full.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("Listening on 127.0.0.1:") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port.trim().to_owned());
                    }
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(20)).expect("anvil reports its port");
        let url = format!("http://127.0.0.1:{port}");
        let owner_signer = PrivateKeySigner::from_str(OWNER_KEY).unwrap();
        let owner = ProviderBuilder::new().wallet(owner_signer).connect_http(url.parse().unwrap()).erased();
        let code =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/TestToken.bin")).unwrap();
        let deploy = TransactionRequest::default().with_deploy_code(alloy::hex::decode(code.trim()).unwrap());
        let bytecode = alloy::hex::decode(code.trim()).unwrap();
        let receipt = owner.send_transaction(deploy).await.unwrap().get_receipt().await.unwrap();
        let token = receipt.contract_address.expect("token deployed");
        let deploy2 = TransactionRequest::default().with_deploy_code(bytecode);
        let receipt2 = owner.send_transaction(deploy2).await.unwrap().get_receipt().await.unwrap();
        let token2 = receipt2.contract_address.expect("second token deployed");
        let hot_wallet = PrivateKeySigner::from_str(HOT_WALLET_KEY).unwrap().address();
        let anvil = Anvil { child, url, owner, token, token2, hot_wallet, snapshots: Mutex::new(Vec::new()) };
        anvil
            .token()
            .mint(hot_wallet, U256::from(1_000_000_000_000u64))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        if !automine {
            anvil.rpc("evm_setAutomine", json!([false])).await;
        }
        Some(anvil)
    }

    pub fn token(&self) -> TestToken::TestTokenInstance<DynProvider> {
        TestToken::new(self.token, self.owner.clone())
    }

    /// A call whose failure is information, not a test failure (diagnostics).
    pub async fn try_rpc(&self, method: &'static str, params: Value) -> Result<Value, String> {
        self.owner.raw_request::<Value, Value>(Cow::Borrowed(method), params).await.map_err(|e| e.to_string())
    }

    pub async fn rpc(&self, method: &'static str, params: Value) -> Value {
        self.owner
            .raw_request::<Value, Value>(Cow::Borrowed(method), params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// A customer (account 2) pays `amount` of the token to `to`: minted to it first, then sent by its
    /// own transaction. Returns the transfer's hash (mined only when the chain mines).
    pub async fn pay(&self, to: &str, amount: u128) -> String {
        let customer = PrivateKeySigner::from_str(CUSTOMER_KEY).unwrap();
        let amount = U256::from(amount);
        self.rpc("anvil_setBalance", json!([customer.address().to_checksum(None), "0x8ac7230489e80000"])).await;
        let minted = self.token().mint(customer.address(), amount).send().await.unwrap();
        self.mine().await;
        minted.get_receipt().await.unwrap();
        let as_customer = ProviderBuilder::new().wallet(customer).connect_http(self.url.parse().unwrap()).erased();
        let to = Address::from_str(to).unwrap();
        let paid = TestToken::new(self.token, as_customer).transfer(to, amount).send().await.unwrap();
        format!("{:#x}", paid.tx_hash())
    }

    /// Sends `amount` of the token from the account of `key_hex` (given gas first) to `to`, mined.
    pub async fn transfer_as(&self, key_hex: &str, to: &str, amount: u128) {
        let signer = PrivateKeySigner::from_str(key_hex.trim_start_matches("0x")).unwrap();
        self.rpc("anvil_setBalance", json!([signer.address().to_checksum(None), "0x8ac7230489e80000"])).await;
        let sender = ProviderBuilder::new().wallet(signer).connect_http(self.url.parse().unwrap()).erased();
        let sent = TestToken::new(self.token, sender)
            .transfer(Address::from_str(to).unwrap(), U256::from(amount))
            .send()
            .await;
        let sent = sent.unwrap();
        self.mine().await;
        assert!(sent.get_receipt().await.unwrap().status(), "the transfer succeeds");
    }

    /// The chain setting ebb uses for this node, as chain `ETH`.
    pub fn chain_setting(&self, confirmations: u64) -> ChainSetting {
        ChainSetting::Evm(EvmConfig {
            chain_id: "ETH".into(),
            rpc_url: self.url.clone(),
            evm_chain_id: 31337,
            confirmations,
            hot_wallet_key: HOT_WALLET_KEY.into(),
            max_fee_per_gas_cap: 1_000_000_000_000,
            rpc_timeout: Duration::from_secs(5),
        })
    }

    /// The test token as ebb's `ETH_USDT` (6 decimals, like the real one).
    pub fn token_as_eth_usdt(&self) -> Token {
        Token {
            id: "ETH_USDT".into(),
            chain_id: "ETH".into(),
            family: ChainFamily::Evm,
            symbol: "USDT".into(),
            decimals: 6,
            contract: self.token.to_checksum(None),
        }
    }

    /// The second test token as ebb's `ETH_USDC`, with 18 decimals: a credit that ignored the token
    /// would be off by 10^12 as well as in the wrong token.
    pub fn second_token_as_eth_usdc(&self) -> Token {
        Token {
            id: "ETH_USDC".into(),
            chain_id: "ETH".into(),
            family: ChainFamily::Evm,
            symbol: "USDC".into(),
            decimals: 18,
            contract: self.token2.to_checksum(None),
        }
    }

    /// Every token transfer out of the hot wallet on chain: (recipient, amount).
    pub async fn payouts_on_chain(&self) -> Vec<(Address, U256)> {
        use alloy::sol_types::SolEvent;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.token)
            .event_signature(TestToken::Transfer::SIGNATURE_HASH)
            .from_block(0u64);
        let logs = self.owner.get_logs(&filter).await.unwrap();
        logs.iter()
            .filter_map(|l| l.log_decode::<TestToken::Transfer>().ok())
            .map(|l| l.inner.data.clone())
            .filter(|t| t.from == self.hot_wallet)
            .map(|t| (t.to, t.value))
            .collect()
    }
}

#[async_trait]
impl TestChain for Anvil {
    fn hot_wallet(&self) -> String {
        self.hot_wallet.to_checksum(None)
    }
    async fn mine(&self) {
        let id = self.rpc("evm_snapshot", json!([])).await;
        self.snapshots.lock().unwrap().push(id);
        self.rpc("evm_mine", json!([])).await;
    }
    async fn token_balance(&self, address: &str) -> u128 {
        let b = self.token().balanceOf(Address::from_str(address).unwrap()).call().await.unwrap();
        u128::try_from(b).unwrap()
    }
    async fn set_hot_wallet_tokens(&self, amount: u128) {
        let pending = self.token().setBalance(self.hot_wallet, U256::from(amount)).send().await.unwrap();
        self.mine().await;
        pending.get_receipt().await.unwrap();
    }
    async fn reorg_last_block(&self) {
        let id = self.snapshots.lock().unwrap().pop().expect("a block mined by the test");
        self.rpc("evm_revert", json!([id])).await;
    }
    async fn pay_order(&self, _app: &TestApp, order: &Value) -> String {
        let amount = crate::payouts::base_units(order["payable_amount"].as_str().unwrap());
        self.pay(order["receive_address"].as_str().unwrap(), amount).await
    }
    async fn send(&self, to: &str, token_id: &str, amount: U256) -> String {
        let contract = if token_id == "ETH_USDC" { self.token2 } else { self.token };
        let customer = PrivateKeySigner::from_str(CUSTOMER_KEY).unwrap();
        self.rpc("anvil_setBalance", json!([customer.address().to_checksum(None), "0x8ac7230489e80000"])).await;
        let minted =
            TestToken::new(contract, self.owner.clone()).mint(customer.address(), amount).send().await.unwrap();
        self.mine().await;
        minted.get_receipt().await.unwrap();
        let as_customer = ProviderBuilder::new().wallet(customer).connect_http(self.url.parse().unwrap()).erased();
        let sent = TestToken::new(contract, as_customer)
            .transfer(Address::from_str(to).unwrap(), amount)
            .send()
            .await
            .unwrap();
        format!("{:#x}", sent.tx_hash())
    }
    fn usdc_decimals(&self) -> u32 {
        18
    }
    fn absurd_amount(&self) -> U256 {
        U256::from(1u8) << 200
    }
}
