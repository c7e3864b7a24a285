//! Tests of the uploader and of recovery against an in-memory store that can fail on demand
//! and audits every playlist it is given.

use super::*;
use crate::hls::spool::{SpoolConfig, SpoolError};
use crate::hls::{recover, AlwaysEndLive, LivePlaylistGuard, RecoveryReport};
use crate::sink::SinkError;
use async_trait::async_trait;
use m3u8_rs::MediaPlaylist;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// An object store in memory: fails every write while `failing`, and records a violation
/// whenever a playlist names a segment it does not hold.
#[derive(Default)]
struct MemSink {
    objects: Mutex<BTreeMap<String, Bytes>>,
    failing: AtomicBool,
    violations: Mutex<Vec<String>>,
}

#[async_trait]
impl ObjectSink for MemSink {
    async fn put(&self, key: &str, body: Bytes, _: ObjectMeta) -> Result<(), SinkError> {
        if key.ends_with(".m3u8") {
            let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
            let playlist = m3u8_rs::parse_media_playlist_res(&body).expect("playlist parses");
            let objects = self.objects.lock().unwrap();
            for s in &playlist.segments {
                if !objects.contains_key(&format!("{dir}/{}", s.uri)) {
                    self.violations.lock().unwrap().push(format!("{key} names {}", s.uri));
                }
            }
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::Remote { key: key.into(), message: "injected".into() });
        }
        self.objects.lock().unwrap().insert(key.to_owned(), body);
        Ok(())
    }

    fn location(&self) -> String {
        "mem:test".into()
    }
}

impl MemSink {
    fn failing(failing: bool) -> Arc<Self> {
        let sink = Arc::new(Self::default());
        sink.failing.store(failing, Ordering::SeqCst);
        sink
    }

    fn playlist(&self, key: &str) -> Option<MediaPlaylist> {
        let objects = self.objects.lock().unwrap();
        objects.get(key).map(|b| m3u8_rs::parse_media_playlist_res(b).expect("parses"))
    }

    fn segments(&self) -> Vec<String> {
        let objects = self.objects.lock().unwrap();
        objects.keys().filter(|k| k.ends_with(".ts")).cloned().collect()
    }

    fn assert_audit_clean(&self) {
        let violations = self.violations.lock().unwrap();
        assert!(violations.is_empty(), "{violations:?}");
    }
}

struct RefuseLive;

#[async_trait]
impl LivePlaylistGuard for RefuseLive {
    async fn may_end_live(&self, _: &SessionManifest) -> bool {
        false
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "uploader-test-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        retry_budget: Duration::from_millis(50),
    }
}

fn config(spool: Option<Arc<Spool>>, queue: usize) -> UploaderConfig {
    UploaderConfig {
        prefix: "live/ch".into(),
        session: "s1".into(),
        target_secs: 1,
        window: 5,
        recording: true,
        queue,
        submit_timeout: Duration::from_secs(5),
        retry: fast_retry(),
        spool,
    }
}

fn segment(sequence: u64, discontinuity: bool) -> Segment {
    Segment { sequence, duration: 1.0, discontinuity, data: Bytes::from(vec![7; 1000]) }
}

