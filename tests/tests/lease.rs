//! The publish lease on a channel item and `POST /channels/{id}/rotate-key`, against a real
//! DynamoDB table in moto (`scripts/with-moto.sh cargo test -p streamstack-tests --test lease`).
//!
//! Lapsed leases are made by claiming with an expiry in the past, never by sleeping.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use channels_api::{router, Deps};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use streamstack_core::aws::AwsClients;
use streamstack_core::domain::Secret;
use streamstack_core::lease::unix_millis;
use streamstack_core::signing::{self, PushCredential};
use streamstack_core::{
    Channel, ChannelState, ChannelStore, DynamoChannelStore, HlsSettings, LeaseClaim, StoreError,
};
use streamstack_tests::{api_config, asset_store, aws, channel, unique};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

/// A fresh channel table, with its name for raw `GetItem`s.
struct Table {
    aws: AwsClients,
    name: String,
    store: Arc<DynamoChannelStore>,
}

impl Table {
    async fn new() -> Self {
        let aws = aws().await;
        let name = unique("channels");
        let store = DynamoChannelStore::new(aws.dynamodb.clone(), name.clone());
        store.create_table_if_missing().await.expect("create table");
        Self { aws, name, store: Arc::new(store) }
    }

    async fn channel(&self) -> Channel {
        channel(self.store.as_ref(), HlsSettings::default()).await
    }

    /// The item exactly as stored.
    async fn raw(&self, id: &str) -> HashMap<String, AttributeValue> {
        streamstack_tests::router::raw_item(&self.aws.dynamodb, &self.name, id).await
    }

    async fn read(&self, id: &str) -> Channel {
        self.store.get(id).await.expect("get").expect("channel exists")
    }
}

fn claim(owner: &str, session: &str, secret: &Secret) -> LeaseClaim {
    LeaseClaim::new(owner, session, secret.clone(), OffsetDateTime::now_utc())
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> &'a str {
    item.get(k).and_then(|v| v.as_s().ok()).map_or("", String::as_str)
}

fn number(item: &HashMap<String, AttributeValue>, k: &str) -> i128 {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(-1)
}

const LEASE_ATTRIBUTES: [&str; 3] = ["lease_owner", "lease_session", "lease_expires_at"];

