//! EVM chains (Ethereum, Arbitrum, Base, Polygon, BSC, or any other by configuration) over JSON-RPC:
//! ERC-20 `transfer` from a hot wallet, EIP-1559 fees under a cap, receipts and confirmation depth,
//! revert reasons, and `Transfer` logs for pay-ins.
//!
//! The hot wallet key is given to [`EvmChain::new`] by the caller, who reads it from a file or the
//! environment; it is never stored in the database and never printed (`EvmConfig`'s `Debug` hides it).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip1559::Eip1559Estimation;
use alloy::eips::{BlockId, Decodable2718, Encodable2718};
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent};
use alloy::transports::{RpcError, TransportErrorKind};
use async_trait::async_trait;
use ebb_core::{Address as EbbAddress, Amount};

use crate::{Chain, ChainError, Funds, Inclusion, Outcome, Prepared, Signed, TokenRef, TokenTransfer};

sol! {
    interface IERC20 {
        function transfer(address to, uint256 amount) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
        event Transfer(address indexed from, address indexed to, uint256 value);
    }
}

/// One EVM chain's settings (see docs/OPERATIONS.md).
#[derive(Clone)]
pub struct EvmConfig {
    /// Cobo's chain id, e.g. `ETH`, `BASE_ETH`.
    pub chain_id: String,
    pub rpc_url: String,
    /// The EIP-155 chain id the node must report (1 for Ethereum, 8453 for Base, 31337 for anvil).
    pub evm_chain_id: u64,
    pub confirmations: u64,
    /// The hot wallet's private key, 32 bytes hex.
    pub hot_wallet_key: String,
    /// Never pay more than this per gas unit, in wei.
    pub max_fee_per_gas_cap: u128,
    /// How long one RPC call may take before it counts as an error.
    pub rpc_timeout: Duration,
}

impl fmt::Debug for EvmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvmConfig")
            .field("chain_id", &self.chain_id)
            .field("rpc_url", &self.rpc_url)
            .field("evm_chain_id", &self.evm_chain_id)
            .field("confirmations", &self.confirmations)
            .field("hot_wallet_key", &"<hidden>")
            .field("max_fee_per_gas_cap", &self.max_fee_per_gas_cap)
            .finish()
    }
}

pub struct EvmChain {
    config: EvmConfig,
    provider: DynProvider,
    signer: PrivateKeySigner,
    hot_wallet: String,
    /// The last fee estimate and when it was made: one estimate serves every payout of a second.
    fees: Mutex<Option<(Instant, Eip1559Estimation)>>,
    /// The last head seen, for confirmation counts of many transactions in one pass.
    head: Mutex<Option<(Instant, u64)>>,
}

/// How long a fee estimate is reused.
const FEE_TTL: Duration = Duration::from_secs(1);
/// How long a head block number is reused.
const HEAD_TTL: Duration = Duration::from_millis(100);

/// The most blocks one `eth_getLogs` asks for (public nodes refuse wider ranges).
const LOG_WINDOW: u64 = 2_000;

fn parse_address(s: &str) -> Result<Address, ChainError> {
    Address::from_str(s).map_err(|e| ChainError::Config(format!("bad EVM address {s:?}: {e}")))
}

fn to_u128(v: U256) -> u128 {
    u128::try_from(v).unwrap_or(u128::MAX)
}

/// Sorts an RPC failure: a node's answer (it understood and refused) or a transport problem (retry).
fn classify(e: RpcError<TransportErrorKind>) -> ChainError {
    match &e {
        RpcError::ErrorResp(payload) => {
            if let Some(data) = payload.as_revert_data() {
                let reason =
                    alloy::sol_types::decode_revert_reason(&data).unwrap_or_else(|| payload.message.to_string());
                return ChainError::WouldRevert(reason);
            }
            if payload.message.to_ascii_lowercase().contains("revert") {
                return ChainError::WouldRevert(payload.message.to_string());
            }
            ChainError::Rejected(payload.message.to_string())
        }
        _ => ChainError::Rpc(e.to_string()),
    }
}

/// What a transaction must bid per gas to be mined now: the estimate is twice the base fee plus the
/// tip, and anything at or above base fee + tip gets in.
fn inclusion_fee(fees: &Eip1559Estimation) -> u128 {
    let base_fee = fees.max_fee_per_gas.saturating_sub(fees.max_priority_fee_per_gas) / 2;
    base_fee.saturating_add(fees.max_priority_fee_per_gas)
}

