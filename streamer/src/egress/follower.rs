//! Following a live media playlist (RFC 8216 §6.3): which segments are new on each reload,
//! which follow a discontinuity, and when to reload. Pure decisions over playlist texts; the
//! fetching is [`super::follow`]'s.
//!
//! - Segments are tracked by media sequence number (§6.3.2: `EXT-X-MEDIA-SEQUENCE` plus the
//!   position). The first load starts `live_edge` segments from the end (§6.3.3: not less
//!   than three target durations from the end is the recommendation; the flag decides).
//! - A segment with `EXT-X-DISCONTINUITY` (§4.3.2.3) is passed on as a discontinuity.
//! - A **restart** of the source is a discontinuity too: the media sequence going back, the
//!   segment last taken now having another URI (the playlist was replaced), or a playlist
//!   that had `EXT-X-ENDLIST` (§4.3.3.4) going live again. After the first two the
//!   numbers mean nothing any more: the follower starts again at the live edge.
//! - A playlist shorter than what was already taken (§6.2.1: segments are never removed from
//!   the end) is a restart too.
//! - Segments that slid out of the window before they were taken (the reader fell behind)
//!   are skipped: the follower starts again at the live edge, and the next one taken is a
//!   discontinuity (a gap in the media).
//! - Reloads (§6.3.4): one target duration after a load that found the playlist changed,
//!   half of one after a load that found it unchanged, both measured from the load's start,
//!   at most [`MAX_RELOAD_INTERVAL`].

use std::time::Duration;

/// Largest playlist accepted, bytes (1 MiB: ~10 000 segment lines).
pub const MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// Longest wait between two reloads, whatever `EXT-X-TARGETDURATION` says.
pub const MAX_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// One segment to send.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSegment {
    /// Media sequence number (§6.3.2).
    pub sequence: u64,
    /// URI as the playlist gives it (relative to the playlist's URL).
    pub uri: String,
    /// `EXTINF` duration, seconds.
    pub duration: f32,
    /// It does not continue the segment sent before it (module doc).
    pub discontinuity: bool,
}

/// What one reload found.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// New segments, in order.
    pub segments: Vec<NewSegment>,
    /// The playlist text differs from the previous load's.
    pub changed: bool,
    /// A source restart was detected (module doc).
    pub restarted: bool,
    /// The playlist has `EXT-X-ENDLIST`.
    pub ended: bool,
    /// Segments passed over untaken: slid out of the window, or left behind by starting
    /// again at the live edge after that.
    pub skipped: u64,
    /// `EXT-X-TARGETDURATION`.
    pub target: Duration,
    /// When to reload, from this load's start (§6.3.4).
    pub reload_after: Duration,
}

/// Why a playlist text cannot be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaylistError {
    /// Larger than [`MAX_PLAYLIST_BYTES`].
    #[error("playlist larger than {MAX_PLAYLIST_BYTES} bytes")]
    TooLarge,
    /// A master playlist: the source must be a media playlist.
    #[error("a master playlist: give a media playlist")]
    Master,
    /// Not a media playlist; the parser's error kind (never the playlist text).
    #[error("unparsable playlist: {0}")]
    Unparsable(String),
}

/// The follower's state between reloads.
#[derive(Debug)]
pub struct Follower {
    live_edge: usize,
    /// Media sequence number of the next segment to take, once started.
    next: Option<u64>,
    /// Media sequence and URI of the last segment taken.
    last: Option<(u64, String)>,
    media_sequence: Option<u64>,
    ended: bool,
    /// The next segment taken is a discontinuity (a restart or gap with nothing to take yet).
    pending_discontinuity: bool,
    text: Option<u64>,
}

impl Follower {
    /// A follower starting `live_edge` (at least 1) segments from the end.
    pub fn new(live_edge: usize) -> Self {
        Self {
            live_edge: live_edge.max(1),
            next: None,
            last: None,
            media_sequence: None,
            ended: false,
            pending_discontinuity: false,
            text: None,
        }
    }

    /// Takes one load's text.
    ///
    /// # Errors
    /// [`PlaylistError`]; the state is left as it was (the next load may be fine).
    pub fn update(&mut self, text: &[u8]) -> Result<Update, PlaylistError> {
        if text.len() > MAX_PLAYLIST_BYTES {
            return Err(PlaylistError::TooLarge);
        }
        if m3u8_rs::is_master_playlist(text) {
            return Err(PlaylistError::Master);
        }
        let playlist = m3u8_rs::parse_media_playlist_res(text)
            // The parser's error kind only: its Debug holds the playlist text (tokens).
            .map_err(|e| PlaylistError::Unparsable(format!("{:?}", e.map(|e| e.code))))?;
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        };
        let changed = self.text.replace(hash) != Some(hash);
        let target = Duration::from_secs(playlist.target_duration.clamp(1, 3600));
        let first = playlist.media_sequence;
        let n = playlist.segments.len() as u64;
        let at = |seq: u64| playlist.segments.get(usize::try_from(seq.checked_sub(first)?).ok()?);
        let went_back = self.media_sequence.is_some_and(|m| first < m);
        let replaced =
            self.last.as_ref().is_some_and(|(seq, uri)| at(*seq).is_some_and(|s| s.uri != *uri));
        let reopened = self.ended && !playlist.end_list;
        let started = self.next.is_some();
        // RFC 8216 §6.2.1: segments are never removed from the end, so a playlist now
        // shorter than what was already taken is another one.
        let shrank = self.next.is_some_and(|next| next > first + n);
        let renewed = went_back || replaced || shrank;
        let restarted = started && (renewed || reopened);
        // Fell behind (segments slid out untaken): start again at the live edge.
        let gap = !renewed && self.next.is_some_and(|next| next < first);
        let fresh = !started || renewed || gap;
        let from = match self.next {
            Some(next) if !fresh => next,
            _ => first + n.saturating_sub(self.live_edge as u64),
        };
        let skipped = match self.next {
            Some(next) if gap => from.max(first) - next,
            _ => 0,
        };
        let mut force = restarted || skipped > 0 || self.pending_discontinuity;
        let mut segments = Vec::new();
        for seq in from.max(first)..first + n {
            let Some(s) = at(seq) else { break };
            // The very first segment taken needs no discontinuity; later ones keep theirs.
            let discontinuity = (s.discontinuity && (started || !segments.is_empty()))
                || std::mem::take(&mut force);
            segments.push(NewSegment {
                sequence: seq,
                uri: s.uri.clone(),
                duration: s.duration,
                discontinuity,
            });
        }
        self.pending_discontinuity = force;
        match segments.last() {
            Some(s) => self.last = Some((s.sequence, s.uri.clone())),
            None if fresh => self.last = None,
            None => {}
        }
        self.next = Some(segments.last().map_or(from.max(first), |s| s.sequence + 1));
        self.media_sequence = Some(first);
        self.ended = playlist.end_list;
        let reload_after = if changed { target } else { target / 2 }.min(MAX_RELOAD_INTERVAL);
        Ok(Update {
            segments,
            changed,
            restarted,
            ended: playlist.end_list,
            skipped,
            target,
            reload_after,
        })
    }
}

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;
