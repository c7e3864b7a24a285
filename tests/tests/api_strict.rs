//! Strict HTTP semantics of the API (issue 15): the bad-input cases of a careless or hostile
//! client, through the same router Lambda runs, against moto DynamoDB. Every error body must
//! be the JSON error schema (`router::call` panics on a non-JSON body).

use axum::http::{header, Method, StatusCode};
use axum::Router;
use base64::Engine;
use channels_api::{router, Deps};
use serde_json::{json, Value};
use std::sync::Arc;
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::DynamoDeviceStore;
use streamstack_tests::router::Reply;
use streamstack_tests::{api_config, asset_store, aws, channel_store, unique};

struct Api {
    app: Router,
}

impl Api {
    async fn new() -> Self {
        let aws = aws().await;
        let devices = DynamoDeviceStore::new(aws.dynamodb.clone(), unique("devices"));
        devices.create_table_if_missing().await.expect("create devices table");
        let deps = Deps::new(channel_store(&aws).await, asset_store(&aws).await, api_config())
            .with_devices(Arc::new(devices), None, DeviceSettings::default());
        Self { app: router(Arc::new(deps)) }
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

    /// `body` as JSON text with `headers` (plus the JSON content type).
    async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.call(method, uri, &all, Some(body.as_bytes().to_vec())).await
    }

    /// `PATCH uri` with one `If-Match` line per entry of `if_match`.
    async fn patch(&self, uri: &str, if_match: &[&str], body: Value) -> Reply {
        let headers: Vec<(&str, &str)> = if_match.iter().map(|v| ("if-match", *v)).collect();
        self.send(Method::PATCH, uri, &headers, &body.to_string()).await
    }

