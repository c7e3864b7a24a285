//! A signed channel end to end (issue 14): the API as a process (`channels-api-local`) reads
//! its playback key from Secrets Manager (moto) and creates a channel signed by the stack
//! default; ffmpeg publishes into the streamer, which writes under `signed/live/<id>/`;
//! `edge-local` stands where CloudFront stands. hls.js in headless Chromium plays the channel
//! with the cookies from `GET /channels/{id}/endpoints`, and with its signed playlist URL
//! alone; without credentials it gets a 403 and no segment.
//!
//! Needs the `edge-local`, `channels-api-local` binaries (`make test` builds them), ffmpeg,
//! node + Chromium.

use serde_json::{json, Value};
use std::time::Duration;
use streamstack_core::{ChannelStore, Playback};
use streamstack_tests::browser::{self, PlayOptions, PlayResult};
use streamstack_tests::signed_stack::SignedStack;
use streamstack_tests::{list_keys, Clip, Streamer};

const KEY_PAIR_ID: &str = "KE2EPLAYBACK";

async fn play(url: &str, cookies: Vec<(String, String)>) -> PlayResult {
    let options =
        PlayOptions { rate: 2.0, timeout: Duration::from_secs(30), cookies, ..Default::default() };
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || browser::play(&url, &options)).await.expect("play")
}

/// Statuses of the segment (`.ts`) responses the page got.
fn segment_statuses(result: &PlayResult) -> Vec<u16> {
    result.responses.iter().filter(|r| r.url.contains(".ts")).map(|r| r.status).collect()
}

#[tokio::test]
async fn a_signed_channel_plays_in_a_browser_only_with_the_credentials_the_api_issues() {
    let stack = SignedStack::start(KEY_PAIR_ID, 300).await;
    let SignedStack { aws, store, bucket, edge, api, .. } = stack;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/channels", api.base_url()))
        .json(&json!({"name": "e2e", "hls": {"segment_duration": 2, "playlist_window": 10}}))
        .send()
        .await
        .expect("POST /channels")
        .json()
        .await
        .expect("channel JSON");
    assert_eq!(created["playback"], "signed", "the stack default: {created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let endpoints: Value = http
        .get(format!("{}/channels/{id}/endpoints", api.base_url()))
        .send()
        .await
        .expect("GET endpoints")
        .json()
        .await
        .expect("endpoints JSON");
    let playback = &endpoints["playback"];
    let playlist_url = playback["playlist_url"].as_str().expect("playlist URL").to_owned();
    assert_eq!(playlist_url, format!("{}/signed/live/{id}/index.m3u8", edge.base_url()));
    let cookies: Vec<(String, String)> = playback["authorization"]["cookies"]
        .as_object()
        .expect("cookies")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(cookies.len(), 3, "{playback}");
    let signed_url = playback["signed_playlist_url"].as_str().expect("signed URL").to_owned();

    // Publish 6 s into the streamer, which stores the signed channel under signed/live/.
    let channel = store.get(&id).await.unwrap().expect("channel");
    assert_eq!(channel.playback, Playback::Signed);
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;
    let clip = Clip { seconds: 6, gop: 50, ..Clip::default() };
    assert!(streamstack_tests::ffmpeg_publish(&streamer.push_url(&channel), clip).await);
    let ended = streamstack_tests::ended_playlist(&aws, &bucket, &channel).await;
    streamer.stop().await;
    assert!(ended.segments.len() >= 3, "{ended:?}");
    assert!(list_keys(&aws, &bucket, &format!("live/{id}/")).await.is_empty(), "nothing public");

    // With the API's cookies: plays to the end.
    let with_cookies = play(&playlist_url, cookies).await;
    assert!(with_cookies.ended && with_cookies.fatal_errors.is_empty(), "{with_cookies:?}");
    assert!(with_cookies.played_seconds >= 5.0, "{with_cookies:?}");
    assert!(segment_statuses(&with_cookies).iter().all(|s| *s == 200), "{with_cookies:?}");
    // With the signed playlist URL alone: the edge answers it with cookies for the segments.
    let with_url = play(&signed_url, Vec::new()).await;
    assert!(with_url.ended && with_url.fatal_errors.is_empty(), "{with_url:?}");
    assert!(!segment_statuses(&with_url).is_empty(), "{with_url:?}");
    // Without credentials: the playlist is refused and no segment is served.
    let without = play(&playlist_url, Vec::new()).await;
    assert!(!without.ended && !without.fatal_errors.is_empty(), "{without:?}");
    let playlist = without.responses.iter().find(|r| r.url.contains("index.m3u8"));
    assert_eq!(playlist.map(|r| r.status), Some(403), "{without:?}");
    assert!(segment_statuses(&without).iter().all(|s| *s != 200), "{without:?}");

    // Neither process logs the credentials.
    let signature = playback["authorization"]["cookies"]["CloudFront-Signature"].as_str().unwrap();
    for (name, log) in [("edge", edge.log()), ("api", api.log())] {
        assert!(!log.is_empty() && !log.contains(signature), "{name} log holds the signature");
        assert!(!log.contains("BEGIN PRIVATE KEY"), "{name} log holds the key");
    }
}