#[tokio::test]
async fn claim_takes_an_idle_channel_and_refuses_a_second_session() {
    let t = Table::new().await;
    let c = t.channel().await;

    let first = claim("task-a", "session-a", &c.secret);
    let live = t.store.claim_publish(&c.id, &first).await.expect("claim idle channel");
    assert_eq!(live.state, ChannelState::Live);
    let lease = live.lease.as_ref().expect("lease");
    assert_eq!((lease.owner.as_str(), lease.session.as_str()), ("task-a", "session-a"));
    assert_eq!(unix_millis(lease.expires_at), unix_millis(first.expires_at));
    assert_eq!(live.version, c.version, "a lease write is not a configuration change");
    assert_eq!(t.read(&c.id).await.state, ChannelState::Live);

    let raw = t.raw(&c.id).await;
    assert_eq!(text(&raw, "state"), "live");
    assert_eq!(text(&raw, "lease_owner"), "task-a");
    assert_eq!(text(&raw, "lease_session"), "session-a");
    assert_eq!(number(&raw, "lease_expires_at"), unix_millis(first.expires_at));

    let second = t.store.claim_publish(&c.id, &claim("task-b", "session-b", &c.secret)).await;
    assert!(matches!(second, Err(StoreError::LeaseHeld)), "{second:?}");
    assert_eq!(text(&t.raw(&c.id).await, "lease_session"), "session-a", "refusal wrote nothing");

    // The holder's own claim, retried (an SDK retry after a lost answer), is not refused.
    let again = t.store.claim_publish(&c.id, &first).await.expect("retried claim");
    assert_eq!(again.lease.map(|l| l.session).as_deref(), Some("session-a"));

    let unknown = t.store.claim_publish("0123456789abcdef", &first).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

#[tokio::test]
async fn a_lapsed_lease_reads_idle_and_can_be_taken_over() {
    let t = Table::new().await;
    let c = t.channel().await;
    let now = OffsetDateTime::now_utc();
    let lapsed = LeaseClaim {
        owner: "task-a".into(),
        session: "session-a".into(),
        expires_at: now - Duration::seconds(1),
        now,
        secret: c.secret.clone(),
    };
    t.store.claim_publish(&c.id, &lapsed).await.expect("claim");
    assert_eq!(text(&t.raw(&c.id).await, "state"), "live", "stored state stays live");
    let read = t.read(&c.id).await;
    assert_eq!((read.state, read.lease), (ChannelState::Idle, None), "lapsed lease reads idle");
    let listed = t.store.list(10, None).await.expect("list").items;
    assert_eq!(listed.iter().map(|c| c.state).collect::<Vec<_>>(), [ChannelState::Idle]);

    let taken = t
        .store
        .claim_publish(&c.id, &claim("task-b", "session-b", &c.secret))
        .await
        .expect("a lapsed lease can be taken over");
    assert_eq!(taken.lease.map(|l| l.owner).as_deref(), Some("task-b"));

    // The old holder finds out on its next renewal and cannot release the new one's lease.
    let renew = t.store.renew_publish(&c.id, "session-a", now + Duration::seconds(30)).await;
    assert!(matches!(renew, Err(StoreError::LeaseLost)), "{renew:?}");
    t.store.release_publish(&c.id, "session-a").await.expect("release by a non-holder is Ok");
    let raw = t.raw(&c.id).await;
    assert_eq!((text(&raw, "state"), text(&raw, "lease_session")), ("live", "session-b"));
}

#[tokio::test]
async fn renew_extends_only_the_holders_lease() {
    let t = Table::new().await;
    let c = t.channel().await;
    t.store.claim_publish(&c.id, &claim("task-a", "session-a", &c.secret)).await.expect("claim");

    let later = OffsetDateTime::now_utc() + Duration::seconds(90);
    let renewed = t.store.renew_publish(&c.id, "session-a", later).await.expect("renew");
    assert_eq!(renewed.state, ChannelState::Live);
    assert_eq!(renewed.version, c.version);
    assert_eq!(number(&t.raw(&c.id).await, "lease_expires_at"), unix_millis(later));

    let wrong = t.store.renew_publish(&c.id, "session-b", later).await;
    assert!(matches!(wrong, Err(StoreError::LeaseLost)), "{wrong:?}");

    t.store.release_publish(&c.id, "session-a").await.expect("release");
    let released = t.store.renew_publish(&c.id, "session-a", later).await;
    assert!(matches!(released, Err(StoreError::LeaseLost)), "{released:?}");

    t.store.delete(&c.id).await.expect("delete");
    let deleted = t.store.renew_publish(&c.id, "session-a", later).await;
    assert!(matches!(deleted, Err(StoreError::NotFound)), "{deleted:?}");
    assert!(t.store.get(&c.id).await.expect("get").is_none(), "renew must not recreate the item");
}

#[tokio::test]
async fn release_is_idempotent_and_only_by_the_holder() {
    let t = Table::new().await;
    let c = t.channel().await;
    t.store.claim_publish(&c.id, &claim("task-a", "session-a", &c.secret)).await.expect("claim");

    t.store.release_publish(&c.id, "session-b").await.expect("not the holder: Ok, no write");
    assert_eq!(t.read(&c.id).await.state, ChannelState::Live);

    t.store.release_publish(&c.id, "session-a").await.expect("release");
    let raw = t.raw(&c.id).await;
    assert_eq!(text(&raw, "state"), "idle");
    for k in LEASE_ATTRIBUTES {
        assert!(!raw.contains_key(k), "{k} removed on release");
    }
    assert_eq!(text(&raw, "last_session"), "session-a", "the last claim is remembered");
    assert_eq!(t.read(&c.id).await.last_session.as_deref(), Some("session-a"));
    assert_eq!(number(&raw, "version"), i128::from(c.version));
    t.store.release_publish(&c.id, "session-a").await.expect("second release");
    assert_eq!(text(&t.raw(&c.id).await, "state"), "idle");

    t.store.delete(&c.id).await.expect("delete");
    t.store.release_publish(&c.id, "session-a").await.expect("release of a deleted channel");
    assert!(t.store.get(&c.id).await.expect("get").is_none(), "release must not recreate the item");
}

/// The channel API over `t`'s table, called like Lambda calls it (tower `oneshot`).
fn api(t: &Table, assets: Arc<streamstack_core::DynamoAssetStore>) -> Router {
    let config = api_config();
    router(Arc::new(Deps::new(t.store.clone(), assets, config)))
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(v) = if_match {
        req = req.header(header::IF_MATCH, v);
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).expect("request")).await.expect("response");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
    let json =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") };
    (status, json)
}

