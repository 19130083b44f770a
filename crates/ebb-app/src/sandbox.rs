//! The sandbox: paying an order from outside, as a customer would, on a sandbox chain.

use ebb_core::address::derive_deposit_address;
use ebb_core::{Address, Amount, TxDirection, TxStatus};
use ebb_store::transactions::TransactionRow;
use rand::RngCore;

use crate::{Actor, AppError, AppResult, Engine};

/// Pays an order on its sandbox chain: `from` (default: a random customer address) sends `amount`
/// (default: what is still payable) to the order's receiving address. The pay-in watcher then sees it
/// as it sees any transfer. Returns the submitted transfer (`Pending`; nothing is stored yet).
pub async fn pay_order(
    engine: &Engine,
    actor: &Actor,
    order_id: &str,
    amount: Option<Amount>,
    from: Option<Address>,
) -> AppResult<TransactionRow> {
    let order = crate::orders::get(engine, actor, order_id).await?;
    let token = engine
        .registry
        .get(&order.token_id)
        .ok_or_else(|| AppError::Store(ebb_store::StoreError::Internal(format!("unknown token {}", order.token_id))))?;
    let status = order.effective_status(ebb_core::clock::now_s());
    if !status.accepts_payment() {
        return Err(AppError::InvalidState(format!("order {order_id} is {status} and takes no payment")));
    }
    let amount = match amount {
        Some(a) => a,
        None => order
            .payable_amount
            .checked_sub(order.received_amount)
            .filter(|a| !a.is_zero())
            .ok_or_else(|| AppError::InvalidState(format!("order {order_id} has nothing left to pay")))?,
    };
    let chain = engine.sandboxes.get(&order.chain_id).ok_or_else(|| {
        AppError::InvalidState(format!(
            "chain {} is a real chain here, not the sandbox: pay the order on chain",
            order.chain_id
        ))
    })?;
    let from = from.unwrap_or_else(|| {
        let mut seed = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seed);
        derive_deposit_address(token.family, &seed, "sandbox-sender")
    });
    let tx_hash = chain.pay_from_outside(from.as_str(), &order.receive_address, &token.id, amount.base_units());
    let now_ms = ebb_core::clock::now_ms();
    Ok(TransactionRow {
        tx_id: tx_hash.clone(),
        direction: TxDirection::In,
        order_id: Some(order.order_id),
        refund_id: None,
        tx_hash: Some(tx_hash),
        token_id: token.id.clone(),
        chain_id: order.chain_id,
        from_address: from.into_string(),
        to_address: order.receive_address,
        amount,
        status: TxStatus::Pending,
        failed_reason: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        screening: None,
        funds_status: None,
    })
}
