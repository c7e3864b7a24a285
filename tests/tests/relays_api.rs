//! Relay destinations through the channel API against a real DynamoDB table in moto: stored
//! whole, shown masked in every response, edited by id without the key, refused with the
//! field named, and their statuses (written by the lease holder) shown only while it holds
//! the lease.

use axum::http::{Method, StatusCode};
use channels_api::{router, Deps};
use serde_json::{json, Value};
use std::sync::Arc;
use streamstack_core::lease::LeaseClaim;
use streamstack_core::relay::{RelayState, RelayStatus};
use streamstack_core::{ChannelStore, StoreError};
use streamstack_tests::router::{call, Reply};
use streamstack_tests::{api_config, asset_store, aws, channel_table};

const KEY: &str = "abcd-efgh-ijkl-mnop";

async fn json(
    app: &axum::Router,
    method: Method,
    uri: &str,
    etag: Option<&str>,
    body: Value,
) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(etag) = etag {
        headers.push(("if-match", etag));
    }
    call(app, method, uri, &headers, Some(body.to_string().into_bytes())).await
}

fn etag(r: &Reply) -> String {
    r.headers["etag"].to_str().expect("etag").to_owned()
}

#[tokio::test]
async fn relays_are_masked_edited_by_id_and_show_status_while_live() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let store: Arc<dyn ChannelStore> = store;
    let deps = Deps::new(Arc::clone(&store), asset_store(&aws).await, api_config());
    let app = router(Arc::new(deps));
    let youtube = format!("rtmp://a.rtmp.youtube.com/live2/{KEY}");
    let srt = format!("srt://203.0.113.7:9000?streamid={KEY}&passphrase={KEY}");

    let created = json(
        &app,
        Method::POST,
        "/channels",
        None,
        json!({"name": "relayed", "relays": [{"url": youtube}, {"url": srt, "enabled": false}]}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let relays = &created.body["relays"];
    assert_eq!(relays[0]["url"], "rtmp://a.rtmp.youtube.com/live2/****");
    assert_eq!(relays[0]["enabled"], true);
    assert_eq!(relays[0]["status"]["state"], "idle");
    assert_eq!(relays[1]["url"], "srt://203.0.113.7:9000?streamid=****&passphrase=****");
    assert_eq!(relays[1]["enabled"], false);
    let first = relays[0]["id"].as_str().expect("relay id").to_owned();
    // Stored whole, for the streamer.
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.relays[0].url.expose(), youtube);

    // Toggle the first by id (no key sent), drop the second, add a third.
    let patched = json(
        &app,
        Method::PATCH,
        &format!("/channels/{id}"),
        Some(&etag(&created)),
        json!({"relays": [{"id": first, "enabled": false}, {"url": "rtmps://live.example/app/other-key"}]}),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["version"], 2);
    assert_eq!(patched.body["relays"][0]["id"], first.as_str());
    assert_eq!(patched.body["relays"][0]["enabled"], false);
    assert_eq!(patched.body["relays"][1]["url"], "rtmps://live.example/app/****");
    assert_eq!(store.get(&id).await.unwrap().unwrap().relays[0].url.expose(), youtube);
    let tag = etag(&patched);

    // Refusals name the field and never echo the key.
    for (body, field) in [
        (json!({"relays": [{"url": format!("http://h/app/{KEY}")}]}), "relays[0].url"),
        (json!({"relays": [{"url": format!("rtmp://h/{KEY}")}]}), "relays[0].url"),
        (json!({"relays": [{"id": "ffffffffffff"}]}), "relays[0].id"),
        (json!({"relays": [{"enabled": true}]}), "relays[0].url"),
        (json!({"relays": [{"url": youtube}, {"url": youtube}]}), "relays[1].url"),
        (json!({"relays": vec![json!({"url": youtube}); 9]}), "relays"),
    ] {
        let r = json(&app, Method::PATCH, &format!("/channels/{id}"), Some(&tag), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{}", r.body);
        assert!(!r.text.contains(KEY), "{}", r.text);
    }
    for body in [json!({"relays": null}), json!({"relays": [{"url": youtube, "extra": 1}]})] {
        let r = json(&app, Method::PATCH, &format!("/channels/{id}"), Some(&tag), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    }

    // The lease holder's statuses show while it holds the lease, and only its writes count.
    let now = time::OffsetDateTime::now_utc();
    let channel = store.get(&id).await.unwrap().unwrap();
    let mut claim = LeaseClaim::new("task-1", "s1", channel.secret.clone(), now);
    claim.expires_at = now + time::Duration::seconds(30);
    store.claim_publish(&id, &claim).await.unwrap();
    let second = patched.body["relays"][1]["id"].as_str().unwrap().to_owned();
    let status = RelayStatus {
        state: RelayState::Retrying,
        last_error: Some("connect: Connection refused".into()),
        bytes_sent: 4096,
        ..Default::default()
    };
    store.set_relay_status(&id, "s1", &[(second.clone(), status.clone())]).await.unwrap();
    let other = store.set_relay_status(&id, "s2", &[(second.clone(), status)]).await;
    assert!(matches!(other, Err(StoreError::LeaseLost)), "{other:?}");
    let got = call(&app, Method::GET, &format!("/channels/{id}"), &[], None).await;
    assert_eq!(got.body["state"], "live");
    let shown = &got.body["relays"][1]["status"];
    assert_eq!(shown["state"], "retrying", "{}", got.body);
    assert_eq!(shown["bytes_sent"], 4096);
    assert_eq!(shown["last_error"], "connect: Connection refused");
    assert!(shown["updated_at"].is_string());
    assert_eq!(got.body["relays"][0]["status"]["state"], "idle");
    // A PATCH during the publish keeps the status of a kept destination.
    let kept = json(
        &app,
        Method::PATCH,
        &format!("/channels/{id}"),
        Some(&etag(&got)),
        json!({"relays": [{"id": second}]}),
    )
    .await;
    assert_eq!(kept.body["relays"][0]["status"]["state"], "retrying", "{}", kept.body);
    // Released: idle again, the status gone from the item, and no longer writable.
    let raw = streamstack_tests::router::raw_item(&aws.dynamodb, &table, &id).await;
    assert!(raw.contains_key("relay_status"));
    store.release_publish(&id, "s1").await.unwrap();
    let raw = streamstack_tests::router::raw_item(&aws.dynamodb, &table, &id).await;
    assert!(!raw.contains_key("relay_status"), "{raw:?}");
    let late = store.set_relay_status(&id, "s1", &[(second.clone(), RelayStatus::default())]).await;
    assert!(matches!(late, Err(StoreError::LeaseLost)), "{late:?}");
    let got = call(&app, Method::GET, &format!("/channels/{id}"), &[], None).await;
    assert_eq!(
        got.body["relays"][0]["status"],
        json!({"state": "idle", "bytes_sent": 0, "dropped_gops": 0, "reconnects": 0})
    );

    // No response of the API carries the key.
    let list = call(&app, Method::GET, "/channels?limit=100", &[], None).await;
    for r in [&created, &patched, &got, &list] {
        assert!(!r.text.contains(KEY), "{}", r.text);
    }
}
