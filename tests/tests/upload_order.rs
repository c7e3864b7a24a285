//! Upload ordering under a failing object store: no playlist write may ever name a segment
//! that is not stored yet, and failed writes are retried rather than dropped, even through an
//! outage several times longer than the retry budget (segments wait in the spool).

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamer::hls::{RetryPolicy, Spool, SpoolConfig};
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

/// One publish through a [`FlakySink`] whose store is down for the first `outage_secs`.
struct Case {
    outage_secs: u64,
    clip: Clip,
    /// Retry budget of one object.
    retry_budget: Duration,
    /// Spool the segments in a fresh directory (else memory only).
    spool: bool,
}

async fn run(case: Case) {
    let Case { outage_secs, clip, retry_budget, spool } = case;
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
    let spool_dir = std::env::temp_dir().join(unique("upload-order-spool"));
    let spool = spool.then(|| {
        Spool::open(&SpoolConfig { dir: spool_dir.clone(), budget_bytes: 256 << 20 })
            .expect("open spool")
    });
    let uploads = UploadSettings {
        queue: if spool.is_some() { 2 } else { 16 },
        submit_timeout: Duration::from_secs(30),
        retry: RetryPolicy {
            initial: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            retry_budget,
        },
        spool: spool.clone(),
    };
    let streamer = Streamer::start(store.clone(), sink.clone(), uploads).await;
    let url = streamer.push_url(&ch);
    let outage = {
        let sink = Arc::clone(&sink);
        let spool_dir = spool_dir.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(outage_secs)).await;
            // Segments finished during the outage wait on disk, not in memory.
            let spooled = count_files(&spool_dir, ".ts");
            sink.outage.store(false, Ordering::SeqCst);
            spooled
        })
    };
    assert!(ffmpeg_publish(&url, clip).await, "publish failed");
    let spooled_in_outage = outage.await.unwrap();
    streamer.stop().await;
    if spool.is_some() {
        assert!(spooled_in_outage >= 3, "{spooled_in_outage} segments spooled during the outage");
        assert_eq!(count_files(&spool_dir, ""), 1, "only the spool's lock file is left");
        drop(spool);
        std::fs::remove_dir_all(&spool_dir).unwrap();
    }

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

/// Files under `dir` (recursively) whose name ends with `suffix`.
fn count_files(dir: &std::path::Path, suffix: &str) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            n += count_files(&path, suffix);
        } else if path.to_string_lossy().ends_with(suffix) {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn flaky_store_never_exposes_a_missing_segment() {
    run(Case {
        outage_secs: 0,
        clip: Clip { seconds: 12, ..Clip::default() },
        retry_budget: Duration::from_secs(60),
        spool: false,
    })
    .await;
}

#[tokio::test]
async fn store_outage_is_buffered_then_caught_up() {
    // Real-time publish while every write fails for the first 4 s.
    run(Case {
        outage_secs: 4,
        clip: Clip { seconds: 8, realtime: true, ..Clip::default() },
        retry_budget: Duration::from_secs(60),
        spool: false,
    })
    .await;
}

#[tokio::test]
async fn outage_three_times_the_retry_budget_loses_no_segment() {
    // Real-time publish; every write fails for 7 s against a 2 s retry budget per object.
    run(Case {
        outage_secs: 7,
        clip: Clip { seconds: 12, realtime: true, ..Clip::default() },
        retry_budget: Duration::from_secs(2),
        spool: true,
    })
    .await;
}
