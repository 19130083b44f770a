//! CSV exports, streamed: the rows are read in batches of [`BATCH`] by key (`seq`) and written as they
//! come, so an export of a year holds one batch in memory, never the year.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ebb_app::operators::{self, Permission};
use ebb_store::console::PostingFilter;
use ebb_store::operators::AuditFilter;
use ebb_store::refunds::RefundFilter;
use ebb_store::Store;
use futures::stream::{self, Stream};

use super::admin::AuditQuery;
use super::refunds::RefundQuery;
use super::views::message_page;
use super::{error_page, Op};
use crate::pages::date::iso_utc;
use crate::AppState;

/// Rows read per query.
const BATCH: i64 = 1000;

/// One CSV field: quoted when it holds a separator, a quote or a line break; a text that a spreadsheet
/// would run as a formula (`=`, `+`, `@`, or `-` not starting a number) gets a leading `'`.
pub(crate) fn field(s: &str) -> String {
    let number = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let formula = s.starts_with(['=', '+', '@', '\t', '\r']) || (s.starts_with('-') && !number(&s[1..]));
    let s = if formula { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub(crate) fn row(fields: &[&str]) -> String {
    let mut line = fields.iter().map(|f| field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// A CSV body made of `header` and the rows `next_batch` renders, batch after batch, until it returns
/// an empty batch. `next_batch` takes the last key seen and returns the rows and the new last key.
fn csv_stream<F, Fut>(header: String, next_batch: F) -> impl Stream<Item = Result<String, std::io::Error>>
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(String, Option<i64>), ebb_store::StoreError>> + Send,
{
    enum At {
        Header(String),
        After(i64),
        Done,
    }
    stream::unfold((At::Header(header), next_batch), |(at, next_batch)| async move {
        match at {
            At::Header(header) => Some((Ok(header), (At::After(0), next_batch))),
            At::After(seq) => match next_batch(seq).await {
                Ok((chunk, Some(last))) => Some((Ok(chunk), (At::After(last), next_batch))),
                Ok((_, None)) => None,
                Err(e) => {
                    // The response has started: ending it early is all that is left. The client sees a
                    // cut-off download, not a short file that looks complete.
                    tracing::error!(error = %e, "a CSV export failed part way");
                    Some((Err(std::io::Error::other(e.to_string())), (At::Done, next_batch)))
                }
            },
            At::Done => None,
        }
    })
}

pub(crate) fn csv_response(filename: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

pub(crate) const REFUND_COLUMNS: &[&str] = &[
    "refund_id",
    "request_id",
    "order_id",
    "merchant_id",
    "token_id",
    "chain_id",
    "amount",
    "to_address",
    "status",
    "failed_reason",
    "refund_type",
    "initiator",
    "approval",
    "created_at",
    "updated_at",
];

async fn refund_batch(
    store: Store,
    registry: std::sync::Arc<ebb_core::TokenRegistry>,
    filter: RefundFilter,
    after: i64,
) -> Result<(String, Option<i64>), ebb_store::StoreError> {
    let rows = store.refund_batch(&filter, after, BATCH).await?;
    let mut out = String::new();
    for (_, r) in &rows {
        let amount = crate::wire::decimal(&registry, &r.token_id, r.amount);
        let approval = r.approval.as_ref().map(|a| a.status.to_string()).unwrap_or_default();
        out.push_str(&row(&[
            &r.refund_id,
            &r.request_id,
            r.order_id.as_deref().unwrap_or_default(),
            r.merchant_id.as_deref().unwrap_or_default(),
            &r.token_id,
            &r.chain_id,
            &amount,
            &r.to_address,
            r.status.as_str(),
            r.failed_reason.as_deref().unwrap_or_default(),
            &format!("{:?}", r.refund_type),
            &r.initiator,
            &approval,
            &iso_utc(r.created_at * 1000),
            &iso_utc(r.updated_at * 1000),
        ]));
    }
    Ok((out, rows.last().map(|(seq, _)| *seq)))
}

/// The refunds the list's filter finds, oldest first.
pub(super) async fn refunds(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<RefundQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = op.check(&state, Permission::Read, "export refunds").await {
        return refused;
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let filter = match q.filter(&state, &op) {
        Ok(f) => f,
        Err(e) => {
            return message_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                op.nav(&state, "refunds"),
                op.tr.t("Not exported"),
                &e,
            )
        }
    };
    let trail = op.actor.audit.clone().expect("an operator's actor has an audit trail");
    let detail = super::views::query_string(&q.pairs());
    if let Err(e) = operators::audit(&state.store, &trail, "export.refunds", "", &detail).await {
        return error_page(&state, op.nav(&state, "refunds"), e);
    }
    let (store, registry) = (state.store.clone(), state.registry.clone());
    let body = csv_stream(row(REFUND_COLUMNS), move |after| {
        refund_batch(store.clone(), registry.clone(), filter.clone(), after)
    });
    csv_response("refunds.csv", Body::from_stream(body))
}

async fn audit_batch(
    store: Store,
    filter: AuditFilter,
    after: i64,
) -> Result<(String, Option<i64>), ebb_store::StoreError> {
    let rows = store.audit_batch(&filter, after, BATCH).await?;
    let mut out = String::new();
    for a in &rows {
        let seq = a.seq.to_string();
        out.push_str(&row(&[
            &seq,
            &iso_utc(a.at_ms),
            a.operator_id.as_deref().unwrap_or_default(),
            &a.email,
            &a.action,
            &a.subject,
            &a.detail,
            &a.client,
        ]));
    }
    Ok((out, rows.last().map(|a| a.seq)))
}

/// The audit log (admins only), oldest first.
pub(super) async fn audit(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = op.check(&state, Permission::Administer, "export the audit log").await {
        return refused;
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            return message_page(StatusCode::UNPROCESSABLE_ENTITY, op.nav(&state, "audit"), op.tr.t("Not exported"), &e)
        }
    };
    let trail = op.actor.audit.clone().expect("an operator's actor has an audit trail");
    if let Err(e) = operators::audit(&state.store, &trail, "export.audit", "", &q.query()).await {
        return error_page(&state, op.nav(&state, "audit"), e);
    }
    let store = state.store.clone();
    let header = row(&["seq", "at", "operator_id", "email", "action", "subject", "detail", "client"]);
    let body = csv_stream(header, move |after| audit_batch(store.clone(), filter.clone(), after));
    csv_response("audit.csv", Body::from_stream(body))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct PostingQuery {
    /// An account key (`merchant:M…`, `psp`, `world`, `reserved`, `held`); empty: every account.
    #[serde(default)]
    account: String,
    #[serde(default)]
    token_id: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

async fn posting_batch(
    store: Store,
    registry: std::sync::Arc<ebb_core::TokenRegistry>,
    filter: PostingFilter,
    after: i64,
) -> Result<(String, Option<i64>), ebb_store::StoreError> {
    let rows = store.postings_batch(&filter, after, BATCH).await?;
    let signed = |token: &str, v: &str| match v.parse::<i128>() {
        Ok(n) => crate::wire::decimal_i128(&registry, token, n),
        Err(_) => v.to_owned(),
    };
    let mut out = String::new();
    for p in &rows {
        let seq = p.seq.to_string();
        out.push_str(&row(&[
            &seq,
            &iso_utc(p.created_at * 1000),
            &p.entry_id,
            &p.account,
            &p.token_id,
            &signed(&p.token_id, &p.delta),
            &signed(&p.token_id, &p.balance_after),
            &p.source_type,
            &p.source_id,
        ]));
    }
    Ok((out, rows.last().map(|p| p.seq)))
}

/// The ledger's postings, oldest first: of one account (a merchant's balance changes) or of all.
pub(super) async fn postings(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<PostingQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = op.check(&state, Permission::Read, "export ledger postings").await {
        return refused;
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let some = super::given;
    let refuse = |text: &str| {
        message_page(StatusCode::UNPROCESSABLE_ENTITY, op.nav(&state, "merchants"), op.tr.t("Not exported"), text)
    };
    // A merchant-limited operator exports its merchant's balance changes and nothing else.
    let account = match (&op.actor.merchant, some(&q.account)) {
        (None, a) => a,
        (Some(m), None) => Some(ebb_core::ledger::Account::Merchant(m.clone()).key()),
        (Some(m), Some(a)) if a == ebb_core::ledger::Account::Merchant(m.clone()).key() => Some(a),
        (Some(_), Some(_)) => return refuse("You may export your merchant's balance changes only."),
    };
    let (from, to) = match (super::optional_day("from", &q.from), super::optional_day("to", &q.to)) {
        (Ok(f), Ok(t)) => (f, t.map(|t| t + 86_400)),
        (Err(e), _) | (_, Err(e)) => return refuse(&e),
    };
    let filter = PostingFilter { account, token_id: some(&q.token_id), min_created_at: from, max_created_at: to };
    let trail = op.actor.audit.clone().expect("an operator's actor has an audit trail");
    let detail = super::views::query_string(&[
        ("account", &q.account),
        ("token_id", &q.token_id),
        ("from", &q.from),
        ("to", &q.to),
    ]);
    if let Err(e) = operators::audit(&state.store, &trail, "export.postings", "", &detail).await {
        return error_page(&state, op.nav(&state, "merchants"), e);
    }
    let (store, registry) = (state.store.clone(), state.registry.clone());
    let header =
        row(&["seq", "at", "entry_id", "account", "token_id", "delta", "balance_after", "source_type", "source_id"]);
    let body = csv_stream(header, move |after| posting_batch(store.clone(), registry.clone(), filter.clone(), after));
    csv_response("postings.csv", Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("@SUM"), "'@SUM");
        assert_eq!(field("-12.5"), "-12.5", "a negative number stays a number");
        assert_eq!(field("-cmd"), "'-cmd");
        assert_eq!(row(&["a", "b"]), "a,b\r\n");
    }
}