#[tokio::test]
async fn patch_during_a_publish_keeps_the_lease_and_the_secret() {
    let t = Table::new().await;
    let app = api(&t, asset_store(&t.aws).await);
    let c = t.channel().await;
    let held = claim("task-a", "session-a", &c.secret);
    t.store.claim_publish(&c.id, &held).await.expect("claim");
    let before = t.raw(&c.id).await;

    let (status, body) = call(
        &app,
        Method::PATCH,
        &format!("/channels/{}", c.id),
        Some("\"1\""),
        Some(json!({ "name": "renamed", "hls": { "segment_duration": 2 } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "live", "{body}");
    assert_eq!(body["version"], 2);

    let after = t.raw(&c.id).await;
    assert_eq!(text(&after, "name"), "renamed");
    assert_eq!(number(&after, "segment_duration"), 2);
    assert_eq!(number(&after, "version"), 2);
    for k in ["state", "secret", "lease_owner", "lease_session", "lease_expires_at"] {
        assert_eq!(after.get(k), before.get(k), "PATCH must not write {k}");
    }

    t.store.release_publish(&c.id, "session-a").await.expect("release after PATCH");
    assert_eq!(t.read(&c.id).await.state, ChannelState::Idle);
}

#[tokio::test]
async fn rotate_key_issues_new_endpoints_and_refuses_the_old_secret() {
    let t = Table::new().await;
    let app = api(&t, asset_store(&t.aws).await);
    let c = t.channel().await;
    let uri = |tail: &str| format!("/channels/{}/{tail}", c.id);

    let (status, old) = call(&app, Method::GET, &uri("endpoints"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{old}");
    let (status, new) = call(&app, Method::POST, &uri("rotate-key"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{new}");

    let credential = |body: &Value| {
        let key = body["rtmp"]["stream_key"].as_str().expect("stream_key").to_owned();
        PushCredential::parse(&key).expect("credential")
    };
    let (old_cred, new_cred) = (credential(&old), credential(&new));
    assert_ne!(old_cred.sig, new_cred.sig);
    assert_eq!(new["channel_id"], c.id.as_str());
    assert_eq!(new["hls"], old["hls"]);
    assert_eq!(new["rtmp"]["server"], old["rtmp"]["server"]);
    let push_url = new["rtmp"]["push_url"].as_str().expect("push_url");
    assert!(
        push_url.ends_with(&format!("/live/{}", new["rtmp"]["stream_key"].as_str().unwrap_or("?")))
    );

    let stored = t.read(&c.id).await;
    assert_ne!(stored.secret, c.secret);
    assert_eq!(stored.version, c.version + 1);
    let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    assert!(signing::verify(&stored.secret, &c.id, new_cred.exp, &new_cred.sig, now).is_ok());
    assert!(signing::verify(&stored.secret, &c.id, old_cred.exp, &old_cred.sig, now).is_err());

    // A publish authorized with the old secret before the rotation cannot claim the channel.
    let stale = t.store.claim_publish(&c.id, &claim("task-a", "session-a", &c.secret)).await;
    assert!(matches!(stale, Err(StoreError::KeyRotated)), "{stale:?}");
    assert_eq!(text(&t.raw(&c.id).await, "state"), "idle");
    t.store
        .claim_publish(&c.id, &claim("task-a", "session-a", &stored.secret))
        .await
        .expect("the new secret claims");

    let (status, body) =
        call(&app, Method::POST, "/channels/0123456789abcdef/rotate-key", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) =
        call(&app, Method::POST, "/channels/not%20an%20id/rotate-key", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&app, Method::GET, &uri("rotate-key"), None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}