impl EvmChain {
    /// The network's EIP-1559 fee estimate, cached for [`FEE_TTL`].
    async fn fees(&self) -> Result<Eip1559Estimation, ChainError> {
        if let Some((at, fees)) = *self.fees.lock().expect("fee cache") {
            if at.elapsed() < FEE_TTL {
                return Ok(fees);
            }
        }
        let fees = self.rpc(self.provider.estimate_eip1559_fees()).await?;
        *self.fees.lock().expect("fee cache") = Some((Instant::now(), fees));
        Ok(fees)
    }

    /// Connects and checks that the node serves the configured chain.
    pub async fn connect(config: EvmConfig) -> Result<Self, ChainError> {
        let url =
            config.rpc_url.parse().map_err(|e| ChainError::Config(format!("rpc_url {:?}: {e}", config.rpc_url)))?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        let key = config.hot_wallet_key.trim().trim_start_matches("0x");
        let signer = PrivateKeySigner::from_str(key).map_err(|_| {
            ChainError::Config(format!("chain {}: the hot wallet key is not a 32-byte hex key", config.chain_id))
        })?;
        let hot_wallet = signer.address().to_checksum(None);
        let chain = Self { config, provider, signer, hot_wallet, fees: Mutex::new(None), head: Mutex::new(None) };
        let reported = chain.rpc(chain.provider.get_chain_id()).await?;
        if reported != chain.config.evm_chain_id {
            return Err(ChainError::Config(format!(
                "chain {}: the node at {} serves EVM chain id {reported}, configured {}",
                chain.config.chain_id, chain.config.rpc_url, chain.config.evm_chain_id
            )));
        }
        Ok(chain)
    }

    async fn rpc<T>(
        &self,
        call: impl std::future::IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
    ) -> Result<T, ChainError> {
        match tokio::time::timeout(self.config.rpc_timeout, call.into_future()).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(ChainError::Rpc(format!(
                "no answer from {} within {:?}",
                self.config.rpc_url, self.config.rpc_timeout
            ))),
        }
    }

    fn wallet(&self) -> Address {
        self.signer.address()
    }

    /// What `owner` holds of an ERC-20.
    async fn balance_of(&self, token: &TokenRef, owner: Address) -> Result<Amount, ChainError> {
        let contract = parse_address(&token.contract)?;
        let call =
            TransactionRequest::default().to(contract).input(IERC20::balanceOfCall { owner }.abi_encode().into());
        let out = self.rpc(self.provider.call(call)).await?;
        let balance = IERC20::balanceOfCall::abi_decode_returns(&out)
            .map_err(|e| ChainError::Rejected(format!("{} is not an ERC-20 contract: {e}", token.contract)))?;
        Ok(Amount::from_base_units(to_u128(balance)))
    }

    /// `Transfer` logs of the tokens in blocks `from..=to`, only those sent by `sender` if given. Asked
    /// in windows of [`LOG_WINDOW`] blocks, as nodes limit the range of one `eth_getLogs`.
    async fn transfers(
        &self,
        tokens: &[TokenRef],
        from: u64,
        to: u64,
        sender: Option<Address>,
    ) -> Result<Vec<TokenTransfer>, ChainError> {
        let mut contracts = Vec::new();
        for t in tokens {
            contracts.push((parse_address(&t.contract)?, t.token_id.clone()));
        }
        let mut found = Vec::new();
        let mut start = from;
        while start <= to {
            let end = to.min(start.saturating_add(LOG_WINDOW - 1));
            let mut filter = Filter::new()
                .address(contracts.iter().map(|(a, _)| *a).collect::<Vec<_>>())
                .event_signature(IERC20::Transfer::SIGNATURE_HASH)
                .from_block(start)
                .to_block(end);
            if let Some(sender) = sender {
                filter = filter.topic1(sender.into_word());
            }
            for log in self.rpc(self.provider.get_logs(&filter)).await? {
                let Ok(decoded) = log.log_decode::<IERC20::Transfer>() else { continue };
                let Some((_, token_id)) = contracts.iter().find(|(a, _)| *a == decoded.inner.address) else {
                    continue;
                };
                let event = &decoded.inner.data;
                found.push(TokenTransfer {
                    token_id: token_id.clone(),
                    tx_hash: log.transaction_hash.map(|h| format!("{h:#x}")).unwrap_or_default(),
                    log_index: log.log_index.unwrap_or(0),
                    block: log.block_number.unwrap_or(0),
                    from: event.from.to_checksum(None),
                    to: event.to.to_checksum(None),
                    amount: u128::try_from(event.value).ok().map(Amount::from_base_units),
                });
            }
            start = end.saturating_add(1);
            if end == u64::MAX {
                break;
            }
        }
        Ok(found)
    }

    fn transfer_input(to: Address, amount: u128) -> Bytes {
        IERC20::transferCall { to, amount: U256::from(amount) }.abi_encode().into()
    }

    /// Why a mined transaction reverted, best effort: replays it as a call on the state its block left
    /// (which includes whatever made it revert earlier in that block), then on the state before.
    async fn revert_reason(&self, tx_hash: B256, block: u64) -> String {
        let fallback = "the transfer reverted on chain".to_owned();
        let Ok(Some(tx)) = self.rpc(self.provider.get_transaction_by_hash(tx_hash)).await else { return fallback };
        let request = TransactionRequest::from_transaction(tx);
        for at in [block, block.saturating_sub(1)] {
            if let Err(ChainError::WouldRevert(reason)) =
                self.rpc(self.provider.call(request.clone()).block(BlockId::number(at))).await
            {
                return format!("reverted on chain: {reason}");
            }
        }
        fallback
    }
}

