//! The dashboard: refunds today by status, approvals waiting, held pay-ins, failing webhook endpoints,
//! and every chain's hot wallet next to the refunds it still has to pay.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ebb_core::approval::ApprovalStatus;
use ebb_core::RefundStatus;
use ebb_store::page::PageRequest;
use ebb_store::refunds::RefundFilter;

use super::i18n::Tr;
use super::views::{html, Nav};
use super::{error_page, Op};
use crate::AppState;

/// A hot wallet's funds in one token, and what it still has to pay.
struct WalletLine {
    chain_id: String,
    token_id: String,
    hot_wallet: String,
    token: String,
    gas: String,
    unpaid: String,
    unpaid_count: i64,
    /// Why pending payouts cannot all be paid now, if they cannot.
    warning: Option<String>,
}

/// Why the unpaid refunds of a token cannot all be paid from the hot wallet now, if they cannot:
/// `owed` base units by `count` refunds against `held` of the token and `native` gas.
fn wallet_warning(
    tr: Tr,
    count: i64,
    owed: u128,
    held: u128,
    native: u128,
    fmt: &dyn Fn(u128) -> String,
) -> Option<String> {
    match (owed.checked_sub(held).filter(|s| *s > 0), native) {
        (Some(short), _) => Some(tr.f2("{0} unpaid refund(s) need {1} more than the wallet holds", count, fmt(short))),
        (None, 0) if count > 0 => Some(tr.t("no gas: unpaid refunds cannot be sent").to_owned()),
        _ => None,
    }
}

/// How long the dashboard waits for a chain's node.
const FUNDS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Every chain's hot wallet, per token of the chain, next to the refunds still to pay in that token.
async fn wallets(state: &AppState, tr: Tr) -> Result<Vec<WalletLine>, ebb_store::StoreError> {
    let unpaid = state.store.unpaid_refund_totals().await?;
    let mut asks = Vec::new();
    for chain in &state.chains {
        for token in state.registry.iter().filter(|t| t.chain_id == chain.chain_id()) {
            let chain = chain.clone();
            let token = token.clone();
            asks.push(async move {
                let funds = tokio::time::timeout(FUNDS_TIMEOUT, chain.funds(&ebb_chain::TokenRef::from(&token))).await;
                (chain, token, funds)
            });
        }
    }
    let mut lines = Vec::new();
    for (chain, token, funds) in futures::future::join_all(asks).await {
        let (count, owed) = unpaid.iter().find(|(t, _, _)| *t == token.id).map(|(_, n, a)| (*n, *a)).unwrap_or((0, 0));
        let symbol = &token.symbol;
        let fmt =
            |a: u128| format!("{} {symbol}", ebb_core::Amount::from_base_units(a).to_decimal_string(token.decimals));
        let (token_funds, gas, warning) = match funds {
            Ok(Ok(f)) => {
                let warning = wallet_warning(tr, count, owed, f.token.base_units(), f.native, &fmt);
                // The native coin's decimals: ether 18, TRX 6, SOL 9.
                let native_decimals = match token.family {
                    ebb_core::ChainFamily::Evm => 18,
                    ebb_core::ChainFamily::Tron => 6,
                    ebb_core::ChainFamily::Solana => 9,
                };
                let gas = ebb_core::Amount::from_base_units(f.native).to_decimal_string(native_decimals);
                (fmt(f.token.base_units()), gas, warning)
            }
            Ok(Err(e)) => ("?".into(), "?".into(), Some(tr.f1("the node did not answer: {0}", e))),
            Err(_) => ("?".into(), "?".into(), Some(tr.t("the node did not answer within 3 s").to_owned())),
        };
        lines.push(WalletLine {
            chain_id: chain.chain_id().to_owned(),
            token_id: token.id.clone(),
            hot_wallet: chain.hot_wallet().to_owned(),
            token: token_funds,
            gas,
            unpaid: fmt(owed),
            unpaid_count: count,
            warning,
        });
    }
    Ok(lines)
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    tr: Tr,
    nav: Option<Nav>,
    wallets: Vec<WalletLine>,
    today: Vec<(String, i64)>,
    today_total: i64,
    approvals_waiting: i64,
    frozen_payins: i64,
    failing: Vec<ebb_store::console::FailingEndpoint>,
}

pub(super) async fn dashboard(State(state): State<AppState>, op: Op) -> Response {
    let today_start = crate::now_ms().div_euclid(86_400_000) * 86_400;
    let merchant = op.actor.merchant.as_deref();
    let counts = async {
        let today = state.store.refund_status_counts(today_start, merchant).await?;
        let waiting = state
            .store
            .list_refunds(
                &RefundFilter {
                    merchant_id: op.actor.merchant.clone(),
                    statuses: vec![RefundStatus::Pending],
                    approval_status: Some(ApprovalStatus::Pending),
                    under_approval: true,
                    ..RefundFilter::default()
                },
                &PageRequest { limit: 1, ..PageRequest::default() },
            )
            .await?
            .total_count;
        // Held pay-ins and webhook endpoints are the PSP's.
        let (frozen, failing, wallets) = match merchant {
            None => (
                state.store.frozen_payins().await?,
                state.store.failing_endpoints().await?,
                wallets(&state, op.tr).await?,
            ),
            Some(_) => (0, Vec::new(), Vec::new()),
        };
        Ok::<_, ebb_store::StoreError>((today, waiting, frozen, failing, wallets))
    };
    match counts.await {
        Ok((today, approvals_waiting, frozen_payins, failing, wallets)) => {
            let today_total = today.iter().map(|(_, n)| n).sum();
            let page = DashboardPage {
                tr: op.tr,
                nav: Some(op.nav(&state, "dashboard")),
                wallets,
                today,
                today_total,
                approvals_waiting,
                frozen_payins,
                failing,
            };
            html(StatusCode::OK, page.render())
        }
        Err(e) => error_page(&state, op.nav(&state, "dashboard"), e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_warns_when_unpaid_refunds_exceed_the_hot_wallet() {
        let fmt = |a: u128| format!("{a} u");
        let en = Tr(crate::pages::i18n::Lang::En);
        assert_eq!(wallet_warning(en, 2, 10, 10, 1, &fmt), None, "exactly enough");
        assert_eq!(
            wallet_warning(en, 2, 11, 10, 1, &fmt).unwrap(),
            "2 unpaid refund(s) need 1 u more than the wallet holds"
        );
        assert_eq!(wallet_warning(en, 1, 5, 10, 0, &fmt).unwrap(), "no gas: unpaid refunds cannot be sent");
        assert_eq!(wallet_warning(en, 0, 0, 0, 0, &fmt), None, "nothing to pay, nothing to warn of");
    }
}
