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
    /// Every live playlist stored, in order.
    live_versions: Mutex<Vec<Bytes>>,
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
        if key.ends_with("/index.m3u8") {
            self.live_versions.lock().unwrap().push(body.clone());
        }
        self.objects.lock().unwrap().insert(key.to_owned(), body);
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: usize) -> Result<Option<Bytes>, SinkError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::Read { key: key.into(), message: "injected".into() });
        }
        match self.objects.lock().unwrap().get(key) {
            Some(body) if body.len() > max_bytes => {
                Err(SinkError::TooLarge { key: key.into(), max_bytes })
            }
            found => Ok(found.cloned()),
        }
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

    /// Asserts what a player following the live playlist relies on across every version
    /// stored (RFC 8216 §6.2.1, §6.3.5): the media sequence never goes back and a number
    /// always names the same segment.
    fn assert_live_numbering(&self) {
        let mut by_number = BTreeMap::new();
        let mut last = 0;
        for body in self.live_versions.lock().unwrap().iter() {
            let p = m3u8_rs::parse_media_playlist_res(body).expect("parses");
            assert!(p.media_sequence >= last, "media sequence {} after {last}", p.media_sequence);
            last = p.media_sequence;
            for (i, s) in p.segments.iter().enumerate() {
                let n = p.media_sequence + i as u64;
                assert_eq!(by_number.entry(n).or_insert_with(|| s.uri.clone()), &s.uri, "#{n}");
            }
        }
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
    session_config("s1", spool, queue)
}