    async fn channel(&self, body: Value) -> Value {
        let r = self.send(Method::POST, "/channels", &[], &body.to_string()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    async fn device(&self, id: &str) -> Value {
        let body = json!({ "gateway_id": "gw1", "media_url": "rtsp://cam/1" }).to_string();
        let r = self.send(Method::PUT, &format!("/devices/{id}"), &[], &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }
}

#[track_caller]
fn assert_error(r: &Reply, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{}", r.text);
    assert!(!message.starts_with('?') && !message.contains("?: "), "{}", r.text);
    assert_ne!(r.body["error"]["field"], "?", "{}", r.text);
    if let Some(field) = field {
        assert_eq!(r.body["error"]["field"], field, "{}", r.text);
    }
    let content_type = r.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/json"), "{}", r.text);
}

#[tokio::test]
async fn non_utf8_path_ids_are_json_400_on_every_id_route() {
    let api = Api::new().await;
    let hb = r#"{"devices":[]}"#;
    for (method, uri, body) in [
        (Method::GET, "/channels/%FF", None),
        (Method::PATCH, "/channels/%FF", Some("{}")),
        (Method::DELETE, "/channels/%FF", None),
        (Method::GET, "/channels/%FF/endpoints", None),
        (Method::POST, "/channels/%FF/rotate-key", None),
        (Method::GET, "/assets/%FF", None),
        (Method::GET, "/devices/%FF", None),
        (Method::PUT, "/devices/%FF", Some(r#"{"gateway_id":"g","media_url":"rtsp://c/1"}"#)),
        (Method::PATCH, "/devices/%FF", Some("{}")),
        (Method::DELETE, "/devices/%FF", None),
        (Method::GET, "/devices/%FF/endpoints", None),
        (Method::POST, "/gateways/%C3%28/heartbeat", Some(hb)),
    ] {
        let r = match body {
            Some(b) => api.send(method.clone(), uri, &[("if-match", "*")], b).await,
            None => api.call(method.clone(), uri, &[], None).await,
        };
        let field = if uri.starts_with("/gateways") { "gateway_id" } else { "id" };
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", Some(field));
        assert!(!r.text.contains('\u{FFFD}'), "{method} {uri}: {}", r.text);
    }
}

#[tokio::test]
async fn framework_rejections_are_json_with_the_right_status() {
    let api = Api::new().await;
    let r = api.call(Method::GET, "/nope", &[], None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    for (method, uri, allowed) in [
        (Method::PUT, "/channels", &["GET", "POST"][..]),
        (Method::POST, "/channels/abc", &["GET", "PATCH", "DELETE"]),
        (Method::DELETE, "/assets", &["GET"]),
        (Method::POST, "/devices/abc", &["PUT", "GET", "PATCH", "DELETE"]),
        (Method::GET, "/gateways/gw1/heartbeat", &["POST"]),
    ] {
        let r = api.call(method.clone(), uri, &[], None).await;
        assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        let allow = r.headers.get(header::ALLOW).map(|v| v.to_str().unwrap().to_owned());
        let allow = allow.unwrap_or_else(|| panic!("{method} {uri}: no Allow header"));
        for m in allowed {
            assert!(allow.split(',').any(|a| a.trim() == *m), "{method} {uri}: Allow {allow}");
        }
    }

    let r = api
        .call(Method::POST, "/channels", &[("content-type", "text/plain")], Some(b"{}".to_vec()))
        .await;
    assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None);

    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(70_000));
    let r = api.send(Method::POST, "/channels", &[], &big).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);

    for uri in ["/channels?limit=0", "/channels?limit=%FF", "/devices?status=%FF"] {
        let r = api.call(Method::GET, uri, &[], None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", None);
    }
}

#[tokio::test]
async fn a_json_array_never_stands_for_an_object() {
    let api = Api::new().await;
    let r = api.send(Method::POST, "/channels", &[], r#"["x"]"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
    assert!(r.body["error"].get("field").is_none_or(Value::is_null), "{}", r.body);
    let r = api.send(Method::POST, "/channels", &[], r#"{"name":"a","hls":[3,4]}"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", Some("hls"));

    let id = api.channel(json!({ "name": "a" })).await["id"].as_str().unwrap().to_owned();
    let uri = format!("/channels/{id}");
    let r = api.send(Method::PATCH, &uri, &[("if-match", "\"1\"")], r#"{"hls":[3,4]}"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", Some("hls"));
    let r = api.send(Method::PATCH, &uri, &[("if-match", "\"1\"")], r#"["b"]"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
    let r = api.call(Method::GET, &uri, &[], None).await;
    assert_eq!(
        (r.body["version"].as_u64(), r.body["hls"]["segment_duration"].as_u64()),
        (Some(1), Some(4))
    );

    let r = api.send(Method::PUT, "/devices/cam1", &[], r#"["gw1","rtsp://cam/1"]"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
    api.device("cam1").await;
    let r = api.send(Method::PATCH, "/devices/cam1", &[("if-match", "\"1\"")], r#"["gw2"]"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
    let r = api
        .send(
            Method::POST,
            "/gateways/gw1/heartbeat",
            &[],
            r#"{"devices":[["cam1","rtsp://cam/1"]]}"#,
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", Some("devices[0]"));
    let r = api.send(Method::POST, "/gateways/gw1/heartbeat", &[], r#"[[]]"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
}

#[tokio::test]
async fn each_hls_field_defaults_on_its_own() {
    let api = Api::new().await;
    let c = api.channel(json!({ "name": "a", "hls": { "segment_duration": 2 } })).await;
    assert_eq!(c["hls"], json!({ "segment_duration": 2, "playlist_window": 6 }));
    let c = api.channel(json!({ "name": "a", "hls": { "playlist_window": 10 } })).await;
    assert_eq!(c["hls"], json!({ "segment_duration": 4, "playlist_window": 10 }));
    let c = api.channel(json!({ "name": "a", "hls": {} })).await;
    assert_eq!(c["hls"], json!({ "segment_duration": 4, "playlist_window": 6 }));
    let r = api.send(Method::POST, "/channels", &[], r#"{"name":"a","hls":{"x":1}}"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", Some("hls.x"));
}

#[tokio::test]
async fn if_match_is_an_rfc_9110_list_compared_strongly() {
    let api = Api::new().await;
    let id = api.channel(json!({ "name": "a" })).await["id"].as_str().unwrap().to_owned();
    let uri = format!("/channels/{id}");
    // Malformed: 400, whatever the version.
    for bad in ["1", "\"1", "\"\"1\"\"", "*, \"1\"", "", "\"1\" \"2\""] {
        let r = api.patch(&uri, &[bad], json!({ "name": "x" })).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", Some("If-Match"));
    }
    // Well-formed, no strong match: 412.
    for stale in ["W/\"1\"", "\"+1\"", "\"2\"", "\"0\", W/\"1\""] {
        let r = api.patch(&uri, &[stale], json!({ "name": "x" })).await;
        assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    }
    let r = api.patch(&uri, &["\"0\", \"1\""], json!({ "name": "b" })).await;
    assert_eq!((r.status, &r.headers[header::ETAG]), (StatusCode::OK, &"\"2\"".parse().unwrap()));
    // Several field lines are one list.
    let r = api.patch(&uri, &["\"7\"", "\"2\""], json!({ "name": "c" })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api.patch(&uri, &["*"], json!({ "name": "d" })).await;
    assert_eq!((r.status, r.body["version"].as_u64()), (StatusCode::OK, Some(4)), "{}", r.body);
    let r = api.send(Method::PATCH, &uri, &[], r#"{"name":"e"}"#).await;
    assert_error(&r, StatusCode::PRECONDITION_REQUIRED, "precondition_required", None);
    // `*` needs a current representation.
    let r = api.send(Method::PATCH, "/channels/missing", &[("if-match", "*")], "{}").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    // DELETE: optional, evaluated when given.
    let r = api.call(Method::DELETE, &uri, &[("if-match", "W/\"4\"")], None).await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    let r = api.call(Method::DELETE, &uri, &[("if-match", "4")], None).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", Some("If-Match"));
    let r = api.call(Method::DELETE, &uri, &[("if-match", "\"4\"")], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    // Devices: the same parser.
    api.device("cam1").await;
    let off = || json!({ "enabled": false });
    assert_error(
        &api.patch("/devices/cam1", &["W/\"1\""], off()).await,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        None,
    );
    assert_error(
        &api.patch("/devices/cam1", &["1"], off()).await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("If-Match"),
    );
    assert_error(
        &api.patch("/devices/cam1", &["\"1"], off()).await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("If-Match"),
    );
    let r = api.patch("/devices/cam1", &["*"], off()).await;
    assert_eq!((r.status, r.body["version"].as_u64()), (StatusCode::OK, Some(2)), "{}", r.body);
    let spec = r#"{"gateway_id":"gw1","media_url":"rtsp://cam/2"}"#;
    let r = api.send(Method::PUT, "/devices/cam1", &[("if-match", "W/\"2\"")], spec).await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    let r = api.send(Method::PUT, "/devices/cam1", &[("if-match", "\"1\", \"2\"")], spec).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api.call(Method::DELETE, "/devices/cam1", &[("if-match", "\"2\"")], None).await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed", None);
    let r = api.call(Method::DELETE, "/devices/cam1", &[("if-match", "*")], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}

#[tokio::test]
async fn a_patch_that_changes_nothing_keeps_the_version() {
    let api = Api::new().await;
    let c = api.channel(json!({ "name": "a", "description": "d" })).await;
    let uri = format!("/channels/{}", c["id"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let same = json!({ "name": "a", "description": "d", "hls": { "segment_duration": 4 }, "recording": false, "playback": "public", "expires_at": c["expires_at"] });
    for body in [json!({}), json!({ "hls": {} }), same] {
        let r = api.send(Method::PATCH, &uri, &[("if-match", "\"1\"")], &body.to_string()).await;
        assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.body);
        assert_eq!(r.body, c, "{body}");
        assert_eq!(r.headers[header::ETAG], "\"1\"");
    }
    // `null` for a field that cannot be null: 400 naming it, nothing changes.
    for (body, field) in [
        (json!({ "name": null }), "name"),
        (json!({ "description": null }), "description"),
        (json!({ "hls": null }), "hls"),
        (json!({ "hls": { "playlist_window": null } }), "hls.playlist_window"),
        (json!({ "recording": null }), "recording"),
        (json!({ "expires_at": null }), "expires_at"),
    ] {
        let r = api.send(Method::PATCH, &uri, &[("if-match", "\"1\"")], &body.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", Some(field));
    }
    let r = api.call(Method::GET, &uri, &[], None).await;
    assert_eq!(r.body, c);

    let d = api.device("cam1").await;
    for body in [
        json!({}),
        json!({ "gateway_id": "gw1", "media_url": "rtsp://cam/1", "enabled": true, "name": "cam1" }),
    ] {
        let r = api
            .send(Method::PATCH, "/devices/cam1", &[("if-match", "\"1\"")], &body.to_string())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!((&r.body["version"], &r.body["updated_at"]), (&d["version"], &d["updated_at"]));
    }
    for field in ["name", "gateway_id", "media_url", "enabled"] {
        let body = json!({ field: null }).to_string();
        let r = api.send(Method::PATCH, "/devices/cam1", &[("if-match", "\"1\"")], &body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", Some(field));
    }
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_400_not_413() {
    let api = Api::new().await;
    let body = br#"{"name":"a"}"#.to_vec();
    let headers = [("content-type", "application/json"), ("content-length", "100")];
    let r = api.call(Method::POST, "/channels", &headers, Some(body.clone())).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", None);
    for bad in ["-1", "1,1", "0x10", "ten"] {
        let headers = [("content-type", "application/json"), ("content-length", bad)];
        let r = api.call(Method::POST, "/channels", &headers, Some(body.clone())).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", None);
    }
    let headers = [("content-type", "application/json"), ("content-length", "100000000")];
    let r = api.call(Method::POST, "/channels", &headers, Some(body.clone())).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    let len = body.len().to_string();
    let headers = [("content-type", "application/json"), ("content-length", len.as_str())];
    let r = api.call(Method::POST, "/channels", &headers, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn forged_cursors_are_400_before_dynamodb() {
    let api = Api::new().await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let long = b64(&format!("c1:{}", "a".repeat(5000)));
    let forged = [long, b64("c1:a b"), b64("c1:"), "%FF".into(), format!("{}=", b64("c1:abc"))];
    for path in ["/channels", "/assets", "/devices"] {
        for next in &forged {
            let r = api.call(Method::GET, &format!("{path}?next={next}"), &[], None).await;
            assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", Some("next"));
        }
        // A well-formed cursor still pages.
        let r = api.call(Method::GET, &format!("{path}?next={}", b64("c1:abc")), &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }
}

#[tokio::test]
async fn malformed_json_names_no_field() {
    let api = Api::new().await;
    for body in
        ["{not json", "{\"name\":", "", "{\"name\":\"a\"} x", "{\"hls\":{\"segment_duration\" 2}}"]
    {
        let r = api.send(Method::POST, "/channels", &[], body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json", None);
        assert!(r.body["error"].get("field").is_none_or(Value::is_null), "{body}: {}", r.body);
    }
}

#[tokio::test]
async fn names_are_normalised_and_limited() {
    let api = Api::new().await;
    for bad in [
        "a\u{0}b",
        "a\r\nb",
        "tab\there",
        "\u{202E}gnp.exe",
        "x\u{2066}y",
        "\u{200B}\u{200D}\u{FEFF}",
        " \u{2060} ",
        "\u{AD}\u{200E}\u{3164}\u{FE0F}\u{E0041}",
        "a\u{2028}b",
        "",
        &"a".repeat(129),
        &"\u{4E2D}".repeat(86),
    ] {
        let r = api.send(Method::POST, "/channels", &[], &json!({ "name": bad }).to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("name"));
        let body = json!({ "gateway_id": "gw1", "media_url": "rtsp://cam/1", "name": bad });
        let r = api.send(Method::PUT, "/devices/cam1", &[], &body.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("name"));
    }
    let r = api
        .send(
            Method::POST,
            "/channels",
            &[],
            &json!({ "name": "a", "description": "x\u{202E}y" }).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("description"));

    // NFC: a decomposed é is stored composed; a PATCH to the same text is a no-op.
    let c = api.channel(json!({ "name": "cafe\u{301}", "description": "l1\nl2" })).await;
    assert_eq!(c["name"], "caf\u{e9}");
    let uri = format!("/channels/{}", c["id"].as_str().unwrap());
    let r =
        api.send(Method::PATCH, &uri, &[("if-match", "\"1\"")], r#"{"name":"cafe\u0301"}"#).await;
    assert_eq!((r.status, r.body["version"].as_u64()), (StatusCode::OK, Some(1)), "{}", r.body);
    let r = api.send(Method::PATCH, &uri, &[("if-match", "\"1\"")], r#"{"name":"a\u0000"}"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("name"));
    // The longest names: 128 ASCII characters, 85 of three bytes (255 of 256 bytes).
    api.channel(json!({ "name": "a".repeat(128) })).await;
    api.channel(json!({ "name": "\u{4E2D}".repeat(85) })).await;
    api.device("cam1").await;
    let r = api
        .send(Method::PATCH, "/devices/cam1", &[("if-match", "\"1\"")], r#"{"name":"a\nb"}"#)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("name"));
}

#[tokio::test]
async fn a_404_does_not_echo_a_long_id() {
    let api = Api::new().await;
    let long = "x".repeat(5000);
    for path in ["/channels", "/assets", "/devices"] {
        let r = api.call(Method::GET, &format!("{path}/{long}"), &[], None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
        assert!(r.text.len() < 200, "{path}: {}", r.text);
    }
    for uri in ["/channels/missing/endpoints", "/devices/missing"] {
        let r = api.call(Method::GET, uri, &[], None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    }
}

#[tokio::test]
async fn a_delete_with_if_match_is_conditional_in_the_store() {
    use streamstack_core::device::DeviceStatus;
    use streamstack_core::device_store::{DeviceStore, Reported};
    use streamstack_core::{ChannelStore, HlsSettings, NewChannel, Playback, StoreError};
    let aws = aws().await;
    let channels = channel_store(&aws).await;
    let now = time::OffsetDateTime::now_utc();
    let c = NewChannel::named("a", HlsSettings::default()).into_channel(now, Playback::Public);
    let c = c.unwrap();
    channels.create(&c).await.unwrap();
    let stale = channels.delete_if_version(&c.id, 2).await;
    assert!(matches!(stale, Err(StoreError::VersionConflict)), "{stale:?}");
    channels.delete_if_version(&c.id, 1).await.expect("delete at version 1");
    let gone = channels.delete_if_version(&c.id, 1).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");

    let devices = DynamoDeviceStore::new(aws.dynamodb.clone(), unique("devices"));
    devices.create_table_if_missing().await.unwrap();
    let url = streamstack_core::device::seal_media_url("rtsp://cam/1", "cam1", None).unwrap();
    let reported = [Reported { id: "cam1".into(), media_url: url }];
    devices.heartbeat("gw1", &reported, now).await.unwrap();
    let d = devices.get("cam1").await.unwrap().unwrap();
    assert_eq!(d.reported, DeviceStatus::Online);
    let stale = devices.delete_if_version("cam1", d.version + 1).await;
    assert!(matches!(stale, Err(StoreError::VersionConflict)), "{stale:?}");
    devices.delete_if_version("cam1", d.version).await.expect("delete at its version");
    assert!(devices.get("cam1").await.unwrap().is_none());
}
