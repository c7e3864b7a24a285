//! Start-up recovery of what a crashed or cut-short run left in the spool.
//!
//! For each leftover session ([`Spool::open`] finds them): upload its spooled segments in
//! order, each retried until stored; rebuild its playlists from the playlist log plus those
//! segments; write them ended (`EXT-X-ENDLIST`, RFC 8216 §4.3.3.4); delete the session. The
//! recording playlist (in the session folder, owned by that session alone) is always ended;
//! the channel's live `index.m3u8` may meanwhile belong to a newer publish, so it is written
//! only while a [`LivePlaylistGuard`] allows it, and only when what the store holds there is
//! the session's own playlist or an ended one; it goes on from that playlist's numbering
//! (RFC 8216 §6.2.1), so a session that had continued an earlier one's is ended without its
//! media sequence going back to 0.

use super::continuity::read_live;
use super::spool::{SegmentEntry, SessionManifest, SessionSpool, Spool, SpoolError};
use super::uploader::{playlist_meta, Keys, Playlists, RetryPolicy, Writer};
use super::LivePlaylist;
use crate::sink::ObjectSink;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Decides whether recovery may end a channel's live playlist.
#[async_trait]
pub trait LivePlaylistGuard: Send + Sync {
    /// Whether `<manifest.prefix>/index.m3u8` may be overwritten with the ended playlist of
    /// session `manifest.session`: true only if no other publish session is (or may be) live
    /// on that channel, e.g. nobody else holds its publish lease. Asked again before every
    /// write attempt.
    async fn may_end_live(&self, manifest: &SessionManifest) -> bool;

    /// Called once a leftover session is complete (segments stored, playlists ended), e.g.
    /// to release the crashed session's publish lease so its channel reads `idle` at once.
    async fn recovered(&self, _manifest: &SessionManifest) {}
}

/// A [`LivePlaylistGuard`] that always allows: for a single streamer process whose output
/// no other process writes (a local `dir:` sink, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysEndLive;

#[async_trait]
impl LivePlaylistGuard for AlwaysEndLive {
    async fn may_end_live(&self, _: &SessionManifest) -> bool {
        true
    }
}

/// What [`recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Leftover sessions completed and removed from the spool.
    pub sessions: u64,
    /// Spooled segments uploaded.
    pub segments: u64,
    /// Spooled segments that could not be read back (lost; a discontinuity marks the gap).
    pub lost_segments: u64,
    /// Live playlists ended.
    pub live_ended: u64,
    /// Live playlists left alone because the guard refused (a newer publish owns them).
    pub live_skipped: u64,
    /// Sessions left in the spool: unreadable records (logged with their path).
    pub failed: u64,
    /// Sessions left in the spool because they were written for another object store
    /// (another `--output`): recovered by a process writing there.
    pub foreign: u64,
}

/// Recovers every session [`Spool::open`] found, one after the other, retrying each write
/// with `retry` until stored (run it in a background task: a store still down at start-up
/// only delays it). Sessions of publishes started by this process are never touched.
pub async fn recover(
    spool: &Arc<Spool>,
    sink: Arc<dyn ObjectSink>,
    guard: &dyn LivePlaylistGuard,
    retry: RetryPolicy,
) -> RecoveryReport {
    let writer = Writer::new(sink, retry);
    let mut report = RecoveryReport::default();
    for dir in spool.take_leftovers() {
        match SessionSpool::reopen(spool, &dir) {
            Ok(left) if left.session.manifest().sink != writer.sink.location() => {
                tracing::warn!(path = %dir.display(), sink = %left.session.manifest().sink,
                    "spool session of another object store: left in place");
                report.foreign += 1;
            }
            Ok(left) => {
                recover_session(&writer, guard, left, &mut report).await;
                report.sessions += 1;
            }
            Err(e) => forget_or_keep(&dir, e, &mut report),
        }
    }
    if report != RecoveryReport::default() {
        tracing::info!(?report, "spool recovery done");
    }
    report
}

/// A session without a readable manifest: removed when it holds no segment (a crash while
/// it was being created), kept for an operator otherwise.
fn forget_or_keep(dir: &Path, e: SpoolError, report: &mut RecoveryReport) {
    let has_segments = std::fs::read_dir(dir)
        .map(|it| it.flatten().any(|f| f.path().extension().is_some_and(|x| x == "ts")))
        .unwrap_or(true);
    if has_segments {
        tracing::error!(error = %e, "spool session cannot be recovered; left in place");
        report.failed += 1;
    } else if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "could not remove empty spool session");
    }
}

