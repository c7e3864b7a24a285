//! Upload ordering under a failing object store: no playlist write may ever name a segment
//! that is not stored yet, and failed writes are retried rather than dropped.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamer::hls::RetryPolicy;
use streamer::publish::UploadSettings;
use streamer::sink::{ObjectMeta, ObjectSink, S3Sink, SinkError};
use streamstack_core::HlsSettings;
use streamstack_tests::*;

/// Wraps the real S3 sink: fails the first two attempts of every segment and every third
/// playlist attempt, fails everything while `outage` is set, and audits each playlist body
/// against the segments actually stored at that moment.
struct FlakySink {
    inner: S3Sink,
    outage: AtomicBool,
    attempts: Mutex<HashMap<String, u32>>,
    stored: Mutex<HashSet<String>>,
    violations: Mutex<Vec<String>>,
    failures: AtomicU64,
    playlist_writes: AtomicU64,
}

impl FlakySink {
    fn fail(&self, key: &str) -> Result<(), SinkError> {
        self.failures.fetch_add(1, Ordering::SeqCst);
        Err(SinkError::Remote { key: key.into(), message: "injected failure".into() })
    }
}

#[async_trait]
impl ObjectSink for FlakySink {
    async fn put(&self, key: &str, body: Bytes, meta: ObjectMeta) -> Result<(), SinkError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(key.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        if key.ends_with(".m3u8") {
            let dir = key.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let playlist = m3u8_rs::parse_media_playlist_res(&body).expect("playlist parses");
            let stored = self.stored.lock().unwrap().clone();
            for s in &playlist.segments {
                let seg_key = format!("{dir}/{}", s.uri);
                if !stored.contains(&seg_key) {
                    self.violations.lock().unwrap().push(format!("{key} names unstored {seg_key}"));
                }
            }
            self.playlist_writes.fetch_add(1, Ordering::SeqCst);
        }
        if self.outage.load(Ordering::SeqCst)
            || (key.ends_with(".ts") && attempt <= 2)
            || (key.ends_with(".m3u8") && attempt % 3 == 0)
        {
            return self.fail(key);
        }
        self.inner.put(key, body.clone(), meta).await?;
        if key.ends_with(".ts") {
            self.stored.lock().unwrap().insert(key.to_owned());
        }
        Ok(())
    }
}

async fn run(outage_secs: u64, clip: Clip) {
    let aws = aws().await;
    let store = channel_store(&aws).await;
    let bucket = bucket(&aws).await;
    let ch = channel(store.as_ref(), HlsSettings { segment_duration: 1, playlist_window: 5 }).await;
    let sink = Arc::new(FlakySink {
        inner: S3Sink::new(aws.s3.clone(), &bucket),
        outage: AtomicBool::new(outage_secs > 0),
        attempts: Mutex::default(),
        stored: Mutex::default(),
        violations: Mutex::default(),
        failures: AtomicU64::new(0),
        playlist_writes: AtomicU64::new(0),
    });
    let uploads = UploadSettings {
        queue: 16,
        submit_timeout: Duration::from_secs(30),
        retry: RetryPolicy {
            initial: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            give_up_after: Duration::from_secs(60),
        },
    };
    let streamer = Streamer::start(store.clone(), sink.clone(), uploads).await;
    let url = streamer.push_url(&ch);
    let outage = {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(outage_secs)).await;
            sink.outage.store(false, Ordering::SeqCst);
        })
    };
    assert!(ffmpeg_publish(&url, clip).await, "publish failed");
    outage.await.unwrap();
    streamer.stop().await;

    let violations = sink.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        violations.first()
    );
    assert!(sink.failures.load(Ordering::SeqCst) > 10, "failures were injected");
    assert!(sink.playlist_writes.load(Ordering::SeqCst) > 10);

    // Nothing was dropped: every segment of the publish is stored, and the final playlist
    // (retried past its injected failures) ends the stream.
    let keys = list_keys(&aws, &bucket, &format!("live/{}/", ch.id)).await;
    let segments = keys.iter().filter(|k| k.ends_with(".ts")).count() as u32;
    assert_eq!(segments, clip.seconds, "one 1 s segment per second of input: {keys:?}");
    let playlist = get_object(&aws, &bucket, &format!("live/{}/index.m3u8", ch.id)).await;
    let playlist = m3u8_rs::parse_media_playlist_res(&playlist).unwrap();
    assert!(playlist.end_list);
    assert_eq!(playlist.media_sequence + playlist.segments.len() as u64, u64::from(clip.seconds));
}

#[tokio::test]
async fn flaky_store_never_exposes_a_missing_segment() {
    run(0, Clip { seconds: 12, ..Clip::default() }).await;
}

#[tokio::test]
async fn store_outage_is_buffered_then_caught_up() {
    // Real-time publish while every write fails for the first 4 s.
    run(4, Clip { seconds: 8, realtime: true, ..Clip::default() }).await;
}
