//! Customer e-mails as the mail worker sends them: composed from the outbox row, the refund it is about
//! (as of its event, or as it is now for a link's mail) and its merchant, in English or Chinese
//! (templates in `templates/mail/`; the first line is the subject). docs/MAIL.md.

use askama::Template;
use ebb_core::rate::fiat_decimals;
use ebb_core::RefundStatus;
use ebb_store::events::EventKind;
use ebb_store::mails::{MailKind, MailRow};
use ebb_store::refunds::RefundRow;

use crate::pages::date::iso_utc;
use crate::pages::settings::network_name;
use crate::AppState;

/// A mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    /// The text with a link's token cut out: what the outbox keeps of a sent mail.
    pub loggable: String,
}

/// What a mail says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MailWhat {
    Confirm,
    Link,
    Accepted,
    Sending,
    Sent,
    NotSent,
}

/// The values the templates print.
struct MailView {
    merchant: String,
    refund_id: String,
    /// What is refunded: the amount asked in a currency with the token amount, or the token amount.
    amount: String,
    network: String,
    address: String,
    /// The merchant's order reference, or ebb's order id.
    order: String,
    link: String,
    expires: String,
    transactions: Vec<String>,
    reason: String,
}

#[derive(Template)]
#[template(path = "mail/refund.en.txt")]
struct En<'a> {
    kind: MailWhat,
    v: &'a MailView,
}

#[derive(Template)]
#[template(path = "mail/refund.zh.txt")]
struct Zh<'a> {
    kind: MailWhat,
    v: &'a MailView,
}

/// The mail for an outbox row; `None` when its event has nothing to tell the customer (a status the
/// customer need not hear of, such as waiting for the address).
pub async fn compose(state: &AppState, m: &MailRow) -> Result<Option<Composed>, String> {
    let (what, refund, link) = match m.kind {
        MailKind::Event => {
            let Some((_, EventKind::Refund, snapshot)) = &m.event else {
                return Err("a customer mail tells a refund's news".into());
            };
            let refund: RefundRow =
                serde_json::from_str(snapshot).map_err(|e| format!("stored refund snapshot: {e}"))?;
            let what = match refund.status {
                RefundStatus::Pending => MailWhat::Accepted,
                RefundStatus::Processing => MailWhat::Sending,
                RefundStatus::Completed => MailWhat::Sent,
                RefundStatus::Failed => MailWhat::NotSent,
                RefundStatus::PendingConfirmation
                | RefundStatus::AddressPending
                | RefundStatus::AddressSubmitted
                | RefundStatus::PartiallyCompleted => return Ok(None),
            };
            (what, refund, None)
        }
        MailKind::AddressConfirmation | MailKind::RefundLink => {
            let token = m
                .link_token
                .as_deref()
                .ok_or("the link's token is no longer kept (the mail was sent or given up); make a new link instead")?;
            let token = ebb_app::links::LinkToken::parse(token).ok_or("a stored link token is malformed")?;
            let view = ebb_app::links::view(&state.engine, &token)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the refund link is gone")?;
            let what = if m.kind == MailKind::AddressConfirmation { MailWhat::Confirm } else { MailWhat::Link };
            let url = format!("{}?token={}&lang={}", state.links.page_url(), token.as_str(), m.locale);
            (what, view.refund, Some((url, view.link.expires_at_ms, view.link.default_address)))
        }
    };
    let merchant = match &refund.merchant_id {
        Some(id) => state.store.merchant(id).await.map_err(|e| e.to_string())?.map(|m| m.name),
        None => None,
    }
    .unwrap_or_else(|| "ebb".to_owned());
    let token = state.registry.get(&refund.token_id);
    let decimals = token.map_or(0, |t| t.decimals);
    let symbol = token.map_or(refund.token_id.as_str(), |t| t.symbol.as_str());
    let in_token = format!("{} {symbol}", refund.amount.to_decimal_string(decimals));
    let amount = match &refund.pricing {
        Some(p) if p.asked => {
            let fiat = p.amount.to_decimal_string(fiat_decimals(&p.currency).unwrap_or(0));
            format!("{fiat} {} ({in_token})", p.currency)
        }
        _ => in_token,
    };
    let order = match &refund.order_id {
        Some(id) => match state.store.coingate_order_of(id).await.map_err(|e| e.to_string())? {
            Some(cg) => cg.merchant_order_id.unwrap_or_else(|| cg.seq.to_string()),
            None => id.clone(),
        },
        None => String::new(),
    };
    let (link, expires, address) = match link {
        Some((url, expires_ms, default_address)) => (url, iso_utc(expires_ms), default_address),
        None => (String::new(), String::new(), refund.to_address.clone()),
    };
    let view = MailView {
        merchant,
        refund_id: refund.refund_id.clone(),
        amount,
        network: network_name(&refund.chain_id),
        address,
        order,
        link,
        expires,
        transactions: refund.transactions.iter().filter_map(|t| t.tx_hash.clone()).collect(),
        reason: refund.failed_reason.clone().unwrap_or_default(),
    };
    let rendered = match m.locale.as_str() {
        "zh" => Zh { kind: what, v: &view }.render(),
        _ => En { kind: what, v: &view }.render(),
    }
    .map_err(|e| format!("mail template: {e}"))?;
    let (subject, text) = rendered.split_once('\n').ok_or("a mail template starts with its subject line")?;
    let text = text.to_owned();
    let loggable = match m.link_token.as_deref() {
        Some(t) => text.replace(t, "…"),
        None => text.clone(),
    };
    Ok(Some(Composed { subject: subject.trim().to_owned(), text, loggable }))
}
