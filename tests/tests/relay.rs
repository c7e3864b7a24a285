//! Relay: a channel published into `streamer serve` (real ffmpeg, real time) is pushed to
//! its destinations while the publish lasts: a real nginx-rtmp (`hls on`) whose HLS must
//! decode end to end within 1 s of the source, one that refuses connections and one that
//! accepts TCP and never answers. Each failing destination shows `retrying` in the channel
//! (through the API), costs the ingest nothing (our HLS is complete, its segments the same
//! as the source's GOPs make them), and no stream key reaches a response or a log line.

use axum::http::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::relay::RelayRequest;
use streamstack_core::{ChannelStore, HlsSettings, NewChannel, Playback};
use streamstack_tests::nginx::NginxRtmp;
use streamstack_tests::process::{free_port, StreamerProcess};
use streamstack_tests::*;

const NGINX_KEY: &str = "nginx-key-2b7f91";
const REFUSED_KEY: &str = "refused-key-8c1d22";
const HANGING_KEY: &str = "hanging-key-5e4a03";
const SECONDS: u32 = 10;

async fn channel_json(app: &axum::Router, id: &str) -> Value {
    let r = router::call(app, Method::GET, &format!("/channels/{id}"), &[], None).await;
    assert!(r.status.is_success(), "{}", r.body);
    assert!(
        ![NGINX_KEY, REFUSED_KEY, HANGING_KEY].iter().any(|k| r.text.contains(k)),
        "{}",
        r.text
    );
    r.body
}

