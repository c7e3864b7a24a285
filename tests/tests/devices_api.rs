//! Device registry and gateway heartbeat routes against a real devices table in moto (with
//! its `gateway-index`), through the same router Lambda runs.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::http::{header, Method, StatusCode};
use axum::Router;
use channels_api::{router, Deps};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use streamstack_core::aws::AwsClients;
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::DynamoDeviceStore;
use streamstack_core::media_url::MediaUrlKey;
use streamstack_tests::router::Reply;
use streamstack_tests::{api_config, asset_store, aws, channel_store, unique};

/// The demo key of the local stack; any 64 hex characters do.
const KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

struct Api {
    app: Router,
    aws: AwsClients,
    table: String,
}

impl Api {
    /// A router over a fresh devices table, sealing with [`KEY`] when `key`.
    async fn new(key: bool) -> Self {
        let aws = aws().await;
        let table = unique("devices");
        let devices = DynamoDeviceStore::new(aws.dynamodb.clone(), table.clone());
        devices.create_table_if_missing().await.expect("create devices table");
        let key = key.then(|| MediaUrlKey::from_hex(KEY).expect("key"));
        let deps = Deps::new(channel_store(&aws).await, asset_store(&aws).await, api_config())
            .with_devices(Arc::new(devices), key, DeviceSettings::default());
        Self { app: router(Arc::new(deps)), aws, table }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        streamstack_tests::router::call(&self.app, method, uri, headers, body).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, &[], None).await
    }

    async fn send(&self, method: Method, uri: &str, if_match: Option<&str>, body: &Value) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(v) = if_match {
            headers.push(("if-match", v));
        }
        self.call(method, uri, &headers, Some(body.to_string().into_bytes())).await
    }

    async fn put(&self, id: &str, gateway: &str, url: &str) -> Reply {
        let body = json!({ "gateway_id": gateway, "media_url": url });
        self.send(Method::PUT, &format!("/devices/{id}"), None, &body).await
    }

    async fn heartbeat(&self, gateway: &str, devices: &[(&str, &str)]) -> Reply {
        let devices: Vec<Value> =
            devices.iter().map(|(id, url)| json!({ "id": id, "media_url": url })).collect();
        let body = json!({ "devices": devices });
        self.send(Method::POST, &format!("/gateways/{gateway}/heartbeat"), None, &body).await
    }

    /// The raw DynamoDB item of device `id`.
    async fn item(&self, id: &str) -> HashMap<String, AttributeValue> {
        streamstack_tests::router::raw_item(&self.aws.dynamodb, &self.table, id).await
    }

    /// Every id that `GET /devices?<query>` lists, following `next` through all pages.
    async fn ids(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut uri = format!("/devices?limit=2&{query}");
        loop {
            let r = self.get(&uri).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            for item in r.body["items"].as_array().unwrap() {
                ids.push(item["id"].as_str().unwrap().to_owned());
            }
            match r.body["next"].as_str() {
                Some(next) => uri = format!("/devices?limit=2&{query}&next={next}"),
                None => break,
            }
        }
        ids.sort();
        ids
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

fn assert_error(r: &Reply, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    if let Some(field) = field {
        assert_eq!(r.body["error"]["field"], field, "{}", r.body);
    }
}

#[tokio::test]
async fn put_creates_then_replaces_with_etags_and_if_match() {
    let api = Api::new(true).await;
    let r = api.put("cam1", "gw1", "rtsp://10.0.0.7:554/stream1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers[header::LOCATION], "/devices/cam1");
    assert_eq!(r.headers[header::ETAG], "\"1\"");
    assert_eq!(r.body["id"], "cam1");
    assert_eq!(r.body["name"], "cam1");
    assert_eq!(r.body["gateway_id"], "gw1");
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["status"], "offline");
    assert_eq!(
        (&r.body["health"], &r.body["failed_at"], &r.body["last_exit"]),
        (&json!("ok"), &Value::Null, &Value::Null)
    );
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["media_url"], "rtsp://10.0.0.7:554/stream1");
    assert!(r.body.get("slot").is_none() && r.body.get("reported").is_none(), "{}", r.body);

    let got = api.get("/devices/cam1").await;
    assert_eq!((got.status, &got.body), (StatusCode::OK, &r.body));
    assert_eq!(got.headers[header::ETAG], "\"1\"");

    let spec = json!({ "gateway_id": "gw1", "name": "Lobby", "media_url": "rtsps://cam.example/s", "enabled": false });
    let r = api.send(Method::PUT, "/devices/cam1", None, &spec).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers[header::ETAG], "\"2\"");
    assert!(r.headers.get(header::LOCATION).is_none());
    assert_eq!((&r.body["name"], &r.body["enabled"]), (&json!("Lobby"), &json!(false)));

    let stale = api.send(Method::PUT, "/devices/cam1", Some("\"1\""), &spec).await;
    assert_error(&stale, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    let r = api.send(Method::PUT, "/devices/cam1", Some("\"2\""), &spec).await;
    assert_eq!((r.status, r.headers[header::ETAG].to_str().unwrap()), (StatusCode::OK, "\"3\""));
    let r = api.send(Method::PUT, "/devices/cam1", Some("*"), &spec).await;
    assert_eq!((r.status, r.headers[header::ETAG].to_str().unwrap()), (StatusCode::OK, "\"4\""));
    let absent = api.send(Method::PUT, "/devices/cam2", Some("*"), &spec).await;
    assert_error(&absent, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    assert_error(&api.get("/devices/cam2").await, StatusCode::NOT_FOUND, "not_found", None);

    for bad in ["http://cam/s", "rtmp://cam/live", "not a url"] {
        let r = api.put("cam3", "gw1", bad).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("media_url"));
    }
    let r = api.put("cam3", "gw 1", "rtsp://cam/s").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("gateway_id"));
    let r = api.put("bad%20id", "gw1", "rtsp://cam/s").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", Some("id"));
    let r = api
        .send(
            Method::PUT,
            "/devices/cam3",
            None,
            &json!({ "gateway_id": "gw1", "media_url": "rtsp://cam/s", "color": 1 }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
    assert_error(&api.get("/devices/cam3").await, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn credentials_are_sealed_at_rest_and_masked_in_every_response() {
    let api = Api::new(true).await;
    let url = "rtsp://admin:s3cr%40t@10.0.0.7:554/stream1";
    let r = api.put("cam1", "gw1", url).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let masked = "rtsp://***@10.0.0.7:554/stream1";
    assert_eq!(r.body["media_url"], masked);
    let mut replies = vec![r, api.get("/devices/cam1").await, api.get("/devices").await];
    replies.push(api.get("/devices/cam1/endpoints").await);
    replies.push(api.heartbeat("gw1", &[("cam1", url)]).await);
    let patch = json!({ "media_url": "rtsp://admin:0ther@10.0.0.7:554/stream1" });
    replies.push(api.send(Method::PATCH, "/devices/cam1", Some("\"1\""), &patch).await);
    for r in &replies {
        assert!(r.status.is_success(), "{}", r.text);
        for secret in ["s3cr", "admin", "0ther"] {
            assert!(!r.text.contains(secret), "{secret} in {}", r.text);
        }
    }
    assert_eq!(replies[2].body["items"][0]["media_url"], masked);

    let item = api.item("cam1").await;
    assert_eq!(text(&item, "media_url"), "rtsp://10.0.0.7:554/stream1");
    let sealed = text(&item, "media_credentials");
    assert!(!sealed.is_empty());
    let raw = format!("{item:?}");
    for secret in ["s3cr", "admin", "0ther"] {
        assert!(!raw.contains(secret), "{secret} in the stored item");
    }
    // The sealed credentials open with the key, for this device only.
    let stored = streamstack_core::media_url::MediaUrl {
        url: text(&item, "media_url"),
        credentials: Some(sealed),
        digest: text(&item, "url_digest"),
    };
    let key = MediaUrlKey::from_hex(KEY).unwrap();
    assert_eq!(stored.open("cam1", Some(&key)).unwrap(), "rtsp://admin:0ther@10.0.0.7:554/stream1");
    assert!(stored.open("cam2", Some(&key)).is_err());

    // Without MEDIA_URL_KEY, credentials are refused (plain URLs still accepted).
    let keyless = Api::new(false).await;
    let r = keyless.put("cam1", "gw1", url).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("media_url"));
    assert!(r.text.contains("MEDIA_URL_KEY") && !r.text.contains("s3cr"), "{}", r.text);
    let r = keyless.heartbeat("gw1", &[("cam1", url)]).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("devices[0].media_url"));
    assert_eq!(
        keyless.put("cam1", "gw1", "udp://239.1.1.1:5000").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn list_filters_by_gateway_and_status_and_pages() {
    let api = Api::new(true).await;
    for (id, gw) in [("a1", "gw1"), ("a2", "gw1"), ("a3", "gw1"), ("b1", "gw2"), ("b2", "gw2")] {
        assert_eq!(api.put(id, gw, &format!("rtsp://cam/{id}")).await.status, StatusCode::CREATED);
    }
    let r = api.heartbeat("gw1", &[("a1", "rtsp://cam/a1"), ("a3", "rtsp://cam/a3")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    assert_eq!(api.ids("").await, ["a1", "a2", "a3", "b1", "b2"]);
    assert_eq!(api.ids("gateway_id=gw1").await, ["a1", "a2", "a3"]);
    assert_eq!(api.ids("gateway_id=gw2").await, ["b1", "b2"]);
    assert_eq!(api.ids("status=online").await, ["a1", "a3"]);
    assert_eq!(api.ids("status=offline").await, ["a2", "b1", "b2"]);
    assert_eq!(api.ids("gateway_id=gw1&status=offline").await, ["a2"]);
    assert!(api.ids("gateway_id=gw3").await.is_empty());

    let page = api.get("/devices?status=online&limit=100").await;
    for item in page.body["items"].as_array().unwrap() {
        assert_eq!(item["status"], "online");
        assert!(item["last_heartbeat"].is_string());
    }
    for (query, field) in [
        ("status=bogus", "status"),
        ("status=ONLINE", "status"),
        ("limit=0", "limit"),
        ("next=garbage!", "next"),
        ("gateway_id=a%20b", "gateway_id"),
    ] {
        let r = api.get(&format!("/devices?{query}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", Some(field));
    }
}

#[tokio::test]
async fn patch_needs_the_current_version_and_delete_removes() {
    let api = Api::new(true).await;
    assert_eq!(api.put("cam1", "gw1", "rtsp://cam/1").await.status, StatusCode::CREATED);
    let patch = json!({ "name": "Back door", "enabled": false });
    let r = api.send(Method::PATCH, "/devices/cam1", None, &patch).await;
    assert_error(&r, StatusCode::PRECONDITION_REQUIRED, "precondition_required", None);
    let r = api.send(Method::PATCH, "/devices/cam1", Some("\"7\""), &patch).await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    let r = api.send(Method::PATCH, "/devices/cam1", Some("\"1\""), &patch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers[header::ETAG], "\"2\"");
    assert_eq!(
        (&r.body["name"], &r.body["enabled"], &r.body["gateway_id"]),
        (&json!("Back door"), &json!(false), &json!("gw1"))
    );
    let r = api.send(Method::PATCH, "/devices/cam1", Some("\"1\""), &patch).await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    let r = api
        .send(Method::PATCH, "/devices/cam1", Some("\"2\""), &json!({ "media_url": "http://x/y" }))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("media_url"));
    let r = api.send(Method::PATCH, "/devices/cam9", Some("\"1\""), &patch).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    let endpoints = api.get("/devices/cam1/endpoints").await;
    assert_eq!(endpoints.status, StatusCode::OK, "{}", endpoints.body);
    assert_eq!(
        endpoints.body,
        json!({ "device_id": "cam1", "hls": {
            "live_playlist_url": "https://cdn.example/devices/cam1/live/index.m3u8",
            "archive_prefix_url": "https://cdn.example/devices/cam1/",
            "archive_playlist_pattern": "devices/cam1/<yyyy>/<mm>/<dd>/<hh>/<session>/recording.m3u8",
        }, "playback": {
            "mode": "public",
            "playlist_url": "https://cdn.example/devices/cam1/live/index.m3u8",
            "signed_playlist_url": null,
            "authorization": null,
        }})
    );

    assert_eq!(
        api.call(Method::DELETE, "/devices/cam1", &[], None).await.status,
        StatusCode::NO_CONTENT
    );
    for (method, uri) in [
        (Method::DELETE, "/devices/cam1"),
        (Method::GET, "/devices/cam1"),
        (Method::GET, "/devices/cam1/endpoints"),
        (Method::GET, "/devices/no%20such"),
        (Method::DELETE, "/devices/no%20such"),
    ] {
        assert_error(
            &api.call(method, uri, &[], None).await,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        );
    }
    let r = api.call(Method::POST, "/devices/cam1", &[], None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
}

#[tokio::test]
async fn heartbeats_bring_devices_online_offline_and_refuse_foreign_ones() {
    let api = Api::new(true).await;
    let three =
        [("c1", "rtsp://u:p@cam/1"), ("c2", "rtsp://cam/2"), ("c3", "udp://239.0.0.1:5000")];
    let r = api.heartbeat("gw1", &three).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({ "gateway_id": "gw1", "online": 3, "created": 3, "url_changed": 0, "offline": 0, "rejected": [] })
    );
    for (id, _) in three {
        let d = api.get(&format!("/devices/{id}")).await;
        assert_eq!(
            (&d.body["status"], &d.body["gateway_id"], &d.body["version"]),
            (&json!("online"), &json!("gw1"), &json!(1))
        );
    }
    assert_eq!(api.get("/devices/c1").await.body["media_url"], "rtsp://***@cam/1");

    // c3 missing from the next heartbeat: offline; the others stay online.
    let r = api.heartbeat("gw1", &three[..2]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (&r.body["online"], &r.body["created"], &r.body["offline"]),
        (&json!(2), &json!(0), &json!(1))
    );
    assert_eq!(api.get("/devices/c3").await.body["status"], "offline");
    assert_eq!(api.get("/devices/c1").await.body["status"], "online");
    assert_eq!(api.ids("status=online").await, ["c1", "c2"]);

    // Another gateway cannot report gw1's device; its own new device is registered.
    let r = api.heartbeat("gw2", &[("c1", "rtsp://evil/1"), ("d1", "rtsp://cam/d1")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({ "gateway_id": "gw2", "online": 1, "created": 1, "url_changed": 0, "offline": 0, "rejected": ["c1"] })
    );
    let c1 = api.item("c1").await;
    assert_eq!(
        (text(&c1, "gateway_id"), text(&c1, "media_url")),
        ("gw1".into(), "rtsp://cam/1".into())
    );

    // A URL change (the password only) bumps the version and moves the digest.
    let before = api.item("c1").await;
    let r = api.heartbeat("gw1", &[("c1", "rtsp://u:new@cam/1"), ("c2", "rtsp://cam/2")]).await;
    assert_eq!(
        (&r.body["online"], &r.body["url_changed"], &r.body["offline"]),
        (&json!(2), &json!(1), &json!(0)),
        "{}",
        r.body
    );
    let after = api.item("c1").await;
    assert_ne!(text(&before, "url_digest"), text(&after, "url_digest"));
    assert_ne!(text(&before, "media_credentials"), text(&after, "media_credentials"));
    let got = api.get("/devices/c1").await;
    assert_eq!(
        (got.body["version"].as_u64(), got.headers[header::ETAG].to_str().unwrap()),
        (Some(2), "\"2\"")
    );
    assert_eq!(
        api.get("/devices/c2").await.body["version"],
        1,
        "an unchanged URL keeps the version"
    );

    // Bad reports are refused whole, naming the entry.
    let r = api.heartbeat("gw1", &[("c1", "rtsp://cam/1"), ("c1", "rtsp://cam/1")]).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("devices[1].id"));
    let r = api.heartbeat("gw1", &[("c1", "rtsp://cam/1"), ("c 2", "rtsp://cam/2")]).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("devices[1].id"));
    let r = api.heartbeat("gw1", &[("c1", "https://u:pw@cam/1")]).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("devices[0].media_url"));
    assert!(!r.text.contains("pw@"), "{}", r.text);
    let r = api
        .send(
            Method::POST,
            "/gateways/gw1/heartbeat",
            None,
            &json!({ "devices": [{ "id": "c1", "media_url": "rtsp://cam/1", "x": 1 }] }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
    let r = api
        .send(
            Method::POST,
            "/gateways/gw1/heartbeat",
            None,
            &json!({ "devices": [], "extra": true }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
    let r = api.heartbeat("gw%201", &[]).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", Some("gateway_id"));
    assert_eq!(api.get("/devices/c1").await.body["version"], 2, "refused reports write nothing");

    // An empty report: every device of the gateway goes offline.
    let r = api.heartbeat("gw1", &[]).await;
    assert_eq!((&r.body["online"], &r.body["offline"]), (&json!(0), &json!(2)), "{}", r.body);
    assert_eq!(api.ids("status=online").await, ["d1"]);
}

#[tokio::test]
async fn five_hundred_cameras_are_one_request() {
    let api = Api::new(true).await;
    // ~150 bytes an entry: the body (~80 KB) is above the 64 KiB limit of other routes.
    let devices: Vec<(String, String)> = (0..500)
        .map(|i| (format!("camera-{i:04}"), format!("rtsp://admin:password{i}@10.{}.{}.{}:554/Streaming/Channels/101?transportmode=unicast", i / 65536, (i / 256) % 256, i % 256)))
        .collect();
    let entries: Vec<(&str, &str)> =
        devices.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let started = std::time::Instant::now();
    let r = api.heartbeat("site-7", &entries).await;
    let first = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({ "gateway_id": "site-7", "online": 500, "created": 500, "url_changed": 0, "offline": 0, "rejected": [] })
    );
    let started = std::time::Instant::now();
    let r = api.heartbeat("site-7", &entries[..450]).await;
    let second = started.elapsed();
    assert_eq!(
        r.body,
        json!({ "gateway_id": "site-7", "online": 450, "created": 0, "url_changed": 0, "offline": 50, "rejected": [] })
    );
    eprintln!("heartbeat of 500 devices: first {first:?}, second {second:?} (moto)");
    let online = api.get("/devices?status=online&gateway_id=site-7&limit=100").await;
    assert_eq!(online.status, StatusCode::OK);
    assert!(!online.text.contains("password"), "credentials in a listing");
    assert_eq!(api.get("/devices/camera-0499").await.body["status"], "offline");
    assert_eq!(api.get("/devices/camera-0000").await.body["status"], "online");

    // The per-route limit: 2 MiB for heartbeats, 64 KiB elsewhere.
    let big = vec![b' '; 3 << 20];
    let r = api
        .call(
            Method::POST,
            "/gateways/site-7/heartbeat",
            &[("content-type", "application/json")],
            Some(big),
        )
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    let spec = format!(
        r#"{{"gateway_id":"gw","media_url":"rtsp://cam/s","name":"{}"}}"#,
        "n".repeat(70_000)
    );
    let r = api
        .call(
            Method::PUT,
            "/devices/big",
            &[("content-type", "application/json")],
            Some(spec.into_bytes()),
        )
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    let too_many: Vec<Value> = (0..5001)
        .map(|i| json!({ "id": format!("d{i}"), "media_url": "udp://239.0.0.1:5000" }))
        .collect();
    let r = api
        .send(Method::POST, "/gateways/site-7/heartbeat", None, &json!({ "devices": too_many }))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("devices"));
}

#[tokio::test]
async fn a_failed_device_shows_it_and_a_patch_retries_it() {
    use streamstack_core::device_health::{
        DeviceHealthStore, HealthRecord, RecordOutcome, TaskExit,
    };
    let api = Api::new(true).await;
    assert_eq!(api.put("cam1", "gw1", "rtsp://cam/1").await.status, StatusCode::CREATED);
    let store = DynamoDeviceStore::new(api.aws.dynamodb.clone(), api.table.clone());
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let exit = TaskExit {
        task_arn: "arn:aws:ecs:us-east-1:1:task/c/t".into(),
        version: 5,
        stopped_at: now,
        stop_code: "EssentialContainerExited".into(),
        exit_code: Some(1),
        reason: "Essential container in task exited".into(),
    };
    let record = HealthRecord {
        restarts: 5,
        window_start: Some(now),
        not_before: None,
        failed_at: Some(now),
        alarm_pending: false,
        exit,
    };
    assert_eq!(store.record_exit("cam1", &record, 0, None).await.unwrap(), RecordOutcome::Recorded);
    // Recorded from a state that is no longer current: refused.
    assert_eq!(store.record_exit("cam1", &record, 0, None).await.unwrap(), RecordOutcome::Conflict);
    let r = api.get("/devices/cam1").await;
    assert_eq!(
        (&r.body["health"], &r.body["restarts"]),
        (&json!("failed"), &json!(5)),
        "{}",
        r.body
    );
    assert_eq!(r.body["last_exit"]["exit_code"], 1);
    assert_eq!(r.body["last_exit"]["stop_code"], "EssentialContainerExited");
    assert_eq!(r.headers[header::ETAG], "\"1\"", "health writes are not configuration changes");
    let r =
        api.send(Method::PATCH, "/devices/cam1", Some("\"1\""), &json!({ "enabled": true })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (&r.body["health"], &r.body["restarts"], &r.body["failed_at"]),
        (&json!("ok"), &json!(0), &Value::Null)
    );
}

#[tokio::test]
async fn device_routes_without_a_devices_table_are_not_found() {
    let aws = aws().await;
    let deps = Deps::new(channel_store(&aws).await, asset_store(&aws).await, api_config());
    let app = router(Arc::new(deps));
    for (method, uri) in [
        (Method::GET, "/devices"),
        (Method::GET, "/devices/cam1"),
        (Method::DELETE, "/devices/cam1"),
    ] {
        let Reply { status, body, .. } =
            streamstack_tests::router::call(&app, method, uri, &[], None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
        assert!(body["error"]["message"].as_str().unwrap().contains("not configured"), "{body}");
    }
}
