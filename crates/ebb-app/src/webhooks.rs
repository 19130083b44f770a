//! Webhook endpoints and their deliveries, as the PSP manages them (the API, the CLI). Sending is
//! the webhook dispatcher's (`deliveries`).

use ebb_store::webhooks::{self as repo, EndpointRow, EndpointUpdate, NewEndpoint};
use ebb_store::{Store, StoreError};

use ebb_core::clock::{now_ms, now_s};
use ebb_store::events::{self, is_event_type, EventKind, EVENT_TYPES};
use ebb_store::ids;

use crate::{Actor, AppError, AppResult};

pub async fn create_endpoint(store: &Store, actor: &Actor, new: NewEndpoint) -> AppResult<EndpointRow> {
    actor.require_psp_for("make this call")?;
    let endpoint = store
        .write(move |tx| Box::pin(async move { repo::insert_endpoint(tx, &ids::new_id("W"), &new, now_s()).await }))
        .await?;
    Ok(endpoint)
}

pub async fn update_endpoint(
    store: &Store,
    actor: &Actor,
    endpoint_id: &str,
    update: EndpointUpdate,
) -> AppResult<EndpointRow> {
    actor.require_psp_for("make this call")?;
    let id = endpoint_id.to_owned();
    let endpoint = store
        .write(move |tx| {
            Box::pin(async move {
                if repo::endpoint_on(tx, &id).await?.format.is_callback() {
                    return Err(StoreError::InvalidState(format!(
                        "endpoint {id} is a callback URL that orders and refunds named; ebb manages it"
                    )));
                }
                repo::update_endpoint(tx, &id, &update, now_s()).await
            })
        })
        .await?;
    Ok(endpoint)
}

/// Sends an event again now; `false` if there is no such delivery to retry.
pub async fn retry_delivery(store: &Store, actor: &Actor, endpoint_id: &str, event_id: &str) -> AppResult<bool> {
    actor.require_psp_for("make this call")?;
    actor.require_operator_for("send webhook deliveries again")?;
    let (endpoint_id, event_id, trail) = (endpoint_id.to_owned(), event_id.to_owned(), actor.audit.clone());
    let retried = store
        .write(move |tx| {
            Box::pin(async move {
                let retried = repo::retry_now(tx, &endpoint_id, &event_id, now_ms()).await?;
                if retried {
                    let subject = format!("{endpoint_id}/{event_id}");
                    crate::operators::audit_in(tx, trail.as_ref(), "webhook.retry", &subject, "").await?;
                }
                Ok(retried)
            })
        })
        .await?;
    Ok(retried)
}

/// Sends every failed delivery of an endpoint again (since `since_ms`, if given); returns how many.
pub async fn retry_failed_deliveries(
    store: &Store,
    actor: &Actor,
    endpoint_id: &str,
    since_ms: Option<i64>,
) -> AppResult<u64> {
    actor.require_psp_for("make this call")?;
    actor.require_operator_for("send webhook deliveries again")?;
    let (endpoint_id, trail) = (endpoint_id.to_owned(), actor.audit.clone());
    let retried = store
        .write(move |tx| {
            Box::pin(async move {
                repo::endpoint_on(tx, &endpoint_id).await?;
                let n = repo::retry_failed(tx, &endpoint_id, since_ms.unwrap_or(0), now_ms()).await?;
                let detail = format!("{n} deliveries");
                crate::operators::audit_in(tx, trail.as_ref(), "webhook.retry_failed", &endpoint_id, &detail).await?;
                Ok(n)
            })
        })
        .await?;
    Ok(retried)
}

/// Raises a test event (`test: true`) with `data` to every active endpoint subscribed to its type.
pub async fn raise_test_event(store: &Store, actor: &Actor, event_type: &str, data: String) -> AppResult<String> {
    actor.require_psp_for("make this call")?;
    let event_type = event_type.to_owned();
    let event_id = store
        .write(move |tx| {
            Box::pin(async move { events::raise(tx, &event_type, EventKind::Test, &ids::new_id("T"), data).await })
        })
        .await?;
    Ok(event_id)
}

/// Deletes the delivery attempts recorded before `before_ms`; returns how many.
pub async fn prune_attempts(store: &Store, actor: &Actor, before_ms: i64) -> AppResult<u64> {
    actor.require_psp_for("make this call")?;
    let pruned = store.write(move |tx| Box::pin(async move { repo::prune_attempts(tx, before_ms).await })).await?;
    Ok(pruned)
}

/// A webhook URL: http(s), with a host, without credentials, at most 500 characters. (Where it
/// may point is checked at delivery time, against the addresses it resolves to: the SSRF guard.)
pub fn check_url(url: &str) -> AppResult<String> {
    ebb_core::ssrf::check_webhook_url(url).map_err(AppError::Invalid)
}

/// Subscribed event types: at least one, each one ebb raises; duplicates dropped.
pub fn check_events(events: &[String]) -> AppResult<Vec<String>> {
    if events.is_empty() {
        return Err(AppError::Invalid("subscribed_events must name at least one event type".into()));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if !is_event_type(e) {
            let known: Vec<&str> = EVENT_TYPES.iter().map(|(t, _)| *t).collect();
            return Err(AppError::Invalid(format!("unknown event type {e:?}; ebb raises {}", known.join(", "))));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}
