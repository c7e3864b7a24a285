//! Playback authorization through the API (issue 14): `playback` on channels, devices and
//! assets, fixed at creation, and the CloudFront credentials the endpoint responses carry,
//! checked with the verifier the local edge uses. Against moto's DynamoDB, through the router
//! Lambda runs.

use axum::http::{Method, StatusCode};
use axum::Router;
use channels_api::{router, Deps};
use serde_json::{json, Value};
use std::sync::Arc;
use streamstack_core::asset::{AssetOutputs, AssetStatus, EncodeSettings, SourceObject};
use streamstack_core::asset_store::JobUpdate;
use streamstack_core::cloudfront::{Denied, Signer, Verifier};
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::DynamoDeviceStore;
use streamstack_core::playback::PlaybackSettings;
use streamstack_core::{Asset, AssetStore, Playback};
use streamstack_tests::router::Reply;
use streamstack_tests::{api_config, asset_store, aws, channel_store, unique};

/// Credential lifetime of these tests, seconds.
const TTL: u64 = 900;

fn keys() -> (Signer, Verifier) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand_core(), 2048).expect("key");
    let pem = private.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let public = private.to_public_key().to_public_key_pem(LineEnding::LF).expect("public pem");
    (Signer::from_pem(&pem, "K2TEST").unwrap(), Verifier::new().trust("K2TEST", &public).unwrap())
}

fn rand_core() -> impl rsa::rand_core::CryptoRngCore {
    rsa::rand_core::OsRng
}

struct Api {
    app: Router,
    assets: Arc<dyn AssetStore>,
}

impl Api {
    /// A router whose new resources default to `default`, signing with `signer` if any.
    async fn new(default: Playback, signer: Option<Signer>) -> Self {
        let aws = aws().await;
        let devices = DynamoDeviceStore::new(aws.dynamodb.clone(), unique("devices"))
            .with_default_playback(default);
        devices.create_table_if_missing().await.expect("devices table");
        let assets = asset_store(&aws).await;
        let settings = PlaybackSettings {
            default,
            ttl_secs: TTL,
            key_pair_id: signer.as_ref().map(|s| s.key_pair_id().to_owned()),
            private_key_secret_arn: signer.as_ref().map(|_| "arn:aws:secretsmanager:t".into()),
        };
        let deps = Deps::new(channel_store(&aws).await, assets.clone(), api_config())
            .with_devices(Arc::new(devices), None, DeviceSettings::default())
            .with_playback(settings, signer);
        Self { app: router(Arc::new(deps)), assets }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let body = (!body.is_null()).then(|| body.to_string().into_bytes());
        streamstack_tests::router::call(&self.app, method, uri, &all, body).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, &[], Value::Null).await
    }
}

fn now() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as u64
}

fn assert_field_error(r: &Reply, field: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["error"]["field"], field, "{}", r.body);
}