#[async_trait]
impl Chain for EvmChain {
    fn chain_id(&self) -> &str {
        &self.config.chain_id
    }

    fn hot_wallet(&self) -> &str {
        &self.hot_wallet
    }

    fn confirmations(&self) -> u64 {
        self.config.confirmations.max(1)
    }

    async fn funds(&self, token: &TokenRef) -> Result<Funds, ChainError> {
        let token_balance = self.balance_of(token, self.wallet()).await?;
        let native = self.rpc(self.provider.get_balance(self.wallet())).await?;
        Ok(Funds { token: token_balance, native: to_u128(native) })
    }

    async fn token_balance(&self, token: &TokenRef, owner: &str) -> Result<Amount, ChainError> {
        self.balance_of(token, parse_address(owner)?).await
    }

    async fn pending_nonce(&self) -> Result<u64, ChainError> {
        self.rpc(self.provider.get_transaction_count(self.wallet()).pending()).await
    }

    async fn mined_nonce(&self) -> Result<u64, ChainError> {
        self.rpc(self.provider.get_transaction_count(self.wallet()).latest()).await
    }

    async fn prepare(&self, token: &TokenRef, to: &EbbAddress, amount: Amount) -> Result<Prepared, ChainError> {
        let contract = parse_address(&token.contract)?;
        let recipient = parse_address(to.as_str())?;
        let request = TransactionRequest::default()
            .from(self.wallet())
            .to(contract)
            .input(Self::transfer_input(recipient, amount.base_units()).into());
        // The dry run: a transfer the contract would refuse fails here, before any gas is spent.
        let gas = self.rpc(self.provider.estimate_gas(request)).await?;
        let fees = self.fees().await?;
        let cap = self.config.max_fee_per_gas_cap;
        let needed = inclusion_fee(&fees);
        if needed > cap {
            return Err(ChainError::FeeAboveCap { needed, cap });
        }
        Ok(Prepared {
            token: token.clone(),
            to: EbbAddress::evm_from_bytes(&recipient.into_array()),
            amount,
            // 20 % above the estimate: state can change between the dry run and the block.
            gas_limit: gas.saturating_mul(6) / 5,
            max_fee_per_gas: fees.max_fee_per_gas.min(cap),
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        })
    }

    fn sign(&self, p: &Prepared, nonce: u64) -> Result<Signed, ChainError> {
        let mut tx = TxEip1559 {
            chain_id: self.config.evm_chain_id,
            nonce,
            gas_limit: p.gas_limit,
            max_fee_per_gas: p.max_fee_per_gas,
            max_priority_fee_per_gas: p.max_priority_fee_per_gas,
            to: TxKind::Call(parse_address(&p.token.contract)?),
            value: U256::ZERO,
            access_list: Default::default(),
            input: Self::transfer_input(parse_address(p.to.as_str())?, p.amount.base_units()),
        };
        let signature = self.signer.sign_transaction_sync(&mut tx).map_err(|e| ChainError::Config(e.to_string()))?;
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        Ok(Signed {
            tx_hash: format!("{:#x}", envelope.tx_hash()),
            raw: envelope.encoded_2718(),
            nonce,
            from: self.hot_wallet.clone(),
        })
    }

