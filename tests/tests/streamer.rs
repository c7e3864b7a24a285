//! Streamer end to end: real ffmpeg / GStreamer publishers over RTMP, HLS into S3 on moto,
//! checked with m3u8-rs and ffprobe.

use std::time::Duration;
use streamstack_core::aws::AwsClients;
use streamstack_core::{Channel, ChannelState, ChannelStore, HlsSettings};
use streamstack_tests::*;

async fn tags(aws: &AwsClients, bucket: &str, key: &str) -> Vec<(String, String)> {
    let out = aws.s3.get_object_tagging().bucket(bucket).key(key).send().await.expect("tagging");
    out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()
}

fn hls(segment_duration: u32, playlist_window: u32) -> HlsSettings {
    HlsSettings { segment_duration, playlist_window }
}

#[tokio::test]
async fn ffmpeg_publish_20s_becomes_a_valid_hls_playlist() {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let channel = channel(store.as_ref(), hls(4, 8)).await;
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;

    assert!(
        ffmpeg_publish(&streamer.push_url(&channel), Clip::default()).await,
        "ffmpeg publish failed"
    );
    let pl = ended_playlist(&aws, &bucket, &channel).await;

    assert_eq!(pl.target_duration, 4);
    assert_eq!(pl.segments.len(), 5, "{pl:?}");
    let (last, full) = pl.segments.split_last().unwrap();
    for s in full {
        assert!((s.duration - 4.0).abs() < 0.05, "segment {} lasts {}", s.uri, s.duration);
    }
    assert!(last.duration > 0.0 && last.duration.round() <= 4.0, "last segment {}", last.duration);
    let keys = list_keys(&aws, &bucket, &format!("live/{}/", channel.id)).await;
    for s in &pl.segments {
        let key = format!("live/{}/{}", channel.id, s.uri);
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
        let ts = get_object(&aws, &bucket, &key).await;
        assert!(ts.len() % 188 == 0 && ts[0] == 0x47, "{key} is not MPEG-TS");
    }

    // Live-only output carries the tag the bucket's lifecycle rule expires.
    let first = format!("live/{}/{}", channel.id, pl.segments[0].uri);
    assert_eq!(
        tags(&aws, &bucket, &first).await,
        vec![("streamstack-retention".to_owned(), "live".to_owned())]
    );

    let url = format!("{}/{bucket}/live/{}/index.m3u8", endpoint(), channel.id);
    let duration = ffprobe_duration(&url).expect("ffprobe reads the playlist");
    assert!((duration - 20.0).abs() <= 1.0, "ffprobe duration {duration}");
    let errors = ffmpeg_decode_errors(&url);
    assert!(errors.is_empty(), "decode errors: {errors}");
    wait_for_state(store.as_ref(), &channel, ChannelState::Idle, Duration::from_secs(10)).await;
    streamer.stop().await;
}

#[tokio::test]
async fn simultaneous_publishers_are_isolated_and_bad_connections_only_close_themselves() {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let a = channel(store.as_ref(), hls(2, 10)).await;
    let b = channel(store.as_ref(), hls(2, 10)).await;
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;
    let clip = Clip { seconds: 8, realtime: true, ..Clip::default() };

    let addr = streamer.addr;
    let garbage = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A valid C0 then nonsense: the handshake or session must fail on this socket only.
        let mut junk = vec![3u8];
        junk.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let _ = s.write_all(&junk).await;
    });
    let probe = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        (channel_state(store.as_ref(), &a).await, channel_state(store.as_ref(), &b).await)
    };
    let (url_a, url_b) = (streamer.push_url(&a), streamer.push_url(&b));
    let (ok_a, ok_b, states) =
        tokio::join!(ffmpeg_publish(&url_a, clip), ffmpeg_publish(&url_b, clip), probe);
    garbage.await.unwrap();
    assert!(ok_a && ok_b, "publishers failed: {ok_a} {ok_b}");
    assert_eq!(
        states,
        (ChannelState::Live, ChannelState::Live),
        "both channels live while publishing"
    );

    for ch in [&a, &b] {
        let pl = ended_playlist(&aws, &bucket, ch).await;
        let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
        assert!((total - 8.0).abs() <= 0.5, "channel {} total {total}", ch.id);
        assert!(pl.segments.iter().all(|s| s.duration.round() <= 2.0));
        wait_for_state(store.as_ref(), ch, ChannelState::Idle, Duration::from_secs(10)).await;
    }
    streamer.stop().await;
}

