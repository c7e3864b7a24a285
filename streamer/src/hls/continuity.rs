//! Live playlist continuity across sessions: a session's sliding live playlist goes on from
//! the one an earlier session (a killed and replaced process, a restarted device pull) left
//! at the same key, so media sequence numbers never go backwards (RFC 8216 §6.2.1, §6.3.5)
//! and the new session starts after `EXT-X-DISCONTINUITY` (§4.3.2.3). Used by the uploader
//! when a session starts and by spool recovery.

use super::LivePlaylist;
use crate::sink::{ObjectSink, MAX_PLAYLIST_BYTES};
use std::time::Duration;

/// How long reading back an earlier session's live playlist may take before the session
/// starts a fresh one.
const CONTINUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The media playlist at `key`, if there is one that parses ([`super::playlist::parse_previous`]):
/// `None` when there is none, or (logged) when it cannot be read within [`CONTINUE_TIMEOUT`],
/// is over [`MAX_PLAYLIST_BYTES`] or does not parse.
pub(crate) async fn read_live(sink: &dyn ObjectSink, key: &str) -> Option<m3u8_rs::MediaPlaylist> {
    let read = tokio::time::timeout(CONTINUE_TIMEOUT, sink.get(key, MAX_PLAYLIST_BYTES)).await;
    let body = match read {
        Ok(Ok(body)) => body?,
        Ok(Err(e)) => {
            tracing::warn!(key, error = %e, "earlier live playlist unreadable: starting afresh");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                key,
                timeout_s = CONTINUE_TIMEOUT.as_secs(),
                "earlier live playlist not read in time: starting afresh"
            );
            return None;
        }
    };
    match super::playlist::parse_previous(&body) {
        Ok(playlist) => Some(playlist),
        Err(e) => {
            tracing::warn!(key, error = %e, "starting afresh");
            None
        }
    }
}

/// The sliding live playlist a session starts with: the one an earlier session left at
/// `key` continued ([`LivePlaylist::continue_from`]: numbering goes on, RFC 8216 §6.2.1,
/// §6.3.5; a discontinuity before the new session, §4.3.2.3), or a fresh one when there is
/// none that can be read ([`read_live`]).
pub(crate) async fn continued_live(
    sink: &dyn ObjectSink,
    key: &str,
    target: u32,
    window: usize,
) -> LivePlaylist {
    match read_live(sink, key).await {
        Some(previous) => {
            let live = LivePlaylist::continued(target, window, previous);
            tracing::info!(
                key,
                media_sequence = live.media_sequence(),
                discontinuity_sequence = live.discontinuity_sequence(),
                listed = live.uris().count(),
                "continuing an earlier session's live playlist"
            );
            live
        }
        None => LivePlaylist::sliding(target, window),
    }
}