fn spooled_files(spool: &Spool) -> usize {
    walk(spool.dir()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "ts")).count()
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Polls `done` every 5 ms (a hang guard of 10 s, not a timing assertion).
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn outage_longer_than_the_retry_budget_loses_nothing() {
    let dir = temp_dir("outage");
    let spool = Spool::open(&SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 }).unwrap();
    let sink = MemSink::failing(true);
    let uploader = Uploader::spawn(sink.clone(), config(Some(Arc::clone(&spool)), 1));
    for i in 0..8 {
        uploader.submit(segment(i, i == 5)).await.expect("accepted while the spool has room");
    }
    // Every segment waits on disk while the store is down, well past the retry budget.
    assert_eq!(spooled_files(&spool), 8);
    tokio::time::sleep(fast_retry().retry_budget * 4).await;
    assert_eq!(spooled_files(&spool), 8);
    sink.failing.store(false, Ordering::SeqCst);
    let report = uploader.finish().await;

    assert_eq!((report.segments, report.lost_segments, report.spooled), (8, 0, 0));
    assert!(report.stalls >= 1 && report.ended, "{report:?}");
    assert_eq!(sink.segments().len(), 8);
    sink.assert_audit_clean();
    let live = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(live.end_list);
    assert_eq!(live.media_sequence, 3);
    let recording = sink.playlist("live/ch/s1/recording.m3u8").unwrap();
    assert!(recording.end_list);
    let flags: Vec<bool> = recording.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(flags, [false, false, false, false, false, true, false, false]);
    assert_eq!(spool.used_bytes(), 0);
    assert_eq!(walk(&dir).len(), 1, "only the lock file is left: {:?}", walk(&dir));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_full_spool_stops_the_publish_and_keeps_what_it_holds() {
    let dir = temp_dir("full");
    let spool = Spool::open(&SpoolConfig { dir: dir.clone(), budget_bytes: 3000 }).unwrap();
    let sink = MemSink::failing(true);
    let uploader = Uploader::spawn(sink.clone(), config(Some(spool), 1));
    for i in 0..3 {
        uploader.submit(segment(i, false)).await.unwrap();
    }
    // Budget full and the one memory slot taken by the segment being retried.
    let refused = uploader.submit(segment(3, false)).await;
    assert!(matches!(refused, Err(SubmitError::SpoolFull(SpoolError::Full { .. }))), "{refused:?}");
    sink.failing.store(false, Ordering::SeqCst);
    let report = uploader.finish().await;
    assert_eq!((report.segments, report.lost_segments), (3, 0));
    assert_eq!(sink.playlist("live/ch/index.m3u8").unwrap().segments.len(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_publish_without_segments_leaves_no_playlist() {
    let dir = temp_dir("empty");
    let spool = Spool::open(&SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 }).unwrap();
    let sink = MemSink::failing(false);
    let report = Uploader::spawn(sink.clone(), config(Some(spool), 2)).finish().await;
    assert_eq!(report, UploadReport::default());
    assert!(sink.objects.lock().unwrap().is_empty());
    assert_eq!(walk(&dir).len(), 1, "{:?}", walk(&dir));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Three segments stored, then an outage; the finish deadline passes with three more in the
/// spool. A restart recovers them with `guard` deciding over the live playlist.
async fn cut_short_then_recover(guard: &dyn LivePlaylistGuard) -> (Arc<MemSink>, RecoveryReport) {
    let dir = temp_dir("recover");
    let config_spool = SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 };
    let spool = Spool::open(&config_spool).unwrap();
    let sink = MemSink::failing(false);
    let uploader = Uploader::spawn(sink.clone(), config(Some(Arc::clone(&spool)), 2));
    for i in 0..3 {
        uploader.submit(segment(i, false)).await.unwrap();
    }
    wait_for("three segments listed", || {
        sink.playlist("live/ch/index.m3u8").is_some_and(|p| p.segments.len() == 3)
    })
    .await;
    sink.failing.store(true, Ordering::SeqCst);
    for i in 3..6 {
        uploader.submit(segment(i, i == 4)).await.unwrap();
    }
    let report = uploader.finish_by(Instant::now() + Duration::from_millis(100)).await;
    assert_eq!((report.segments, report.spooled, report.ended), (3, 3, false), "{report:?}");
    drop(spool);

    sink.failing.store(false, Ordering::SeqCst);
    let spool = Spool::open(&config_spool).unwrap();
    assert_eq!(spool.used_bytes(), 3000);
    let recovered = recover(&spool, sink.clone(), guard, fast_retry()).await;
    assert_eq!(spool.used_bytes(), 0);
    assert_eq!(walk(&dir).len(), 1, "session removed: {:?}", walk(&dir));
    assert_eq!(sink.segments().len(), 6);
    sink.assert_audit_clean();
    let recording = sink.playlist("live/ch/s1/recording.m3u8").unwrap();
    assert!(recording.end_list, "the recording is always ended");
    let flags: Vec<bool> = recording.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(flags, [false, false, false, false, true, false]);
    std::fs::remove_dir_all(dir).unwrap();
    (sink, recovered)
}

#[tokio::test]
async fn restart_uploads_the_spool_and_ends_the_playlists() {
    let (sink, report) = cut_short_then_recover(&AlwaysEndLive).await;
    assert_eq!((report.sessions, report.segments, report.live_ended), (1, 3, 1), "{report:?}");
    let live = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(live.end_list);
    assert_eq!(live.media_sequence, 1);
    assert_eq!(live.segments.len(), 5);
}

#[tokio::test]
async fn restart_leaves_a_newer_publishs_live_playlist_alone() {
    let (sink, report) = cut_short_then_recover(&RefuseLive).await;
    assert_eq!((report.sessions, report.live_ended, report.live_skipped), (1, 0, 1));
    let live = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(!live.end_list);
    assert_eq!(live.segments.len(), 3, "as the cut-short publish left it");
}

#[tokio::test]
async fn recovery_leaves_sessions_of_another_store() {
    let dir = temp_dir("foreign");
    let config_spool = SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 };
    let spool = Spool::open(&config_spool).unwrap();
    let sink = MemSink::failing(true);
    let uploader = Uploader::spawn(sink, config(Some(Arc::clone(&spool)), 1));
    uploader.submit(segment(0, false)).await.unwrap();
    uploader.finish_by(Instant::now()).await;
    drop(spool);
    let spool = Spool::open(&config_spool).unwrap();
    let other = Arc::new(crate::sink::DirSink::new(dir.join("elsewhere")));
    let report = recover(&spool, other, &AlwaysEndLive, fast_retry()).await;
    assert_eq!((report.sessions, report.foreign), (0, 1));
    assert_eq!(spooled_files(&spool), 1);
    std::fs::remove_dir_all(dir).unwrap();
}