#[tokio::test]
async fn refused_publishes_write_nothing() {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let good = channel(store.as_ref(), hls(2, 5)).await;
    let mut expired = channel(store.as_ref(), hls(2, 5)).await;
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;
    let clip = Clip { seconds: 3, ..Clip::default() };
    let host = streamer.addr.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let sign = |ch: &Channel, exp: u64| streamstack_core::signing::sign(&ch.secret, &ch.id, exp);

    let valid = streamer.push_url(&good);
    let mut tampered = valid.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other = channel(store.as_ref(), hls(2, 5)).await;
    let cases = [
        ("tampered signature", tampered),
        (
            "expired URL",
            format!(
                "rtmp://{host}/live/{}?exp={}&sig={}",
                good.id,
                now - 10,
                sign(&good, now - 10)
            ),
        ),
        (
            "other channel's signature",
            format!(
                "rtmp://{host}/live/{}?exp={}&sig={}",
                good.id,
                now + 60,
                sign(&other, now + 60)
            ),
        ),
        ("no signature", format!("rtmp://{host}/live/{}", good.id)),
        (
            "unknown channel",
            format!(
                "rtmp://{host}/live/ffffffffffffffffffffffffffffffff?exp={}&sig={}",
                now + 60,
                sign(&good, now + 60)
            ),
        ),
        ("wrong application", valid.replace("/live/", "/other/")),
    ];
    for (what, url) in &cases {
        assert!(!ffmpeg_publish(url, clip).await, "{what}: publish was accepted");
    }
    // A channel past its expiry refuses even a correctly signed URL.
    expired.expires_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    expired.version += 1;
    store.replace(&expired, 1).await.unwrap();
    assert!(!ffmpeg_publish(&streamer.push_url(&expired), clip).await, "expired channel accepted");

    assert_eq!(
        list_keys(&aws, &bucket, "").await,
        Vec::<String>::new(),
        "refused publishes wrote objects"
    );
    assert_eq!(channel_state(store.as_ref(), &good).await, ChannelState::Idle);
    assert_eq!(channel_state(store.as_ref(), &expired).await, ChannelState::Idle);

    // The same server still accepts a valid publish afterwards.
    assert!(ffmpeg_publish(&valid, clip).await);
    ended_playlist(&aws, &bucket, &good).await;
    streamer.stop().await;
}

#[tokio::test]
async fn video_only_publish_and_shutdown_flush() {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let video_only = channel(store.as_ref(), hls(2, 10)).await;
    let cut_short = channel(store.as_ref(), hls(2, 10)).await;
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;

    assert!(
        ffmpeg_publish(
            &streamer.push_url(&video_only),
            Clip { seconds: 6, audio: false, ..Clip::default() }
        )
        .await
    );
    let pl = ended_playlist(&aws, &bucket, &video_only).await;
    assert_eq!(pl.segments.len(), 3);
    let url = format!("{}/{bucket}/live/{}/index.m3u8", endpoint(), video_only.id);
    assert!((ffprobe_duration(&url).unwrap() - 6.0).abs() <= 0.5);

    // Stopping the server (what SIGTERM does) mid-publish flushes the last segment and ends
    // the playlist.
    let publish = tokio::spawn({
        let url = streamer.push_url(&cut_short);
        async move {
            ffmpeg_publish(&url, Clip { seconds: 30, realtime: true, ..Clip::default() }).await
        }
    });
    wait_for_state(store.as_ref(), &cut_short, ChannelState::Live, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    streamer.stop().await;
    let pl = ended_playlist(&aws, &bucket, &cut_short).await;
    let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
    assert!(total >= 4.0, "flushed {total} s");
    wait_for_state(store.as_ref(), &cut_short, ChannelState::Idle, Duration::from_secs(10)).await;
    let _ = publish.await;
}

#[tokio::test]
async fn recording_keeps_every_segment_in_a_full_playlist() {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let mut ch = channel(store.as_ref(), hls(2, 3)).await;
    ch.recording = true;
    ch.version += 1;
    store.replace(&ch, 1).await.unwrap();
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;

    assert!(ffmpeg_publish(&streamer.push_url(&ch), Clip { seconds: 10, ..Clip::default() }).await);
    let live = ended_playlist(&aws, &bucket, &ch).await;
    assert_eq!(live.segments.len(), 3, "the live playlist slides");
    assert_eq!(live.media_sequence, 2);

    let session = live.segments[0].uri.split('/').next().unwrap().to_owned();
    let key = format!("live/{}/{session}/recording.m3u8", ch.id);
    let recording =
        m3u8_rs::parse_media_playlist_res(&get_object(&aws, &bucket, &key).await).unwrap();
    assert!(recording.end_list);
    assert_eq!(recording.playlist_type, Some(m3u8_rs::MediaPlaylistType::Event));
    assert_eq!(recording.segments.len(), 5);
    let url = format!("{}/{bucket}/{key}", endpoint());
    assert!((ffprobe_duration(&url).unwrap() - 10.0).abs() <= 0.5);

    // Recorded segments and the recording playlist are kept; the live playlist expires.
    let segment = format!("live/{}/{session}/{}", ch.id, recording.segments[0].uri);
    assert_eq!(tags(&aws, &bucket, &segment).await, vec![]);
    assert_eq!(tags(&aws, &bucket, &key).await, vec![]);
    assert_eq!(tags(&aws, &bucket, &format!("live/{}/index.m3u8", ch.id)).await.len(), 1);
    streamer.stop().await;
}
