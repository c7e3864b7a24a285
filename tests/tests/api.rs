//! Channel API against a real DynamoDB table in moto, through the same router Lambda runs.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use axum::Router;
use channels_api::{router, Deps};
use serde_json::{json, Value};
use std::sync::Arc;
use streamstack_core::signing::{self, PushCredential};
use streamstack_core::ChannelStore;
use streamstack_tests::router::Reply;
use streamstack_tests::{api_config, asset_store, aws, channel_store};
use tower::ServiceExt;

struct Api {
    app: Router,
    store: Arc<dyn ChannelStore>,
}

impl Api {
    async fn new() -> Self {
        let aws = aws().await;
        let store: Arc<dyn ChannelStore> = channel_store(&aws).await;
        let config = api_config();
        let assets = asset_store(&aws).await;
        let deps = Arc::new(Deps::new(Arc::clone(&store), assets, config));
        Self { app: router(deps), store }
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

    async fn json(&self, method: Method, uri: &str, body: Value) -> Reply {
        self.call(
            method,
            uri,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn create(&self, name: &str) -> Value {
        let r = self.json(Method::POST, "/channels", json!({ "name": name })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
}

fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
}

#[tokio::test]
async fn create_get_delete_round_trip() {
    let api = Api::new().await;
    let r = api
        .json(Method::POST, "/channels", json!({ "name": "lobby cam", "description": "d", "hls": { "segment_duration": 2, "playlist_window": 5 }, "recording": true }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers[header::LOCATION], format!("/channels/{id}"));
    assert_eq!(r.headers[header::ETAG], "\"1\"");
    assert_eq!(r.body["state"], "idle");
    assert_eq!(r.body["hls"]["segment_duration"], 2);
    assert_eq!(r.body["recording"], true);
    assert!(r.body.get("secret").is_none());

    let got = api.call(Method::GET, &format!("/channels/{id}"), &[], None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, r.body);

    let del = api.call(Method::DELETE, &format!("/channels/{id}"), &[], None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_error(
        &api.call(Method::GET, &format!("/channels/{id}"), &[], None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.call(Method::DELETE, &format!("/channels/{id}"), &[], None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn bad_requests_are_json_4xx_naming_the_field() {
    let api = Api::new().await;
    let r = api
        .call(
            Method::POST,
            "/channels",
            &[("content-type", "application/json")],
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");

    let r = api
        .json(
            Method::POST,
            "/channels",
            json!({ "name": "a", "hls": { "segment_duration": "six", "playlist_window": 5 } }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(r.body["error"]["field"], "hls.segment_duration");

    let r = api
        .json(
            Method::POST,
            "/channels",
            json!({ "name": "a", "hls": { "segment_duration": 11, "playlist_window": 5 } }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(r.body["error"]["field"], "hls.segment_duration");

    let r = api
        .json(
            Method::POST,
            "/channels",
            json!({ "name": "a", "hls": { "segment_duration": 4, "playlist_window": 21 } }),
        )
        .await;
    assert_eq!(r.body["error"]["field"], "hls.playlist_window");

    let r = api.json(Method::POST, "/channels", json!({ "name": "" })).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(r.body["error"]["field"], "name");

    let r = api.json(Method::POST, "/channels", json!({ "description": "no name" })).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("name"), "{}", r.body);

    let r = api.json(Method::POST, "/channels", json!({ "name": "a", "state": "live" })).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("state"), "{}", r.body);

    let r = api
        .json(Method::POST, "/channels", json!({ "name": "a", "expires_at": "yesterday" }))
        .await;
    assert_eq!(r.body["error"]["field"], "expires_at");
}

#[tokio::test]
async fn media_type_size_method_and_route_errors() {
    let api = Api::new().await;
    let r = api
        .call(
            Method::POST,
            "/channels",
            &[("content-type", "text/plain")],
            Some(b"{\"name\":\"a\"}".to_vec()),
        )
        .await;
    assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let r = api.call(Method::POST, "/channels", &[], Some(b"{\"name\":\"a\"}".to_vec())).await;
    assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let big = json!({ "name": "a", "description": "x".repeat(70 * 1024) });
    assert_error(
        &api.json(Method::POST, "/channels", big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    let id = api.create("a").await["id"].as_str().unwrap().to_owned();
    assert_error(
        &api.json(Method::PUT, &format!("/channels/{id}"), json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &api.call(Method::DELETE, "/channels", &[], None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &api.call(Method::GET, "/nope", &[], None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.call(Method::GET, "/channels/missing/endpoints", &[], None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Ids no channel can have are 404, not a DynamoDB validation error (500).
    let long = format!("/channels/{}", "a".repeat(3000));
    for uri in [long.as_str(), "/channels/%00", "/channels/a%2Fb", "/channels/%F0%9F%8E%A5"] {
        assert_error(
            &api.call(Method::GET, uri, &[], None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &api.call(Method::DELETE, uri, &[], None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
}

#[tokio::test]
async fn patch_requires_current_version() {
    let api = Api::new().await;
    let id = api.create("a").await["id"].as_str().unwrap().to_owned();
    let uri = format!("/channels/{id}");
    let body =
        json!({ "name": "renamed", "hls": { "playlist_window": 10 } }).to_string().into_bytes();

    let r = api
        .call(Method::PATCH, &uri, &[("content-type", "application/json")], Some(body.clone()))
        .await;
    assert_error(&r, StatusCode::PRECONDITION_REQUIRED, "precondition_required");

    let r = api
        .call(
            Method::PATCH,
            &uri,
            &[("content-type", "application/merge-patch+json"), ("if-match", "\"1\"")],
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "renamed");
    assert_eq!(r.body["hls"]["playlist_window"], 10);
    assert_eq!(r.body["hls"]["segment_duration"], 4);
    assert_eq!(r.headers[header::ETAG], "\"2\"");

    let r = api
        .call(
            Method::PATCH,
            &uri,
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            Some(body.clone()),
        )
        .await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");

    let r = api
        .call(
            Method::PATCH,
            &uri,
            &[("content-type", "application/json"), ("if-match", "\"2\"")],
            Some(br#"{"hls":{"segment_duration":0}}"#.to_vec()),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(
        api.store.get(&id).await.unwrap().unwrap().version,
        2,
        "a rejected patch changes nothing"
    );

    let r = api
        .call(
            Method::PATCH,
            "/channels/missing",
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            Some(body),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn concurrent_patches_with_same_version_exactly_one_wins() {
    let api = Arc::new(Api::new().await);
    let id = api.create("a").await["id"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let api = Arc::clone(&api);
            let uri = format!("/channels/{id}");
            tokio::spawn(async move {
                let body = json!({ "name": format!("writer {i}") }).to_string().into_bytes();
                api.call(
                    Method::PATCH,
                    &uri,
                    &[("content-type", "application/json"), ("if-match", "\"1\"")],
                    Some(body),
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED),
        "{statuses:?}"
    );
    assert_eq!(api.store.get(&id).await.unwrap().unwrap().version, 2);
}

#[tokio::test]
async fn list_pages_through_every_channel_without_secrets() {
    let api = Api::new().await;
    let mut created: Vec<String> = Vec::new();
    for i in 0..7 {
        created.push(api.create(&format!("c{i}")).await["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut uri = "/channels?limit=3".to_owned();
    loop {
        let r = api.call(Method::GET, &uri, &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(!r.body.to_string().contains("secret"));
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match r.body["next"].as_str() {
            Some(next) => uri = format!("/channels?limit=3&next={next}"),
            None => break,
        }
        assert!(pages < 10, "paging does not terminate");
    }
    assert!(pages >= 3, "7 channels at 3 per page take at least 3 pages, got {pages}");
    seen.sort();
    created.sort();
    assert_eq!(seen, created);

    for bad in ["limit=0", "limit=101", "limit=ten", "next=garbage!"] {
        let r = api.call(Method::GET, &format!("/channels?{bad}"), &[], None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter");
    }
}

#[tokio::test]
async fn endpoints_issue_a_verifiable_push_url() {
    let api = Api::new().await;
    let id = api.create("a").await["id"].as_str().unwrap().to_owned();
    let r = api.call(Method::GET, &format!("/channels/{id}/endpoints"), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let url = r.body["rtmp"]["push_url"].as_str().unwrap();
    let prefix = format!("rtmp://ingest.example:1935/live/{id}?exp=");
    assert!(url.starts_with(&prefix), "{url}");
    assert_eq!(r.body["hls"]["playback_url"], format!("https://cdn.example/live/{id}/index.m3u8"));
    assert_eq!(r.body["rtmp"]["server"], "rtmp://ingest.example:1935/live");
    // The same stream key over RTMPS and SRT (percent-encoded in the streamid).
    let key = r.body["rtmp"]["stream_key"].as_str().unwrap();
    assert_eq!(r.body["rtmps"]["push_url"], format!("rtmps://ingest.example:443/live/{key}"));
    assert_eq!(r.body["rtmps"]["server"], "rtmps://ingest.example:443/live");
    let srt = r.body["srt"]["url"].as_str().unwrap();
    let streamid = srt.strip_prefix("srt://ingest.example:9000?streamid=").expect(srt);
    assert!(!streamid.contains(['?', '&', '=']), "{streamid}");
    let decoded = percent_encoding::percent_decode_str(streamid).decode_utf8().unwrap();
    assert_eq!(decoded, key);

    let credential = PushCredential::parse(url.rsplit('/').next().unwrap()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    assert!(
        (credential.exp as i64 - (now + 600) as i64).abs() <= 5,
        "expiry honours PUSH_URL_TTL_SECS"
    );
    let secret = api.store.get(&id).await.unwrap().unwrap().secret;
    assert_eq!(signing::verify(&secret, &id, credential.exp, &credential.sig, now), Ok(()));
}

/// The Lambda entry point: API Gateway HTTP API (payload 2.0) events, as `cargo lambda invoke
/// --data-file tests/fixtures/...` sends them, through lambda_http's request conversion.
#[tokio::test]
async fn api_gateway_events_reach_the_same_router() {
    let api = Api::new().await;
    let call = |fixture: &'static str| {
        let app = api.app.clone();
        async move {
            let path = format!("{}/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
            let event = std::fs::read_to_string(path).unwrap();
            let req = lambda_http::request::from_str(&event).expect("valid API Gateway event");
            let req = req.map(|body| Body::from(body.to_vec()));
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, body) = call("apigw-http-create-channel.json").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["hls"]["segment_duration"], 2);
    let id = body["id"].as_str().unwrap();
    assert_eq!(api.store.get(id).await.unwrap().unwrap().name, "lobby camera");

    let (status, body) = call("apigw-http-list-bad-limit.json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "limit");
}