fn states(channel: &Value) -> Vec<String> {
    channel["relays"]
        .as_array()
        .map(|relays| {
            relays.iter().map(|r| r["status"]["state"].as_str().unwrap_or("").to_owned()).collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn relays_to_nginx_while_failing_destinations_retry_and_cost_nothing() {
    let nginx = NginxRtmp::start(2).await;
    let refused = free_port(); // nothing listens there
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hanging_port = hanging.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((conn, _)) = hanging.accept().await {
            conns.push(conn); // accepted, never read nor answered
        }
    });

    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let urls = [
        format!("rtmp://{}/live/{NGINX_KEY}", nginx.addr),
        format!("rtmp://127.0.0.1:{refused}/live/{REFUSED_KEY}"),
        format!("rtmp://127.0.0.1:{hanging_port}/live/{HANGING_KEY}"),
    ];
    let hls = HlsSettings { segment_duration: 2, playlist_window: 20 };
    let request = NewChannel {
        relays: urls
            .iter()
            .map(|u| RelayRequest { url: Some(u.clone()), ..Default::default() })
            .collect(),
        ..NewChannel::named("relayed", hls)
    };
    let channel =
        request.into_channel(time::OffsetDateTime::now_utc(), Playback::Public).expect("channel");
    store.create(&channel).await.expect("store");
    let deps = channels_api::Deps::new(
        store.clone() as Arc<dyn ChannelStore>,
        asset_store(&aws).await,
        api_config(),
    );
    let app = channels_api::router(Arc::new(deps));

    let out = tempdir();
    let output = format!("dir:{}", out.display());
    // A 6 s lease is renewed every 2 s: a PATCH reaches the publish that soon. Debug logs
    // from our crates, to look for keys in more lines.
    let env =
        [("STREAMER_LEASE_SECS", "6"), ("RUST_LOG", "info,streamer=debug,streamstack_core=debug")];
    let streamer = StreamerProcess::start(&table, &["--output", &output], &env).await;
    let clip = Clip { seconds: SECONDS, fps: 25, gop: 25, audio: true, realtime: true };
    let url = signed_push_url(streamer.addr, &channel);
    let publish = tokio::spawn(async move { ffmpeg_publish(&url, clip).await });

    // While the publish lasts: nginx live, the other two retrying with a masked error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
    let mut seen = Value::Null;
    while tokio::time::Instant::now() < deadline {
        seen = channel_json(&app, &channel.id).await;
        if states(&seen) == ["live", "retrying", "retrying"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(states(&seen), ["live", "retrying", "retrying"], "{seen:#}");
    assert!(seen["relays"][0]["status"]["bytes_sent"].as_u64().is_some_and(|b| b > 0), "{seen:#}");
    for failing in [1, 2] {
        let status = &seen["relays"][failing]["status"];
        assert!(status["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{seen:#}");
        assert_eq!(status["bytes_sent"], 0, "{seen:#}");
    }
    assert!(seen["relays"][1]["url"].as_str().is_some_and(|u| u.ends_with("/live/****")));

    // A PATCH during the publish: the refusing destination switched off by id (its key not
    // sent again) stops being relayed; the others go on.
    let etag = seen["version"].to_string();
    let off = json!({"relays": [
        {"id": seen["relays"][0]["id"]}, {"id": seen["relays"][1]["id"], "enabled": false},
        {"id": seen["relays"][2]["id"]}]});
    let r = router::call(
        &app,
        Method::PATCH,
        &format!("/channels/{}", channel.id),
        &[("content-type", "application/json"), ("if-match", &format!("\"{etag}\""))],
        Some(off.to_string().into_bytes()),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        seen = channel_json(&app, &channel.id).await;
        if states(&seen)[..2] == ["live", "idle"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The hanging one goes on trying: `connecting` (5 s) and `retrying` (backoff) in turn.
    let hanging = states(&seen)[2].clone();
    assert_eq!(states(&seen)[..2], ["live", "idle"], "{seen:#}");
    assert!(["connecting", "retrying"].contains(&hanging.as_str()), "{seen:#}");
    assert!(publish.await.expect("publish task"), "ffmpeg publish failed");

    // Our HLS: complete, ended, every segment one 2 s GOP pair as without relays.
    let playlist = out.join(format!("live/{}/index.m3u8", channel.id));
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&playlist).unwrap_or_default();
        if text.contains("#EXT-X-ENDLIST") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    let durations: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').split(',').next()?.parse().ok())
        .collect();
    assert_eq!(durations.len(), (SECONDS / 2) as usize, "{text}");
    assert!(durations.iter().all(|d| (d - 2.0).abs() < 0.05), "{durations:?}");
    let ours = ffprobe_duration(playlist.to_str().expect("path")).expect("our HLS probes");
    assert!((ours - f64::from(SECONDS)).abs() < 0.5, "our HLS {ours} s");

    // nginx's HLS of the relayed stream decodes end to end, within 1 s of the source. nginx
    // does not end its playlist: a copy with EXT-X-ENDLIST is read from the first segment.
    let live = std::fs::read_to_string(nginx.hls.join(format!("{NGINX_KEY}.m3u8")))
        .expect("nginx playlist");
    let theirs_path = nginx.hls.join("ended.m3u8");
    std::fs::write(&theirs_path, format!("{live}#EXT-X-ENDLIST\n")).expect("write playlist");
    let theirs = ffprobe_duration(theirs_path.to_str().expect("path")).expect("nginx HLS probes");
    eprintln!("relay figures: source {SECONDS} s, our HLS {ours:.2} s, nginx HLS {theirs:.2} s");
    assert!(
        (theirs - f64::from(SECONDS)).abs() <= 1.0,
        "nginx HLS {theirs} s:\n{live}\n{}",
        nginx.log()
    );
    let decoded = decoded_frames(theirs_path.to_str().expect("path"));
    assert!(decoded.errors.is_empty(), "{}", decoded.errors);
    assert!(decoded.video_frames >= u64::from(SECONDS - 1) * 25, "{decoded:?}");

    // After the publish: every destination idle again, and no key in the streamer's log.
    let after = channel_json(&app, &channel.id).await;
    assert_eq!(states(&after), ["idle", "idle", "idle"], "{after:#}");
    let raw = router::raw_item(&aws.dynamodb, &table, &channel.id).await;
    assert!(!raw.contains_key("relay_status"), "{raw:?}");
    streamer.assert_log_free_of(&[NGINX_KEY, REFUSED_KEY, HANGING_KEY]);
    held.abort();
}