    async fn rebid(&self, raw: &[u8]) -> Result<Option<Signed>, ChainError> {
        let envelope = TxEnvelope::decode_2718(&mut &raw[..])
            .map_err(|e| ChainError::Config(format!("stored transaction does not decode: {e}")))?;
        let TxEnvelope::Eip1559(sent) = envelope else { return Ok(None) };
        let old = sent.tx();
        let fees = self.fees().await?;
        if old.max_fee_per_gas >= inclusion_fee(&fees) && old.max_priority_fee_per_gas >= fees.max_priority_fee_per_gas
        {
            return Ok(None);
        }
        let raised = |v: u128| v.saturating_add(v / 8).saturating_add(1);
        let cap = self.config.max_fee_per_gas_cap;
        let least = raised(old.max_fee_per_gas);
        if least > cap {
            return Err(ChainError::FeeAboveCap { needed: least, cap });
        }
        let max_fee_per_gas = least.max(fees.max_fee_per_gas).min(cap);
        let max_priority_fee_per_gas =
            raised(old.max_priority_fee_per_gas).max(fees.max_priority_fee_per_gas).min(max_fee_per_gas);
        let mut tx = TxEip1559 { max_fee_per_gas, max_priority_fee_per_gas, ..old.clone() };
        let signature = self.signer.sign_transaction_sync(&mut tx).map_err(|e| ChainError::Config(e.to_string()))?;
        let envelope = TxEnvelope::from(tx.clone().into_signed(signature));
        Ok(Some(Signed {
            tx_hash: format!("{:#x}", envelope.tx_hash()),
            raw: envelope.encoded_2718(),
            nonce: tx.nonce,
            from: self.hot_wallet.clone(),
        }))
    }

    async fn broadcast(&self, raw: &[u8]) -> Result<(), ChainError> {
        match self.rpc(self.provider.send_raw_transaction(raw)).await {
            Ok(_) => Ok(()),
            Err(ChainError::Rejected(m)) if m.contains("already known") || m.contains("known transaction") => Ok(()),
            Err(ChainError::Rejected(m)) if m.to_ascii_lowercase().contains("nonce too low") => {
                // Either these very bytes are mined already (fine) or another transaction took the nonce.
                let hash = alloy::primitives::keccak256(raw);
                match self.inclusion(&format!("{hash:#x}")).await? {
                    Inclusion::Included { .. } => Ok(()),
                    _ => Err(ChainError::Rejected(m)),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn inclusion(&self, tx_hash: &str) -> Result<Inclusion, ChainError> {
        let hash = B256::from_str(tx_hash).map_err(|e| ChainError::Config(format!("bad tx hash {tx_hash}: {e}")))?;
        if let Some(receipt) = self.rpc(self.provider.get_transaction_receipt(hash)).await? {
            let Some(block) = receipt.block_number else { return Ok(Inclusion::Pending) };
            let head = self.head().await?;
            let outcome = if receipt.status() {
                Outcome::Success
            } else {
                Outcome::Reverted { reason: self.revert_reason(hash, block).await }
            };
            let fee = u128::from(receipt.gas_used).saturating_mul(receipt.effective_gas_price);
            return Ok(Inclusion::Included { block, confirmations: head.saturating_sub(block) + 1, outcome, fee });
        }
        Ok(match self.rpc(self.provider.get_transaction_by_hash(hash)).await? {
            Some(_) => Inclusion::Pending,
            None => Inclusion::Unknown,
        })
    }

    async fn head(&self) -> Result<u64, ChainError> {
        if let Some((at, head)) = *self.head.lock().expect("head cache") {
            if at.elapsed() < HEAD_TTL {
                return Ok(head);
            }
        }
        let head = self.rpc(self.provider.get_block_number()).await?;
        *self.head.lock().expect("head cache") = Some((Instant::now(), head));
        Ok(head)
    }

    async fn sent(&self, tokens: &[TokenRef], from: u64, to: u64) -> Result<Vec<TokenTransfer>, ChainError> {
        self.transfers(tokens, from, to, Some(self.wallet())).await
    }

    async fn scan(
        &self,
        tokens: &[TokenRef],
        from: u64,
        to: u64,
        watched: &(dyn for<'a> Fn(&'a str) -> bool + Sync),
    ) -> Result<Vec<TokenTransfer>, ChainError> {
        let mut found = self.transfers(tokens, from, to, None).await?;
        found.retain(|t| watched(&t.to));
        Ok(found)
    }
}