async fn recover_session(
    writer: &Writer,
    guard: &dyn LivePlaylistGuard,
    left: super::spool::Leftover,
    report: &mut RecoveryReport,
) {
    let session = Arc::new(left.session);
    let manifest = session.manifest().clone();
    let keys = Keys::new(&manifest.prefix, &manifest.session, manifest.recording);
    tracing::info!(prefix = %manifest.prefix, session = %manifest.session,
        logged = left.logged.len(), spooled = left.spooled.len(), "recovering spooled session");
    let mut entries: BTreeMap<u64, SegmentEntry> =
        left.logged.into_iter().map(|e| (e.sequence, e)).collect();
    for file in left.spooled {
        let s = Arc::clone(&session);
        if entries.contains_key(&file.entry.sequence) {
            // Stored and logged just before the crash; only the delete was missing.
            let _ = tokio::task::spawn_blocking(move || s.discard(&file)).await;
            continue;
        }
        let read = {
            let file = file.clone();
            tokio::task::spawn_blocking(move || s.read_segment(&file)).await
        };
        let body = match read {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "spooled segment unreadable: lost");
                report.lost_segments += 1;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "spool read task failed: segment lost");
                report.lost_segments += 1;
                continue;
            }
        };
        let entry = file.entry;
        writer.put(&keys.segment(entry.sequence), body, keys.segment_meta, false).await;
        report.segments += 1;
        let s = Arc::clone(&session);
        match tokio::task::spawn_blocking(move || s.commit(entry, Some(&file))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "spool log append failed during recovery"),
            Err(e) => tracing::warn!(error = %e, "spool commit task failed during recovery"),
        }
        entries.insert(entry.sequence, entry);
    }

    // A session that never stored a segment leaves no playlist at all.
    if !entries.is_empty() {
        let mut playlists =
            Playlists::new(manifest.target_secs, manifest.window, manifest.recording);
        let mut previous: Option<u64> = None;
        for entry in entries.values() {
            let mut entry = *entry;
            // A segment missing from the sequence (torn or unreadable) is a gap.
            entry.discontinuity |= previous.is_some_and(|p| entry.sequence != p + 1);
            previous = Some(entry.sequence);
            playlists.push(&keys, &entry);
        }
        playlists.end();
        writer.put_playlists(&keys, &playlists, None, false).await;
        if manifest.window == 0 {
            // An archive: it has no live playlist.
        } else if let Some(live) = ended_live(writer, &manifest, &keys, &entries).await {
            if end_live(writer, guard, &manifest, &keys, &live).await {
                report.live_ended += 1;
            } else {
                report.live_skipped += 1;
            }
        } else {
            report.live_skipped += 1;
        }
    }
    guard.recovered(&manifest).await;
    let s = Arc::clone(&session);
    match tokio::task::spawn_blocking(move || s.remove()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not remove recovered session"),
        Err(e) => tracing::warn!(error = %e, "spool remove task failed"),
    }
}

/// The crashed session's live playlist, ended, built on what the store holds at its key so
/// that its numbering goes on (RFC 8216 §6.2.1: media sequence numbers never go backwards,
/// also when that session had itself continued an earlier one):
/// - the session's own playlist (its last segment is one of the session's): resumed as
///   listed, with the segments after it appended;
/// - nothing readable there: the session's segments from media sequence 0, as before;
/// - an earlier session's playlist, ended (or empty): continued
///   ([`LivePlaylist::continue_from`]) with all of the session's segments;
/// - another session's playlist still live: `None`, left alone (a newer session owns it).
async fn ended_live(
    writer: &Writer,
    manifest: &SessionManifest,
    keys: &Keys,
    entries: &BTreeMap<u64, SegmentEntry>,
) -> Option<LivePlaylist> {
    let (target, window) = (manifest.target_secs, manifest.window);
    let own = format!("{}/", manifest.session);
    let (mut live, mut previous) = match read_live(writer.sink.as_ref(), &keys.live).await {
        None => (LivePlaylist::sliding(target, window), None),
        Some(current) => {
            let last_own = current.segments.last().and_then(|s| {
                let file = s.uri.strip_prefix(&own)?;
                file.strip_suffix(".ts")?.parse::<u64>().ok()
            });
            match last_own {
                Some(last) if current.target_duration == u64::from(target) => {
                    (LivePlaylist::resumed(target, window, current), Some(last))
                }
                None if !current.end_list && !current.segments.is_empty() => {
                    tracing::info!(prefix = %manifest.prefix, session = %manifest.session,
                        "live playlist belongs to another live session: left as is");
                    return None;
                }
                _ => (LivePlaylist::continued(target, window, current), None),
            }
        }
    };
    let listed = previous;
    for entry in entries.values().filter(|e| listed.is_none_or(|p| e.sequence > p)) {
        // A segment missing from the sequence (torn or unreadable) is a gap.
        let gap = previous.is_some_and(|p| entry.sequence != p + 1);
        previous = Some(entry.sequence);
        live.push(keys.live_uri(entry.sequence), entry.duration, entry.discontinuity || gap);
    }
    live.end();
    Some(live)
}

/// Writes the ended live playlist, asking `guard` before every attempt; `false` when the
/// guard refused.
async fn end_live(
    writer: &Writer,
    guard: &dyn LivePlaylistGuard,
    manifest: &SessionManifest,
    keys: &Keys,
    live: &LivePlaylist,
) -> bool {
    let body = bytes::Bytes::from(live.render());
    let mut delay = writer.retry.initial;
    loop {
        if !guard.may_end_live(manifest).await {
            tracing::info!(prefix = %manifest.prefix, session = %manifest.session,
                "live playlist belongs to a newer publish: left as is");
            return false;
        }
        match writer.sink.put(&keys.live, body.clone(), playlist_meta(true)).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(key = %keys.live, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "ended live playlist not written, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(writer.retry.max_backoff);
            }
        }
    }
}