fn session_config(session: &str, spool: Option<Arc<Spool>>, queue: usize) -> UploaderConfig {
    UploaderConfig {
        prefix: "live/ch".into(),
        session: session.into(),
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

/// Session `session` stores `stored` segments (one with a discontinuity flag at `gap_at`),
/// then the store fails and `spooled` more stay in the spool at `dir` when its finish
/// deadline passes (a crash, as far as the store sees it).
async fn crashed_session(sink: &Arc<MemSink>, dir: &std::path::Path, session: &str, stored: u64) {
    let spool = Spool::open(&SpoolConfig { dir: dir.to_owned(), budget_bytes: 1 << 20 }).unwrap();
    let uploader = Uploader::spawn(sink.clone(), session_config(session, Some(spool), 2));
    for i in 0..stored {
        uploader.submit(segment(i, false)).await.unwrap();
    }
    let own = format!("{session}/{:06}.ts", stored - 1);
    wait_for("stored segments listed", || {
        sink.playlist("live/ch/index.m3u8").is_some_and(|p| p.segments.iter().any(|s| s.uri == own))
    })
    .await;
    sink.failing.store(true, Ordering::SeqCst);
    for i in stored..stored + 2 {
        uploader.submit(segment(i, false)).await.unwrap();
    }
    let report = uploader.finish_by(Instant::now() + Duration::from_millis(50)).await;
    assert_eq!((report.segments, report.spooled), (stored, 2), "{report:?}");
    sink.failing.store(false, Ordering::SeqCst);
}

#[tokio::test]
async fn a_new_session_continues_the_live_playlist_of_the_last() {
    let sink = MemSink::failing(false);
    let first = Uploader::spawn(sink.clone(), session_config("s1", None, 4));
    for i in 0..7 {
        first.submit(segment(i, i == 1)).await.unwrap();
    }
    assert!(first.finish().await.ended);
    assert_eq!(sink.playlist("live/ch/index.m3u8").unwrap().media_sequence, 2);

    let second = Uploader::spawn(sink.clone(), session_config("s2", None, 4));
    for i in 0..3 {
        second.submit(segment(i, false)).await.unwrap();
    }
    assert!(second.finish().await.ended);
    // s1 wrote 7 versions and its ended one; s2's first version:
    let first = m3u8_rs::parse_media_playlist_res(&sink.live_versions.lock().unwrap()[8]).unwrap();
    assert!(!first.end_list, "EXT-X-ENDLIST dropped: live again");
    assert_eq!(first.media_sequence, 3, "the old window slides on");
    assert_eq!(first.segments.last().unwrap().uri, "s2/000000.ts");
    assert!(first.segments.last().unwrap().discontinuity, "EXT-X-DISCONTINUITY before s2");
    let live = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(live.end_list);
    assert_eq!(live.media_sequence, 5);
    let listed: Vec<_> = live.segments.iter().map(|s| (s.uri.as_str(), s.discontinuity)).collect();
    assert_eq!(
        listed,
        [
            ("s1/000005.ts", false),
            ("s1/000006.ts", false),
            ("s2/000000.ts", true),
            ("s2/000001.ts", false),
            ("s2/000002.ts", false)
        ]
    );
    // The recording playlist is the session's own.
    let recording = sink.playlist("live/ch/s2/recording.m3u8").unwrap();
    assert_eq!((recording.media_sequence, recording.segments.len()), (0, 3));
    assert!(recording.segments.iter().all(|s| !s.discontinuity));
    sink.assert_audit_clean();
    sink.assert_live_numbering();
}

#[tokio::test]
async fn an_unreadable_earlier_playlist_starts_afresh() {
    let sink = MemSink::failing(false);
    let junk = Bytes::from_static(b"<html>503</html>");
    sink.objects.lock().unwrap().insert("live/ch/index.m3u8".into(), junk);
    let uploader = Uploader::spawn(sink.clone(), config(None, 2));
    uploader.submit(segment(0, false)).await.unwrap();
    assert!(uploader.finish().await.ended);
    let live = sink.playlist("live/ch/index.m3u8").unwrap();
    assert_eq!((live.media_sequence, live.segments.len()), (0, 1));
    assert!(!live.segments[0].discontinuity);
}

/// s1 crashes and is recovered, s2 continues its playlist and crashes too: recovering s2
/// ends the live playlist without its numbering going back (it resumes what s2 listed).
#[tokio::test]
async fn recovery_of_a_continued_session_keeps_the_numbering() {
    let dir = temp_dir("chain");
    let sink = MemSink::failing(false);
    crashed_session(&sink, &dir, "s1", 4).await;
    let spool = Spool::open(&SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 }).unwrap();
    let report = recover(&spool, sink.clone(), &AlwaysEndLive, fast_retry()).await;
    assert_eq!((report.segments, report.live_ended), (2, 1), "{report:?}");
    drop(spool);
    let ended = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(ended.end_list);
    assert_eq!(ended.media_sequence, 1, "s1/0..=5 through a window of 5");

    crashed_session(&sink, &dir, "s2", 6).await;
    let live = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(!live.end_list);
    assert_eq!(live.media_sequence, 7, "12 segments listed through a window of 5");
    let spool = Spool::open(&SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 }).unwrap();
    let report = recover(&spool, sink.clone(), &AlwaysEndLive, fast_retry()).await;
    assert_eq!((report.segments, report.live_ended), (2, 1), "{report:?}");
    let ended = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(ended.end_list);
    assert_eq!(ended.media_sequence, 9);
    let uris: Vec<_> = ended.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        ["s2/000003.ts", "s2/000004.ts", "s2/000005.ts", "s2/000006.ts", "s2/000007.ts"]
    );
    sink.assert_audit_clean();
    sink.assert_live_numbering();
    std::fs::remove_dir_all(dir).unwrap();
}

/// A crashed session recovered after a newer one took the live playlist over (no lease
/// says so, as for devices): the newer session's live playlist is left alone.
#[tokio::test]
async fn recovery_leaves_another_live_sessions_playlist_alone() {
    let dir = temp_dir("newer");
    let sink = MemSink::failing(false);
    crashed_session(&sink, &dir, "s1", 3).await;
    let newer = Uploader::spawn(sink.clone(), session_config("s2", None, 2));
    newer.submit(segment(0, false)).await.unwrap();
    wait_for("the newer session listed", || {
        sink.playlist("live/ch/index.m3u8").is_some_and(|p| p.segments.len() == 4)
    })
    .await;
    let spool = Spool::open(&SpoolConfig { dir: dir.clone(), budget_bytes: 1 << 20 }).unwrap();
    let report = recover(&spool, sink.clone(), &AlwaysEndLive, fast_retry()).await;
    assert_eq!((report.segments, report.live_ended, report.live_skipped), (2, 0, 1));
    let live = sink.playlist("live/ch/index.m3u8").unwrap();
    assert!(!live.end_list);
    assert_eq!(live.segments.last().unwrap().uri, "s2/000000.ts");
    assert!(sink.playlist("live/ch/s1/recording.m3u8").unwrap().end_list);
    newer.finish().await;
    sink.assert_live_numbering();
    std::fs::remove_dir_all(dir).unwrap();
}