/// Checks an endpoint response's `playback` for a signed resource stored under `prefix`, and
/// that its credentials verify exactly for that prefix.
fn assert_signed(playback: &Value, prefix: &str, playlist: &str, verifier: &Verifier) {
    let base = "https://cdn.example";
    assert_eq!(playback["mode"], "signed", "{playback}");
    assert_eq!(playback["playlist_url"], format!("{base}/{playlist}"));
    let auth = &playback["authorization"];
    assert_eq!(auth["resource"], format!("{base}/{prefix}/*"), "{auth}");
    assert_eq!(auth["cookie_path"], format!("/{prefix}/"));
    let expires = time::OffsetDateTime::parse(
        auth["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp() as u64;
    assert!(expires.abs_diff(now() + TTL) <= 5, "expires after PLAYBACK_TTL_SECS");
    let cookie = |name: &str| auth["cookies"][name].as_str().unwrap().to_owned();
    let (policy, signature, key) = (
        cookie("CloudFront-Policy"),
        cookie("CloudFront-Signature"),
        cookie("CloudFront-Key-Pair-Id"),
    );
    assert_eq!(key, "K2TEST");
    let verify = |url: &str, at: u64| verifier.verify(url, &policy, &signature, &key, at);
    assert_eq!(verify(&format!("{base}/{playlist}"), now()), Ok(()));
    assert_eq!(verify(&format!("{base}/{prefix}/s/000001.ts"), now()), Ok(()));
    assert_eq!(
        verify(&format!("{base}/{prefix}x/index.m3u8"), now()),
        Err(Denied::ResourceMismatch)
    );
    assert_eq!(verify(&format!("{base}/{playlist}"), expires), Err(Denied::Expired));
    let query = format!("Policy={policy}&Signature={signature}&Key-Pair-Id={key}");
    assert_eq!(auth["query"], query);
    assert_eq!(playback["signed_playlist_url"], format!("{base}/{playlist}?{query}"));
}

fn assert_public(playback: &Value, playlist: &str) {
    assert_eq!(playback["mode"], "public", "{playback}");
    assert_eq!(playback["playlist_url"], format!("https://cdn.example/{playlist}"));
    assert!(playback["authorization"].is_null() && playback["signed_playlist_url"].is_null());
}

#[tokio::test]
async fn channels_choose_playback_at_creation_and_signed_ones_get_scoped_credentials() {
    let (signer, verifier) = keys();
    let api = Api::new(Playback::Signed, Some(signer)).await;
    // The stack default (signed) applies when the body does not say.
    let r = api.send(Method::POST, "/channels", &[], json!({"name": "d"})).await;
    assert_eq!((r.status, &r.body["playback"]), (StatusCode::CREATED, &json!("signed")));
    let id = r.body["id"].as_str().unwrap().to_owned();
    let e = api.get(&format!("/channels/{id}/endpoints")).await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.body);
    let prefix = format!("signed/live/{id}");
    let playlist = format!("{prefix}/index.m3u8");
    assert_eq!(e.body["hls"]["playback_url"], format!("https://cdn.example/{playlist}"));
    assert_signed(&e.body["playback"], &prefix, &playlist, &verifier);
    // Another signed channel's credentials do not open this one.
    let r = api.send(Method::POST, "/channels", &[], json!({"name": "o"})).await;
    let other = api.get(&format!("/channels/{}/endpoints", r.body["id"].as_str().unwrap())).await;
    let cookies = &other.body["playback"]["authorization"]["cookies"];
    let c = |n: &str| cookies[n].as_str().unwrap().to_owned();
    assert_eq!(
        verifier.verify(
            &format!("https://cdn.example/{playlist}"),
            &c("CloudFront-Policy"),
            &c("CloudFront-Signature"),
            &c("CloudFront-Key-Pair-Id"),
            now()
        ),
        Err(Denied::ResourceMismatch)
    );

    // Public on request: media under live/, no credentials.
    let r =
        api.send(Method::POST, "/channels", &[], json!({"name": "p", "playback": "public"})).await;
    assert_eq!(r.body["playback"], "public", "{}", r.body);
    let pid = r.body["id"].as_str().unwrap().to_owned();
    let e = api.get(&format!("/channels/{pid}/endpoints")).await;
    assert_public(&e.body["playback"], &format!("live/{pid}/index.m3u8"));

    // Fixed at creation: repeating it is fine, changing it is a 400 naming the field.
    let uri = format!("/channels/{id}");
    let r = api
        .send(Method::PATCH, &uri, &[("if-match", "\"1\"")], json!({"playback": "public"}))
        .await;
    assert_field_error(&r, "playback");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("fixed"), "{}", r.body);
    let r = api
        .send(Method::PATCH, &uri, &[("if-match", "\"1\"")], json!({"playback": "signed"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r =
        api.send(Method::POST, "/channels", &[], json!({"name": "x", "playback": "private"})).await;
    assert_field_error(&r, "playback");
}

#[tokio::test]
async fn without_a_signing_key_signed_resources_are_refused() {
    let api = Api::new(Playback::Public, None).await;
    let r =
        api.send(Method::POST, "/channels", &[], json!({"name": "s", "playback": "signed"})).await;
    assert_field_error(&r, "playback");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("not configured"), "{}", r.body);
    let body = json!({"gateway_id": "gw", "media_url": "rtsp://cam/s", "playback": "signed"});
    let r = api.send(Method::PUT, "/devices/cam-s", &[], body).await;
    assert_field_error(&r, "playback");
    // Public ones work as before.
    let r = api.send(Method::POST, "/channels", &[], json!({"name": "p"})).await;
    assert_eq!((r.status, &r.body["playback"]), (StatusCode::CREATED, &json!("public")));
}

#[tokio::test]
async fn devices_keep_their_playback_and_signed_ones_cover_live_and_archive() {
    let (signer, verifier) = keys();
    let api = Api::new(Playback::Public, Some(signer)).await;
    let body = json!({"gateway_id": "gw", "media_url": "rtsp://cam/s", "playback": "signed"});
    let r = api.send(Method::PUT, "/devices/cam-1", &[], body).await;
    assert_eq!(
        (r.status, &r.body["playback"]),
        (StatusCode::CREATED, &json!("signed")),
        "{}",
        r.body
    );
    let e = api.get("/devices/cam-1/endpoints").await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.body);
    let prefix = "signed/devices/cam-1";
    assert_eq!(e.body["hls"]["archive_prefix_url"], format!("https://cdn.example/{prefix}/"));
    assert_signed(&e.body["playback"], prefix, &format!("{prefix}/live/index.m3u8"), &verifier);
    // A replacing PUT without playback keeps it; one that changes it is refused.
    let body = json!({"gateway_id": "gw", "media_url": "rtsp://cam/t"});
    let r = api.send(Method::PUT, "/devices/cam-1", &[], body).await;
    assert_eq!((r.status, &r.body["playback"]), (StatusCode::OK, &json!("signed")), "{}", r.body);
    let body = json!({"gateway_id": "gw", "media_url": "rtsp://cam/t", "playback": "public"});
    assert_field_error(&api.send(Method::PUT, "/devices/cam-1", &[], body).await, "playback");
    let r = api
        .send(
            Method::PATCH,
            "/devices/cam-1",
            &[("if-match", "\"2\"")],
            json!({"playback": "public"}),
        )
        .await;
    assert_field_error(&r, "playback");
    // A device a heartbeat registers gets the stack default (public here).
    let r = api
        .send(
            Method::POST,
            "/gateways/gw/heartbeat",
            &[],
            json!({"devices": [{"id": "cam-2", "media_url": "rtsp://cam/2"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = api.get("/devices/cam-2/endpoints").await;
    assert_public(&e.body["playback"], "devices/cam-2/live/index.m3u8");
}

#[tokio::test]
async fn a_signed_asset_gets_credentials_for_all_its_outputs() {
    let (signer, verifier) = keys();
    let api = Api::new(Playback::Public, Some(signer)).await;
    let source = SourceObject {
        bucket: "media".into(),
        key: "inputs/film.mp4".into(),
        version_id: Some("v1".into()),
        sequencer: None,
        size: 1000,
    };
    let asset = Asset::submitting(source, time::OffsetDateTime::now_utc(), u64::MAX / 2);
    let id = asset.id.clone();
    api.assets.claim(&asset, 0).await.expect("claim");
    let settings = EncodeSettings {
        ladder: "default".into(),
        segment_length: 6,
        thumbnail_interval: 10,
        playback: Playback::Signed,
    };
    api.assets.record_job(&id, "job-1", &settings).await.expect("record job");
    // Listed while processing: no playback yet.
    let r = api.get(&format!("/assets/{id}")).await;
    assert_eq!((r.status, &r.body["playback"]), (StatusCode::OK, &Value::Null), "{}", r.body);
    let prefix = format!("signed/outputs/{id}");
    let outputs = AssetOutputs {
        hls_master_key: Some(format!("{prefix}/hls/film.m3u8")),
        mp4_key: Some(format!("{prefix}/mp4/film.mp4")),
        ..Default::default()
    };
    let update = JobUpdate {
        job_id: "job-1".into(),
        status: AssetStatus::Complete,
        event_ms: 1,
        progress_percent: Some(100),
        outputs: Some(outputs),
        error: None,
    };
    api.assets.apply_job_update(&id, &update).await.expect("complete");
    let r = api.get(&format!("/assets/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["settings"]["playback"], "signed");
    let playback = &r.body["playback"];
    assert_signed(playback, &prefix, &format!("{prefix}/hls/film.m3u8"), &verifier);
    // The same credentials open the MP4 download.
    let auth = &playback["authorization"];
    let c = |n: &str| auth["cookies"][n].as_str().unwrap().to_owned();
    let mp4 = r.body["outputs"]["mp4_url"].as_str().unwrap();
    let ok =
        verifier.verify(mp4, &c("CloudFront-Policy"), &c("CloudFront-Signature"), "K2TEST", now());
    assert_eq!(ok, Ok(()));
}
